"""Real faults at a chosen point of a real training run, for the subprocess tests of
tests/e2e/test_stops.py: a callback the run (started in the repository root) loads with
`+callbacks.fault._target_=tests.helpers.fault_injection.<Name> +callbacks.fault.<arg>=...`.

Each fault is what the OS would do to the run: a signal sent to the process by kill(2), a file
system filled to its last byte, a folder made immutable (root writes through file modes, not
through `chattr +i`). Only the moment is chosen, so that every phase is hit every time.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L


class SendSignal(L.Callback):
    """Send `name` (SIGTERM, SIGINT) to this process once, at the start of batch `batch` of `phase`
    (sanity, train, validation, test) in `epoch` (train and validation), or when fit ends (phase
    fit_end: between fit and test)."""

    def __init__(self, name: str, phase: str, epoch: int = 0, batch: int = 0) -> None:
        self.signum = signal.Signals[name]
        self.phase, self.epoch, self.batch = phase, epoch, batch
        self.sent = False

    def _maybe(self, trainer: L.Trainer, phase: str, batch_idx: int) -> None:
        in_epoch = phase in ("sanity", "test", "fit_end") or trainer.current_epoch == self.epoch
        if not self.sent and phase == self.phase and in_epoch and batch_idx == self.batch:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._maybe(trainer, "sanity" if trainer.sanity_checking else "validation", batch_idx)

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._maybe(trainer, "fit_end", self.batch)

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._maybe(trainer, "test", batch_idx)


class FillDisk(L.Callback):
    """At the start of epoch `epoch`, fill the file system holding `path` (a tmpfs the test mounted)
    with the file `path` until a write fails with ENOSPC."""

    def __init__(self, path: str, epoch: int = 1) -> None:
        self.path, self.epoch = Path(path), epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch != self.epoch:
            return
        block = b"\0" * 4096
        with open(self.path, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        with open(self.path.with_name(self.path.name + ".tail"), "wb", buffering=0) as f:
            try:  # the last partial block
                while f.write(b"\0"):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


class Freeze(L.Callback):
    """At the start of epoch `epoch`, make the folder `path` immutable (`chattr +i`): nothing can be
    created, renamed or removed in it any more, by root either."""

    def __init__(self, path: str, epoch: int = 1) -> None:
        self.path, self.epoch = path, epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch == self.epoch:
            subprocess.run(["chattr", "+i", self.path], check=True)
