"""The reporting commands start without torch or Lightning: they only read files back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from siamese_lit import PROJECT_ROOT

HEAVY = ("torch", "lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics")


@pytest.mark.parametrize("module", ["siamese_lit.summarize", "siamese_lit.results"])
def test_importing_a_reporting_command_loads_no_torch(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert module.split(".")[0] in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
