"""User-facing errors: a bad config or bad data stops the run with one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class SiameseLitError(Exception):
    """An error the user can fix; its message says what is wrong and how to fix it."""


class ConfigError(SiameseLitError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DataError(SiameseLitError):
    """The MNIST files are missing, truncated or corrupted."""


class CheckpointError(SiameseLitError):
    """A checkpoint is unreadable or of the wrong kind."""


def find_user_error(exc: BaseException) -> SiameseLitError | None:
    """The SiameseLitError behind `exc`, looking through the wrappers Hydra and Lightning add."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SiameseLitError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


@contextmanager
def exit_on_user_error(exit_code: int = 2) -> Iterator[None]:
    """Turn a SiameseLitError (however wrapped) into `error: <message>` on stderr and an exit code."""
    try:
        yield
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None
