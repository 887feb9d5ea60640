"""Guards against faults: a diverging loss, a signal, and a run writing into another run's folder."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from siamese_lit.utils.errors import Interrupted, SiameseLitError, exit_on_user_error
from siamese_lit.utils.run_dir import claim_output_dir


class TrainingDivergedError(SiameseLitError):
    """The training loss became NaN or infinite."""


def _kept_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint a stopped run leaves to resume from, or "" when none was saved yet."""
    ckpt = trainer.checkpoint_callback
    return (ckpt.last_model_path or ckpt.best_model_path) if ckpt is not None else ""


def stopped_by_signal(trainer: L.Trainer, signum: int) -> Interrupted:
    """The error a run stopped by `signum` ends with: where it stopped and how to resume."""
    kept = _kept_checkpoint(trainer)
    resume = (
        f"resume with the same overrides and ckpt_path={kept}"
        if kept
        else "no checkpoint had been saved yet: run it again"
    )
    return Interrupted(
        f"training stopped by {signal.Signals(signum).name} at epoch {trainer.current_epoch}, step "
        f"{trainer.global_step}: {resume}.",
        signum,
    )


class StopOnNonFiniteLoss(L.Callback):
    """Stops the run at the first NaN/inf training loss, before broken weights reach a checkpoint.

    Lightning's EarlyStopping(check_finite) only sees the validation metric once per epoch and stops
    gracefully, so the NaN weights would still be checkpointed and tested. Raising here ends fit
    before the next checkpoint: last.ckpt stays the last good state.

    Reading the loss on the host at every step would wait for the device each step (a stall on GPUs).
    So each step only folds "is it finite" into a flag that stays on the device, with the index of
    the first bad step and its loss; the host reads the flag every `check_every_n_steps` steps
    (default: trainer.log_every_n_steps, when Lightning syncs for the loggers anyway), before each
    validation, at the end of each epoch, and whenever a checkpoint is about to be written
    (`on_save_checkpoint`, before the file), so no checkpoint is ever written after a bad step.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._steps: list[tuple[int, int]] = []  # (epoch, global step) of each step since the last check
        self._first_bad: torch.Tensor | None = None  # index into _steps of the first bad step, -1: none
        self._bad_loss: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), device=loss.device)
        newly_bad = ~torch.isfinite(loss).all() & (self._first_bad < 0)  # device ops only: no sync
        self._first_bad = torch.where(newly_bad, len(self._steps), self._first_bad)
        self._bad_loss = torch.where(newly_bad, loss.sum(), self._bad_loss)
        self._steps.append((trainer.current_epoch, trainer.global_step))
        if len(self._steps) >= (self.check_every_n_steps or trainer.log_every_n_steps or 1):
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        """Read the flag (the one host-device sync); raise if a step since the last check was bad."""
        if self._first_bad is None or not self._steps:
            return
        first_bad, steps = int(self._first_bad), self._steps
        if first_bad < 0:
            self._steps = []
            return
        bad_loss = float(self._bad_loss)
        self._steps, self._first_bad = [], None
        epoch, step = steps[first_bad]
        kept = _kept_checkpoint(trainer)
        kept = f"the last good checkpoint is {kept}" if kept else "no checkpoint had been saved yet"
        raise TrainingDivergedError(
            f"the training loss became {bad_loss} at epoch {epoch}, step {step}: run stopped, "
            f"{kept}. Lower model.optimizer.lr or set trainer.gradient_clip_val."
        )


class ResumableModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps its record of the best checkpoint when a run resumes in a new folder.

    Lightning forgets best_model_score and best_k_models when the checkpoint came from another dirpath,
    so a run resumed (ckpt_path=<old run>/checkpoints/last.ckpt) in a new run dir would take a worse
    epoch for the best, test it, and end with other metrics than the uninterrupted run. Keeping them is
    safe: the old run's files are only read, as Lightning never deletes a file outside its own dirpath.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})


class RefuseUsedOutputDir(HydraCallback):
    """A Hydra callback: refuse a hydra.run.dir / hydra.sweep.dir that another run already used.

    It runs before Hydra writes anything (Hydra saves .hydra/ and the log into the run dir before the
    task starts, so train's own check would come after another run's records were overwritten).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if rank_zero_only.rank != 0:  # a DDP process that Lightning re-ran into rank 0's run dir
            return
        with exit_on_user_error():
            claim_output_dir(Path(config.hydra.run.dir), markers=(".hydra", "metrics.json", "checkpoints"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            claim_output_dir(Path(config.hydra.sweep.dir), markers=("multirun.yaml",))
