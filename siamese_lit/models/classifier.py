"""LitClassifier: an encoder with `out_dim = num_classes`, trained with cross entropy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from siamese_lit.checkpoints.specs import plain
from siamese_lit.models.base import LitBase, Spec, module_from


class LitClassifier(LitBase):
    """Cross-entropy classifier with torchmetrics accuracy for train, val and test.

    Args:
        net: the network (e.g. SequenceEncoder with out_dim=10) or its Hydra config.
        optimizer: Hydra config of a torch optimizer (params are filled in).
        scheduler: Hydra config of an LR scheduler plus `interval`, or None.
        num_classes: number of classes.
    """

    def __init__(
        self,
        net: Spec,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        net, optimizer, scheduler = plain(net), plain(optimizer), plain(scheduler)
        self.save_hyperparameters(logger=False, ignore=["net"] if isinstance(net, nn.Module) else None)
        self.net = module_from(net)
        self.criterion = nn.CrossEntropyLoss()
        self.train_metrics["acc"] = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.criterion(logits, y)
        self.train_metrics["acc"].update(logits.detach(), y)
        self.log_train(loss)
        return loss

    def _eval_step(self, batch: tuple[Tensor, ...], stage: str) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.criterion(logits, y)
        getattr(self, f"{stage}_loss").update(loss, weight=len(y))
        acc = getattr(self, f"{stage}_acc")
        acc.update(logits, y)
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True)
        return logits

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")  # logits, for callbacks (siamese_lit.callbacks)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self(batch[0]).argmax(dim=1)

    @torch.no_grad()
    def predict_logits(self, images: Tensor, batch_size: int = 2048) -> Tensor:
        """Logits of normalised images, in batches (used by evaluation outside the Trainer)."""
        return torch.cat([self(chunk) for chunk in images.split(batch_size)])
