"""The files a command writes: checked before any work, and a failure while writing as one line.

Every problem with an output path is found before the work starts (a 60k-image embedding, or an
ONNX export, is not thrown away because the folder is read-only or is a file): the path is checked
and a probe file is written and removed in the folder that will hold it. Nothing a user made is
overwritten unless `overwrite=true`, and a path is never interpolated by OmegaConf (a file named
`${oc.env:HOME}.json` would be written as `/root.json`). The writers themselves are atomic (a
temporary file renamed over the target), so a failure during the write (a full disk, a file-size
limit) leaves nothing half-written; `writing` turns it into one line and exit 1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese_lit.utils.errors import ConfigError, SiameseLitError


class OutputError(SiameseLitError):
    """An output file could not be written during the work: the disk, not the command line (exit 1)."""

    exit_code = 1


def shown(path: Any) -> str:
    """A path as printable text, whatever bytes its name holds (undecodable ones as \\x escapes)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def check_writable_folder(folder: Path, key: str) -> None:
    """ConfigError unless a file can be created in `folder` (or, where it does not exist yet, in the
    nearest folder above it that does): a probe file is written there and removed."""
    parent = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise ConfigError(f"{key}: {shown(parent)} is a file, not a folder.")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot write into {shown(parent)} ({exc.strerror or exc}).") from exc


def check_output(cfg: DictConfig, key: str, overwrite: bool, required: bool = True) -> Path | None:
    """`cfg[key]` as the path of a file to write, checked writable; ConfigError when it is missing
    (and `required`), holds an interpolation, is a folder, under a file, in a folder that cannot be
    written, or an existing file while not `overwrite`."""
    if OmegaConf.is_interpolation(cfg, key):
        raw = OmegaConf.to_container(cfg, resolve=False)[key]
        raise ConfigError(
            f"{key}={raw}: a path with ${{...}} would be interpolated; escape it as \\${{...}} or rename it."
        )
    value = cfg.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{key} is required: pass {key}=<file to write>.")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a file path, got {value!r}.")
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{key}={shown(value)} is a folder: give the path of a file to write.")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"{key}={shown(value)} already exists: choose another path, or pass overwrite=true to replace it."
        )
    check_writable_folder(path.parent, f"{key}={shown(value)}")
    return path


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError (or safetensors' error) while writing `path` as an OutputError: one line, exit 1."""
    try:
        yield
    except SiameseLitError:
        raise
    except Exception as exc:
        if not isinstance(exc, OSError) and type(exc).__name__ != "SafetensorError":
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"cannot write {shown(path)} ({reason}): nothing was written there.") from exc
