"""The readers of user files, in process: the image reader's bound on decoded bytes and its
non-finite pixels, the index reader's bound on its header and its fields, the index file's mode, and
the page's check of the Host and Origin of a request."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese_lit.data import images
from siamese_lit.data.images import ImageError, decoded_bytes, load_digit, read_gray
from siamese_lit.demo.loopback import _is_ours
from siamese_lit.inference import index_file
from siamese_lit.inference.index_file import load_index, save_index
from siamese_lit.inference.records import GalleryIndex, GalleryIndexError


def _digit(size: int) -> np.ndarray:
    """A white bar (a "1") on black, `size` pixels square."""
    a = np.zeros((size, size), np.float64)
    a[size // 5 : 4 * size // 5, 9 * size // 20 : 11 * size // 20] = 1.0
    return a


@pytest.mark.parametrize(
    ("mode", "per_pixel"),
    [("L", 1), ("RGB", 4), ("RGBA", 4), ("I;16", 2 + 4), ("I", 4), ("F", 4), ("1", 1 + 1), ("P", 1 + 1)],
)
def test_decoded_bytes_counts_the_pixels_and_the_copy_they_are_shrunk_in(mode: str, per_pixel: int) -> None:
    assert decoded_bytes(Image.new(mode, (30, 20))) == 30 * 20 * per_pixel


def test_an_image_past_the_decoded_bound_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wide16.png"
    Image.fromarray((_digit(600) * 65535).astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 600 * 600 * 6 - 1)
    decoded = []
    monkeypatch.setattr(images, "_shrunk", lambda img: decoded.append(img) or img)
    with pytest.raises(
        ImageError, match=r"wide16\.png: a 600x600 I;16 image takes 2 MiB decoded.*before decoding"
    ):
        read_gray(path)
    assert decoded == []


def test_a_16_bit_image_larger_than_the_working_side_reads_as_its_8_bit_twin(tmp_path: Path) -> None:
    """It is shrunk as 32-bit integers, but its white stays 16-bit white."""
    a = _digit(1200)
    Image.fromarray((a * 65535).astype(np.uint16)).save(tmp_path / "d16.png")
    Image.fromarray((a * 255).astype(np.uint8)).save(tmp_path / "d8.png")
    dim = (a * 2000).astype(np.uint16)  # a dark 16-bit image: stays dark (2000 of 65535), not white
    Image.fromarray(dim).save(tmp_path / "dim16.png")
    assert torch.equal(load_digit(tmp_path / "d16.png"), load_digit(tmp_path / "d8.png"))
    assert int(read_gray(tmp_path / "dim16.png").max()) == round(2000 / 65535 * 255)


def test_the_exif_orientation_is_applied_after_shrinking(tmp_path: Path) -> None:
    img = Image.fromarray((_digit(1100) * 255).astype(np.uint8)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: turn 270 degrees to view
    img.save(tmp_path / "rotated.jpg", exif=exif)
    gray = read_gray(tmp_path / "rotated.jpg")
    rows, cols = torch.nonzero(gray > 128, as_tuple=True)
    assert rows.max() - rows.min() > 3 * (cols.max() - cols.min())  # upright again: a tall bar


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_a_non_finite_pixel_says_so(value: float, tmp_path: Path) -> None:
    a = _digit(64).astype(np.float32)
    a[0, 0] = value
    Image.fromarray(a, "F").save(tmp_path / "f.tiff")
    with pytest.raises(ImageError, match=r"f\.tiff holds non-finite pixels"):
        load_digit(tmp_path / "f.tiff")


def _index(labels: list[str], sources: list[str] | None = None, threshold: float = 0.5) -> GalleryIndex:
    n = len(labels)
    return GalleryIndex(
        embeddings=torch.randn(n, 4),
        labels=labels,
        sources=sources or [f"s{i}" for i in range(n)],
        threshold=threshold,
        normalize=False,
        fingerprint="f" * 64,
        mean=0.1,
        std=0.3,
        ckpt_path="x.ckpt",
    )


def _write_raw(path: Path, meta: dict, embeddings: torch.Tensor) -> Path:
    """An index file of these fields, unchecked; a string "@raw:<token>@" is written as the JSON token."""
    from safetensors.torch import save_file

    text = re.sub(r'"@raw:([^@]*)@"', r"\1", json.dumps(meta))
    save_file({"embeddings": embeddings}, str(path), metadata={"format": index_file.FORMAT, "index": text})
    return path


@pytest.fixture
def fields(tmp_path: Path) -> dict:
    save_index(_index(["1", "2", "3"]), tmp_path / "ok.idx")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ok.idx"), framework="pt") as f:
        return json.loads(f.metadata()["index"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": -1}, r"'threshold' must be a finite number >= 0"),
        ({"threshold": "@raw:1e400@"}, r"'threshold' must be a finite number >= 0"),
        ({"reject_threshold": -0.5}, r"'reject_threshold' must be a finite number >= 0"),
        ({"reject_threshold": True}, r"'reject_threshold' must be a finite number >= 0"),
        ({"labels": ["unknown", "2", "3"]}, r"label 'unknown' is not a name"),
        ({"labels": ["1\n2", "2", "3"]}, r"label '1\\n2' is not a name"),
        ({"labels": ["", "2", "3"]}, r"label '' is not a name"),
        ({"labels": ["x" * 101, "2", "3"]}, r"is not a name of 1 to 100 printable"),
        ({"sources": ["a\rb", "b", "c"]}, r"source 'a\\rb' holds a line break"),
    ],
    ids=[
        "threshold-negative",
        "threshold-inf",
        "reject-threshold-negative",
        "reject-threshold-bool",
        "label-unknown",
        "label-newline",
        "label-empty",
        "label-long",
        "source-cr",
    ],
)
def test_an_index_field_that_would_make_an_answer_lie_is_refused(
    change: dict, message: str, fields: dict, tmp_path: Path
) -> None:
    path = _write_raw(tmp_path / "forged.idx", {**fields, **change}, torch.randn(3, 4))
    with pytest.raises(GalleryIndexError, match=message):
        load_index(path)


@pytest.mark.parametrize("value", [1e30, 5e18], ids=["norm-overflows", "squared-distance-overflows"])
def test_an_index_whose_distances_overflow_is_refused(value: float, fields: dict, tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "huge.idx", fields, torch.full((3, 4), value))
    with pytest.raises(GalleryIndexError, match=r"whose distances overflow float32"):
        load_index(path)


def test_a_header_with_too_many_json_values_is_refused_unparsed(
    fields: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_raw(tmp_path / "many.idx", {**fields, "labels": [{}] * 1000}, torch.randn(3, 4))
    monkeypatch.setattr(index_file, "MAX_SEPARATORS", 500)
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(GalleryIndexError, match=r"holds \d+ of the characters ,:\{\[ .* refused unparsed"):
        load_index(path)


def test_save_index_refuses_what_load_index_would(tmp_path: Path) -> None:
    with pytest.raises(GalleryIndexError, match=r"label 'unknown'"):
        save_index(_index(["unknown", "1"]), tmp_path / "a.idx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_the_index_file_gets_0666_less_the_umask(umask: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        save_index(_index(["1", "2"]), tmp_path / "i.idx")
    finally:
        os.umask(old)
    assert (tmp_path / "i.idx").stat().st_mode & 0o777 == 0o666 & ~umask
    assert load_index(tmp_path / "i.idx").labels == ["1", "2"]


@pytest.mark.parametrize(
    ("netloc", "ours"),
    [
        ("127.0.0.1:7860", True),
        ("localhost:7860", True),
        ("LOCALHOST:7860", True),
        ("[::1]:7860", True),
        ("evil.example:7860", False),
        ("evil.example", False),
        ("127.0.0.1", False),  # port 80
        ("127.0.0.1:7861", False),
        ("127.0.0.1:abc", False),
        ("127.0.0.1.evil.example:7860", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_served_address_is_ours(netloc: str | None, ours: bool) -> None:
    assert _is_ours(netloc, 7860) is ours
