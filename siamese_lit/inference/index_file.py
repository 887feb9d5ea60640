"""The index file: safetensors for the embeddings, one plain JSON text in its metadata for the rest.

The (N, D) float32 embeddings are the file's one tensor; the labels, sources, calibrated threshold,
distance, input normalisation and the fingerprint of the checkpoint that embedded them are one JSON
text in the safetensors metadata. Neither part can run code when read (no pickle); the header length
is checked against the file and the tensor's dtype and shape against the JSON before anything is
allocated, and every field is type-checked: a file from a stranger gives at worst a one-line error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from siamese_lit.inference.records import GalleryIndex, GalleryIndexError
from siamese_lit.utils.files import write_atomic

#: The format tag in the metadata; a file without it is not an index of this project.
FORMAT = "siamese_lit.index/1"
#: safetensors' own limit on its header, which holds the labels and sources (about 30-100 bytes an
#: item, so a few million items): a larger gallery is split into several indexes (docs/inference.md).
MAX_HEADER_BYTES = 100_000_000


def save_index(index: GalleryIndex, path: str | Path) -> None:
    """Write `index` to `path` whole (siamese_lit.utils.files.write_atomic)."""
    path = Path(path)
    meta = {
        "labels": index.labels,
        "sources": index.sources,
        "threshold": index.threshold if math.isfinite(index.threshold) else None,
        "distance": "cosine" if index.normalize else "euclidean",
        "fingerprint": index.fingerprint,
        "mean": index.mean,
        "std": index.std,
        "ckpt_path": index.ckpt_path,
    }
    text = json.dumps(meta, allow_nan=False)
    size = len(text.encode())
    if size > MAX_HEADER_BYTES - 2**16:
        raise GalleryIndexError(
            f"the labels and sources of {len(index.labels)} items take {size / 1e6:.0f} MB, more than an "
            f"index file holds ({MAX_HEADER_BYTES / 1e6:.0f} MB): split the gallery into several indexes."
        )
    data = save({"embeddings": index.embeddings.contiguous()}, metadata={"format": FORMAT, "index": text})
    write_atomic(path, data)


def _read_header(path: Path) -> None:
    """GalleryIndexError unless the safetensors header length fits the file and MAX_HEADER_BYTES."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
        raise GalleryIndexError(
            f"index_path={path} is not a siamese_lit index (no safetensors header, or a truncated file): "
            "build one with python -m siamese_lit.index."
        )


def _field(meta: dict[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    value = meta.get(key)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise GalleryIndexError(
            f"{where}: field {key!r} is missing or of the wrong type (a damaged or edited index)."
        )
    return value


def _strings(meta: dict[str, Any], key: str, where: str) -> list[str]:
    value = _field(meta, key, (list,), where)
    if not all(isinstance(s, str) for s in value):
        raise GalleryIndexError(
            f"{where}: field {key!r} must be a list of strings (a damaged or edited index)."
        )
    return value


def load_index(path: str | Path, fingerprint: str | None = None) -> GalleryIndex:
    """The index at `path`; GalleryIndexError (one line) when it is missing, not an index, damaged,
    or, with `fingerprint`, built by another checkpoint."""
    p = Path(path)
    where = f"index_path={path}"
    if not p.is_file():
        raise GalleryIndexError(
            f"{where} does not exist or is not a file: build one with python -m siamese_lit.index "
            "ckpt_path=<ckpt> index_path=<file>."
        )
    _read_header(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            info = f.metadata() or {}
            if info.get("format") != FORMAT or sorted(f.keys()) != ["embeddings"]:
                raise GalleryIndexError(f"{where} is a safetensors file but not a siamese_lit index.")
            meta = json.loads(info.get("index", ""), parse_constant=_refuse_constant)
            if not isinstance(meta, dict):
                raise GalleryIndexError(
                    f"{where}: its metadata is not a JSON object (a damaged or edited index)."
                )
            labels, sources = _strings(meta, "labels", where), _strings(meta, "sources", where)
            tensor = f.get_slice("embeddings")
            shape, dtype = tensor.get_shape(), tensor.get_dtype()
            if dtype != "F32" or len(shape) != 2 or shape[0] != len(labels) or shape[0] != len(sources):
                raise GalleryIndexError(
                    f"{where}: embeddings {dtype} {shape} for {len(labels)} labels and {len(sources)} "
                    "sources: expected float32 (N, D) and N of each (a damaged or edited index)."
                )
            if shape[0] == 0 or shape[1] == 0:
                raise GalleryIndexError(f"{where} holds no embeddings.")
            embeddings = f.get_tensor("embeddings")
    except GalleryIndexError:
        raise
    except Exception as exc:  # SafetensorError, a bad JSON text, an unreadable file
        raise GalleryIndexError(
            f"{where} is not a readable siamese_lit index ({type(exc).__name__})."
        ) from exc
    threshold = meta.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise GalleryIndexError(f"{where}: field 'threshold' must be a number or null.")
    distance = _field(meta, "distance", (str,), where)
    if distance not in ("cosine", "euclidean"):
        raise GalleryIndexError(f"{where}: unknown distance {distance!r} (cosine or euclidean).")
    saved = _field(meta, "fingerprint", (str,), where)
    if fingerprint is not None and saved != fingerprint:
        built_with = meta.get("ckpt_path") if isinstance(meta.get("ckpt_path"), str) else "?"
        raise GalleryIndexError(
            f"{where} was built with another checkpoint ({built_with}, fingerprint {saved[:12]}), not this "
            f"one ({fingerprint[:12]}): rebuild it with python -m siamese_lit.index and this ckpt_path."
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise GalleryIndexError(f"{where} holds NaN or infinite embeddings (a damaged or edited index).")
    std = float(_field(meta, "std", (int, float), where))
    if not std > 0:
        raise GalleryIndexError(f"{where}: field 'std' must be > 0.")
    return GalleryIndex(
        embeddings=embeddings,
        labels=labels,
        sources=sources,
        threshold=float("nan") if threshold is None else float(threshold),
        normalize=distance == "cosine",
        fingerprint=saved,
        mean=float(_field(meta, "mean", (int, float), where)),
        std=std,
        ckpt_path=str(meta.get("ckpt_path") or ""),
    )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} in strict JSON")
