"""Reliability, bad input: a bad config or bad MNIST files give one clear line, never a traceback.

Most cases are checked in-process (the same code path the CLI runs, without a Python start per
case); a few real `python -m siamese_lit.train` runs prove the one-line / exit-code behaviour.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torchvision.datasets import MNIST

from siamese_lit.data.mnist import DATA_DIR_VARIABLE, MNIST_FILES, ensure_mnist, load_mnist, raw_folder
from siamese_lit.train import train
from siamese_lit.utils.errors import ConfigError, DataError, find_user_error
from tests.helpers.runs import EXPERIMENTS, run_cli

NO_BF16 = {"SIAMESE_LIT_NO_BF16": "1"}
BAD_CONFIGS = [
    (["+experiment=siamese", "model.objective.margin=0"], "model.objective.margin must be > 0"),
    (["+experiment=siamese", "model.objective.margin=-1.5"], "model.objective.margin must be > 0"),
    (["+experiment=siamese_triplet", "model.objective.margin=0"], "model.objective.margin must be > 0"),
    (["+experiment=siamese", "model.embedding_dim=0"], "size (out_dim, embedding_dim) must be >= 1, got 0"),
    (["+experiment=siamese", "model.net.out_dim=5"], "model.embedding_dim=10 but the encoder outputs 5"),
    (["+experiment=siamese", "data.similar_fraction=0"], "data.similar_fraction must be in (0, 1)"),
    (["+experiment=siamese", "data.similar_fraction=1"], "data.similar_fraction must be in (0, 1)"),
    (["+experiment=siamese", "data.similar_fraction=1.5"], "data.similar_fraction must be in (0, 1)"),
    (["+experiment=classifier", "model.net.cell=transformer"], "model.net.cell must be one of"),
    (["+experiment=siamese", "model.net.cell=LSTM"], "model.net.cell must be one of"),
    (["+experiment=classifier", "data.classes=[3]"], "data.classes must list at least 2 distinct digits"),
    (["+experiment=siamese", "data.classes=[4,4]"], "data.classes must list at least 2 distinct digits"),
    (["+experiment=siamese", "data.classes=[1,12]"], "data.classes must list at least 2 distinct digits"),
    (["+experiment=siamese_unseen", "data.test_classes=[7]"], "data.test_classes must list at least 2"),
    (
        ["+experiment=siamese_robust", "data.polyline_classes=-1"],
        "data.polyline_classes must be >= 0, got -1",
    ),
    (["+experiment=siamese", "data.batch_size=1"], "data.batch_size must be >= 2 for pairs"),
    (
        ["+experiment=siamese", "data.batches=quads"],
        "data.batches must be one of ['pairs', 'triplets', 'views']",
    ),
    (
        ["+experiment=siamese", "model/objective=supcon"],
        "two-view batches (a views objective) need an augmentation",
    ),
    (["+experiment=siamese", "model.objective._target_=torch.nn.Identity"], "is not an Objective"),
    # caught when the optimizer is configured, after loading the data but before the first step
    (["+experiment=classifier", "trainer.max_epochs=-1"], "OneCycleLR needs the run's length"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_stops_before_training(
    overrides: list[str], expected: str, make_cfg, tmp_path: Path
) -> None:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Hydra wraps it; the ConfigError is looked up below
        train(make_cfg(overrides))
    err = find_user_error(raised.value)  # what the entry point prints as its one line
    assert isinstance(err, ConfigError), raised.value
    assert expected in str(err) and "\n" not in str(err)
    assert (
        not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()
    )


def _error_line(result) -> str:
    """The run failed with exactly one `error: ...` line on stderr and no traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    return last


def test_cli_bad_config_is_one_stderr_line(tmp_path: Path) -> None:
    result = run_cli(
        "siamese_lit.train", ["+experiment=siamese", "model.objective.margin=0", f"hydra.run.dir={tmp_path}"]
    )
    assert _error_line(result) == "error: model.objective.margin must be > 0, got 0."
    assert result.stderr.strip().count("\n") == 0, result.stderr  # nothing else on stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_bf16_on_a_cpu_without_its_kernels_is_one_line(command: str, tmp_path: Path) -> None:
    """SIAMESE_LIT_NO_BF16=1: as on a CPU whose LSTM cannot run in bfloat16 (oneDNN without bf16)."""
    args = {
        "train": ["+experiment=siamese", "trainer=cpu", "trainer.precision=bf16-mixed"],
        "evaluate": [f"ckpt_path={tmp_path / 'any.ckpt'}", "device=cpu", "precision=bf16-mixed"],
    }[command]
    result = run_cli(f"siamese_lit.{command}", [*args, f"hydra.run.dir={tmp_path / 'run'}"], env=NO_BF16)
    key = "trainer.precision" if command == "train" else "precision"
    assert _error_line(result) == (
        f"error: {key}=bf16-mixed: SIAMESE_LIT_NO_BF16 is set, so this CPU is taken to have no bfloat16 "
        f"kernel for the LSTM: use {key}=32-true."
    )


def test_cli_unknown_experiment_lists_the_available_ones(tmp_path: Path) -> None:
    result = run_cli("siamese_lit.train", ["+experiment=siamese_xyz", f"hydra.run.dir={tmp_path}"])
    line = _error_line(result)  # Hydra's own error, as the one line too (issue 20)
    assert "Could not find 'experiment/siamese_xyz'" in line
    assert f"Available options in 'experiment': {'; '.join(EXPERIMENTS)}" in line, line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_cli_missing_data_names_files_folder_and_variable(tmp_path: Path) -> None:
    args = ["+experiment=classifier", "data.download=false", f"paths.data_dir={tmp_path / 'nodata'}"]
    line = _error_line(run_cli("siamese_lit.train", [*args, f"hydra.run.dir={tmp_path / 'run'}"]))
    assert all(name in line for name in MNIST_FILES) and DATA_DIR_VARIABLE in line
    assert str(raw_folder(tmp_path / "nodata")) in line and "data.download=false" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_download_without_network_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a mirror that refuses the connection: the same failure as no network, on any machine
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/mnist/"])
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path, download=True)
    msg = str(err.value)
    assert "download failed" in msg and "127.0.0.1:9" in msg and "\n" not in msg
    assert all(name in msg for name in MNIST_FILES) and DATA_DIR_VARIABLE in msg
    assert str(raw_folder(tmp_path)) in msg


def _copy_of_mnist(data_dir: Path, root: Path, broken: str) -> Path:
    """`root` holding links to the real IDX files but a real copy of `broken`, to damage; its path."""
    raw = raw_folder(root)
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).symlink_to(raw_folder(data_dir) / name)
    (raw / broken).unlink()
    shutil.copyfile(raw_folder(data_dir) / broken, raw / broken)
    return raw / broken


@pytest.mark.parametrize(
    ("name", "damage", "expected"),
    [
        ("t10k-images-idx3-ubyte", lambda b: b[: len(b) // 2], "truncated or corrupted"),
        ("train-labels-idx1-ubyte", lambda b: b[:-1], "truncated or corrupted"),
        ("t10k-labels-idx1-ubyte", lambda b: b + b"\0" * 100, "truncated or corrupted"),
        ("t10k-labels-idx1-ubyte", lambda b: (2051).to_bytes(4, "big") + b[4:], "is not an MNIST IDX file"),
        (
            "t10k-images-idx3-ubyte",
            lambda b: b[:4] + (9_999).to_bytes(4, "big") + b[8:],
            "is not an MNIST IDX file",
        ),
        ("train-labels-idx1-ubyte", lambda b: b"", "is not an MNIST IDX file"),
    ],
    ids=["half-images", "labels-1-byte-short", "labels-padded", "wrong-magic", "wrong-count", "empty"],
)
def test_damaged_idx_file_is_named(data_dir: Path, tmp_path: Path, name: str, damage, expected: str) -> None:
    path = _copy_of_mnist(data_dir, tmp_path, name)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path, download=False)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_labels_out_of_range_are_refused(data_dir: Path, tmp_path: Path) -> None:
    path = _copy_of_mnist(data_dir, tmp_path, "t10k-labels-idx1-ubyte")
    raw = bytearray(path.read_bytes())
    raw[8 + 1234] = 11  # one label of 11 in an otherwise valid file
    path.write_bytes(bytes(raw))
    ensure_mnist(tmp_path, download=False)  # size and header are right: only the values are wrong
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, train=False)
    assert str(path) in str(err.value) and "outside 0..9" in str(err.value) and "max 11" in str(err.value)
    images, labels = load_mnist(data_dir, train=False)  # the real file passes
    assert labels.dtype == torch.int64 and int(labels.max()) == 9 and images.shape == (10_000, 28, 28)
