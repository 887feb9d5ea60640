"""What the LightningModules share: building the network from its config, optimizer and schedule."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from torch import nn

from siamese_lit.errors import check

Spec = nn.Module | Mapping[str, Any] | None


def build(spec: Spec) -> Any:
    """An nn.Module as is; a Hydra config ({_target_: ...}) instantiated."""
    return spec if isinstance(spec, nn.Module) or spec is None else instantiate(spec)


class LitBase(L.LightningModule):
    """Holds the network, an optimizer config and an optional LR-schedule config.

    The network may be given as a module or as its Hydra config; given as a config (the way the
    experiments do it), it is saved in the checkpoint's hyper-parameters, so
    `load_from_checkpoint(path)` rebuilds the model with no other input.

    `scheduler` is a Hydra config of a torch LR scheduler, plus `interval` ("step" or "epoch").
    Schedulers that take `total_steps` (OneCycleLR) get the run's number of optimizer steps.
    """

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.get("scheduler"):
            return optimizer
        spec = dict(self.hparams.scheduler)
        interval = spec.pop("interval", "step")
        extra = {}
        params = inspect.signature(get_class(spec["_target_"])).parameters
        if "total_steps" in params and spec.get("total_steps") is None:
            steps = self.trainer.estimated_stepping_batches
            check(
                math.isfinite(steps),
                f"model.scheduler {spec['_target_']} needs the run's length: set trainer.max_epochs or "
                "trainer.max_steps (not -1), or model.scheduler.total_steps, or model.scheduler=null.",
            )
            extra["total_steps"] = int(steps)
        scheduler = instantiate(spec, optimizer=optimizer, **extra)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
