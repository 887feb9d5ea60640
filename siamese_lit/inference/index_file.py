"""The index file: safetensors for the embeddings, one plain JSON text in its metadata for the rest.

The (N, D) float32 embeddings are the file's one tensor; the labels, sources, calibrated threshold,
distance, input normalisation and the fingerprint of the checkpoint that embedded them are one JSON
text in the safetensors metadata. Neither part can run code when read (no pickle); the header length
is checked against the file and the tensor's dtype and shape against the JSON before anything is
allocated, the header's JSON values are counted (bounded) before it is parsed, and every field is
checked for type and range: a file from a stranger gives at worst a one-line error, and cannot make
an answer lie (a label that forges a table row, a threshold that makes every answer `unknown`,
embeddings whose distances overflow).
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
#: item): a larger gallery is split into several indexes (docs/inference.md).
MAX_HEADER_BYTES = 100_000_000
#: The most items an index holds: parsed, each item is two Python strings, so this bounds the memory
#: a header takes whatever its bytes hold.
MAX_ITEMS = 500_000
#: The characters that separate or open JSON values (, : { [): counted in the raw header before it
#: is parsed, a bound on its values (a valid index has about three an item, in and out of strings).
SEPARATORS = b",:{["
MAX_SEPARATORS = 4 * MAX_ITEMS + 64
#: A label is a short printable name; `unknown` is search's answer for no match.
MAX_LABEL_CHARS = 100
RESERVED_LABEL = "unknown"
#: The largest embedding norm whose distances, (2 * norm)^2, stay finite in float32.
MAX_EMBEDDING_NORM = math.sqrt(torch.finfo(torch.float32).max) / 2


def save_index(index: GalleryIndex, path: str | Path) -> None:
    """Write `index` to `path` whole (siamese_lit.utils.files.write_atomic)."""
    path = Path(path)
    _check_items(index.labels, index.sources, f"index_path={path}")
    meta = {
        "labels": index.labels,
        "sources": index.sources,
        "threshold": index.threshold if math.isfinite(index.threshold) else None,
        "reject_threshold": index.reject_threshold if math.isfinite(index.reject_threshold) else None,
        "distance": "cosine" if index.normalize else "euclidean",
        "fingerprint": index.fingerprint,
        "mean": index.mean,
        "std": index.std,
        "ckpt_path": index.ckpt_path,
    }
    text = json.dumps(meta, allow_nan=False)
    size = len(text.encode())
    if _separators(text.encode()) > MAX_SEPARATORS - 64:
        raise GalleryIndexError(
            f"the labels and sources of {len(index.labels)} items hold too many of the characters "
            f"{SEPARATORS.decode()} for an index file ({MAX_SEPARATORS - 64}): split the gallery."
        )
    if size > MAX_HEADER_BYTES - 2**16:
        raise GalleryIndexError(
            f"the labels and sources of {len(index.labels)} items take {size / 1e6:.0f} MB, more than an "
            f"index file holds ({MAX_HEADER_BYTES / 1e6:.0f} MB): split the gallery into several indexes."
        )
    data = save({"embeddings": index.embeddings.contiguous()}, metadata={"format": FORMAT, "index": text})
    write_atomic(path, data)


def _separators(header: bytes) -> int:
    return sum(header.count(c) for c in SEPARATORS)


def _read_header(path: Path) -> None:
    """GalleryIndexError unless the safetensors header length fits the file and MAX_HEADER_BYTES, and
    the header holds at most MAX_SEPARATORS separators (checked before any JSON parser sees it)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise GalleryIndexError(
                f"index_path={path} is not a siamese_lit index (no safetensors header, or a truncated "
                "file): build one with python -m siamese_lit.index."
            )
        separators = _separators(f.read(n))
    if separators > MAX_SEPARATORS:
        raise GalleryIndexError(
            f"index_path={path}: its header holds {separators} of the characters {SEPARATORS.decode()} "
            f"(each opens or separates a JSON value), more than an index of {MAX_ITEMS} items may "
            f"({MAX_SEPARATORS}): a damaged or forged index, refused unparsed."
        )


def _check_items(labels: list[str], sources: list[str], where: str) -> None:
    """GalleryIndexError unless there are at most MAX_ITEMS, each label a short printable name other
    than `unknown` and each source printable (they are printed one per line in search's answers)."""
    if len(labels) > MAX_ITEMS:
        raise GalleryIndexError(
            f"{where}: {len(labels)} items, more than an index holds ({MAX_ITEMS}): split the gallery "
            "into several indexes."
        )
    for label in labels:
        if not (0 < len(label) <= MAX_LABEL_CHARS and label.isprintable()) or label == RESERVED_LABEL:
            raise GalleryIndexError(
                f"{where}: label {label[:MAX_LABEL_CHARS]!r} is not a name of 1 to {MAX_LABEL_CHARS} "
                f"printable characters other than {RESERVED_LABEL!r} (search's answer for none)."
            )
    for source in sources:
        if not source.isprintable():
            raise GalleryIndexError(
                f"{where}: source {source[:200]!r} holds a line break or control character."
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
            _check_items(labels, sources, where)
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
    threshold, reject_threshold = (_threshold(meta, key, where) for key in ("threshold", "reject_threshold"))
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
    largest = float(embeddings.norm(dim=1).max())
    if not largest <= MAX_EMBEDDING_NORM:
        raise GalleryIndexError(
            f"{where} holds embeddings of norm {largest:.3g}, whose distances overflow float32 "
            f"(at most {MAX_EMBEDDING_NORM:.3g}): a damaged or edited index."
        )
    std = float(_field(meta, "std", (int, float), where))
    if not std > 0:
        raise GalleryIndexError(f"{where}: field 'std' must be > 0.")
    return GalleryIndex(
        embeddings=embeddings,
        labels=labels,
        sources=sources,
        threshold=float("nan") if threshold is None else threshold,
        reject_threshold=math.inf if reject_threshold is None else reject_threshold,
        normalize=distance == "cosine",
        fingerprint=saved,
        mean=float(_field(meta, "mean", (int, float), where)),
        std=std,
        ckpt_path=str(meta.get("ckpt_path") or ""),
    )


def _threshold(meta: dict, key: str, where: str) -> float | None:
    """A threshold field: a finite number >= 0, or null (none; absent in older index files)."""
    value = meta.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf
    ):
        raise GalleryIndexError(f"{where}: field {key!r} must be a finite number >= 0, or null.")
    return None if value is None else float(value)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} in strict JSON")
