"""The objectives' losses against their papers' formulas (Hadsell's contrastive loss by hand-computed values,
SupCon and NT-Xent by per-anchor reference code), the label convention, the distance."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from siamese_lit import PROJECT_ROOT
from siamese_lit.data import DISSIMILAR, SIMILAR
from siamese_lit.objectives import (
    ContrastiveObjective,
    Distance,
    TripletObjective,
    ViewObjective,
    contrastive_loss,
)
from siamese_lit.utils.errors import ConfigError
from tests.helpers.runs import compose_cfg


def test_convention_similar_is_zero() -> None:
    assert (SIMILAR, DISSIMILAR) == (0, 1)


def test_similar_pair_term_is_half_squared_distance() -> None:
    d = torch.tensor([0.0, 1.0, 3.0])
    y = torch.full((3,), SIMILAR)
    # ½·D² each: 0, 0.5, 4.5 -> mean 5/3
    assert float(contrastive_loss(d, y, margin=2.0)) == pytest.approx(5 / 3)


def test_dissimilar_pair_term_is_half_squared_hinge() -> None:
    d = torch.tensor([0.0, 0.5, 2.0, 3.0])
    y = torch.full((4,), DISSIMILAR)
    # ½·max(0, 2 − D)²: 2, 1.125, 0 (margin edge), 0 -> mean 3.125/4
    assert float(contrastive_loss(d, y, margin=2.0)) == pytest.approx(3.125 / 4)


def test_mixed_batch_and_margin_edge_gradient() -> None:
    d = torch.tensor([1.0, 1.0, 2.0], requires_grad=True)
    y = torch.tensor([SIMILAR, DISSIMILAR, DISSIMILAR])
    loss = contrastive_loss(d, y, margin=2.0)
    assert loss.item() == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    loss.backward()
    # d/dD: similar D/3 = 1/3; dissimilar -(m−D)/3 = -1/3; at the margin 0
    assert torch.allclose(d.grad, torch.tensor([1 / 3, -1 / 3, 0.0]))


def test_objective_uses_the_distance_of_embeddings_and_logs_both_kinds() -> None:
    e1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    e2 = torch.tensor([[3.0, 4.0], [0.6, 0.8]])  # distances 5 and 1
    y = torch.tensor([SIMILAR, DISSIMILAR])
    loss, logged = ContrastiveObjective(margin=2.0)((e1, e2), y)
    assert float(loss) == pytest.approx((0.5 * 25 + 0.5 * 1) / 2, rel=1e-4)
    assert logged["d_similar"].tolist() == pytest.approx([5.0], rel=1e-5)
    assert logged["d_dissimilar"].tolist() == pytest.approx([1.0], rel=1e-5)


def test_triplet_objective_is_torchs_triplet_margin_loss() -> None:
    g = torch.Generator().manual_seed(6)
    a, p, n = torch.randn(3, 16, 5, generator=g)
    loss, logged = TripletObjective(margin=1.0)((a, p, n), torch.zeros(16))
    assert float(loss) == pytest.approx(float(torch.nn.TripletMarginLoss(margin=1.0)(a, p, n)), rel=1e-6)
    assert torch.allclose(logged["d_similar"], torch.nn.functional.pairwise_distance(a, p))


def test_each_objective_names_its_batches() -> None:
    assert (ContrastiveObjective.batches, TripletObjective.batches, ViewObjective.batches) == (
        "pairs",
        "triplets",
        "views",
    )


@pytest.mark.parametrize("objective", [ContrastiveObjective, TripletObjective])
def test_margin_must_be_positive(objective: type) -> None:
    with pytest.raises(ConfigError, match="margin"):
        objective(margin=0.0)


# ---- ViewObjective: pytorch-metric-learning's terms against the papers' formulas ------------------------


def _cosine_logits(z: torch.Tensor, temperature: float) -> torch.Tensor:
    z = torch.nn.functional.normalize(z, dim=1)
    return z @ z.T / temperature


def supcon_reference(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al. (2020), eq. 2 (L_out), one anchor at a time:
    −1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) ), averaged over anchors."""
    s = _cosine_logits(z, temperature)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        log_den = torch.logsumexp(s[i, others], 0)
        losses.append(-torch.stack([s[i, p] - log_den for p in positives]).mean())
    return torch.stack(losses).mean()


def ntxent_reference(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """Chen et al. (2020), NT-Xent: z holds the B first views then the B second views; for each
    view i and its partner j, −log( exp(sim(i, j)/τ) / Σ_{k≠i} exp(sim(i, k)/τ) ), averaged over 2B."""
    s = _cosine_logits(z, temperature)
    b = len(z) // 2
    losses = []
    for i in range(2 * b):
        j = (i + b) % (2 * b)
        others = [k for k in range(2 * b) if k != i]
        losses.append(-(s[i, j] - torch.logsumexp(s[i, others], 0)))
    return torch.stack(losses).mean()


class _ViewLoss:
    """The objective of conf/model/objective/<config>.yaml (composed by Hydra, bound to a distance)
    as a loss of (2B, D) embeddings, the B first views then the B second ones, and B labels."""

    def __init__(self, config: str, *overrides: str, normalize: bool = True) -> None:
        cfg = compose_cfg(
            ["+experiment=siamese", f"model/objective={config}", *overrides], PROJECT_ROOT / "unused"
        )
        self.objective = instantiate(cfg.model.objective)
        self.objective.bind(Distance(normalize=normalize))

    def __call__(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.objective(z.chunk(2), labels)[0]


_view_loss = _ViewLoss


def test_supcon_term_is_the_papers_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z, labels = torch.randn(16, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
    loss = _view_loss("supcon")
    expected = supcon_reference(z, labels.repeat(2), temperature=0.1)
    assert float(loss(z, labels)) == pytest.approx(float(expected), rel=1e-4)


def test_ntxent_term_is_simclrs_formula() -> None:
    g = torch.Generator().manual_seed(1)
    z, labels = torch.randn(12, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
    loss = _view_loss("ntxent")
    assert float(loss(z, labels)) == pytest.approx(float(ntxent_reference(z, 0.1)), rel=1e-4)


def test_summed_terms_and_instance_weight() -> None:
    g = torch.Generator().manual_seed(2)
    z, labels = torch.randn(12, 8, generator=g), torch.randint(0, 3, (6,), generator=g)
    both = float(_view_loss("supcon_ntxent", "model.objective.instance_weight=0.5")(z, labels))
    expected = supcon_reference(z, labels.repeat(2), 0.1) + 0.5 * ntxent_reference(z, 0.1)
    assert both == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize("config", ["multisimilarity", "triplet_mined"])
def test_mined_losses_pull_views_of_a_digit_together(config: str) -> None:
    """A few optimizer steps on free embeddings lower the loss and separate the digits."""
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(4).repeat_interleave(4)
    z = torch.randn(32, 8, generator=g, requires_grad=True)
    loss_fn = _view_loss(config)
    opt = torch.optim.SGD([z], lr=0.5)
    first = float(loss_fn(z, labels).detach())
    for _ in range(50):
        opt.zero_grad()
        loss_fn(z, labels).backward()
        opt.step()
    assert float(loss_fn(z, labels).detach()) < first
    emb = Distance(normalize=True).prepare(z.detach())
    d = torch.cdist(emb, emb)
    same = labels.repeat(2)[:, None] == labels.repeat(2)[None, :]
    assert d[same].mean() < d[~same].mean()


def test_view_objective_needs_a_term_and_takes_the_models_distance() -> None:
    with pytest.raises(ConfigError, match="supervised or an instance term"):
        ViewObjective()
    euclidean = _view_loss("supcon", normalize=False).objective
    assert type(euclidean.terms["supervised"].distance).__name__ == "LpDistance"
    cosine = _view_loss("supcon", normalize=True).objective
    assert type(cosine.terms["supervised"].distance).__name__ == "CosineSimilarity"


def test_cosine_distance_ranks_like_cosine_similarity() -> None:
    g = torch.Generator().manual_seed(4)
    q, r = torch.randn(5, 6, generator=g), torch.randn(20, 6, generator=g)
    cosine = Distance(normalize=True)
    d = cosine.matrix(q, r)  # every figure: Euclidean on unit vectors
    sim = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(r, dim=1).T
    assert torch.allclose(d.pow(2), 2 - 2 * sim, atol=1e-5)
    assert torch.equal(d.argsort(1), (-sim).argsort(1))


def test_pml_ntxent_gives_the_same_value_as_the_instance_term() -> None:
    """The instance term is SupCon on image identities; pytorch-metric-learning's NTXentLoss agrees."""
    from pytorch_metric_learning.losses import NTXentLoss

    g = torch.Generator().manual_seed(5)
    z, labels = torch.randn(12, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
    expected = NTXentLoss(temperature=0.1)(z, torch.arange(6).repeat(2))
    assert float(_view_loss("ntxent")(z, labels)) == pytest.approx(float(expected), rel=1e-4)
