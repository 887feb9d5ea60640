"""Tiny real runs and real CLI calls: the overrides that keep a training run small, a composed
config outside a Hydra run, `python -m <module>` as a user runs it, and skips that fail in CI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from siamese_lit import PROJECT_ROOT

CONF_DIR = str(PROJECT_ROOT / "conf")
EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "experiment").glob("*.yaml"))

# A run small enough for the test suite: a small network on a few thousand images.
TINY = [
    "data.train_size=3000",
    "data.test_size=1000",
    "data.val_size=1000",
    "data.eval_batch_size=500",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]
TINY_SIAMESE = [
    *TINY,
    "data.eval_pairs=1000",
    "data.gallery_size=1000",
    "data.reference_size=1000",  # siamese_robust's: every training digit (55k)
    "model.oneshot_episodes=10",
]
SMALL_NET = ["model.net.hidden_size=32", "model.net.num_layers=1"]
#: a tiny cosine Siamese run measured centred (model.center_embeddings, as siamese_unseen)
CENTRED = [*SMALL_NET, "data.batch_size=32", "model/distance=cosine", "model.center_embeddings=true"]
# smaller than TINY_SIAMESE: for whole CLI runs, several per test (sweeps, SLURM, results)
SMALLER = {
    "data.train_size": "1000",
    "data.val_size": "500",
    "data.test_size": "500",
    "data.eval_batch_size": "250",
    "data.eval_pairs": "500",
    "data.gallery_size": "500",
    "model.oneshot_episodes": "5",
    "model.net.hidden_size": "16",
    "model.net.num_layers": "1",
}


def smaller_siamese(**changes: str) -> list[str]:
    """+experiment=siamese on TINY_SIAMESE with SMALLER and `changes` (keys with dots as __)."""
    values = {**SMALLER, **{k.replace("__", "."): v for k, v in changes.items()}}
    kept = [o for o in TINY_SIAMESE if o.split("=", 1)[0] not in values]
    return ["+experiment=siamese", *kept, *(f"{k}={v}" for k, v in values.items())]


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    """The rows of a multirun's summary.csv."""
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def mnist_root() -> Path:
    """Where MNIST is read from: $SIAMESE_LIT_DATA_DIR, else the repository's data/."""
    env = os.environ.get("SIAMESE_LIT_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT / "data"


def compose_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """A composed config with paths.output_dir set (no Hydra run, so no ${hydra:...})."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(mnist_root())
    return cfg


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI run: this one, the data dir, unbuffered output, plus `env`."""
    return {**os.environ, "SIAMESE_LIT_DATA_DIR": str(mnist_root()), "PYTHONUNBUFFERED": "1", **(env or {})}


def run_cli(
    module: str, args: list[str], timeout: float = 600, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user would run it, output captured; `env` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def train_tiny(out: Path, experiment: str, extra: list[str]) -> Path:
    """A real 1-epoch run of `experiment` in-process, written to `out`."""
    from siamese_lit.train import train

    tiny = TINY_SIAMESE if experiment.startswith("siamese") else TINY  # data.eval_pairs etc. are pairs-only
    train(compose_cfg([f"+experiment={experiment}", *tiny, *extra], out))
    return out


def require(component: str, reason: str) -> NoReturn:
    """Skip the test: `component` (a daemon, a browser...) is not available here, for `reason`. In CI
    (CI=true) fail instead: there, every component is installed and a skip would hide a failure."""
    message = f"{component} is not available: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: it must be)", pytrace=False)
    pytest.skip(message)
