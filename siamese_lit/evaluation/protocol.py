"""The source article's protocol: a digit is the one whose k references are nearest on average.

For each query image, k random images of each digit (never the query itself) are its references;
the answer is the digit with the smallest mean distance to its references, or "unknown" (-1) when
even that is past a threshold (the article's EvaluateSiamese, batched over all queries at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from siamese_lit.data.sampler import PairSampler
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import check


def sample_references(labels: Tensor, k: int, g: torch.Generator, queries: int | None = None) -> Tensor:
    """k distinct images of each class of `labels` for every query, as indices into `labels`: the one
    reference sampler of the project (evaluate's protocol and search's `protocol=article`).

    `queries=None`: each image of `labels` is a query, never its own reference; (N, C, k). A number:
    that many queries from outside `labels` (search's query files against a gallery); (queries, C, k).
    Classes are in sorted order of their labels.

    Vectorised Floyd sampling (k rounds of tensor ops over all (query, class) cells at once): round
    j draws t uniform in [0, n - k + j] and keeps t unless already drawn, then takes n - k + j, which
    gives k distinct positions uniformly. An image's own class has one candidate fewer (n - 1), and
    positions at or past its own are shifted by one, so it is never its own reference.
    """
    inside = queries is None
    _, own, counts = torch.unique(labels.cpu(), return_inverse=True, return_counts=True)
    table = torch.argsort(own, stable=True)  # images sorted by class, in their order within it
    offsets = torch.cumsum(counts, 0) - counts
    check(k >= 1, f"protocol.k must be >= 1, got {k}.")
    check(
        k < int(counts.min()) + (not inside),
        f"protocol.k={k}: every digit needs more than k images, the rarest has {int(counts.min())}.",
    )
    n_classes = len(counts)
    if inside:
        where = torch.empty_like(table)
        where[table] = torch.arange(len(table))
        local = where - offsets[own]  # each image's position within its class
        is_own = F.one_hot(own, n_classes).bool()  # (N, C)
    else:
        own = local = torch.zeros(queries, dtype=torch.long)
        is_own = torch.zeros(queries, n_classes, dtype=torch.bool)
    n = counts.expand(len(is_own), -1) - is_own.long()
    drawn = torch.empty(*n.shape, k, dtype=torch.long)
    for j in range(k):
        top = n - k + j
        t = PairSampler._uniform(top + 1, g)
        taken = (drawn[..., :j] == t.unsqueeze(-1)).any(-1)
        drawn[..., j] = torch.where(taken, top, t)
    drawn += (is_own.unsqueeze(-1) & (drawn >= local[:, None, None])).long()
    return table[offsets[None, :, None] + drawn].to(labels.device)


def reference_distances(embeddings: Tensor, refs: Tensor, distance: Distance, chunk: int = 2048) -> Tensor:
    """(N, C): mean distance of each image to its k references of each class (refs from sample_references)."""
    out = []
    for e, r in zip(embeddings.split(chunk), refs.split(chunk), strict=True):
        n, c, k = r.shape
        d = distance.pairwise(e.repeat_interleave(c * k, 0), embeddings[r.flatten()])
        out.append(d.view(n, c, k).mean(-1))
    return torch.cat(out)


def answer(mean_distance: Tensor, classes: Tensor, threshold: float) -> Tensor:
    """The closest class of each row, or -1 ("unknown") when even that one is farther than `threshold`."""
    best, pos = mean_distance.min(1)
    return torch.where(best <= threshold, classes[pos], torch.full_like(pos, -1))


def answer_fractions(pred: Tensor, labels: Tensor) -> dict[str, float | None]:
    """Fractions correct / unknown / wrong (they sum to 1), and the accuracy on the answered images
    (None when every answer is "unknown")."""
    known = pred >= 0
    correct = float((pred == labels).float().mean())
    unknown = float((~known).float().mean())
    answered = float((pred[known] == labels[known]).float().mean()) if bool(known.any()) else None
    return {
        "correct": correct,
        "unknown": unknown,
        "wrong": 1.0 - correct - unknown,
        "answered_accuracy": answered,
    }
