"""Metric-learning losses.

Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006), with the label convention used across
siamese_lit: **y = 0 similar pair, y = 1 dissimilar pair**; D = Euclidean distance of the two
embeddings:

    L = mean over pairs of  ½·(1 − y)·D²  +  ½·y·max(0, m − D)²

Similar pairs are pulled together; dissimilar pairs are pushed apart until they are `margin` away.
The triplet loss is torch.nn.TripletMarginLoss, configured as the loss of `siamese_triplet`.

`ViewLoss` trains on two augmented views of each image of a batch with pytorch-metric-learning's
losses: a supervised term on the digit labels (SupCon, Khosla et al. 2020; or a mined multi-similarity
or triplet loss) and an instance term on which image each view comes from (NT-Xent, SimCLR's loss,
Chen et al. 2020): what transfers to digits never trained on (README). pytorch-metric-learning's
`ContrastiveLoss` is not Hadsell's (it has a positive margin and averages over non-zero terms only),
so the seed experiments keep `ContrastiveLoss` above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamese_lit.distances import Distance
from siamese_lit.utils.errors import check
from siamese_lit.utils.specs import build


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


class ViewLoss(nn.Module):
    """A loss on the embeddings of two views of each image: `supervised` + `instance` terms, each
    a pytorch-metric-learning loss (its Hydra config, or None for no such term).

    The batch is (2B, D): the B first views, then the B second views. The supervised term sees the
    digit labels (every image of the same digit is a positive), the instance term sees the image
    index (only the other view of the same image is a positive). `miner` (optional) selects the
    supervised term's pairs or triplets. `bind(distance)` gives every term and the miner the model's
    distance (siamese_lit.distances), before the first call.

    Args:
        supervised: e.g. SupConLoss, MultiSimilarityLoss, TripletMarginLoss (configs with `_target_`).
        instance: e.g. NTXentLoss.
        miner: e.g. MultiSimilarityMiner or TripletMarginMiner, for the supervised term.
        instance_weight: the instance term's weight in the sum.
    """

    def __init__(
        self,
        supervised: Mapping[str, Any] | None = None,
        instance: Mapping[str, Any] | None = None,
        miner: Mapping[str, Any] | None = None,
        instance_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check(
            supervised is not None or instance is not None,
            "model.loss (ViewLoss) needs a supervised or an instance term: set model.loss.supervised "
            "or model.loss.instance.",
        )
        check(instance_weight >= 0, f"model.loss.instance_weight must be >= 0, got {instance_weight}.")
        self.specs = {"supervised": supervised, "instance": instance, "miner": miner}
        self.instance_weight = instance_weight
        self.terms = nn.ModuleDict()
        self.miner: nn.Module | None = None
        self.bind(None)

    def bind(self, distance: Distance | None) -> None:
        """(Re)build the terms with `distance` (None: each loss's own default, cosine for SupCon/NT-Xent)."""
        extra = {} if distance is None else {"distance": distance.pml()}

        def term(name: str) -> nn.Module:  # allow-listed targets only: a checkpoint holds these specs
            return build(self.specs[name], f"model.loss.{name}", allowed_only=True, **extra)

        self.terms = nn.ModuleDict({k: term(k) for k in ("supervised", "instance") if self.specs[k]})
        self.miner = term("miner") if self.specs["miner"] else None

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """`embeddings` (2B, D) of the two views, `labels` (B,) the digits of the B images."""
        b = len(labels)
        check(len(embeddings) == 2 * b, f"ViewLoss takes 2B embeddings for B labels, got {len(embeddings)}.")
        loss = embeddings.new_zeros(())
        if "supervised" in self.terms:
            classes = labels.repeat(2)
            pairs = self.miner(embeddings, classes) if self.miner is not None else None
            loss = loss + self.terms["supervised"](embeddings, classes, pairs)
        if "instance" in self.terms:
            image = torch.arange(b, device=labels.device).repeat(2)
            loss = loss + self.instance_weight * self.terms["instance"](embeddings, image)
        return loss
