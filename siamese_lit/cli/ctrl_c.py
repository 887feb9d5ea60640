"""Ctrl-C while a command is still starting: one line and exit 130, as once its wrapper is in place.

`python -m siamese_lit.<command>` imports this package, then the command's module, before the
command's wrapper (siamese_lit.cli.command) can catch anything; a Ctrl-C in that second would end
the process with a KeyboardInterrupt traceback. And a KeyboardInterrupt raised inside an import
cannot be trusted to come out as one: a library half-imported turns it into an error of its own
(numpy's lazy attributes into a RecursionError under scipy's import), at any time a command imports
a library, wrapper or not. So under `python -m`, a SIGINT that lands inside an import ends the
process at once, with the line and 130: nothing of the command's work has started there to clean
up. Anywhere else it raises KeyboardInterrupt as usual, for the wrapper, or train's own handler
(siamese_lit.runs.stopping), to stop cleanly. Standard library only: installed first.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType, TracebackType

LINE = "error: stopped by SIGINT (Ctrl-C) before it finished: run it again.\n"
#: the code objects of Python's import machinery carry these file names
_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def _exit_now() -> None:
    sys.stderr.write(LINE)
    sys.stderr.flush()
    os._exit(130)  # as the wrapper does; nothing of the command's has started to clean up


def _one_line_on_ctrl_c(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    _exit_now()


def importing(frame: FrameType | None) -> bool:
    """Whether `frame` or one of its callers runs Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if importing(frame):
        _exit_now()
    raise KeyboardInterrupt


_installed = False


def install() -> None:
    """An uncaught KeyboardInterrupt, and a SIGINT inside an import, end the process with one line
    and 130."""
    global _installed
    sys.excepthook = _one_line_on_ctrl_c
    signal.signal(signal.SIGINT, _on_sigint)
    _installed = True


def ignore_once_done() -> None:
    """Once the command has said how it ended: a late Ctrl-C, while the interpreter shuts down, does
    not turn that end into a death by SIGINT (only where install() ran: never in a user's program)."""
    if _installed:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def install_when_run_as_command() -> None:
    """install() under `python -m siamese_lit.<command>` (runpy leaves argv[0] as "-m" while it
    imports the package); `import siamese_lit` from a user's program changes nothing."""
    if sys.argv[:1] == ["-m"]:
        install()
