"""The one distance a Siamese model is trained and judged with, chosen in config (`model/distance`).

Every figure of the project (pair distances and thresholds, k-NN, prototypes, one-shot, retrieval)
and every objective measures embeddings through this object: `pairwise` for pairs of rows, `matrix`
for all pairs of two sets. `normalize: true` (the `cosine` config) measures unit vectors, on which
the Euclidean distance is a monotone function of the cosine similarity (‖a − b‖² = 2 − 2·cos(a, b)):
every ranking, nearest neighbour and AUROC is then the cosine one, and thresholds stay distances in
[0, 2]. The pytorch-metric-learning losses get `pml()`, the same geometry in that library's terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from pytorch_metric_learning import distances as pml_distances


class Distance(nn.Module):
    """Euclidean distance between embeddings, on unit-normalised embeddings when `normalize`.

    Args:
        normalize: project the embeddings onto the unit sphere (cosine geometry).
    """

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize

    def prepare(self, embeddings: Tensor) -> Tensor:
        """The embeddings the distances are measured on: unit vectors when `normalize`."""
        return F.normalize(embeddings, dim=-1) if self.normalize else embeddings

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """(N,): the distance of each row of `a` to the same row of `b` (as the pair losses measure it)."""
        return F.pairwise_distance(self.prepare(a), self.prepare(b))

    def matrix(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, M): the distance of every row of `a` to every row of `b`."""
        return torch.cdist(self.prepare(a), self.prepare(b))

    def pml(self) -> pml_distances.BaseDistance:
        """The pytorch-metric-learning distance of the same geometry, for its losses and miners
        (imported here: using a trained model needs no pytorch-metric-learning)."""
        from pytorch_metric_learning import distances as pml_distances

        if self.normalize:
            return pml_distances.CosineSimilarity()
        return pml_distances.LpDistance(normalize_embeddings=False, p=2, power=1)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


class Centering(nn.Module):
    """SimpleShot's centring (Wang et al. 2019, "CL2N"): in eval mode the embeddings have `mean`,
    the mean embedding of the labelled training digits, taken off before the distance measures them.

    The mean is fitted at each validation on the gallery's embeddings (LitSiamese) and saved with the
    checkpoint, so every figure, command, index and ONNX graph measures the same centred geometry.
    While training the module is the identity, as BatchNorm uses its running statistics in eval mode
    only: the objective sees the encoder's own embeddings. Digits never seen in training then lie
    around the origin as the seen ones do, and a cosine tells them apart by more than the direction
    every embedding shares.

    Args:
        dim: the embedding size.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))

    def forward(self, embeddings: Tensor) -> Tensor:
        return embeddings if self.training else embeddings - self.mean

    @torch.no_grad()
    def fit(self, embeddings: Tensor) -> None:
        """Take the mean of (N, dim) encoder embeddings (of training digits) as the centre."""
        self.mean.copy_(embeddings.float().mean(0))


def centering(dim: int, enabled: bool) -> nn.Module:
    """The model's centring of `dim`-sized embeddings: a Centering when `enabled`, else the identity
    (no state, so checkpoints saved before centring existed load unchanged)."""
    return Centering(dim) if enabled else nn.Identity()
