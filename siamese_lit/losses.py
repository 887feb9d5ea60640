"""Metric-learning losses.

Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006), with the label convention used across
siamese_lit: **y = 0 similar pair, y = 1 dissimilar pair**; D = Euclidean distance of the two
embeddings:

    L = mean over pairs of  ½·(1 − y)·D²  +  ½·y·max(0, m − D)²

Similar pairs are pulled together; dissimilar pairs are pushed apart until they are `margin` away.
The triplet loss is torch.nn.TripletMarginLoss, configured as the loss of `siamese_triplet`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from siamese_lit.errors import check


def contrastive_loss(distance: Tensor, target: Tensor, margin: float) -> Tensor:
    """½(1−y)·D² + ½·y·max(0, m−D)², averaged over the batch (y = 1: dissimilar)."""
    y = target.to(distance.dtype)
    return 0.5 * ((1 - y) * distance.pow(2) + y * F.relu(margin - distance).pow(2)).mean()


class ContrastiveLoss(nn.Module):
    """Contrastive loss on two batches of embeddings; see the module docstring for the convention."""

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        check(margin > 0, f"model.loss.margin must be > 0, got {margin}.")
        self.margin = margin

    def forward(self, emb1: Tensor, emb2: Tensor, target: Tensor) -> Tensor:
        return contrastive_loss(F.pairwise_distance(emb1, emb2), target, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
