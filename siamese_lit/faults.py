"""Guards against faults: a diverging loss, and a run writing into another run's folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from siamese_lit.errors import SiameseLitError, exit_on_user_error
from siamese_lit.utils import claim_output_dir


class TrainingDivergedError(SiameseLitError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(L.Callback):
    """Stops the run at the first NaN/inf training loss, before broken weights reach a checkpoint.

    Lightning's EarlyStopping(check_finite) only sees the validation metric once per epoch and stops
    gracefully, so the NaN weights would still be checkpointed and tested. Raising here ends fit
    right after the bad step: ModelCheckpoint never runs again, so last.ckpt stays the last good state.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all()):
            return
        ckpt = trainer.checkpoint_callback
        last = ckpt.last_model_path or ckpt.best_model_path if ckpt is not None else ""
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        raise TrainingDivergedError(
            f"the training loss became {float(loss)} at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step}: run stopped, {kept}. Lower model.optimizer.lr or set "
            "trainer.gradient_clip_val."
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
