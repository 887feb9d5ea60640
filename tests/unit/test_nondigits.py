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


def test_polyline_glyphs_are_seeded_drawings_of_straight_paths() -> None:
    """data.polyline_classes: each glyph is an open path of 2-4 straight segments, sometimes with a
    branch of 1-2 segments leaving one of its vertices, no segment shorter than a fifth of the canvas
    and every corner a real turn (no plain line); its drawings differ a little, the same for the same
    seed."""
    import math
    import random

    from siamese_lit.data.nondigits import CANVAS, _polyline_controls, polyline_glyph

    def draw(seed: int) -> tuple[list, list[torch.Tensor]]:
        rng = random.Random(seed)
        paths, glyphs = [], []
        for _ in range(20):
            p = _polyline_controls(rng)
            paths.append(p)
            glyphs += [polyline_glyph(p, rng), polyline_glyph(p, rng)]
        return paths, glyphs

    paths, glyphs = draw(0)
    assert all(3 <= len(p[0]) <= 5 for p in paths)
    branched = [p for p in paths if len(p) == 2]
    assert 0 < len(branched) < len(paths) and all(len(p) <= 2 for p in paths)
    assert all(2 <= len(branch) <= 3 and branch[0] in main for main, branch in branched)
    for path in (path for p in paths for path in p):
        for (ax, ay), (bx, by) in zip(path, path[1:], strict=False):
            assert math.hypot(bx - ax, by - ay) >= CANVAS / 5
        for (ax, ay), (bx, by), (cx, cy) in zip(path, path[1:], path[2:], strict=False):
            turn = abs(
                math.remainder(math.atan2(cy - by, cx - bx) - math.atan2(by - ay, bx - ax), 2 * math.pi)
            )
            assert math.radians(35) <= turn <= math.radians(145)
    assert all(g.dtype == torch.uint8 and g.shape == (28, 28) and int(g.max()) == 255 for g in glyphs)
    assert all(torch.equal(a, b) for a, b in zip(glyphs, draw(0)[1], strict=True))
    assert not torch.equal(glyphs[0], glyphs[1])  # two drawings of one glyph: the vertices moved
