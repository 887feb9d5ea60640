"""A run's output folder: writable, and never another run's."""

from __future__ import annotations

import tempfile
from pathlib import Path

from siamese_lit.utils.errors import ConfigError


def check_writable(output_dir: Path) -> None:
    """ConfigError unless `output_dir` exists as a writable dir or can be made: checked before any work,
    so a run does not end in a traceback when it first saves something."""
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"cannot write the output dir {output_dir}: {existing} is a file, not a folder. Choose another "
            "hydra.run.dir / hydra.sweep.dir (or paths.log_dir)."
        )
    try:  # os.access would say yes to root on a read-only mount; a real file says the truth
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write the output dir {output_dir}: {existing} is not writable ({exc.strerror}). Choose "
            "another hydra.run.dir / hydra.sweep.dir (or paths.log_dir)."
        ) from exc


def claim_output_dir(output_dir: Path, markers: tuple[str, ...] = ("metrics.json", "checkpoints")) -> None:
    """Refuse a dir holding any of `markers` (a run's results): a run never writes into another's dir;
    and one that cannot be written (check_writable)."""
    check_writable(output_dir)
    taken = [name for name in markers if (output_dir / name).exists()]
    if taken:
        raise ConfigError(
            f"{output_dir} already holds a run ({', '.join(taken)}): choose a new hydra.run.dir or "
            "hydra.sweep.dir (or leave it to its timestamped default); to resume, pass "
            "ckpt_path=<that run>/checkpoints/last.ckpt."
        )
