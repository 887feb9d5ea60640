"""Labelled digits to index, and images to search with: MNIST's training set, or files and folders.

A gallery folder is laid out as `<folder>/<label>/<image>`: each sub-folder is a label, each image
file in it (IMAGE_SUFFIXES, any case) one item. Images are read with siamese_lit.data.images
(any size or mode, brought to 28x28 MNIST form). An unreadable image is reported by name and left
out; a gallery with no label folder, or a label folder with no image, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from siamese_lit.data.images import ImageError, load_digit
from siamese_lit.data.mnist import load_mnist
from siamese_lit.utils.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")


@dataclass
class Digits:
    """28x28 uint8 digits with their labels and sources; `failed`: (path, reason) of those left out."""

    digits: Tensor
    labels: list[str]
    sources: list[str]
    failed: list[tuple[str, str]] = field(default_factory=list)


def mnist_gallery(data_dir: str | Path, size: int | None = None) -> Digits:
    """MNIST's training images (the first `size`, or all 60k), sources `mnist:train:<i>`."""
    images, labels = load_mnist(data_dir, train=True)
    n = len(images) if size is None else min(size, len(images))
    return Digits(images[:n], [str(int(y)) for y in labels[:n]], [f"mnist:train:{i}" for i in range(n)])


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_digits(paths: list[Path], labels: list[str] | None = None) -> Digits:
    """Each file as a digit; those that cannot be read go to `failed` with the reason."""
    digits, kept, sources, failed = [], [], [], []
    for i, path in enumerate(paths):
        try:
            digits.append(load_digit(path))
        except ImageError as exc:
            failed.append((str(path), _reason(str(exc), str(path))))
            continue
        kept.append(labels[i] if labels is not None else "")
        sources.append(str(path))
    stacked = torch.stack(digits) if digits else torch.empty(0, 28, 28, dtype=torch.uint8)
    return Digits(stacked, kept, sources, failed)


def folder_gallery(folder: str | Path) -> Digits:
    """The images of `<folder>/<label>/`, labelled by their sub-folder's name."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(
            f"gallery={folder} is neither `mnist` nor a folder: give a folder laid out as "
            "<folder>/<label>/*.png."
        )
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise ConfigError(
            f"gallery={folder} holds no label folders: lay it out as {folder}/<label>/<image> "
            f"(images: {', '.join(IMAGE_SUFFIXES)})."
        )
    for d in label_dirs:
        if d.name == "unknown":
            raise ConfigError(
                f"gallery={folder}: a label folder may not be named `unknown` (search's answer for none)."
            )
    paths, labels = [], []
    for d in label_dirs:
        files = sorted(p for p in d.iterdir() if is_image(p))
        if not files:
            raise ConfigError(
                f"gallery={folder}: label folder {d.name}/ holds no image files "
                f"({', '.join(IMAGE_SUFFIXES)})."
            )
        paths += files
        labels += [d.name] * len(files)
    return read_digits(paths, labels)


def query_files(paths: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files named by `paths` (a folder: every image file under it, sorted), and the
    (path, reason) of each path that names none."""
    files: list[Path] = []
    failed: list[tuple[str, str]] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if is_image(f))
            if not found:
                failed.append((name, f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"))
            files += found
        elif p.exists():
            files.append(p)  # any file given by name is tried, whatever its suffix
        else:
            failed.append((name, "no such file or folder"))
    return files, failed


def _reason(message: str, path: str) -> str:
    """ImageError's message without the path it starts with: `not a readable image (...)`."""
    return message.removeprefix(path).strip(" :.").removeprefix("is ")


def describe_failed(failed: list[tuple[str, str]], shown: int = 3) -> str:
    """`a.png (reason), b.png (reason) and 4 more`."""
    names = [f"{path} ({reason})" for path, reason in failed[:shown]]
    more = f" and {len(failed) - shown} more" if len(failed) > shown else ""
    return ", ".join(names) + more
