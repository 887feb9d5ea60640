"""Image files of any size or mode as MNIST digits: 28x28 uint8, white digit on black, centred.

MNIST digits are white on black, scaled to fit a 20x20 box and centred by their centre of mass in
28x28. A photo or drawing is brought to that framing (crop to the ink, scale, centre), otherwise a
digit filling a large canvas would shrink to a few pixels. A 28x28 file is taken as already framed
(e.g. an MNIST image saved as PNG) and only gets the polarity and level fixes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from siamese_lit.utils.errors import SiameseLitError

SIZE, BOX = 28, 20
#: Larger images are first shrunk to this side (fast, and far more than a 20x20 digit needs).
MAX_SIDE = 512


class ImageError(SiameseLitError):
    """An image file is missing, unreadable or blank."""


def _nominal_max(mode: str, peak: float) -> float:
    """The value of white in an integer or float image: 65535 for 16-bit modes; for 32-bit "I" and
    "F" (which also hold 16-bit PNGs, and 0..1 or 0..255 floats), the smallest usual range holding
    its brightest pixel."""
    if mode.startswith("I;16"):
        return 65535.0
    return next((top for top in (1.0, 255.0, 65535.0) if peak <= top and (mode == "F" or top > 1)), peak)


def _gray(img: Image.Image) -> Image.Image:
    """Any PIL mode as "L" with its grey levels: PIL's own convert clips 16-bit and 32-bit values at
    255 (a 16-bit scan would turn white) and scales no float range; transparency goes on white."""
    if img.mode.startswith(("I", "F")):
        values = np.asarray(img, dtype=np.float64)
        top = _nominal_max(img.mode, float(values.max(initial=0.0)))
        return Image.fromarray((values.clip(0, top) * (255 / top)).round().astype(np.uint8), "L")
    if img.mode == "LAB":  # no conversion from LAB in PIL; L is its lightness
        return img.getchannel("L")
    if img.has_transparency_data:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
    return img.convert("L")


def read_gray(path: str | Path) -> Tensor:
    """The file as a uint8 (H, W) grayscale tensor (_gray: any mode and bit depth)."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{path}: no such image file.")
    if p.stat().st_size == 0:
        raise ImageError(f"{path} is empty: not an image.")
    try:
        with Image.open(p) as img:
            img.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode straight at a reduced size
            gray = _gray(ImageOps.exif_transpose(img))
            gray.thumbnail((MAX_SIDE, MAX_SIDE))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path} is not a readable image ({type(exc).__name__}).") from exc
    return torch.from_numpy(np.array(gray, dtype=np.uint8))  # mode L: (H, W)


def to_mnist(gray: Tensor, name: str = "image") -> Tensor:
    """uint8 (H, W) -> uint8 (28, 28) in MNIST polarity and framing."""
    x = gray.float()
    border = torch.cat([x[0], x[-1], x[:, 0], x[:, -1]])
    background = border.median()
    if background > 127:  # a dark digit on a light background: MNIST is the other way round
        x, background = 255 - x, 255 - background
    x = (x - background).clamp_min(0)
    if x.max() < 16:
        raise ImageError(f"{name} is blank (one colour): no digit to compare.")
    if x.shape != (SIZE, SIZE):
        x = _frame(x)
    return (x * (255 / x.max())).round().clamp(0, 255).to(torch.uint8)  # full range, as MNIST


def _frame(x: Tensor) -> Tensor:
    """Crop to the ink, scale its longer side to 20 pixels, centre its mass in 28x28 (as MNIST was made).

    The ink is what reaches a quarter of the brightest pixel: relative, as the blank check before it
    (a faint pencil digit may never reach a quarter of white)."""
    rows, cols = torch.nonzero(x >= 0.25 * x.max(), as_tuple=True)
    x = x[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = BOX / max(x.shape)
    h, w = (max(1, round(s * scale)) for s in x.shape)
    x = F.interpolate(x[None, None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    total = x.sum().clamp_min(1e-6)
    cy = float((x.sum(1) * torch.arange(h)).sum() / total)
    cx = float((x.sum(0) * torch.arange(w)).sum() / total)
    top = min(max(round(SIZE / 2 - cy), 0), SIZE - h)
    left = min(max(round(SIZE / 2 - cx), 0), SIZE - w)
    canvas = torch.zeros(SIZE, SIZE)
    canvas[top : top + h, left : left + w] = x
    return canvas


def load_digit(path: str | Path) -> Tensor:
    """An image file as an MNIST digit: uint8 (28, 28); ImageError with a one-line message otherwise."""
    return to_mnist(read_gray(path), str(path))
