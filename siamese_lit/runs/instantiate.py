"""Instantiating the `_target_` entries of a config group (callbacks, loggers), arguments checked first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from siamese_lit.checkpoints.specs import build
from siamese_lit.utils.errors import ConfigError


def instantiate_group(cfg: DictConfig | None, kind: type, group: str) -> list[Any]:
    """Instantiate each `_target_` entry of the config group `group` (callbacks, logger), its
    arguments checked first (siamese_lit.checkpoints.specs); null entries are off."""
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
