"""MNIST as two uint8 tensors, read through torchvision, with the files checked first."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from siamese_lit.utils.errors import DataError

DATA_DIR_VARIABLE = "SIAMESE_LIT_DATA_DIR"

#: name -> the dimensions its IDX header must give (items, then rows and columns for images)
MNIST_FILES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (60_000, 28, 28),
    "train-labels-idx1-ubyte": (60_000,),
    "t10k-images-idx3-ubyte": (10_000, 28, 28),
    "t10k-labels-idx1-ubyte": (10_000,),
}
#: The IDX type code of unsigned bytes, the third byte of the magic number.
UBYTE = 0x08


def raw_folder(root: str | Path) -> Path:
    """Where torchvision keeps the IDX files under `root`."""
    return Path(root) / "MNIST" / "raw"


def _missing(root: str | Path) -> list[str]:
    return [name for name in MNIST_FILES if not (raw_folder(root) / name).is_file()]


def _missing_message(root: str | Path, missing: list[str], why: str) -> str:
    return (
        f"MNIST not found: {', '.join(missing)} missing from {raw_folder(root)} ({why}). "
        f"Put the four IDX files ({', '.join(MNIST_FILES)}) there, or set {DATA_DIR_VARIABLE} "
        "(paths.data_dir) to the folder that holds MNIST/raw/."
    )


def read_idx_header(path: Path) -> tuple[int, int, tuple[int, ...]]:
    """(type code, number of dimensions, dimensions) of an IDX file: the magic number is two zero
    bytes, the type and the number of dimensions; then one big-endian 32-bit size per dimension.
    A field the file is too short for reads as -1."""
    with path.open("rb") as f:
        magic = f.read(4)
        ndim = magic[3] if len(magic) == 4 and magic[:2] == b"\0\0" else -1
        dims = f.read(4 * max(ndim, 0))
    dtype = magic[2] if len(magic) == 4 and magic[:2] == b"\0\0" else -1
    sizes = tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims) - 3, 4))
    return dtype, ndim, sizes + (-1,) * (max(ndim, 0) - len(sizes))


def validate_mnist_files(root: str | Path) -> None:
    """Check that the four IDX files exist with the whole header MNIST's have (type, number of
    dimensions, each dimension) and exactly the size that header implies."""
    missing = _missing(root)
    if missing:
        raise DataError(_missing_message(root, missing, "data.download=false"))
    for name, dims in MNIST_FILES.items():
        path = raw_folder(root) / name
        dtype, ndim, got = read_idx_header(path)
        if (dtype, ndim, got) != (UBYTE, len(dims), dims):
            found = (
                f"type {dtype:#04x}, {ndim} dimensions: {'x'.join(map(str, got))}"
                if ndim >= 0
                else "no IDX magic number"
            )
            raise DataError(
                f"{path} is not an MNIST IDX file ({found}; expected type {UBYTE:#04x} (unsigned bytes), "
                f"{len(dims)} dimensions: {'x'.join(map(str, dims))}): replace it with the original file."
            )
        size, actual = 4 + 4 * len(dims) + math.prod(dims), path.stat().st_size
        if actual != size:
            raise DataError(
                f"{path} is truncated or corrupted ({actual} bytes, expected {size}): "
                "replace it with the original file."
            )


def ensure_mnist(root: str | Path, download: bool) -> None:
    """Make sure the files are in `root` (downloading them if allowed), then validate them."""
    missing = _missing(root)
    if missing and download:
        from torchvision.datasets import MNIST  # torchvision loads only when MNIST is read

        try:
            for train in (True, False):
                MNIST(str(root), train=train, download=True)
        except Exception as exc:  # no network, a mirror down, a read-only folder...
            why = " ".join(str(exc).split())  # torchvision lists each mirror tried on its own line
            still_missing = _missing(root) or missing
            raise DataError(_missing_message(root, still_missing, f"download failed: {why}")) from exc
    elif missing:
        raise DataError(_missing_message(root, missing, "data.download=false"))
    validate_mnist_files(root)


def load_mnist(root: str | Path, train: bool) -> tuple[Tensor, Tensor]:
    """The images (N, 28, 28) uint8 and labels (N,) int64 of one MNIST split."""
    from torchvision.datasets import MNIST  # torchvision loads only when MNIST is read

    validate_mnist_files(root)
    ds = MNIST(str(root), train=train, download=False)
    images, labels = ds.data.contiguous(), ds.targets.long()
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        name = "train-labels-idx1-ubyte" if train else "t10k-labels-idx1-ubyte"
        raise DataError(
            f"{raw_folder(root) / name} holds labels outside 0..9 "
            f"(min {int(labels.min())}, max {int(labels.max())}): replace it with the original file."
        )
    return images, labels
