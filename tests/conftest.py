"""Shared fixtures: the real MNIST, Hydra-composed configs, tiny real training runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import raw_folder

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
TINY_SIAMESE = [*TINY, "data.eval_pairs=1000", "data.gallery_size=1000", "model.oneshot_episodes=10"]
SMALL_NET = ["model.net.hidden_size=32", "model.net.num_layers=1"]


def _data_dir() -> Path:
    env = os.environ.get("SIAMESE_LIT_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_dir()
    if not (raw_folder(root) / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"MNIST is not in {raw_folder(root)}: set SIAMESE_LIT_DATA_DIR (e.g. ../shared/data).")
    return root


def compose_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """A composed config with paths.output_dir set (no Hydra run, so no ${hydra:...})."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(_data_dir())
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(overrides: list[str], output_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        return compose_cfg(overrides, output_dir or tmp_path / "run", config_name)

    return make


def run_cli(
    module: str, args: list[str], timeout: float = 600, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user would run it, output captured; `env` adds variables."""
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(_data_dir()), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def _train_tiny(tmp: Path, experiment: str, extra: list[str]) -> Path:
    from siamese_lit.train import train

    out = tmp / experiment
    tiny = TINY_SIAMESE if experiment.startswith("siamese") else TINY  # data.eval_pairs etc. are pairs-only
    cfg = compose_cfg([f"+experiment={experiment}", *tiny, *extra], out)
    train(cfg)
    return out


@pytest.fixture(scope="session")
def tiny_siamese_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Output dir of a real 1-epoch Siamese run on 3000 training pairs (1x64 LSTM; test/auroc ~0.8)."""
    extra = [*SMALL_NET, "model.net.hidden_size=64", "data.batch_size=32", "model.optimizer.lr=0.01"]
    return _train_tiny(tmp_path_factory.mktemp("tiny"), "siamese", extra)


@pytest.fixture(scope="session")
def tiny_classifier_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Output dir of a real 1-epoch classifier run on 3000 training images (small LSTM)."""
    return _train_tiny(
        tmp_path_factory.mktemp("tiny"), "classifier", [*SMALL_NET, "model.net.hidden_size=64"]
    )


def require(component: str, reason: str) -> NoReturn:
    """Skip the test: `component` (a daemon, a browser...) is not available here, for `reason`. In CI
    (CI=true) fail instead: there, every component is installed and a skip would hide a failure."""
    message = f"{component} is not available: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: it must be)", pytrace=False)
    pytest.skip(message)
