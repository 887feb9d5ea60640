"""A training run as a SLURM job of hydra/launcher=slurm: stop before the time limit, resume when requeued.

Two mechanisms could act on a job near its time limit, and only one may:

- submitit asks SLURM for a signal (`--signal=USR2@<signal_delay_s>`, or $SUBMITIT_PREEMPT_SIGNAL)
  and, on it, requeues the job (`scontrol requeue`) while it has timeouts left (`max_num_timeout`),
  else ends it as not completed;
- Lightning's SLURMEnvironment, with `auto_requeue`, saves an `hpc_ckpt_*.ckpt` and requeues the job
  on SIGUSR1, with no count: a job that never fits its limit would be requeued for ever.

submitit decides here: Lightning's auto-requeue is switched off (`trainer_kwargs`), and
`StopBeforeTimeLimit` takes submitit's signal first: at the next check every rank agrees to stop,
`last.ckpt` is saved at the current step, then submitit's own handler requeues the job (the process
exits) or, with no timeouts left, the run ends with `TimeLimitReached`: its error.json names the
checkpoint to resume from. A requeued job runs the same Hydra job in the same dir again (SLURM sets
SLURM_RESTART_COUNT); `resume_path` then gives train that dir's `last.ckpt`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from siamese_lit.runs.faults import ResumableModelCheckpoint
from siamese_lit.utils.errors import Interrupted


class TimeLimitReached(Interrupted):
    """The job's time limit is near and it is not requeued: the run stopped after saving last.ckpt."""


def under_submitit() -> bool:
    """This process is a task of a SLURM job that submitit started."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ


def requeued() -> bool:
    """SLURM started this job again (a requeue): SLURM_RESTART_COUNT counts its restarts."""
    return under_submitit() and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def resume_path(output_dir: Path) -> str | None:
    """For a requeued job, the last.ckpt its earlier run left in its own dir (None when it left none)."""
    last = output_dir / "checkpoints" / "last.ckpt"
    return str(last) if requeued() and last.is_file() else None


def submitit_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send before the time limit (as submitit reads it)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def trainer_kwargs() -> dict[str, Any]:
    """Extra Trainer arguments for a submitit job: Lightning's own requeue off, StopBeforeTimeLimit on."""
    if not under_submitit():
        return {}
    return {"plugins": [SLURMEnvironment(auto_requeue=False)], "callbacks": [StopBeforeTimeLimit()]}


class StopBeforeTimeLimit(L.Callback):
    """On submitit's signal: every rank stops at the next check, last.ckpt is saved at that step, then
    submitit requeues the job or, with no timeouts left, `TimeLimitReached` ends the run.

    The signal handler only notes the signal. The ranks agree (one all-reduce of a flag) every
    `check_every_n_steps` steps (default: trainer.log_every_n_steps), before validation and at each
    epoch end, so no rank waits for another that stopped elsewhere, and no step pays a sync.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._signum: int | None = None
        self._previous: Any = None
        self._steps = 0

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._signum = signum

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is None:
            self._previous = signal.signal(submitit_signal(), self._note)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(submitit_signal(), self._previous)
            self._previous = None
            if self._signum is not None:  # it came after the last check: submitit's handler gets it now
                signum, self._signum = self._signum, None
                os.kill(os.getpid(), signum)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._steps += 1
        if self._steps >= (self.check_every_n_steps or trainer.log_every_n_steps or 1):
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        self._steps = 0
        if not trainer.strategy.reduce_boolean_decision(self._signum is not None, all=False):
            return
        signum = self._signum or int(submitit_signal())
        ckpt = trainer.checkpoint_callback
        saved = ""
        if ckpt is not None and ckpt.dirpath:
            saved = str(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}")
            if isinstance(ckpt, ResumableModelCheckpoint):  # whole or absent, as every checkpoint
                ckpt.save_whole(trainer, saved)
            else:
                trainer.save_checkpoint(saved)  # every rank: the strategy writes it from rank zero
        rank_zero_info(
            f"{signal.Signals(signum).name}: the time limit is near; at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step} saved {saved or 'nothing'}"
        )
        self._signum = None
        signal.signal(submitit_signal(), self._previous)
        self._previous = None
        self._hand_over(signum, trainer, saved)

    def _hand_over(self, signum: int, trainer: L.Trainer, saved: str) -> None:
        """submitit's handler: on rank zero it requeues the job and exits (SystemExit), or raises when
        the job is not requeued; the other ranks end quietly (no error.json: rank zero decides)."""
        import submitit

        if not trainer.is_global_zero:
            raise SystemExit(128 + signum)
        try:
            handler = signal.getsignal(signum)
            if callable(handler):
                handler(signum, None)
        except SystemExit as exc:
            # requeued: SLURM ends the step now (SIGTERM, then SIGKILL after KillWait). An orderly
            # shutdown from inside the training loop was seen to outlast KillWait, and a step that
            # does not end drains the node; the checkpoint is written, so leave at once.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        except submitit.core.utils.UncompletedJobError as exc:
            resume = f"resume with the same overrides and ckpt_path={saved}" if saved else "run it again"
            raise TimeLimitReached(
                f"training stopped by {signal.Signals(signum).name} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: the job's time limit is near ({exc}) {resume}.",
                signum,
            ) from None
