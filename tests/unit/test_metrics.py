"""Verification and neighbour metrics on small hand-made embeddings."""

from __future__ import annotations

import pytest
import torch

from siamese_lit.evaluation.classification import knn_predict
from siamese_lit.evaluation.retrieval import oneshot_accuracy
from siamese_lit.evaluation.verification import best_threshold, verification
from siamese_lit.objectives import Distance

EUCLIDEAN = Distance()


def test_perfect_separation() -> None:
    d = torch.tensor([0.1, 0.2, 0.3, 1.0, 1.5, 2.0])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    m = verification(d, y)
    assert m["auroc"] == pytest.approx(1.0) and m["eer"] == pytest.approx(0.0, abs=1e-6)
    assert m["pair_acc"] == 1.0 and 0.3 < m["threshold"] < 1.0
    assert m["d_similar"] == pytest.approx(0.2) and m["d_dissimilar"] == pytest.approx(1.5)


def test_threshold_is_applied_unchanged_when_given() -> None:
    d = torch.tensor([0.1, 0.2, 0.3, 1.0])
    y = torch.tensor([0, 0, 1, 1])
    assert best_threshold(d, y) == pytest.approx(0.25)
    assert verification(d, y, threshold=0.5)["pair_acc"] == pytest.approx(0.75)


def test_knn_majority_vote() -> None:
    gallery = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1]])
    labels = torch.tensor([1, 1, 0, 2, 2])
    pred = knn_predict(torch.tensor([[0.05], [4.9]]), gallery, labels, 3, EUCLIDEAN)
    assert pred.tolist() == [1, 2]


def test_oneshot_on_separated_clusters() -> None:
    emb = torch.cat([torch.randn(50, 2) * 0.1 + c for c in (0.0, 5.0, 10.0)])
    labels = torch.arange(3).repeat_interleave(50)
    assert oneshot_accuracy(emb, labels, 5, 0, EUCLIDEAN) == 1.0
    noise = torch.randn(150, 2)
    assert oneshot_accuracy(noise, labels, 20, 0, EUCLIDEAN) < 0.6


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_figures_match_pytorch_metric_learnings_accuracy_calculator(
    normalize: bool, seed: int
) -> None:
    """MAP@R, R-precision and P@1 against pml's AccuracyCalculator as the oracle (k="max_bin_count":
    enough neighbours for R of every query; its LpDistance normalises the embeddings when our
    distance does)."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    from siamese_lit.evaluation.retrieval import retrieval

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (200,), generator=g)
    emb = torch.randn(200, 8, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, 8).float()
    oracle = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision", "precision_at_1"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance(normalize_embeddings=normalize)),
    ).get_accuracy(emb, labels, emb, labels, ref_includes_query=True)
    ours = retrieval(emb, labels, [1], Distance(normalize=normalize))
    assert ours["map_at_r"] == pytest.approx(oracle["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(oracle["r_precision"], abs=1e-6)
    assert ours["p_at_1"] == pytest.approx(oracle["precision_at_1"], abs=1e-6)


def test_open_set_figures_match_their_definitions() -> None:
    """AUROC against the Mann-Whitney count over every (known, unknown) pair; the FPR at 95% TPR
    and the closed-set accuracy counted by hand."""
    from siamese_lit.evaluation.classification import vote
    from siamese_lit.evaluation.openset import open_set

    g = torch.Generator().manual_seed(0)
    n, k = 400, 5
    labels = torch.randint(0, 10, (n,), generator=g)
    known = labels < 6
    # unknowns a little further from the gallery, with overlap; some exact ties
    near = (torch.rand(n, k, generator=g) + 0.6 * (~known)[:, None]).round(decimals=2).sort(1).values
    neighbour_labels = torch.where(
        torch.rand(n, k, generator=g) < 0.8, labels[:, None], (labels[:, None] + 1) % 6
    )
    figures = open_set(near, vote(neighbour_labels), labels, known)

    score = near.mean(1)
    s_known, s_unknown = score[known], score[~known]
    greater = (s_unknown[None, :] > s_known[:, None]).double().mean()
    ties = (s_unknown[None, :] == s_known[:, None]).double().mean()
    assert figures["openset_auroc"] == pytest.approx(float(greater + ties / 2), abs=1e-6)
    cut = s_known.double().sort().values[int(0.95 * (len(s_known) - 1)) :][:2]  # around the 95th percentile
    accepted = [(s_unknown.double() <= c).float().mean() for c in cut]
    assert min(accepted) <= figures["openset_fpr95"] <= max(accepted)
    votes = [torch.bincount(row, minlength=10).argmax() for row in neighbour_labels[known]]
    closed = float((torch.stack(votes) == labels[known]).float().mean())
    assert figures["closed_acc"] == pytest.approx(closed, abs=0.02)  # the vote's ties go to the nearer


def test_the_rejection_threshold_accepts_its_share_of_known_digits_and_scores_by_brute_force() -> None:
    """Rejection (siamese_lit.evaluation.openset): the score is the mean of the k smallest distances
    (against torch.cdist), divided by that to the outliers when there are some, the calibrated
    threshold accepts ACCEPTED of the known embeddings, and an older checkpoint's state gets the
    uncalibrated buffers (no outliers)."""
    from siamese_lit.evaluation.openset import ACCEPTED, MAX_REFERENCES, REJECT_K, Rejection
    from siamese_lit.objectives.distance import Distance
    from siamese_lit.utils.errors import CheckpointError

    g = torch.Generator().manual_seed(0)
    references, known = torch.randn(500, 8, generator=g), torch.randn(1000, 8, generator=g)
    rejection = Rejection(8)
    assert not rejection.calibrated and rejection.scores(known, Distance()).isnan().all()
    threshold = rejection.calibrate(known, references, Distance())
    assert rejection.calibrated and torch.equal(rejection.references, references)
    brute = torch.cdist(known, references).sort(1).values[:, :REJECT_K].mean(1)
    scores = rejection.scores(known, Distance())
    assert torch.allclose(scores, brute, atol=1e-5)
    assert float((scores <= threshold).float().mean()) == pytest.approx(ACCEPTED, abs=1 / len(known))
    state: dict = {}
    Rejection(8).fit_state(state, "rejection.", "old.ckpt")
    assert state["rejection.references"].shape == (0, 8) and state["rejection.threshold"].isnan()
    assert state["rejection.outliers"].shape == (0, 8)
    sized = Rejection(8)
    sized.fit_state({"rejection.references": references}, "rejection.", "new.ckpt")
    assert sized.references.shape == (500, 8) and sized.outliers.shape == (0, 8)
    # with outliers (training non-digits): the digits' score over the outliers' (both by brute force)
    outliers = torch.randn(300, 8, generator=g) + 3
    threshold = rejection.calibrate(known, references, Distance(), outliers)
    to_outliers = torch.cdist(known, outliers).sort(1).values[:, :REJECT_K].mean(1)
    scores = rejection.scores(known, Distance())
    assert torch.allclose(scores, brute / to_outliers, atol=1e-5)
    assert float((scores <= threshold).float().mean()) == pytest.approx(ACCEPTED, abs=1 / len(known))
    near_outlier = outliers[:1] + 1e-3  # as far from the digits as a known digit, on top of an outlier
    assert float(rejection.scores(near_outlier, Distance())) > threshold
    rejection.calibrate(known, references, Distance())  # recalibrated without outliers: none kept
    assert rejection.outliers.shape == (0, 8)
    assert torch.allclose(rejection.scores(known, Distance()), brute, atol=1e-5)
    with pytest.raises(CheckpointError, match="outlier embeddings, more than"):
        Rejection(8).fit_state(
            {"rejection.references": references, "rejection.outliers": torch.zeros(MAX_REFERENCES + 1, 8)},
            "rejection.",
            "edited.ckpt",
        )


def test_a_gallery_without_some_test_digits_makes_the_scoring_open_set() -> None:
    from siamese_lit.evaluation.scoring import score_embeddings

    euclidean = Distance()
    gallery = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    g_labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[0.05], [5.05], [20.0], [-15.0]])
    labels = torch.tensor([0, 1, 2, 3])
    metrics = score_embeddings(
        queries, labels, distance=euclidean, gallery=(gallery, g_labels), knn_k=2
    ).metrics
    assert (
        metrics["openset_auroc"] == 1.0 and metrics["openset_fpr95"] == 0.0 and metrics["closed_acc"] == 1.0
    )
    closed = score_embeddings(
        queries[:2], labels[:2], distance=euclidean, gallery=(gallery, g_labels), knn_k=2
    )
    assert not {"openset_auroc", "openset_fpr95", "closed_acc"} & set(closed.metrics)
