"""Image files of any size or mode as MNIST digits: 28x28 uint8, white digit on black, centred.

MNIST digits are white on black, scaled to fit a 20x20 box and centred by their centre of mass in
28x28. A photo or drawing is brought to that framing (crop to the ink, scale, centre), otherwise a
digit filling a large canvas would shrink to a few pixels. A 28x28 file is taken as already framed
(e.g. an MNIST image saved as PNG) and only gets the polarity and level fixes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageMode, UnidentifiedImageError
from torch import Tensor

from siamese_lit.utils.errors import SiameseLitError

SIZE, BOX = 28, 20
#: Larger images are first shrunk to this side (fast, and far more than a 20x20 digit needs).
MAX_SIDE = 512
#: The most memory one image may take decoded (with its conversion to a mode that can be shrunk):
#: a small compressed file can hold a huge image, so the bound is on the decoded pixels, checked
#: from the header before anything is decoded.
MAX_DECODED_BYTES = 128 * 2**20
#: EXIF orientation -> the transposition that makes the image upright (as PIL's exif_transpose).
ORIENTATION = 0x0112
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(SiameseLitError):
    """An image file is missing, unreadable or blank."""


def _nominal_max(mode: str, peak: float) -> float:
    """The value of white in an integer or float image: 65535 for 16-bit modes; for 32-bit "I" and
    "F" (which also hold 16-bit PNGs, and 0..1 or 0..255 floats), the smallest usual range holding
    its brightest pixel."""
    if mode.startswith("I;16"):
        return 65535.0
    return next((top for top in (1.0, 255.0, 65535.0) if peak <= top and (mode == "F" or top > 1)), peak)


def _bytes_per_pixel(mode: str) -> int:
    """What PIL stores a pixel of `mode` in: several 8-bit bands take 4 bytes, one band its item size."""
    try:
        descriptor = ImageMode.getmode(mode)
    except KeyError:  # a mode PIL opens but does not describe: count it as wide
        return 8
    return 4 if len(descriptor.bands) > 1 else np.dtype(descriptor.typestr).itemsize


def _shrinkable_mode(img: Image.Image) -> str:
    """The mode `img` is converted to before it is shrunk: PIL's reduce averages neither bits,
    palette indices nor 16-bit integers."""
    if img.mode == "1":
        return "L"
    if img.mode in ("P", "PA"):
        return "RGBA" if img.has_transparency_data else "L"
    if img.mode.startswith("I;16"):
        return "I"
    return img.mode


def decoded_bytes(img: Image.Image) -> int:
    """The memory `img` takes decoded, plus its copy in the mode it is shrunk in (from the header)."""
    width, height = img.size
    per_pixel = _bytes_per_pixel(img.mode)
    working = _shrinkable_mode(img)
    if working != img.mode:
        per_pixel += _bytes_per_pixel(working)
    return width * height * per_pixel


def _shrunk(img: Image.Image) -> Image.Image:
    """`img` decoded and reduced by a whole factor to at most twice MAX_SIDE (box averages), so that
    no later step copies the full-size image."""
    img = img.convert(_shrinkable_mode(img)) if _shrinkable_mode(img) != img.mode else img
    factor = max(img.size) // MAX_SIDE
    return img.reduce(factor) if factor > 1 else img


def _gray(img: Image.Image, name: str, file_mode: str) -> Image.Image:
    """Any PIL mode as "L" with its grey levels: PIL's own convert clips 16-bit and 32-bit values at
    255 (a 16-bit scan would turn white) and scales no float range; transparency goes on white.
    `file_mode` is the mode of the file (a 16-bit image is shrunk as 32-bit "I"): its white."""
    if img.mode.startswith(("I", "F")):
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{name} holds non-finite pixels (NaN or infinity): not an image of a digit.")
        top = _nominal_max(file_mode, float(values.max(initial=0.0)))
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bound below is ours
            img = Image.open(p)
        with img:
            img.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode straight at a reduced size
            _check_decoded_size(img, path)
            small = _shrunk(img)
            gray = _gray(small, str(path), img.mode)
            upright = UPRIGHT.get(img.getexif().get(ORIENTATION))
            gray = gray.transpose(upright) if upright is not None else gray
            gray.thumbnail((MAX_SIDE, MAX_SIDE))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path} is too large an image to decode ({exc}).") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path} is not a readable image ({type(exc).__name__}).") from exc
    return torch.from_numpy(np.array(gray, dtype=np.uint8))  # mode L: (H, W)


def _check_decoded_size(img: Image.Image, path: str | Path) -> None:
    size = decoded_bytes(img)
    if size > MAX_DECODED_BYTES:
        width, height = img.size
        raise ImageError(
            f"{path}: a {width}x{height} {img.mode} image takes {size / 2**20:.0f} MiB decoded, more than "
            f"the {MAX_DECODED_BYTES / 2**20:.0f} MiB an image may: refused before decoding."
        )


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
