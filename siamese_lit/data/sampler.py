"""Balanced pairs and triplets sampled with tensor ops from per-class index tables.

Label convention (Hadsell, Chopra & LeCun 2006, and the source article), used everywhere in
siamese_lit — sampler, objectives, metrics: **y = 0 for a similar pair** (same digit, two different
images) and **y = 1 for a dissimilar pair** (two different digits). Distance is the score of
"dissimilar": the larger, the more likely y = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from siamese_lit.utils.errors import check

SIMILAR, DISSIMILAR = 0, 1


class PairSampler:
    """Samples pairs and triplets of indices into `labels`, vectorised.

    Images are sorted by class once into a table; an image is then drawn as `offset[c] + r` with
    `r` uniform in the class's count, so a whole epoch is a few tensor ops.
    """

    def __init__(self, labels: Tensor, classes: Sequence[int] | None = None) -> None:
        labels = labels.cpu()
        classes = sorted({int(c) for c in (classes if classes is not None else labels.unique().tolist())})
        check(len(classes) >= 2, f"pairs need at least 2 classes, got {classes}.")
        pool = torch.nonzero(torch.isin(labels, torch.tensor(classes))).squeeze(1)
        self.table = pool[torch.argsort(labels[pool], stable=True)]
        class_tensor = torch.tensor(classes)
        self.counts = torch.bincount(
            torch.searchsorted(class_tensor, labels[self.table]), minlength=len(classes)
        )
        empty = [c for c, n in zip(classes, self.counts.tolist(), strict=True) if n < 2]
        check(not empty, f"pairs need at least 2 images of each class; too few of digit(s) {empty}.")
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.classes, self.labels = classes, labels

    def __len__(self) -> int:
        return len(self.table)

    @staticmethod
    def _uniform(high: Tensor, g: torch.Generator) -> Tensor:
        """An integer uniform in [0, high) for each element of `high`."""
        r = (torch.rand(high.shape, generator=g, dtype=torch.float64) * high).long()
        return torch.minimum(r, high - 1)

    def _anchors(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """n images uniform over the pool: (table position, class position, position in class)."""
        pos = torch.randint(len(self.table), (n,), generator=g)
        cls = torch.searchsorted(self.offsets, pos, right=True) - 1
        return pos, cls, pos - self.offsets[cls]

    def _same_class(self, cls: Tensor, local: Tensor, g: torch.Generator) -> Tensor:
        """Another image of the same class (never the anchor itself)."""
        r = self._uniform(self.counts[cls] - 1, g)
        return self.table[self.offsets[cls] + r + (r >= local).long()]

    def _other_class(self, cls: Tensor, g: torch.Generator) -> Tensor:
        """An image of a class drawn uniformly among the other classes."""
        k = len(self.classes)
        other = (cls + 1 + torch.randint(k - 1, cls.shape, generator=g)) % k
        return self.table[self.offsets[other] + self._uniform(self.counts[other], g)]

    def pairs(self, n: int, similar_fraction: float, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(a, b, y): n pairs, round(n * similar_fraction) of them similar (y = 0), in random order."""
        pos, cls, local = self._anchors(n, g)
        n_sim = round(n * similar_fraction)
        y = torch.cat([torch.full((n_sim,), SIMILAR), torch.full((n - n_sim,), DISSIMILAR)])
        y = y[torch.randperm(n, generator=g)]
        similar = y == SIMILAR
        b = torch.where(similar, self._same_class(cls, local, g), self._other_class(cls, g))
        return self.table[pos], b, y

    def one_per_class(self, episodes: int, g: torch.Generator) -> Tensor:
        """(episodes, classes) indices: one random image of each class per episode (one-shot tests)."""
        counts = self.counts.expand(episodes, -1)
        return self.table[self.offsets + self._uniform(counts, g)]

    def triplets(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(anchor, positive, negative): positive of the anchor's digit, negative of another."""
        pos, cls, local = self._anchors(n, g)
        return self.table[pos], self._same_class(cls, local, g), self._other_class(cls, g)
