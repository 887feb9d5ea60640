"""Settings the libraries would take and then fail on (or, worse, run with), checked before any work.

numpy takes seeds in 0..2**32-1 only, and Lightning raises deep inside the run otherwise; a precision
name Lightning does not know is echoed in evaluate's report as if it had been applied; `train=false`
with no checkpoint tests an untrained model. Each is refused with one line naming the key.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from omegaconf import OmegaConf

from siamese_lit.utils.errors import ConfigError, check
from siamese_lit.utils.precision import check_runs_here

#: The seeds numpy (and so Lightning's seed_everything) accepts.
SEED_RANGE = (0, 2**32 - 1)


def precision_names() -> tuple[str, ...]:
    """The precision settings Lightning's Trainer accepts (its own list)."""
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    return typing.get_args(_PRECISION_INPUT_STR) + typing.get_args(_PRECISION_INPUT_STR_ALIAS)


def check_precision(value: Any, key: str) -> None:
    """ConfigError unless `value` is a precision Lightning knows (or null: Lightning's default)."""
    names = precision_names()
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and str(value) in names):
        return
    check(
        isinstance(value, str) and value in names,
        f"{key}={value!r} is not a precision Lightning knows: one of {', '.join(names)}.",
    )


def check_seeds(cfg: Any, keys: typing.Iterable[str]) -> None:
    """ConfigError for the first of `keys` set to something else than an int in SEED_RANGE."""
    low, high = SEED_RANGE
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        check(
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            f"{key} must be an int in {low}..{high} (numpy's seeds), got {value!r}.",
        )


def check_at_least(cfg: Any, keys: typing.Iterable[str], low: int = 1) -> None:
    """ConfigError for the first of `keys` whose (int) value is below `low`."""
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        check(value is None or value >= low, f"{key} must be >= {low}, got {value}.")


def check_finite(value: Any, key: str) -> None:
    """ConfigError unless `value` is a finite number: an infinite `data.std` makes every input 0."""
    check(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        f"{key} must be a finite number, got {value!r}.",
    )


def check_knn_k(k: int, gallery: int, key: str = "gallery_knn_k") -> None:
    """ConfigError unless 1 <= k <= gallery: k-NN figures over more neighbours than the gallery holds
    (or none) mean nothing."""
    check(1 <= k <= gallery, f"{key} must be in 1..{gallery} (the gallery's images), got {k}.")


def check_run(cfg: Any) -> None:
    """train's own settings: `train=false` tests a given checkpoint, never an untrained model."""
    if not cfg.get("train", True) and cfg.get("test", True) and not cfg.get("ckpt_path"):
        raise ConfigError(
            "train=false tests a checkpoint: pass ckpt_path=<run dir>/checkpoints/<name>.ckpt (without it "
            "the test would score an untrained model)."
        )
    check_seeds(cfg, ("seed", "data.seed", "data.split_seed"))
    check_precision(OmegaConf.select(cfg, "trainer.precision"), "trainer.precision")
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    check_runs_here(OmegaConf.select(cfg, "trainer.precision"), accelerator, "trainer.precision")
    for key in ("data.mean", "data.std"):
        check_finite(OmegaConf.select(cfg, key), key)
    knn_k = OmegaConf.select(cfg, "model.knn_k")
    for key in ("data.gallery_size", "data.reference_size"):
        gallery = OmegaConf.select(cfg, key)
        if isinstance(knn_k, int) and isinstance(gallery, int):
            check_knn_k(knn_k, gallery, f"model.knn_k (with {key})")


def check_evaluate(cfg: Any) -> None:
    """evaluate's own settings (their types: siamese_lit.cli.schemas.EvalSettings): sizes >= 1, seeds
    numpy takes, a precision Lightning knows. (Every distance is finite: check_embedding_scale.)"""
    check_at_least(
        cfg, ("batch_size", "protocol.k", "gallery_knn_k", "oneshot_episodes", "retrieval.neighbours")
    )
    check_seeds(cfg, ("seed", "robustness.seed"))
    check_precision(OmegaConf.select(cfg, "precision"), "precision")
    device = str(OmegaConf.select(cfg, "device", default="auto"))
    check_runs_here(
        OmegaConf.select(cfg, "precision"), "cpu" if device.startswith("cpu") else device, "precision"
    )
