"""The gallery index: embed labelled digits once with a checkpoint's model, search them later.

This module is the API of the index (what `siamese_lit.index`, `siamese_lit.search` and the demo
use): the records (siamese_lit.inference.records), the file (index_file: safetensors + JSON, safe to
load from a stranger), the search (knn: exact k-NN vote, "unknown" past the threshold), and here the
checkpoint fingerprint and the embedding of uint8 digits.

The embeddings are stored as the model outputs them (`LitSiamese.forward`: unit vectors under the
cosine distance), so the Euclidean distance between rows is the model's own distance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from siamese_lit.checkpoints.reader import check_embedding_scale
from siamese_lit.data.normalization import Normalization
from siamese_lit.inference.index_file import load_index, save_index
from siamese_lit.inference.knn import identify, nearest
from siamese_lit.inference.records import GalleryIndex, GalleryIndexError, Match

__all__ = [
    "GalleryIndex",
    "GalleryIndexError",
    "Match",
    "build_index",
    "checkpoint_fingerprint",
    "embed_digits",
    "identify",
    "load_index",
    "nearest",
    "save_index",
]


def checkpoint_fingerprint(state_dict: Mapping[str, Any]) -> str:
    """sha256 over a state_dict's tensors (names, dtypes, shapes, bytes), in name order: the same
    weights give the same fingerprint whatever else the checkpoint file holds."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name]
        if not isinstance(value, Tensor):
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def embed_digits(
    model: torch.nn.Module, digits_uint8: Tensor, mean: float, std: float, batch_size: int = 2048
) -> Tensor:
    """(N, 28, 28) uint8 MNIST-style digits -> (N, D) float32 embeddings on the CPU, in batches on
    the model's device, normalised as in training (siamese_lit.data.normalization). Refused (one line) when
    they, or the distances between them, are not finite: index, search and the page draw no answer
    from such a model."""
    if digits_uint8.dtype != torch.uint8 or digits_uint8.dim() != 3 or digits_uint8.shape[1:] != (28, 28):
        raise ValueError(
            f"expected (N, 28, 28) uint8 digits, got {tuple(digits_uint8.shape)} {digits_uint8.dtype}"
        )
    device = next(model.parameters()).device
    normalization = Normalization(mean, std)
    out = [model(normalization(chunk.to(device))).float().cpu() for chunk in digits_uint8.split(batch_size)]
    embeddings = torch.cat(out) if out else torch.empty(0, 0)
    return check_embedding_scale(embeddings, "embeddings", "this checkpoint") if out else embeddings


def build_index(
    model: torch.nn.Module,
    digits: Tensor,
    labels: Sequence[str],
    sources: Sequence[str],
    *,
    fingerprint: str,
    mean: float,
    std: float,
    ckpt_path: str = "",
    batch_size: int = 2048,
    reject_threshold: float = float("inf"),
) -> GalleryIndex:
    """Embed `digits` with a LitSiamese `model` (in eval mode) and bundle them with what they are."""
    embeddings = embed_digits(model, digits, mean, std, batch_size)
    distance = getattr(model, "distance", None)
    return GalleryIndex(
        embeddings=embeddings,
        labels=[str(x) for x in labels],
        sources=[str(x) for x in sources],
        threshold=float(getattr(model, "threshold", float("nan"))),
        normalize=bool(getattr(distance, "normalize", False)),
        fingerprint=fingerprint,
        mean=float(mean),
        std=float(std),
        ckpt_path=str(ckpt_path),
        reject_threshold=float(reject_threshold),
    )
