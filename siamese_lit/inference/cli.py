"""What the index, search and export commands share: positional paths, output checks, the model.

Output files follow one rule: nothing a user made is overwritten unless `overwrite=true`, and every
problem with an output path is found before any work is done (a 60k-image embedding is not thrown
away because the output folder is a file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese_lit.checkpoints.reader import command_line_keys
from siamese_lit.checkpoints.specs import check_values
from siamese_lit.inference.model import SiameseModel
from siamese_lit.utils.devices import resolve_device
from siamese_lit.utils.errors import ConfigError


def check_output(value: Any, key: str, overwrite: bool, required: bool = True) -> Path | None:
    """`value` as the path of a file to write; ConfigError when it is missing (and `required`), a
    folder, under a file, or an existing file while not `overwrite`."""
    if value is None or value == "":
        if required:
            raise ConfigError(f"{key} is required: pass {key}=<file to write>.")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a file path, got {value!r}.")
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{key}={value} is a folder: give the path of a file to write.")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{key}={value}: {parent} is a file, not a folder.")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"{key}={value} already exists: choose another path, or pass overwrite=true to replace it."
        )
    return path


def load_siamese(cfg: DictConfig, ckpt_path: Any = None, device: str = "auto", **given: Any) -> SiameseModel:
    """The SiameseModel of `ckpt_path` (default cfg.ckpt_path) on `device`, with the input
    normalisation it was trained with unless data.mean / data.std are given on the command line, and
    cfg.threshold (when the command has one) under the one threshold policy."""
    check_values(cfg, {"data.mean": (float, type(None)), "data.std": (float, type(None))})
    keys = command_line_keys()
    for key in ("mean", "std"):
        if f"data.{key}" in keys and given.get(key) is None:
            given[key] = float(OmegaConf.select(cfg, f"data.{key}"))
    return SiameseModel.from_checkpoint(
        ckpt_path or cfg.get("ckpt_path"), resolve_device(device), threshold=cfg.get("threshold"), **given
    )


def string_list(cfg: DictConfig, key: str) -> list[str]:
    """`cfg[key]` as a list of strings (a single string is a list of one)."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    items = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if not isinstance(items, list) or not all(isinstance(v, str | int | float) for v in items):
        raise ConfigError(f"{key} must be a list of paths, got {value!r}.")
    return [str(v) for v in items]
