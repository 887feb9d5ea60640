"""Reliability, bad files given to evaluate and compare: wrong or broken checkpoints, bad images.

Each gives one clear line naming the file (or, for a very large image, is resized and compared);
never a traceback. In-process for most cases, one real CLI run of each entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from siamese_lit.compare import compare
from siamese_lit.data.mnist import load_mnist
from siamese_lit.evaluate import evaluate
from siamese_lit.utils.errors import CheckpointError, SiameseLitError, find_user_error
from tests.helpers.runs import compose_cfg, run_cli


def _user_error(call, *args) -> SiameseLitError:
    """The one-line user error `call(*args)` stops with (what the entry point prints)."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 - looked up through Hydra's wrappers below
        call(*args)
    err = find_user_error(raised.value)
    assert err is not None, raised.value
    assert "\n" not in str(err)
    return err


@pytest.fixture(scope="module")
def mnist_test(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist(data_dir, train=False)


def _digit_png(path: Path, image: torch.Tensor, size: int = 28, dark_on_light: bool = False) -> Path:
    img = Image.fromarray((255 - image if dark_on_light else image).numpy(), mode="L")
    img.resize((size, size), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture
def digit(tmp_path: Path, mnist_test) -> Path:
    return _digit_png(tmp_path / "digit.png", mnist_test[0][0])


def _compare(tmp_path: Path, ckpt: Path, *images: Path) -> dict:
    cfg = compose_cfg([f"ckpt_path={ckpt}", "device=cpu"], tmp_path / "out", config_name="compare")
    cfg.images = [str(p) for p in images]
    return compare(cfg)


BAD_IMAGES = {
    "missing": (lambda p, png: None, "no such image file"),
    "empty": (lambda p, png: p.write_bytes(b""), "is empty"),
    "text": (lambda p, png: p.write_text("not an image\n"), "is not a readable image"),
    "truncated-png": (lambda p, png: p.write_bytes(png.read_bytes()[:60]), "is not a readable image"),
    "blank": (lambda p, png: Image.new("L", (64, 64), 255).save(p, format="PNG"), "is blank"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_compare_bad_image_is_one_clear_line(
    case: str, tiny_siamese_run: Path, digit: Path, tmp_path: Path
) -> None:
    make, expected = BAD_IMAGES[case]
    bad = tmp_path / f"{case}.png"
    make(bad, digit)
    err = _user_error(_compare, tmp_path, tiny_siamese_run / "checkpoints" / "last.ckpt", digit, bad)
    assert expected in str(err) and str(bad) in str(err)


def test_compare_very_large_image_is_resized(tiny_siamese_run: Path, tmp_path: Path, mnist_test) -> None:
    """A 4000x4000 scan of a dark digit on white paper is framed like MNIST and compared."""
    images, labels = mnist_test
    small = _digit_png(tmp_path / "small.png", images[0])
    large = _digit_png(tmp_path / "large.png", images[0], size=4000, dark_on_light=True)
    other = _digit_png(tmp_path / "other.png", images[int(torch.nonzero(labels != labels[0])[0])])
    ckpt = tiny_siamese_run / "checkpoints" / "last.ckpt"
    same = _compare(tmp_path, ckpt, small, large)
    different = _compare(tmp_path / "2", ckpt, small, other)
    assert torch.isfinite(torch.tensor(same["distance"])) and same["distance"] < different["distance"]
    with Image.open(tmp_path / "out" / "inputs.png") as seen:  # the two 28x28 digits the model saw
        assert seen.size == (2 * 28 + 3 * 2, 28 + 2 * 2)


def test_cli_compare_non_image_is_one_line(tiny_siamese_run: Path, digit: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("a digit? no\n")
    ckpt = tiny_siamese_run / "checkpoints" / "last.ckpt"
    args = [f"ckpt_path={ckpt}", "device=cpu", str(digit), str(bad), f"hydra.run.dir={tmp_path / 'out'}"]
    result = run_cli("siamese_lit.compare", args)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip() == f"error: {bad} is not a readable image (UnidentifiedImageError)."


def _truncated(ckpt: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return bad


def test_evaluate_wrong_kind_or_broken_checkpoint(
    tiny_siamese_run: Path, tiny_classifier_run: Path, tmp_path: Path
):
    siamese = tiny_siamese_run / "checkpoints" / "last.ckpt"
    classifier = tiny_classifier_run / "checkpoints" / "last.ckpt"
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    cases = [
        ([f"ckpt_path={classifier}"], "is a classifier checkpoint; a Siamese checkpoint is expected"),
        (
            [f"ckpt_path={siamese}", f"classifier_ckpt_path={siamese}"],
            "is a Siamese checkpoint; a classifier",
        ),
        (
            [f"ckpt_path={_truncated(siamese, tmp_path)}"],
            "is not a readable checkpoint (truncated or corrupted?",
        ),
        ([f"ckpt_path={notes}"], "is not a readable checkpoint"),
        ([f"ckpt_path={tmp_path / 'nowhere.ckpt'}"], "does not exist"),
    ]
    for i, (overrides, expected) in enumerate(cases):
        out = tmp_path / f"eval{i}"
        err = _user_error(evaluate, compose_cfg([*overrides, "device=cpu"], out, config_name="eval"))
        assert isinstance(err, CheckpointError) and expected in str(err), (overrides, str(err))
        assert not (out / "report.json").exists()


def test_cli_evaluate_truncated_checkpoint_is_one_line(tiny_siamese_run: Path, tmp_path: Path) -> None:
    bad = _truncated(tiny_siamese_run / "checkpoints" / "last.ckpt", tmp_path)
    result = run_cli(
        "siamese_lit.evaluate", [f"ckpt_path={bad}", "device=cpu", f"hydra.run.dir={tmp_path / 'out'}"]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: ckpt_path={bad} is not a readable checkpoint"), line
