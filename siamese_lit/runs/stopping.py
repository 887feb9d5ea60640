"""How a training run stops early: SIGTERM or Ctrl-C in any phase, or a write that fails.

Lightning stops at the next batch on SIGTERM but then ends the process with status 0, ignores
SIGINT (Ctrl-C ends in its KeyboardInterrupt handler, status 1, nothing said) and notices neither
between fit and test or in a phase's last batch. `StopCleanly` wraps fit and test: either signal
stops the run at the next batch (a second Ctrl-C at once), and the run ends with one line saying
where it stopped and the true way on (exit status 128 + the signal's number: 143, 130). A write that
fails (a full disk, a folder turned read-only) ends it with one line naming the last whole checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus
from lightning.pytorch.utilities.exceptions import SIGTERMException

from siamese_lit.runs.faults import FULL_ERRNOS, last_whole_checkpoint, write_error, write_failed
from siamese_lit.utils.errors import Interrupted, find_user_error

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalStop(BaseException):
    """Raised by the handler where no Lightning loop will stop the run at the next batch (outside
    fit and test, or a second Ctrl-C). A BaseException, as KeyboardInterrupt: no `except Exception`
    on the way swallows it."""


def stopped_by_signal(
    trainer: L.Trainer, signum: int, fit_done: bool, sanity_check: bool = False
) -> Interrupted:
    """The error a run stopped by `signum` ends with: the phase it stopped in and the true way on."""
    name = signal.Signals(signum).name
    fn = trainer.state.fn
    fit_done = fit_done or (fn == TrainerFn.FITTING and _training_finished(trainer))
    where = f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
    if fn == TrainerFn.TESTING or fit_done:
        stopped = "testing stopped" if fn == TrainerFn.TESTING else "the run stopped"
        tested = trainer.ckpt_path if fn == TrainerFn.TESTING else None
        after = ""
        if fit_done:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            tested = tested or best
            after = f" after training had finished ({where}; its checkpoints are kept)"
        how = (
            f"test it with the same overrides and train=false ckpt_path={tested}"
            if tested
            else "no checkpoint to test was saved: run it again"
        )
        return Interrupted(f"{stopped} by {name}{after}, before metrics.json was written: {how}.", signum)
    kept = last_whole_checkpoint(trainer)
    resume = (
        f"resume with the same overrides and ckpt_path={kept}"
        if kept
        else "no checkpoint had been saved yet: run it again"
    )
    if fn is None:
        where = "before training started"
    elif sanity_check:
        where = f"in the sanity check {where}"
    return Interrupted(f"training stopped by {name} {where}: {resume}.", signum)


def _training_finished(trainer: L.Trainer) -> bool:
    """Whether fit had done all its epochs (or steps, or early stopping had ended it) when it stopped:
    a signal in the last validation's last batch lets that epoch, and its checkpoints, complete."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return bool(
        (max_steps not in (None, -1) and trainer.global_step >= max_steps)
        or (max_epochs not in (None, -1) and trainer.fit_loop.epoch_progress.current.processed >= max_epochs)
        or trainer.should_stop
    )


class StopCleanly(L.Callback):
    """`with StopCleanly(trainer):` around fit and test (siamese_lit.train).

    On SIGTERM or SIGINT the handler marks the trainer as Lightning's own SIGTERM handler does, and
    Lightning's loops stop at the end of the batch; outside them (between fit and test), or on a
    second Ctrl-C, it raises SignalStop at once. As a callback it stops fit or test at their start
    when a signal came while Lightning was not listening (Lightning forgets one that came before its
    handlers were registered). On leaving, a run that a signal stopped ends with
    Interrupted(stopped_by_signal), and an OSError of a failed write with WriteFailed.
    Meanwhile the errors of logging (a log file on the full disk) and of background writers' threads
    are not printed as tracebacks.
    """

    def __init__(self, trainer: L.Trainer) -> None:
        self.trainer = trainer
        self.signum: int | None = None
        self.fit_done = False
        self.sanity_check = False  # Lightning's trainer.sanity_checking is reset when it stops
        self._previous: dict[int, object] = {}
        self._raise_exceptions = logging.raiseExceptions

    def __enter__(self) -> StopCleanly:
        if threading.current_thread() is threading.main_thread():  # where signal handlers can be set
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self.trainer.callbacks.append(self)
        self._raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
        self._excepthook, threading.excepthook = threading.excepthook, self._thread_failed
        return self

    def _thread_failed(self, args: threading.ExceptHookArgs) -> None:
        """A background writer's failed write (TensorBoard's) is not printed: it is raised again in the
        run's own thread at its next write, and ends the run with WriteFailed."""
        if write_error(args.exc_value, FULL_ERRNOS) is None:
            self._excepthook(args)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if first and self.trainer.state.status == TrainerStatus.RUNNING:
            self.trainer._signal_connector.received_sigterm = True  # Lightning's loops stop at the batch end
            return
        raise SignalStop(signum)

    def _stop_if_signalled(self) -> None:
        if self.signum is not None:
            raise SIGTERMException

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sanity_check = True
        self._stop_if_signalled()

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled()
        self.sanity_check = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_done = True
        self._stop_if_signalled()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self.trainer.callbacks.remove(self)
        logging.raiseExceptions = self._raise_exceptions
        threading.excepthook = self._excepthook
        error = None if find_user_error(exc) else write_error(exc, FULL_ERRNOS)
        if error is not None:  # a log or another file of the run, on a full disk
            raise write_failed(self.trainer, error) from exc
        if self.signum is not None and (exc is None or isinstance(exc, SIGTERMException | SignalStop)):
            raise stopped_by_signal(self.trainer, self.signum, self.fit_done, self.sanity_check) from exc
        if isinstance(exc, SIGTERMException):  # Lightning's own handler, ours not installed
            raise stopped_by_signal(self.trainer, signal.SIGTERM, self.fit_done, self.sanity_check) from exc
