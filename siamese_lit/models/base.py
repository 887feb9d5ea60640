"""What the LightningModules share: building the network from its config, optimizer and schedule."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch import Tensor, nn
from torchmetrics import MeanMetric

from siamese_lit.checkpoints.specs import build as build_spec
from siamese_lit.checkpoints.specs import check_target
from siamese_lit.runs.schedules import refit_schedules
from siamese_lit.utils.errors import check

Spec = nn.Module | Mapping[str, Any] | None


def module_from(spec: Spec, where: str = "model.net") -> Any:
    """An nn.Module as is; a Hydra config ({_target_: ...}) instantiated if its targets are allowed
    (siamese_lit.checkpoints.specs: a checkpoint's hyper-parameters are such configs)."""
    return spec if isinstance(spec, nn.Module) or spec is None else build_spec(spec, where, allowed_only=True)


class LitBase(L.LightningModule):
    """Holds the network, an optimizer config and an optional LR-schedule config.

    The network may be given as a module or as its Hydra config; given as a config (the way the
    experiments do it), it is saved in the checkpoint's hyper-parameters, so
    `load_from_checkpoint(path)` rebuilds the model with no other input.

    `scheduler` is a Hydra config of a torch LR scheduler, plus `interval` ("step" or "epoch").
    Schedulers that take `total_steps` (OneCycleLR) get the run's number of optimizer steps.

    Training figures go through `log_train` and `train_metrics`, not `self.log` at every step: each
    `self.log` call makes Lightning move the logged value's state to the device again, a cost of the
    order of a small model's step on a CPU. The step loss is logged only at the steps the
    loggers write (`trainer.log_every_n_steps`); epoch means accumulate in torchmetrics and are
    logged once, at the end of the epoch.
    """

    #: Buffers whose NaN means "never set", not a diverged run (siamese_lit.checkpoints.reader.check_finite).
    unset_when_nan: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.train_metrics = nn.ModuleDict({"loss": MeanMetric()})  # "train/<name>" epoch means

    def fit_state(self, state_dict: dict[str, Any], where: str = "the checkpoint") -> None:
        """Ready this model for `state_dict` before it is checked and loaded: buffers whose size the
        run decides take the checkpoint's (LitSiamese's rejection references). None here."""

    def log_train(self, loss: Tensor, **epoch_means: Tensor) -> None:
        """Accumulate the loss (and other per-item values) into the epoch means; log the step loss
        as `train/loss_step` (also on the progress bar) when the loggers will write it."""
        for name, values in {"loss": loss, **epoch_means}.items():
            self.train_metrics[name].update(values.detach())
        every = self.trainer.log_every_n_steps
        if self.trainer.fast_dev_run or (every and (self.global_step + 1) % every == 0):
            self.log("train/loss_step", loss, prog_bar=True, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        for name, metric in self.train_metrics.items():
            self.log(f"train/{name}_epoch" if name == "loss" else f"train/{name}", metric)

    def configure_optimizers(self) -> Any:
        optimizer = build_spec(
            self.hparams.optimizer, "model.optimizer", allowed_only=True, params=self.parameters()
        )
        if not self.hparams.get("scheduler"):
            return optimizer
        spec = dict(self.hparams.scheduler)
        interval = spec.pop("interval", "step")
        extra = {}
        params = inspect.signature(check_target(spec["_target_"], "model.scheduler")).parameters
        if "total_steps" in params and spec.get("total_steps") is None:
            steps = self.trainer.estimated_stepping_batches
            check(
                math.isfinite(steps),
                f"model.scheduler {spec['_target_']} needs the run's length: set trainer.max_epochs or "
                "trainer.max_steps (not -1), or model.scheduler.total_steps, or model.scheduler=null.",
            )
            extra["total_steps"] = int(steps)
        scheduler = build_spec(spec, "model.scheduler", allowed_only=True, optimizer=optimizer, **extra)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def on_train_start(self) -> None:
        """A resumed run: a schedule whose length configure_optimizers took from the run (OneCycleLR's
        total_steps) is rebuilt, after the checkpoint's state was restored, for the steps taken plus
        the steps this run still takes (siamese_lit.runs.schedules)."""
        spec = dict(self.hparams.get("scheduler") or {})
        if spec and spec.get("total_steps") is None:
            spec.pop("interval", None)
            refit_schedules(
                self.trainer,
                lambda optimizer, steps: build_spec(
                    spec, "model.scheduler", allowed_only=True, optimizer=optimizer, total_steps=steps
                ),
            )
