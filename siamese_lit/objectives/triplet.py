"""The triplet loss of FaceNet (Schroff et al. 2015) on sampled triplets: max(d(a, p) − d(a, n) + α, 0)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from siamese_lit.objectives.base import Objective, Output
from siamese_lit.utils.errors import check


class TripletObjective(Objective):
    """The triplet loss on triplet batches `(anchor, positive, negative, anchor label)`, averaged.

    Args:
        margin: α, how much nearer than the negative the positive must be.
    """

    batches: ClassVar[str] = "triplets"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        check(margin > 0, f"model.objective.margin must be > 0, got {margin}.")
        self.margin = margin

    def forward(self, embeddings: tuple[Tensor, ...], target: Tensor) -> Output:
        anchor, positive, negative = embeddings
        d_pos, d_neg = self.distance.pairwise(anchor, positive), self.distance.pairwise(anchor, negative)
        loss = F.relu(d_pos - d_neg + self.margin).mean()
        return loss, {"d_similar": d_pos.detach(), "d_dissimilar": d_neg.detach()}

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
