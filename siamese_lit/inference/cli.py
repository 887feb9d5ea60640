"""What the index, search and export commands share: the model, lists of paths. (Their output paths:
siamese_lit.cli.outputs.)"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese_lit.checkpoints.reader import command_line_keys
from siamese_lit.checkpoints.specs import check_values
from siamese_lit.inference.model import SiameseModel
from siamese_lit.utils.devices import resolve_device
from siamese_lit.utils.errors import ConfigError


def load_siamese(cfg: DictConfig, ckpt_path: Any = None, device: str = "auto", **given: Any) -> SiameseModel:
    """The SiameseModel of `ckpt_path` (default cfg.ckpt_path) on `device`, with the input
    normalisation it was trained with unless data.mean / data.std are given on the command line, and
    cfg.threshold and cfg.reject_threshold (when the command has them) under their policies."""
    check_values(cfg, {"data.mean": (float, type(None)), "data.std": (float, type(None))})
    keys = command_line_keys()
    for key in ("mean", "std"):
        if f"data.{key}" in keys and given.get(key) is None:
            given[key] = float(OmegaConf.select(cfg, f"data.{key}"))
    return SiameseModel.from_checkpoint(
        ckpt_path or cfg.get("ckpt_path"),
        resolve_device(device),
        threshold=cfg.get("threshold"),
        reject_threshold=cfg.get("reject_threshold"),
        **given,
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
