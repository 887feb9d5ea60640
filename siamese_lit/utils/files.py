"""Result files written whole and as strict JSON: a reader (or a killed run) never sees half a file.

Free of torch and Lightning imports, so `siamese_lit.summarize` starts at once.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: what a failed job of a multirun leaves in its dir (siamese_lit.runs.sweep), read by summarize
ERROR_FILE = "error.json"


def finite(value: Any) -> Any:
    """`value` with every non-finite float, however nested, as None: JSON has no NaN or Infinity
    (json.dumps would write them, and strict readers refuse the file)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def umask() -> int:
    """The process's umask (read without changing it where Linux allows: no race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temporary file in `path`'s dir, with the mode a plain `open(path, "w")`
    would give (0666 less the umask), not mkstemp's 0600: results read like the logs beside them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` to `path` all at once: into a temporary file of the same dir, then renamed over
    `path`, so a reader (or a killed run, or a full disk) never sees a half-written file. The one
    atomic writer of the project (results, indexes, ONNX graphs, pictures; checkpoints, which
    Lightning writes itself, through replace_whole)."""
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
        replace_whole(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_whole(tmp: Path, path: Path) -> None:
    """Put the finished file `tmp` in `path`'s place: synced to disk first (a full disk fails here,
    not after the rename), then renamed over it in one step."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Mapping[str, Any], sort_keys: bool = True) -> None:
    """`data` as strict JSON (non-finite floats as null), written atomically."""
    write_atomic(path, json.dumps(finite(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")
