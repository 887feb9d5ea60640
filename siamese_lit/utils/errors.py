"""User-facing errors: a bad config or bad data stops the run with one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import OmegaConfBaseException


class SiameseLitError(Exception):
    """An error the user can fix; its message says what is wrong and how to fix it."""

    #: the process's exit status when this error ends it (2: a usage error)
    exit_code = 2


class ConfigError(SiameseLitError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DataError(SiameseLitError):
    """The MNIST files are missing, truncated or corrupted."""


class CheckpointError(SiameseLitError):
    """A checkpoint is unreadable or of the wrong kind."""


class Interrupted(SiameseLitError):
    """A signal stopped the run; it exits as a process killed by that signal would (128 + number)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _config_error(exc: OmegaConfBaseException) -> ConfigError:
    """OmegaConf's multi-line message (a missing `???` value, a broken ${interpolation}) as one line."""
    lines = str(exc).strip().splitlines()
    key = getattr(exc, "full_key", None)
    where = f" (at {key})" if key and key not in lines[0] else ""
    return ConfigError(f"config: {lines[0] if lines else type(exc).__name__}{where}")


def find_user_error(exc: BaseException) -> SiameseLitError | None:
    """The SiameseLitError behind `exc`, looking through the wrappers Hydra and Lightning add; an
    OmegaConf error (a config the user wrote) counts as a ConfigError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SiameseLitError):
            return exc
        if isinstance(exc, OmegaConfBaseException):
            return _config_error(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a SiameseLitError (however wrapped) into `error: <message>` on stderr and its exit code;
    Ctrl-C where no handler of the task's own catches it (train's: siamese_lit.utils.stopping) into
    one line and 130, as a process killed by SIGINT."""
    try:
        yield
    except KeyboardInterrupt:
        message = "stopped by SIGINT (Ctrl-C) before it finished: run it again."
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
