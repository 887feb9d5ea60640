"""Ctrl-C while a command is still starting: one line and exit 130, as once its wrapper is in place.

`python -m siamese_lit.<command>` imports this package, then the command's module, before the
command's wrapper (siamese_lit.cli.command) can catch anything; a Ctrl-C in that second would end
the process with a KeyboardInterrupt traceback. Standard library only: installed first.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType


def _one_line_on_ctrl_c(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    sys.stderr.write("error: stopped by SIGINT (Ctrl-C) before it finished: run it again.\n")
    sys.stderr.flush()
    os._exit(130)  # as the wrapper does; nothing of the command's has started to clean up


def install_when_run_as_command() -> None:
    """Under `python -m siamese_lit.<command>` (runpy leaves argv[0] as "-m" while it imports the
    package), an uncaught KeyboardInterrupt ends the process with one line and 130."""
    if sys.argv[:1] == ["-m"]:
        sys.excepthook = _one_line_on_ctrl_c
