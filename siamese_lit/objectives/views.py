"""Losses on two augmented views of each image, from pytorch-metric-learning.

A supervised term on the digit labels (SupCon, Khosla et al. 2020; or a mined multi-similarity or
triplet loss) and an instance term on which image each view comes from (NT-Xent, SimCLR's loss,
Chen et al. 2020): what transfers to digits never trained on (siamese_unseen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from siamese_lit.checkpoints.specs import build
from siamese_lit.objectives.base import Objective, Output
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import check


class ViewObjective(Objective):
    """`supervised` + `instance_weight` · `instance`, on view batches `(view1, view2, labels)`: each
    term a pytorch-metric-learning loss (its Hydra config, or None for no such term), built with the
    model's distance when the model binds it (`bind`).

    The supervised term sees the digit labels (every view of the same digit is a positive), the
    instance term the image index (only the other view of the same image is a positive). `miner`
    (optional) selects the supervised term's pairs or triplets. The logged distance is that of the
    two views of each image (`d_similar`).

    Args:
        supervised: e.g. SupConLoss, MultiSimilarityLoss, TripletMarginLoss (configs with `_target_`).
        instance: e.g. SupConLoss on the image identity (= NT-Xent on two views).
        miner: e.g. MultiSimilarityMiner or TripletMarginMiner, for the supervised term.
        instance_weight: the instance term's weight in the sum.
    """

    batches: ClassVar[str] = "views"
    logged: ClassVar[tuple[str, ...]] = ("d_similar",)

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
            "model.objective needs a supervised or an instance term: set model.objective.supervised "
            "or model.objective.instance.",
        )
        check(instance_weight >= 0, f"model.objective.instance_weight must be >= 0, got {instance_weight}.")
        self.specs = {"supervised": supervised, "instance": instance, "miner": miner}
        self.instance_weight = instance_weight
        self.terms = nn.ModuleDict()
        self.miner: nn.Module | None = None

    def bind(self, distance: Distance) -> None:
        """Build the terms and the miner with the model's distance (allow-listed targets only: a
        checkpoint holds these specs)."""
        super().bind(distance)
        built = {
            name: build(spec, f"model.objective.{name}", allowed_only=True, distance=distance.pml())
            for name, spec in self.specs.items()
            if spec
        }
        self.miner = built.pop("miner", None)
        self.terms = nn.ModuleDict(built)

    def forward(self, embeddings: tuple[Tensor, ...], target: Tensor) -> Output:
        first, second = embeddings
        check(len(self.terms) > 0, "ViewObjective.bind(distance) builds the terms before the first call.")
        z, b = torch.cat([first, second]), len(target)
        loss = z.new_zeros(())
        if "supervised" in self.terms:
            classes = target.repeat(2)
            pairs = self.miner(z, classes) if self.miner is not None else None
            loss = loss + self.terms["supervised"](z, classes, pairs)
        if "instance" in self.terms:
            image = torch.arange(b, device=target.device).repeat(2)
            loss = loss + self.instance_weight * self.terms["instance"](z, image)
        return loss, {"d_similar": self.distance.pairwise(first, second).detach()}
