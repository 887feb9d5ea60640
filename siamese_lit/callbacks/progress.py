"""A log line per validation and the final metrics, for runs nobody watches on a terminal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import lightning as L

from siamese_lit.utils.log import log, scalars


def _figures(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(scalars(metrics).items())) or "none"


class LogProgress(L.Callback):
    """Writes one line per validation (epoch, the checkpoint's monitored metric and its best so far,
    time since fit started) and the final metrics of fit and test into the run's `<task>.log`.

    The progress bar is all a terminal shows, and nothing of it reaches the log file: a run on SLURM
    or under nohup would show no progress. Rank zero only: on DDP every rank runs the callbacks.
    """

    def __init__(self) -> None:
        self._start = time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        ckpt = trainer.checkpoint_callback
        monitor = getattr(ckpt, "monitor", None)
        value = trainer.callback_metrics.get(monitor) if monitor else None
        shown = f"{monitor}={float(value):.4g}" if value is not None else "no monitored metric"
        best = getattr(ckpt, "best_model_score", None)
        best = f" (best before: {float(best):.4g})" if best is not None else ""
        log.info(
            "epoch %d, step %d: %s%s, %.1f s elapsed",
            trainer.current_epoch,
            trainer.global_step,
            shown,
            best,
            time.monotonic() - self._start,
        )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            elapsed = time.monotonic() - self._start
            log.info("fit done in %.1f s: %s", elapsed, _figures(trainer.callback_metrics))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("test: %s", _figures(trainer.callback_metrics))
