"""MNIST as two uint8 tensors, read through torchvision, with the files checked first."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torchvision.datasets import MNIST

from siamese_lit.errors import DataError

DATA_DIR_VARIABLE = "SIAMESE_LIT_DATA_DIR"

# name -> (IDX magic number, item count, exact file size in bytes)
MNIST_FILES: dict[str, tuple[int, int, int]] = {
    "train-images-idx3-ubyte": (2051, 60_000, 16 + 60_000 * 28 * 28),
    "train-labels-idx1-ubyte": (2049, 60_000, 8 + 60_000),
    "t10k-images-idx3-ubyte": (2051, 10_000, 16 + 10_000 * 28 * 28),
    "t10k-labels-idx1-ubyte": (2049, 10_000, 8 + 10_000),
}


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


def validate_mnist_files(root: str | Path) -> None:
    """Check that the four IDX files exist with the right size, magic number and count."""
    missing = _missing(root)
    if missing:
        raise DataError(_missing_message(root, missing, "data.download=false"))
    for name, (magic, count, size) in MNIST_FILES.items():
        path = raw_folder(root) / name
        actual = path.stat().st_size
        with path.open("rb") as f:
            header = f.read(8)
        got_magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else -1
        got_count = int.from_bytes(header[4:8], "big") if len(header) >= 8 else -1
        if got_magic != magic or got_count != count:
            raise DataError(
                f"{path} is not an MNIST IDX file (magic {got_magic}, {got_count} items; expected "
                f"magic {magic}, {count} items): replace it with the original file."
            )
        if actual != size:
            raise DataError(
                f"{path} is truncated or corrupted ({actual} bytes, expected {size}): "
                "replace it with the original file."
            )


def ensure_mnist(root: str | Path, download: bool) -> None:
    """Make sure the files are in `root` (downloading them if allowed), then validate them."""
    missing = _missing(root)
    if missing and download:
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
