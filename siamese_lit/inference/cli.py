"""What the index, search and export commands share: the model, lists of paths. (Their output paths:
siamese_lit.cli.outputs.)"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese_lit.checkpoints.reader import with_saved_data
from siamese_lit.inference.index import checkpoint_fingerprint
from siamese_lit.models.loading import load_model
from siamese_lit.utils.devices import resolve_device
from siamese_lit.utils.errors import ConfigError


def load_siamese(ckpt_path: Any, device: str, data: DictConfig) -> tuple[Any, str, float, float]:
    """(model in eval mode, checkpoint fingerprint, input mean, input std) of a Siamese checkpoint;
    the mean and std are the ones it was trained with unless data.mean / data.std are given."""
    model, saved = load_model(ckpt_path, "Siamese", resolve_device(device))
    data = with_saved_data(data, saved, "ckpt_path")
    fingerprint = checkpoint_fingerprint(model.state_dict())
    mean, std = float(data.mean), float(data.std)
    if not std > 0:
        raise ConfigError(f"data.std must be > 0, got {std}.")
    return model, fingerprint, mean, std


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
