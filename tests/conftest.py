"""Shared fixtures: the real MNIST, Hydra-composed configs, tiny real training runs. What is not a
fixture (run settings, the CLI runner, the table harness) is in tests/helpers/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from siamese_lit.data.mnist import raw_folder
from tests.helpers.runs import (  # noqa: F401  (re-exported: `from conftest import ...` still works)
    CENTRED,
    CONF_DIR,
    EXPERIMENTS,
    SMALL_NET,
    TINY,
    TINY_SIAMESE,
    compose_cfg,
    require,
    run_cli,
    train_tiny,
)
from tests.helpers.runs import mnist_root as _data_dir  # the name tests import from conftest

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is marked e2e, so that `-m "not e2e"` leaves it out."""
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_dir()
    if not (raw_folder(root) / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"MNIST is not in {raw_folder(root)}: set SIAMESE_LIT_DATA_DIR (e.g. ../shared/data).")
    return root


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(overrides: list[str], output_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        return compose_cfg(overrides, output_dir or tmp_path / "run", config_name)

    return make


@pytest.fixture(scope="session")
def tiny_siamese_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Output dir of a real 1-epoch Siamese run on 3000 training pairs (1x64 LSTM)."""
    extra = [*SMALL_NET, "model.net.hidden_size=64", "data.batch_size=32", "model.optimizer.lr=0.01"]
    return train_tiny(tmp_path_factory.mktemp("tiny") / "siamese", "siamese", extra)


@pytest.fixture(scope="session")
def tiny_centred_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Output dir of a real 1-epoch cosine Siamese run measured centred (model.center_embeddings)."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "centred", "siamese", CENTRED)


@pytest.fixture(scope="session")
def tiny_classifier_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Output dir of a real 1-epoch classifier run on 3000 training images (small LSTM)."""
    extra = [*SMALL_NET, "model.net.hidden_size=64"]
    return train_tiny(tmp_path_factory.mktemp("tiny") / "classifier", "classifier", extra)
