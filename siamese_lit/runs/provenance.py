"""Where a figure comes from: the commit, the date and the machine a run was made on.

Written next to every run's results (train: provenance.json; evaluate and bench: inside their
report), so a results table can say what it was measured at (siamese_lit.results).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

#: the repository of an editable install, whose commit a run records
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def device_name() -> str:
    """The accelerator a run uses by default: the GPU's name, else the CPU (with AMX when it has it)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    amx = " with AMX" if probe and probe() else ""
    return f"{platform.processor() or platform.machine()} CPU{amx}, {torch.get_num_threads()} threads"


def provenance() -> dict[str, Any]:
    """The commit (with `+changes` when the work tree differs from it), the date, the device and the
    machine's load average when the run starts."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": f"{commit}{'+changes' if dirty else ''}" if commit else "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": device_name(),
        "load_average": round(os.getloadavg()[0], 1),  # a shared machine's other work, at the start
        "torch": torch.__version__,
    }
