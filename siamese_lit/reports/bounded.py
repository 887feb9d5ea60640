"""Reading small files someone else may have edited, in bounded time and memory.

`summarize` reads the files of every job of a sweep dir; any of them may have been hand-edited,
truncated or replaced. A FIFO named `overrides.yaml` would block a plain `read_text()` forever; a
symlink to /dev/zero would fill memory; a few lines of nested YAML aliases (billion laughs) expand
to billions of values once copied; JSON may say `NaN`, `Infinity` or an integer of thousands of
digits. Here a file is read only if it is a regular file of at most `limit` bytes (opened without
blocking, checked on the open descriptor), YAML aliases are refused, and JSON must be strict with
numbers of a sane size. Anything else raises UnreadableFile with a one-line reason. Nothing read
here goes through OmegaConf, so nothing is ever interpolated.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml

#: What a job file may weigh (Hydra's config.yaml of this project is about 6 KB).
MAX_FILE_BYTES = 1 << 20
#: Numbers a result file may hold: finite, of at most this magnitude (and ints of at most 30 digits).
MAX_MAGNITUDE = 1e100


class UnreadableFile(Exception):
    """A file that is not what siamese_lit writes there; the message is one line."""


def _check_regular(path: Path, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"{path.name} is not a regular file")
    if info.st_size > limit:
        raise UnreadableFile(f"{path.name} is {info.st_size} bytes, more than the {limit} expected")


def read_small(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The text of `path` if it is a regular file of at most `limit` bytes of UTF-8. Checked before
    it is opened (a FIFO is never opened: a reader could wake a writer waiting on it) and again on
    the open descriptor (the file may have been replaced in between)."""
    try:
        _check_regular(path, os.stat(path), limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise UnreadableFile(f"{path.name}: {type(exc).__name__}: {reason}") from exc
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(f.fileno()), limit)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"{path.name} is more than the {limit} bytes expected")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path.name} is not UTF-8 text") from exc


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors' aliases: what Hydra writes has none, and nested
    aliases expand exponentially once copied (or printed)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise UnreadableFile("YAML aliases (*name), which Hydra never writes")
        return super().compose_node(parent, index)


def load_yaml(path: Path, limit: int = MAX_FILE_BYTES // 4) -> Any:
    """The YAML document in `path` (read_small, 256 KiB: the pure-Python parser takes about a second
    per MiB; no aliases, no Python tags)."""
    text = read_small(path, limit)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except UnreadableFile as exc:
        raise UnreadableFile(f"{path.name} holds {exc}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise UnreadableFile(f"{path.name}: {type(exc).__name__}") from exc


def _number(text: str, kind: type) -> Any:
    if kind is int and len(text.lstrip("-")) > 30:
        raise UnreadableFile(f"an integer of {len(text)} digits")
    value = kind(text)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise UnreadableFile(f"the number {text[:20]}, out of range")
    return value


def _no_constant(name: str) -> None:
    raise UnreadableFile(f"{name}, which strict JSON has not (siamese_lit writes null)")


def load_json(path: Path, limit: int = MAX_FILE_BYTES) -> Any:
    """The strict JSON document in `path`: no NaN/Infinity, numbers finite and of a sane size."""
    text = read_small(path, limit)
    try:
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_int=lambda s: _number(s, int),
            parse_float=lambda s: _number(s, float),
        )
    except UnreadableFile as exc:
        raise UnreadableFile(f"{path.name} holds {exc}") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise UnreadableFile(f"{path.name}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def select(tree: Any, key: str) -> Any:
    """tree["a"]["b"] for key "a.b"; None where a level is missing, or the value is a ${...}."""
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return None if isinstance(tree, str) and "${" in tree else tree


def optuna_best(path: Path) -> dict[str, Any]:
    """The Optuna sweeper's best value and parameters when they read as a finite number and a small
    mapping of plain values; {} otherwise (a broken results file loses only its line in summary.md)."""
    try:
        results = load_yaml(path) if path.exists() else {}
    except UnreadableFile:
        return {}
    value = select(results, "best_value")
    params = select(results, "best_params")
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and isinstance(params, dict)
        and len(params) <= 100
        and all(isinstance(v, str | int | float | bool | None) for v in params.values())
    ):
        return {"best_value": float(value), "best_params": {str(k)[:100]: v for k, v in params.items()}}
    return {}
