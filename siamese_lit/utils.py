"""Small helpers shared by the entry points: instantiating config groups, metrics, output dirs."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from siamese_lit.errors import ConfigError

log = logging.getLogger("siamese_lit")


def plain(spec: Any) -> Any:
    """An OmegaConf container as plain dicts and lists: checkpoints must hold no OmegaConf objects,
    which torch.load(weights_only=True) refuses."""
    return OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec


def instantiate_group(cfg: DictConfig | None, kind: type) -> list[Any]:
    """Instantiate each `_target_` entry of a config group (callbacks, loggers); null entries are off."""
    out: list[Any] = []
    for name, spec in (cfg or {}).items():
        if isinstance(spec, Mapping) and "_target_" in spec:
            obj = instantiate(spec)
            if not isinstance(obj, kind):
                raise ConfigError(f"{name}: {spec['_target_']} is not a {kind.__name__}.")
            out.append(obj)
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return instantiate_group(cfg, Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return instantiate_group(cfg, Logger)


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics (tensors or numbers) as plain floats."""
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def claim_output_dir(output_dir: Path, markers: tuple[str, ...] = ("metrics.json", "checkpoints")) -> None:
    """Refuse a dir holding any of `markers` (a run's results): a run never writes into another's dir."""
    taken = [name for name in markers if (output_dir / name).exists()]
    if taken:
        raise ConfigError(
            f"{output_dir} already holds a run ({', '.join(taken)}): choose a new hydra.run.dir or "
            "hydra.sweep.dir (or leave it to its timestamped default); to resume, pass "
            "ckpt_path=<that run>/checkpoints/last.ckpt."
        )
