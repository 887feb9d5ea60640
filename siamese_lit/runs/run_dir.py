"""A run's output folder: writable, never another run's, and never a folder of the user's."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from siamese_lit.utils.errors import ConfigError, exit_on_user_error

#: where a launcher puts a process's rank (Lightning's DDP, torchrun, SLURM, LSF), as Lightning reads it
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


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


class RefuseUsedOutputDir(HydraCallback):
    """A Hydra callback: refuse a hydra.run.dir / hydra.sweep.dir that is not new or empty: another
    run's, or a folder of the user's (siamese_lit.runs.run_dir.claim_new_dir).

    It runs before Hydra writes anything (Hydra saves .hydra/ and the log into the run dir before the
    task starts, so a task's own check would come after another run's records were overwritten).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _rank() != 0:  # a DDP process that Lightning re-ran into rank 0's run dir
            return
        with exit_on_user_error():
            claim_new_dir(Path(config.hydra.run.dir), markers=(".hydra", "metrics.json", "checkpoints"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            claim_new_dir(Path(config.hydra.sweep.dir), markers=("multirun.yaml",))


def _rank() -> int:
    """This process's rank, from the launcher's variables (Lightning's own rule, without importing it:
    every command's Hydra run has this callback)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return int(value)
    return 0
