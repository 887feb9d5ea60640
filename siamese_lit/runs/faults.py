"""Guards against faults: a diverging loss, a checkpoint half-written or out of date, a failed write,
and a run writing into another run's (or a user's) folder. Signals: siamese_lit.runs.stopping."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from siamese_lit.runs.run_dir import RefuseUsedOutputDir  # noqa: F401  (its old place, for imports of it)
from siamese_lit.utils.errors import SiameseLitError
from siamese_lit.utils.files import replace_whole


class TrainingDivergedError(SiameseLitError):
    """The training loss became NaN or infinite."""


def last_whole_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint a stopped run leaves to resume from, or "" when none was saved yet: the last one
    this run wrote whole (ResumableModelCheckpoint), else, while fitting, the one it resumed from."""
    ckpt = trainer.checkpoint_callback
    if isinstance(ckpt, ResumableModelCheckpoint):
        kept = ckpt.last_whole
    else:
        kept = (ckpt.last_model_path or ckpt.best_model_path) if ckpt is not None else ""
    resumed = trainer.ckpt_path if trainer.state.fn == TrainerFn.FITTING else None
    return kept or (str(resumed) if resumed else "")


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
        kept = last_whole_checkpoint(trainer)
        kept = f"the last good checkpoint is {kept}" if kept else "no checkpoint had been saved yet"
        raise TrainingDivergedError(
            f"the training loss became {bad_loss} at epoch {epoch}, step {step}: run stopped, "
            f"{kept}. Lower model.optimizer.lr or set trainer.gradient_clip_val."
        )


class ResumableModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, made safe to resume from: its record of the best checkpoint kept
    when a run resumes in a new folder, last.ckpt always the latest state, and every file whole.

    - Lightning forgets best_model_score and best_k_models when the checkpoint came from another
      dirpath, so a run resumed (ckpt_path=<old run>/checkpoints/last.ckpt) in a new run dir would take
      a worse epoch for the best, test it, and end with other metrics than the uninterrupted run.
      Keeping them is safe: the old run's files are only read, as Lightning never deletes a file
      outside its own dirpath.
    - Lightning writes last.ckpt (save_last=True) only at a step where a top-k checkpoint was saved:
      after epochs without improvement it held an older epoch. Here it is written at every
      validation (or epoch end) and at the end of training.
    - Lightning writes through fsspec into the system's temp dir and moves the file across file
      systems, so a full disk left a truncated file under the final name. Here each file is written
      under a temporary name in its own folder, synced, and renamed: whole under its name, or absent.
      `last_whole` names the last checkpoint written so; a failed write raises WriteFailed naming it.
    """

    last_whole: str = ""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(
            trainer
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if (
            self.save_last
            and not trainer.fast_dev_run
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.save_whole(trainer, filepath)

    def save_whole(self, trainer: L.Trainer, filepath: str) -> None:
        """Write the trainer's checkpoint to `filepath` whole or not at all (a temporary file in the
        same folder, synced, then renamed); a failed write ends the run with one line."""
        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)
            self.last_whole = filepath
            return
        path = Path(filepath)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)  # every rank; rank zero writes
            if trainer.is_global_zero:
                if not tmp.is_file():  # Lightning (2.6, _atomic_save) swallows a PermissionError
                    tmp.open("wb").close()  # what its write got, raised here
                    raise OSError(errno.EIO, "the checkpoint was not written", str(path))
                replace_whole(tmp, path)
        except BaseException as exc:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            error = write_error(exc)
            if error is not None:
                raise write_failed(trainer, error, path) from exc
            raise
        trainer.strategy.barrier("ResumableModelCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        self.last_whole = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class WriteFailed(SiameseLitError):
    """A file of the run could not be written (a full disk, a folder turned read-only): the run stops,
    naming the last whole checkpoint. Exit status 1: the run failed, its config was not wrong."""

    exit_code = 1


#: errors of a write that only a write can get: a full disk or quota, a read-only file system
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
#: and those a checkpoint's write gets in a folder it may no longer write into
WRITE_ERRNOS = {*FULL_ERRNOS, errno.EACCES, errno.EPERM, errno.EIO}


def write_error(exc: BaseException | None, errnos: set[int] = WRITE_ERRNOS) -> OSError | None:
    """The OSError of a failed write behind `exc`, through the wrappers on the way (Lightning turns a
    PermissionError of a cross-device move into a RuntimeError), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in errnos:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def write_failed(trainer: L.Trainer, exc: OSError, path: Path | str | None = None) -> WriteFailed:
    """The one line a failed write ends the run with: what could not be written, why, and the last
    whole checkpoint to resume from once there is room."""
    what = path or exc.filename or f"a file of the run in {trainer.default_root_dir}"
    kept = last_whole_checkpoint(trainer)
    resume = (
        f"the last whole checkpoint is {kept}: make room (or make the folder writable) and resume with "
        f"the same overrides and ckpt_path={kept}"
        if kept
        else "no checkpoint had been saved yet: make room (or make the folder writable) and run it again"
    )
    return WriteFailed(
        f"cannot write {what}: {exc.strerror or exc} (epoch {trainer.current_epoch}, step "
        f"{trainer.global_step}); the run stopped, {resume}."
    )
