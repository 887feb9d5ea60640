"""The non-digit set (siamese_lit.data.nondigits): glyphs of the machine's fonts and drawn shapes, in
MNIST form, seeded, generated once and cached as tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siamese_lit.data.nondigits import NON_DIGIT_CHARACTERS, SHAPE_KINDS, NonDigits, font_files
from tests.helpers.runs import require


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    found = font_files()
    if not found:
        require("fonts", "no font files under /usr/share/fonts (make fonts installs Debian's)")
    return found[:2]


def test_glyphs_and_shapes_are_mnist_digits_seeded_and_cached(fonts: list[Path], tmp_path: Path) -> None:
    made = NonDigits.load(tmp_path, fonts, shapes=2 * len(SHAPE_KINDS), seed=3)
    glyphs = [s for s, k in zip(made.sources, made.kinds, strict=True) if k == "glyph"]
    assert len(glyphs) > len(NON_DIGIT_CHARACTERS)  # most characters of both fonts
    assert all(s.split(":")[0] in {f.name for f in fonts} for s in glyphs)
    assert made.kinds.count("scribble") == 2 and set(SHAPE_KINDS) <= set(made.kinds)
    images = made.images
    assert images.dtype == torch.uint8 and images.shape[1:] == (28, 28) and len(images) == len(made.kinds)
    assert (images.flatten(1).amax(1) == 255).all()  # full range, as to_mnist makes them
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert float(border.float().mean()) < 5  # black background, MNIST's polarity
    cached = list(tmp_path.glob("nondigits_*.pt"))
    assert len(cached) == 1
    again = NonDigits.load(tmp_path, fonts, shapes=2 * len(SHAPE_KINDS), seed=3)  # read back
    assert torch.equal(again.images, images) and again.sources == made.sources
    assert torch.equal(NonDigits.generate(fonts, 2 * len(SHAPE_KINDS), seed=3).images, images)  # seeded
    other = NonDigits.generate([], shapes=2 * len(SHAPE_KINDS), seed=4)
    assert not torch.equal(other.images, images[-len(other.images) :])


def test_no_characters_that_read_as_digits() -> None:
    assert not set(NON_DIGIT_CHARACTERS) & set("0123456789OoDQIilj|!ZzSs$BbGgqTL")
