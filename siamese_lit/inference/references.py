"""The LSTM article's protocol on a gallery index: k random references of each label per query.

The article's `EvaluateSiamese` labels an image by its mean distance to k reference images of each
digit: the closest digit, or "unknown" when even that mean is past the threshold. Here the
references are drawn (seeded) from the index's gallery by evaluate's sampler, k distinct items of
each label for every query, and the answer is siamese_lit.evaluation.protocol.answer's, as
`evaluate` reports it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from siamese_lit.evaluation.protocol import answer, sample_references
from siamese_lit.inference.records import GalleryIndex, Match
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import ConfigError
from siamese_lit.utils.seeding import seeded

#: Query rows measured at once.
CHUNK = 256


def draw_references(index: GalleryIndex, queries: int, k: int, g: torch.Generator) -> Tensor:
    """(queries, C, k) gallery indices: k distinct items of each label (index.classes) per query,
    drawn by evaluate's sampler (siamese_lit.evaluation.protocol.sample_references)."""
    counts = torch.bincount(index.label_ids, minlength=len(index.classes))
    rarest = int(counts.argmin())
    fewest = int(counts[rarest])
    if k < 1 or k > fewest:
        raise ConfigError(
            f"k={k} references per label: must be in 1..{fewest} "
            f"(label {index.classes[rarest]} has {fewest})."
        )
    return sample_references(index.label_ids, k, g, queries=queries)


def identify_by_references(
    index: GalleryIndex, queries: Tensor, k: int = 10, threshold: float | None = None, seed: int = 0
) -> list[Match]:
    """Each query's label by the article's protocol. Match.distance is the mean distance to the
    answered label's references (to the closest label's when "unknown"); Match.neighbours are those
    references, nearest first. `threshold` defaults to the index's; NaN: never "unknown"."""
    threshold = index.threshold if threshold is None else threshold
    if not math.isfinite(threshold):
        threshold = math.inf
    refs = draw_references(index, len(queries), k, seeded(seed))
    gallery, distance = index.embeddings, Distance(normalize=index.normalize)
    matches = []
    for q, r in zip(queries.split(CHUNK), refs.split(CHUNK), strict=True):
        d = distance.pairwise(gallery[r], q[:, None, None, :].to(gallery).expand(*r.shape, -1))  # (Q, C, k)
        mean = d.mean(-1)
        answers = answer(mean, torch.arange(mean.shape[1]), threshold)
        closest = mean.argmin(1)
        for row in range(len(q)):
            c = int(closest[row])
            dist, order = d[row, c].sort()
            items = r[row, c][order].tolist()
            neighbours = [
                (index.labels[j], dj, index.sources[j]) for j, dj in zip(items, dist.tolist(), strict=True)
            ]
            label = index.classes[c] if int(answers[row]) >= 0 else "unknown"
            matches.append(Match(label, float(mean[row, c]), neighbours))
    return matches
