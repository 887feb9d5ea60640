"""A new encoder is one class and one yaml, nothing else (the README's recipe, issue 25 item 5): a
toy encoder written the way a user writes it is trained by the real `train` command and loaded back
from its checkpoint, its size counted on the meta device like the project's own encoders."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from siamese_lit import PROJECT_ROOT

pytestmark = pytest.mark.e2e

ENCODER = '''"""A toy encoder: one hidden layer over the flattened image."""

from torch import Tensor, nn

from siamese_lit.models.encoders import Encoder


class ToyEncoder(Encoder):
    def __init__(self, width: int = 16, out_dim: int = 8) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.reshape(len(x), -1))
'''

CONFIG = """# A toy encoder: one hidden layer over the flattened image.
_target_: siamese_lit.models.{module}.ToyEncoder
width: 16
out_dim: ???
"""


@pytest.fixture
def toy_encoder() -> Iterator[str]:
    """The name of a new encoder: its class in siamese_lit/models/, its yaml in conf/model/net/,
    both removed afterwards."""
    name = f"toy_{uuid.uuid4().hex[:8]}"
    module = PROJECT_ROOT / "siamese_lit" / "models" / f"{name}.py"
    config = PROJECT_ROOT / "conf" / "model" / "net" / f"{name}.yaml"
    module.write_text(ENCODER)
    config.write_text(CONFIG.format(module=name))
    try:
        yield name
    finally:
        module.unlink()
        config.unlink()


def test_a_new_encoder_is_one_class_and_one_yaml(toy_encoder: str, tmp_path: Path, data_dir: Path) -> None:
    from siamese_lit.models.loading import load_model

    run = tmp_path / "run"
    args = [
        "+experiment=siamese",
        f"model/net={toy_encoder}",
        "data.train_size=2000",
        "data.val_size=500",
        "data.test_size=500",
        "data.eval_pairs=500",
        "data.gallery_size=500",
        "model.oneshot_episodes=5",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "siamese_lit.train", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = sorted((run / "checkpoints").glob("*.ckpt"))[0]

    model, _ = load_model(ckpt, "Siamese")
    assert type(model.net).__name__ == "ToyEncoder"
    assert type(model.net).__module__ == f"siamese_lit.models.{toy_encoder}"
    assert model.net.out_dim == 10  # the experiment's embedding_dim, given through the yaml's ???
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.net.layers[0].weight, saved["net.layers.0.weight"])
    assert model(torch.zeros(3, 28, 28)).shape == (3, 10)
