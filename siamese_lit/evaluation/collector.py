"""Embeddings gathered over an evaluation epoch, across processes under DDP."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class EmbeddingCollector(Metric):
    """Gathers (embedding, label, index) rows over an epoch, across processes under DDP."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: Tensor, labels: Tensor, indices: Tensor) -> None:
        self.embeddings.append(embeddings.detach().float())
        self.labels.append(labels)
        self.indices.append(indices)

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """(embeddings, labels, indices) sorted by index."""
        cat = [
            torch.cat(s) if isinstance(s, list) else s for s in (self.embeddings, self.labels, self.indices)
        ]
        order = torch.argsort(cat[2])
        return cat[0][order], cat[1][order], cat[2][order]
