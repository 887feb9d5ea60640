"""The contrastive loss against hand-computed values, and its label convention."""

from __future__ import annotations

import pytest
import torch

from siamese_lit.data import DISSIMILAR, SIMILAR
from siamese_lit.errors import ConfigError
from siamese_lit.losses import ContrastiveLoss, contrastive_loss


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


def test_module_uses_euclidean_distance_of_embeddings() -> None:
    e1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    e2 = torch.tensor([[3.0, 4.0], [0.6, 0.8]])  # distances 5 and 1
    y = torch.tensor([SIMILAR, DISSIMILAR])
    loss = ContrastiveLoss(margin=2.0)(e1, e2, y)
    assert float(loss) == pytest.approx((0.5 * 25 + 0.5 * 1) / 2, rel=1e-4)


def test_margin_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="margin"):
        ContrastiveLoss(margin=0.0)
