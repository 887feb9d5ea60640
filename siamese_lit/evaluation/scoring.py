"""Scoring a set of embeddings: the one road from embeddings to every figure a Siamese model is judged by.

`LitSiamese` (validation and test, through `score_split`), `evaluate` (its report, the robustness
suite, unseen digits) and the bench call `score_embeddings` with embeddings computed once; nothing
here runs the model. Every distance is measured by the model's `Distance` (siamese_lit.objectives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from siamese_lit.data.pairs import EvalSet
from siamese_lit.evaluation.classification import nearest, prototype_predict, vote
from siamese_lit.evaluation.openset import open_set
from siamese_lit.evaluation.retrieval import oneshot_accuracy, retrieval
from siamese_lit.evaluation.verification import verification
from siamese_lit.objectives.distance import Distance

Pairs = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Scores:
    """The figures of a set of embeddings (`metrics`), and what they were computed from: the class
    each query was given (`predictions`: "knn", "prototype") and the pair distances (`distance`)."""

    metrics: dict[str, float]
    predictions: dict[str, Tensor] = field(default_factory=dict)
    distance: Tensor | None = None


def score_embeddings(
    embeddings: Tensor,
    labels: Tensor,
    *,
    distance: Distance,
    pairs: Pairs | None = None,
    threshold: float | None = None,
    gallery: tuple[Tensor, Tensor] | None = None,
    knn_k: int = 5,
    oneshot_episodes: int = 0,
    retrieval_at: Sequence[int] = (),
    seed: int = 0,
) -> Scores:
    """The figures of `embeddings` (N, D) with their `labels` (N,), each when its input is given.

    - `pairs` (a, b, y), indices into the embeddings, y = 1 dissimilar: `auroc`, `eer`, `pair_acc`
      at `threshold` (chosen on these pairs when None, returned as `threshold`), `d_similar`,
      `d_dissimilar`;
    - `gallery` (embeddings, labels) of labelled references: `knn_acc` (k = `knn_k`) and
      `prototype_acc` (nearest class mean); when some labels are not in the gallery (an open set:
      siamese_lit.evaluation.openset), `openset_auroc`, `openset_fpr95` and `closed_acc`;
    - `oneshot_episodes` > 0: `oneshot_acc`, N-way one-shot over the digits of `labels`;
    - `retrieval_at` (k, ...): `p_at_k`, `map`, `r_precision`, `map_at_r` (Musgrave et al. 2020),
      every image querying all the others.
    """
    metrics: dict[str, float] = {}
    predictions: dict[str, Tensor] = {}
    pair_distance = None
    if pairs is not None:
        a, b, y = (t.to(embeddings.device) for t in pairs)
        pair_distance = distance.pairwise(embeddings[a], embeddings[b])
        metrics |= verification(pair_distance, y, threshold)
    if gallery is not None and len(gallery[1]):
        g_emb, g_labels = gallery
        near, idx = nearest(embeddings, g_emb, knn_k, distance)
        predictions["knn"] = vote(g_labels[idx])
        predictions["prototype"] = prototype_predict(embeddings, g_emb, g_labels, distance)
        for name, pred in predictions.items():
            metrics[f"{name}_acc"] = float((pred == labels).float().mean())
        known = torch.isin(labels, g_labels)
        if 0 < int(known.sum()) < len(labels):  # digits the gallery does not hold: unknowns
            metrics |= open_set(near, predictions["knn"], labels, known)
    several = labels.unique().numel() >= 2
    if oneshot_episodes > 0 and several:
        metrics["oneshot_acc"] = oneshot_accuracy(embeddings, labels, oneshot_episodes, seed, distance)
    if retrieval_at and several:
        metrics |= retrieval(embeddings, labels, retrieval_at, distance)
    return Scores(metrics, predictions, pair_distance)


@dataclass(frozen=True)
class Evaluation:
    """What one validation or test of a Siamese model computed: its figures and what the TensorBoard
    callbacks draw (`LitSiamese.evaluation`, the one value they read)."""

    stage: str
    metrics: dict[str, float]
    embeddings: Tensor  # (N, D): the embedded images of the split, in index order
    labels: Tensor
    images: Tensor  # uint8 (N, 28, 28): those images
    pairs: tuple[Tensor, Tensor]  # the scored fixed pairs, as rows of `embeddings`
    target: Tensor  # 0 similar, 1 dissimilar
    distance: Tensor  # of each pair
    threshold: float


def score_split(
    stage: str,
    collected: tuple[Tensor, Tensor, Tensor],
    gallery: tuple[Tensor, Tensor],
    eval_set: EvalSet,
    *,
    distance: Distance,
    threshold: float | None,
    knn_k: int,
    oneshot_episodes: int = 0,
    retrieval_at: Sequence[int] = (),
    loss: Callable[[tuple[Tensor, ...], Tensor], tuple[Tensor, dict]] | None = None,
) -> Evaluation | None:
    """The Evaluation of the embeddings `collected` (embeddings, labels, indices into the split) of
    one split, scored on the fixed pairs of `eval_set` whose two images were embedded (with
    `limit_*_batches` only part of a split is), and the objective's `loss` on its fixed rows. None
    when fewer than two such pairs, or pairs of one kind only, remain."""
    emb, labels, idx = collected
    present = torch.zeros(len(eval_set.labels), dtype=torch.bool, device=emb.device)
    present[idx] = True
    a, b, y = eval_set.pairs
    keep = present[a] & present[b]
    if keep.sum() < 2 or y[keep].unique().numel() < 2:
        return None
    rows = (torch.searchsorted(idx, a[keep]), torch.searchsorted(idx, b[keep]))
    scores = score_embeddings(
        emb,
        labels,
        distance=distance,
        pairs=(*rows, y[keep]),
        threshold=threshold,
        gallery=gallery,
        knn_k=knn_k,
        oneshot_episodes=oneshot_episodes,
        retrieval_at=retrieval_at,
    )
    metrics = dict(scores.metrics)
    if loss is not None and eval_set.loss_rows is not None:
        *images, target = eval_set.loss_rows
        ok = torch.stack([present[r] for r in images]).all(0)
        if ok.any():
            embedded = tuple(emb[torch.searchsorted(idx, r[ok])] for r in images)
            metrics["loss"] = float(loss(embedded, target[ok])[0])
    return Evaluation(
        stage,
        metrics,
        emb,
        labels,
        eval_set.images[idx],
        rows,
        y[keep],
        scores.distance,
        metrics["threshold"],
    )
