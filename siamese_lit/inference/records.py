"""What a gallery index holds and what a search answers: plain frozen records, no behaviour."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from siamese_lit.data.normalization import MNIST_MEAN, MNIST_STD
from siamese_lit.utils.errors import SiameseLitError


class GalleryIndexError(SiameseLitError):
    """An index file is missing, unreadable, not an index, or of another checkpoint."""


@dataclass(frozen=True)
class GalleryIndex:
    embeddings: Tensor  # (N, D) float32, as the model outputs them
    labels: list[str]  # label of each item: "0".."9" for MNIST, the folder name otherwise
    sources: list[str]  # where each came from: "mnist:train:<i>" or the image file's path
    threshold: float  # distance threshold calibrated in the checkpoint (NaN: none)
    normalize: bool  # the model's distance: unit-norm embeddings (cosine) when True
    fingerprint: str  # the checkpoint's fingerprint (checkpoint_fingerprint)
    mean: float = MNIST_MEAN  # the input normalisation the model was trained with
    std: float = MNIST_STD
    ckpt_path: str = ""  # the checkpoint that embedded the gallery, as given when building
    reject_threshold: float = math.inf  # the model's rejection threshold when building (inf: none)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.embeddings.dim() != 2 or self.embeddings.dtype != torch.float32 or len(self.sources) != n:
            raise ValueError(
                f"GalleryIndex: embeddings {tuple(self.embeddings.shape)} {self.embeddings.dtype}, "
                f"{n} labels, {len(self.sources)} sources: expected (N, D) float32 and N of each."
            )
        if self.embeddings.shape[0] != n or n == 0:
            raise ValueError(f"GalleryIndex: {self.embeddings.shape[0]} embeddings for {n} labels.")

    @cached_property
    def classes(self) -> list[str]:
        """The distinct labels, sorted (digits as numbers when all are digits); computed once."""
        return sorted(set(self.labels), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))

    @cached_property
    def label_ids(self) -> Tensor:
        """(N,) int64: the position of each item's label in `classes`; computed once."""
        position = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([position[s] for s in self.labels], dtype=torch.long)


@dataclass(frozen=True)
class Match:
    label: str  # the vote, or "unknown" (past the rejection threshold, or without one the pair threshold)
    distance: float  # of the answer (knn: the nearest item of the voted label; article: the mean)
    neighbours: list[tuple[str, float, str]] = field(default_factory=list)  # (label, distance, source)
    score: float = math.nan  # the rejection score (SiameseModel.reject_scores); NaN: not scored
