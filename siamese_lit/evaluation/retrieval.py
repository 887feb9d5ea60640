"""Retrieval figures: every image querying the others, relevant when of the same digit; one-shot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from siamese_lit.data.sampler import PairSampler
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.seeding import seeded


def retrieval(
    embeddings: Tensor, labels: Tensor, ks: Sequence[int], distance: Distance, chunk: int = 1000
) -> dict[str, float]:
    """precision@k for each k (`p_at_k`), mean average precision (`map`), and the metric-learning
    figures of Musgrave et al. (2020): R-precision and MAP@R (R: the number of other images of the
    query's digit), every image querying all the others (relevant: same label).

    Batched by hand: torchmetrics' RetrievalMAP groups a flat (query, document) list with a Python
    loop per query, far slower for 10k x 10k pairs (tests check both agree on some queries). The
    relevance flag rides in the lowest bit of each distance's float32 bits (the int order of
    non-negative floats is their order), so one value sort per row gives the ranked relevances.
    Those sorts are most of the time (10k rows of 10k keys): see `sort_rows`.
    """
    n = len(labels)
    ks = [min(k, n - 1) for k in ks]
    precision = torch.zeros(len(ks), dtype=torch.float64, device=embeddings.device)
    sums = torch.zeros(3, dtype=torch.float64, device=embeddings.device)  # AP, R-precision, MAP@R
    ranks = torch.arange(1, n, device=embeddings.device, dtype=torch.float32)
    _, digit, counts = labels.unique(return_inverse=True, return_counts=True)
    relevant = counts[digit] - 1  # R of each query
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=embeddings.device)
        d = distance.matrix(embeddings[rows], embeddings).abs()  # abs: no -0.0, whose bits sort first
        d[torch.arange(len(rows)), rows] = torch.inf  # the query itself sorts last, then is dropped
        rel = (labels[None, :] == labels[rows, None]).int()
        key = (d.view(torch.int32) & ~1) | rel
        ranked = (sort_rows(key)[:, :-1] & 1).float()  # (Q, n - 1) relevance in rank order
        for i, k in enumerate(ks):
            precision[i] += ranked[:, :k].mean(1).sum()
        hit_precision = ranked.cumsum(1) / ranks * ranked  # P(i) at each relevant rank i
        r = relevant[rows].clamp_min(1).float()
        within_r = ranks[None, :] <= r[:, None]
        sums[0] += (hit_precision.sum(1) / ranked.sum(1).clamp_min(1)).sum()
        sums[1] += ((ranked * within_r).sum(1) / r).sum()
        sums[2] += ((hit_precision * within_r).sum(1) / r).sum()
    out = {f"p_at_{k}": float(p / n) for k, p in zip(ks, precision, strict=True)}
    out |= {name: float(v / n) for name, v in zip(("map", "r_precision", "map_at_r"), sums, strict=True)}
    return out


def sort_rows(keys: Tensor) -> Tensor:
    """Each row of an int32 tensor sorted. On the CPU through NumPy (>= 1.25), whose sort is
    vectorised (x86-simd-sort, AVX-512/AVX2) and several times faster than torch's CPU sort on the
    rows of a retrieval chunk. Elsewhere torch's own sort."""
    if keys.device.type != "cpu":
        return keys.sort(1).values
    return torch.from_numpy(np.sort(keys.numpy(), axis=1))


def neighbours(embeddings: Tensor, queries: Tensor, n: int, distance: Distance) -> Tensor:
    """(Q, n): the n nearest other images of each query image (indices into `embeddings`)."""
    d = distance.matrix(embeddings[queries], embeddings)
    d[torch.arange(len(queries)), queries] = torch.inf  # not the query itself, even among exact duplicates
    return d.topk(min(n, len(embeddings) - 1), dim=1, largest=False).indices


def oneshot_accuracy(
    embeddings: Tensor, labels: Tensor, episodes: int, seed: int, distance: Distance
) -> float:
    """N-way one-shot accuracy over the classes of `labels`: in each seeded episode, one reference
    image per class; every other image is answered by its nearest reference."""
    sampler = PairSampler(labels)
    refs = sampler.one_per_class(episodes, seeded(seed)).to(labels.device)
    classes = torch.tensor(sampler.classes, device=labels.device)
    correct = total = 0
    for ep in refs:  # (C,) per episode; each is one (N, C) distance matrix
        pred = classes[distance.matrix(embeddings, embeddings[ep]).argmin(1)]
        query = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        query[ep] = False
        correct += int((pred[query] == labels[query]).sum())
        total += int(query.sum())
    return correct / total
