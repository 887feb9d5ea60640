"""Contrastive loss of Hadsell, Chopra & LeCun (CVPR 2006) on balanced pairs.

Label convention, used across siamese_lit: **y = 0 similar pair, y = 1 dissimilar pair**; with D the
distance of the two embeddings and m the margin:

    L = mean over pairs of  ½·(1 − y)·D²  +  ½·y·max(0, m − D)²

Similar pairs are pulled together; dissimilar pairs are pushed apart until they are `margin` away.
pytorch-metric-learning's `ContrastiveLoss` is not this one (it has a positive margin and averages
over the non-zero terms only), so it is written here, with a test against hand-computed values.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from siamese_lit.data.sampler import DISSIMILAR, SIMILAR
from siamese_lit.objectives.base import Objective, Output
from siamese_lit.utils.errors import check


def contrastive_loss(distance: Tensor, target: Tensor, margin: float) -> Tensor:
    """½(1−y)·D² + ½·y·max(0, m−D)², averaged over the batch (y = 1: dissimilar)."""
    y = target.to(distance.dtype)
    return 0.5 * ((1 - y) * distance.pow(2) + y * F.relu(margin - distance).pow(2)).mean()


class ContrastiveObjective(Objective):
    """The contrastive loss on pair batches `(x1, x2, y)`.

    Args:
        margin: how far dissimilar pairs are pushed apart (the article's 2.0).
    """

    batches: ClassVar[str] = "pairs"

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        check(margin > 0, f"model.objective.margin must be > 0, got {margin}.")
        self.margin = margin

    def forward(self, embeddings: tuple[Tensor, ...], target: Tensor) -> Output:
        d = self.distance.pairwise(*embeddings)
        detached = d.detach()
        logged = {"d_similar": detached[target == SIMILAR], "d_dissimilar": detached[target == DISSIMILAR]}
        return contrastive_loss(d, target, self.margin), logged

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
