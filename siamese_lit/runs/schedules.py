"""LR schedules whose length is the run's (OneCycleLR's total_steps), fitted to a resumed run.

A run resumed from a checkpoint restores its scheduler's whole state, the number of steps it was
built for included. A run resumed for more epochs (or under another experiment sharing the encoder)
then steps past that end, and OneCycleLR raises ("Tried to step 18 times...") in the middle of fit.
`refit_schedules` rebuilds such a schedule, after the restore, for the steps the checkpoint had taken
plus the steps this run still has to take: this run's schedule, the checkpoint's progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import LRScheduler

from siamese_lit.utils.log import log

#: the state keys that say how far a scheduler has got; every other one describes the schedule
PROGRESS = ("last_epoch", "_step_count")


def steps_left(trainer: L.Trainer) -> int:
    """Optimizer steps this fit still takes, counted after the checkpoint's state was restored."""
    per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
    batches = trainer.fit_loop.epoch_loop.batch_progress  # restored; reset only when the next epoch starts
    # a checkpoint saved at an epoch's end counts that epoch in current_epoch already
    done_in_epoch = 0 if batches.is_last_batch else batches.current.ready // trainer.accumulate_grad_batches
    epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
    left = max(0, (epochs - trainer.current_epoch) * per_epoch - done_in_epoch)
    if trainer.max_steps not in (None, -1):
        left = min(left, max(0, trainer.max_steps - trainer.global_step))
    return int(left) if math.isfinite(left) else 0


def refit_schedules(trainer: L.Trainer, build: Callable[..., LRScheduler]) -> None:
    """Fit each step-wise scheduler that has a `total_steps` to the steps taken plus `steps_left`.

    `build(optimizer, total_steps)` makes the run's scheduler from its config (the model's
    configure_optimizers spec); it is built on a stand-in optimizer of the same class and number of
    parameter groups, and its schedule (all but PROGRESS) loaded into the run's scheduler; the
    current learning rate is then recomputed for the step reached. Said in one log line.
    """
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        total = getattr(scheduler, "total_steps", None)
        if config.interval != "step" or total is None or scheduler.last_epoch <= 0:
            continue
        done = scheduler.last_epoch
        needed = done + steps_left(trainer)
        if needed == total:
            continue
        optimizer = scheduler.optimizer
        stand_in = type(optimizer)(
            [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in optimizer.param_groups]
        )
        fresh = build(stand_in, max(needed, 1)).state_dict()
        state: dict[str, Any] = {
            **fresh,
            **{k: v for k, v in scheduler.state_dict().items() if k in PROGRESS},
        }
        scheduler.load_state_dict(state)
        scheduler.last_epoch -= 1  # step() again to the step reached: the learning rate of the new schedule
        scheduler.step()
        log.info(
            "Resumed at step %d: the %s schedule rebuilt for %d steps in all (the checkpoint's was built "
            "for %d), its learning rate now %.3g.",
            done,
            type(scheduler).__name__,
            needed,
            total,
            scheduler.get_last_lr()[0],
        )
