"""The LSTM article's protocol on a gallery index: k random references of each label per query.

The article's `EvaluateSiamese` labels an image by its mean distance to k reference images of each
digit: the closest digit, or "unknown" when even that mean is past the threshold. Here the
references are drawn (seeded) from the index's gallery, k distinct items of each label for every
query, and the answer is siamese_lit.evaluation.protocols.answer's, as `evaluate` reports it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from siamese_lit.evaluation.protocol import answer
from siamese_lit.inference.records import GalleryIndex, Match
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import ConfigError
from siamese_lit.utils.seeding import seeded

#: Query rows drawn and measured at once.
CHUNK = 256


def draw_references(index: GalleryIndex, queries: int, k: int, g: torch.Generator) -> Tensor:
    """(queries, C, k) gallery indices: k distinct items of each label (index.classes) per query."""
    members = [torch.nonzero(index.label_ids == c).squeeze(1) for c in range(len(index.classes))]
    rarest = min(range(len(members)), key=lambda c: len(members[c]))
    fewest = len(members[rarest])
    if k < 1 or k > fewest:
        raise ConfigError(
            f"k={k} references per label: must be in 1..{fewest} "
            f"(label {index.classes[rarest]} has {fewest})."
        )
    out = torch.empty(queries, len(members), k, dtype=torch.long)
    for start in range(0, queries, CHUNK):
        rows = min(CHUNK, queries - start)
        for c, m in enumerate(members):  # k distinct positions: the k largest of uniform keys
            pick = torch.rand(rows, len(m), generator=g).topk(k, dim=1).indices
            out[start : start + rows, c] = m[pick]
    return out


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
