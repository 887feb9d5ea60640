"""Small helpers shared by the entry points: instantiating config groups, metrics, output dirs."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from siamese_lit.errors import ConfigError
from siamese_lit.specs import build


class RankZeroInfo(logging.Filter):
    """Info and debug records from rank zero only: a DDP run's other ranks would repeat each line.
    Warnings and errors pass on every rank (a failure may be one rank's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or rank_zero_only.rank == 0


log = logging.getLogger("siamese_lit")
log.addFilter(RankZeroInfo())


def plain(spec: Any) -> Any:
    """An OmegaConf container as plain dicts and lists: checkpoints must hold no OmegaConf objects,
    which torch.load(weights_only=True) refuses."""
    return OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec


def instantiate_group(cfg: DictConfig | None, kind: type, group: str) -> list[Any]:
    """Instantiate each `_target_` entry of the config group `group` (callbacks, logger), its
    arguments checked first (siamese_lit.specs); null entries are off."""
    out: list[Any] = []
    for name, spec in (cfg or {}).items():
        if isinstance(spec, Mapping) and "_target_" in spec:
            obj = build(spec, f"{group}.{name}")
            if not isinstance(obj, kind):
                raise ConfigError(f"{group}.{name}: {spec['_target_']} is not a {kind.__name__}.")
            out.append(obj)
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return instantiate_group(cfg, Callback, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return instantiate_group(cfg, Logger, "logger")


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics (tensors or numbers) as plain floats."""
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


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
