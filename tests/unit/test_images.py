"""Image files of every mode and size become the same 28x28 MNIST-like digit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese_lit.data.images import load_digit
from siamese_lit.data.mnist import load_mnist


def _digit_canvas(data_dir: Path) -> np.ndarray:
    """An MNIST digit scaled 8x, white on black, as floats in 0..1."""
    images, _ = load_mnist(data_dir, train=False)
    return np.kron(images[0].numpy() / 255, np.ones((8, 8)))


SAVED_AS: dict[str, Callable[[np.ndarray], tuple[Image.Image, str]]] = {
    "1": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("1"), "png"),
    "LA": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("LA"), "png"),
    "P": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("P"), "png"),
    "RGB": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("RGB"), "png"),
    "RGBA": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("RGBA"), "png"),
    "CMYK": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("CMYK"), "tiff"),
    "I;16": lambda d: (Image.fromarray((d * 65535).astype(np.uint16)), "png"),
    "I (16-bit values)": lambda d: (Image.fromarray((d * 65535).astype(np.int32)), "tiff"),
    "F (0..1)": lambda d: (Image.fromarray(d.astype(np.float32)), "tiff"),
    "F (0..255)": lambda d: (Image.fromarray((d * 255).astype(np.float32)), "tiff"),
}


@pytest.mark.parametrize("mode", SAVED_AS)
def test_every_image_mode_keeps_its_grey_levels(mode: str, data_dir: Path, tmp_path: Path) -> None:
    digit = _digit_canvas(data_dir)
    if mode == "1":  # black and white only: compared with the same digit in two levels
        digit = (digit >= 0.5).astype(np.float64)
    reference = load_digit(_save(Image.fromarray((digit * 255).astype(np.uint8), "L"), tmp_path / "L.png"))
    image, suffix = SAVED_AS[mode](digit)
    seen = load_digit(_save(image, tmp_path / f"digit.{suffix}"))
    assert (seen.float() - reference.float()).abs().mean() < 0.5  # the same 28x28 digit


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_faint_digit_on_a_large_canvas_is_framed(data_dir: Path, tmp_path: Path) -> None:
    """A pencil digit 30 levels darker than white paper, on 1024x1024 (the ink never reaches the old
    absolute threshold); framed like the same digit at full contrast."""
    digit = np.pad(_digit_canvas(data_dir), 400)
    faint = load_digit(
        _save(Image.fromarray((255 - digit * 30).astype(np.uint8), "L"), tmp_path / "faint.png")
    )
    strong = load_digit(
        _save(Image.fromarray((255 - digit * 255).astype(np.uint8), "L"), tmp_path / "strong.png")
    )
    assert faint.shape == (28, 28) and (faint.float() - strong.float()).abs().mean() < 2
