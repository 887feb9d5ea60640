"""User-facing errors: a bad config or bad data stops the run with one line, not a traceback."""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


#: Hydra's errors about the command line: an override its grammar cannot parse, a key the config
#: lacks, a config group option that does not exist (by name: no Hydra import here).
HYDRA_USER_ERRORS = {
    "OverrideParseException",
    "ConfigCompositionException",
    "MissingConfigException",
    "SearchPathException",
}
QUOTING = (
    "quote a value holding spaces, commas, brackets, quotes, = or $ in single quotes inside double "
    "quotes, e.g. \"ckpt_path='/my runs/a,b.ckpt'\""
)


def _one_line(text: str) -> str:
    """A multi-line library message as one line: its lines joined, a list after a colon by commas."""
    lines = [line.strip() for line in text.split("Config search path:")[0].splitlines() if line.strip()]
    out = ""
    for line in lines:
        out += line if not out else (" " if out.endswith((":", ".")) else "; ") + line
    return out.replace(":; ", ": ")


def _type_name(annotation: Any) -> str:
    """A dataclass field's type as a user reads it: `float | None` as "float or null"."""
    args = typing.get_args(annotation)
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if typing.get_origin(annotation) is list:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return getattr(annotation, "__name__", str(annotation))


def _schema_error(exc: OmegaConfBaseException | None) -> ConfigError | None:
    """A value a command's typed schema (siamese_lit.cli.schemas) refuses, as `key must be <type>,
    got <value>.`; None when `exc` is no such refusal."""
    object_type = getattr(exc, "object_type", None)
    if (
        exc is None
        or not dataclasses.is_dataclass(object_type)
        or "ValidationError" not in type(exc).__name__
    ):
        return None
    try:
        annotation = typing.get_type_hints(object_type).get(exc.key)
    except (NameError, TypeError):
        return None
    if annotation is None:
        return None
    return ConfigError(f"{exc.full_key} must be {_type_name(annotation)}, got {exc.value!r}.")


def _library_error(exc: BaseException) -> ConfigError | None:
    """Hydra's command-line errors and Lightning's MisconfigurationException (a setting it refuses)
    as a one-line ConfigError; None for anything else."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & HYDRA_USER_ERRORS:
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else None
        typed = _schema_error(cause)
        if typed is not None:
            return typed
        text = _one_line(str(exc)) + (f" ({_one_line(str(cause))})" if cause else "")
        hint = f"; {QUOTING}" if "OverrideParseException" in names else ""
        return ConfigError(f"command line: {text}{hint}")
    if "MisconfigurationException" in names:
        return ConfigError(f"Lightning refused the settings: {_one_line(str(exc))}")
    if isinstance(exc, ValueError) and _raised_in(exc, "hydra."):
        # Hydra's composition refusing an override's value (`model=3`: a group's option is a name)
        return ConfigError(f"command line: {_one_line(str(exc))}")
    return None


def _raised_in(exc: BaseException, package: str) -> bool:
    """Whether the innermost frame of `exc`'s traceback runs code of `package` ("hydra.")."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith(package)


def find_user_error(exc: BaseException) -> SiameseLitError | None:
    """The SiameseLitError behind `exc`, looking through the wrappers Hydra and Lightning add; an
    OmegaConf error (a config the user wrote), Hydra's command-line errors and Lightning's
    MisconfigurationException count as a ConfigError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SiameseLitError):
            return exc
        library = _library_error(exc)
        if library is not None:
            return library
        if isinstance(exc, OmegaConfBaseException):
            return _config_error(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


def _interrupted(exc: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt is `exc` or behind it (its cause or context, however deep)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _stopped_by_sigint() -> None:
    print("error: stopped by SIGINT (Ctrl-C) before it finished: run it again.", file=sys.stderr, flush=True)
    raise SystemExit(130) from None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a SiameseLitError (however wrapped) into `error: <message>` on stderr and its exit code;
    Ctrl-C where no handler of the task's own catches it (train's: siamese_lit.runs.stopping) into
    one line and 130, as a process killed by SIGINT."""
    try:
        yield
    except Exception as exc:
        if _interrupted(exc):  # a library turned the KeyboardInterrupt into an error of its own
            _stopped_by_sigint()
        err = find_user_error(exc)
        if err is None:
            raise
        print(f"error: {_one_line(str(err))}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        _stopped_by_sigint()
