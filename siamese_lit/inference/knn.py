"""Exact k-nearest-neighbour search of a gallery index, and the k-NN vote with "unknown"."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from siamese_lit.evaluation.classification import nearest as nearest_rows
from siamese_lit.evaluation.classification import vote
from siamese_lit.inference.records import GalleryIndex, Match
from siamese_lit.objectives.distance import Distance

#: Query rows per distance matrix in `nearest` (each is (chunk, N) floats).
QUERY_CHUNK = 256


def nearest(index: GalleryIndex, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(distances, indices), each (Q, k), of the k nearest gallery items of each query, nearest first.

    Exact search through the model's distance (evaluate's `nearest`, in QUERY_CHUNK query rows); the
    k distances returned are measured again pairwise (a distance matrix's product form loses digits
    near zero) and re-sorted."""
    k = max(1, min(k, len(index.labels)))
    gallery, distance = index.embeddings, Distance(normalize=index.normalize)
    queries = queries.to(gallery.device, torch.float32)
    if not len(queries):
        return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
    _, top = nearest_rows(queries, gallery, k, distance, chunk=QUERY_CHUNK)
    d = distance.pairwise(queries.repeat_interleave(top.shape[1], 0), gallery[top.flatten()]).view(top.shape)
    d, order = d.sort(dim=1)
    return d, top.gather(1, order)


def identify(index: GalleryIndex, queries: Tensor, k: int = 5, threshold: float | None = None) -> list[Match]:
    """Each query embedding's label by a vote of its k nearest gallery items (ties go to the nearer
    ones), or "unknown" when even the nearest is farther than `threshold` (default: the index's;
    NaN: never unknown)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    threshold = index.threshold if threshold is None else threshold
    classes = index.classes
    ids = index.label_ids
    dist, idx = nearest(index, queries, k)
    winner = vote(ids[idx]) if len(idx) else idx[:, 0]  # evaluate's k-NN vote
    out = []
    for row in range(len(idx)):
        d, i = dist[row].tolist(), idx[row].tolist()
        neighbours = [(index.labels[j], dj, index.sources[j]) for j, dj in zip(i, d, strict=True)]
        label = classes[int(winner[row])]
        if math.isfinite(threshold) and d[0] > threshold:
            out.append(Match("unknown", d[0], neighbours))
        else:
            out.append(Match(label, next(dj for lj, dj, _ in neighbours if lj == label), neighbours))
    return out
