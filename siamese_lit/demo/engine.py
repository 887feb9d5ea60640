"""What the demo page computes, without the page: drawings and uploads as MNIST digits, the
distance and verdict between two of them, and each one's predicted digit and nearest gallery digits.

A drawing comes from the browser as an RGBA array: strokes on a transparent canvas. It is laid on
white and handed to siamese_lit.data.images.to_mnist, which crops to the ink, scales it to 20x20 and
centres it in 28x28, as for any image file given to `compare`; an uploaded file goes through
load_digit. A blank canvas is an ImageError whose message the page shows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from siamese_lit.data.images import ImageError, load_digit, to_mnist
from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference.model import SiameseModel
from siamese_lit.inference.records import GalleryIndex

#: A gallery item's source naming an MNIST image: `mnist:<split>:<index>` (as the index writes it).
MNIST_SOURCE = re.compile(r"^mnist:(train|test):(\d+)$")


def drawing_to_gray(value: Any) -> Tensor | None:
    """A Sketchpad/ImageEditor value (a dict with a `composite` array, or an array) as uint8 (H, W)
    grey on white; None when nothing was drawn (no array at all)."""
    if isinstance(value, dict):
        value = value.get("composite")
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return torch.from_numpy(array.copy())
    img = Image.fromarray(array[..., :4] if array.shape[-1] >= 4 else array[..., :3])
    if img.mode == "RGBA":  # strokes on a transparent canvas: lay them on white
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
    return torch.from_numpy(np.array(img.convert("L"), dtype=np.uint8))


def read_input(drawing: Any, upload: str | Path | None, name: str) -> Tensor:
    """The digit of one side of the page: the uploaded file when there is one, else the drawing.
    ImageError (a one-line message for the page) when neither holds a digit."""
    if upload:
        return load_digit(upload)
    gray = drawing_to_gray(drawing)
    if gray is None or gray.numel() == 0:
        raise ImageError(f"{name} is blank: draw a digit or upload an image.")
    try:
        return to_mnist(gray, name)
    except ImageError as exc:
        raise ImageError(f"{name} is blank: draw a digit or upload an image.") from exc


@dataclass
class SideResult:
    """One drawing's answer: what the model saw, its prediction, its nearest gallery digits."""

    name: str
    digit: Tensor | None = None  # uint8 (28, 28)
    message: str | None = None  # why there is no digit
    label: str | None = None  # the k-NN vote, or "unknown"
    nearest: float | None = None  # distance to the nearest gallery item
    score: float | None = None  # rejection score (SiameseModel.reject_scores)
    neighbours: list[tuple[np.ndarray | None, str]] = field(default_factory=list)  # (image, caption)


@dataclass
class Answer:
    sides: tuple[SideResult, SideResult]
    distance: float | None
    same: bool | None
    threshold: float
    rejection: float = math.inf  # the rejection threshold (inf: none; then `unknown` is past `threshold`)

    def verdict(self) -> str:
        """The page's verdict line; `same` and `different` are the words a reader (and the browser
        test) looks for."""
        if self.distance is None:
            missing = [s.message for s in self.sides if s.message]
            return "**No verdict**: " + " ".join(missing)
        word = "same digit" if self.same else "different digits"
        sign = "≤" if self.same else ">"
        return f"**Verdict: {word}** (distance {self.distance:.4f} {sign} threshold {self.threshold:.4f})"


class Recognizer:
    """The page's questions put to a SiameseModel (its threshold, by the one policy) and a gallery
    index of its weights: each side's digit, prediction and neighbours, and the pair's verdict."""

    def __init__(
        self,
        model: SiameseModel,
        index: GalleryIndex,
        images: Callable[[str], np.ndarray | None],
        k: int = 5,
    ) -> None:
        model.check_index(index)
        self.model, self.index, self.images, self.k = model, index, images, k

    @property
    def threshold(self) -> float:
        return self.model.threshold.value

    def answer(self, a: tuple[Any, Any], b: tuple[Any, Any]) -> Answer:
        """Both sides, each (drawing, upload); a side without a digit gets its message."""
        sides = (SideResult("Drawing A"), SideResult("Drawing B"))
        for side, (drawing, upload) in zip(sides, (a, b), strict=True):
            try:
                side.digit = read_input(drawing, upload, side.name)
            except ImageError as exc:
                side.message = str(exc)
        present = [s for s in sides if s.digit is not None]
        distance = same = None
        if present:
            emb = self.model.embed(torch.stack([s.digit for s in present]))
            matches = self.model.identify(emb, self.index, k=self.k)
            for side, match in zip(present, matches, strict=True):
                side.label, side.nearest, side.score = match.label, float(match.distance), match.score
                side.neighbours = [
                    (self.images(source), f"{label} · {dist:.3f}") for label, dist, source in match.neighbours
                ]
            if len(present) == 2:
                comparison = self.model.compare(emb[0], emb[1])
                distance, same = comparison.distance, comparison.same
        return Answer(sides, distance, same, self.threshold, self.model.rejection.value)


def gallery_images(data_dir: str | Path, sources: list[str]) -> Callable[[str], np.ndarray | None]:
    """The picture of a gallery item by its source: an MNIST image by split and index (the splits
    that `sources` name are read from `data_dir` once, now), or an image file read as the index
    read it; None when it cannot be read any more."""
    splits = {m[1] for s in sources if (m := MNIST_SOURCE.match(s))}
    mnist = {split: load_mnist(data_dir, train=split == "train")[0] for split in sorted(splits)}

    def image(source: str) -> np.ndarray | None:
        m = MNIST_SOURCE.match(source)
        if m:
            images, i = mnist[m[1]], int(m[2])
            return images[i].numpy() if i < len(images) else None
        try:
            return load_digit(source).numpy()
        except ImageError:
            return None

    return image
