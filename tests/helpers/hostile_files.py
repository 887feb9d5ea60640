"""Hostile files for the readers' tests, written without holding their pixels in memory: PNGs whose
decoded size is gigabytes from a file of kilobytes, and index files with forged headers or fields."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from siamese_lit.inference.index_file import FORMAT

#: PNG colour types and the bytes (or bits) of a pixel of each.
GRAY, RGBA = 0, 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, bit_depth: int, colour: int, ink: bytes = b"") -> Path:
    """A `width` x `height` PNG, black but for row `height // 2`, which starts with the bytes `ink`,
    streamed row by row (an image of gigabytes decoded is a few hundred kilobytes here)."""
    channels = {GRAY: 1, RGBA: 4}[colour]
    row_bytes = (width * channels * bit_depth + 7) // 8
    blank = b"\0" * (row_bytes + 1)  # filter byte 0, then the row
    inked = b"\0" + (ink + b"\0" * row_bytes)[:row_bytes]
    squeeze = zlib.compressobj(1)
    batch = 256  # rows compressed at once
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)))
        for top in range(0, height, batch):
            rows = [inked if y == height // 2 else blank for y in range(top, min(top + batch, height))]
            f.write(_chunk(b"IDAT", squeeze.compress(b"".join(rows))))
        f.write(_chunk(b"IDAT", squeeze.flush()))
        f.write(_chunk(b"IEND", b""))
    return path


def index_parts(path: Path) -> tuple[dict[str, Any], torch.Tensor]:
    """The JSON fields and the embeddings of a real index file."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["index"]), f.get_tensor("embeddings")


def write_index(path: Path, meta: dict[str, Any], embeddings: torch.Tensor) -> Path:
    """An index file of these fields and embeddings, as save_index would write it but unchecked."""
    save_file(
        {"embeddings": embeddings.contiguous()},
        str(path),
        metadata={"format": FORMAT, "index": json.dumps(meta)},
    )
    return path


def write_index_with_list(
    path: Path, meta: dict[str, Any], embeddings: torch.Tensor, key: str, item: str, n: int
) -> Path:
    """An index whose field `key` is a JSON list of `n` copies of the raw JSON text `item` (`{}`: 30 M
    of them are a 90 MB header), written straight, as no JSON library would build it in memory."""
    inner = json.dumps({**meta, key: "@LIST@"}).replace('"@LIST@"', "[" + ",".join([item] * n) + "]")
    tensors = {"dtype": "F32", "shape": list(embeddings.shape), "data_offsets": [0, embeddings.numel() * 4]}
    header = json.dumps({"__metadata__": {"format": FORMAT, "index": inner}, "embeddings": tensors}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + embeddings.float().numpy().tobytes())
    return path
