"""A run's output folder: writable, never another run's, and never a folder of the user's."""

from __future__ import annotations

import itertools
import os
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


def claim_new_dir(output_dir: Path, markers: tuple[str, ...]) -> None:
    """The rule for the folder Hydra is about to write a run into (train, evaluate, compare and their
    sweeps): it must be new or empty, so that nothing there is ever overwritten: not another run's
    results (`markers` name them in the message), not a user's files (`hydra.run.dir=/`, a folder
    holding a user's inputs.png). A folder that cannot be written is refused too (check_writable)."""
    claim_output_dir(output_dir, markers)
    if not output_dir.is_dir():
        return
    with os.scandir(output_dir) as entries:
        names = sorted(entry.name for entry in itertools.islice(entries, 4))
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ConfigError(
            f"{output_dir} is not empty ({shown}): a run writes only into a new or empty folder, so that "
            "nothing in it is overwritten. Choose a new hydra.run.dir or hydra.sweep.dir (or leave it to "
            "its timestamped default)."
        )
