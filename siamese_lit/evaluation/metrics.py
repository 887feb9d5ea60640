"""Verification and classification figures computed from embeddings with batched tensor ops.

Distances are the score of "dissimilar" (label 1, see siamese_lit.data.pairs): a pair is called
dissimilar when its distance is above the threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_eer

from siamese_lit.data.pairs import DISSIMILAR, SIMILAR, PairSampler


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


def pair_distances(embeddings: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distance of each (a, b) pair of rows, as the loss computes it."""
    return F.pairwise_distance(embeddings[a], embeddings[b])


def best_threshold(distance: Tensor, target: Tensor) -> float:
    """The distance threshold with the highest pair accuracy (vectorised over all cut points)."""
    d, order = torch.sort(distance.double())
    t = target[order]
    n = len(d)
    zero = torch.zeros(1, dtype=torch.long, device=d.device)
    similar_below = torch.cat([zero, torch.cumsum(t == SIMILAR, 0)])  # cut i: first i called similar
    dissimilar_below = torch.cat([zero, torch.cumsum(t == DISSIMILAR, 0)])
    correct = similar_below + (dissimilar_below[-1] - dissimilar_below)
    i = int(torch.argmax(correct))
    lo = d[i - 1] if i > 0 else d[0] - 1e-6
    hi = d[i] if i < n else d[-1] + 1e-6
    return float((lo + hi) / 2)


def verification(distance: Tensor, target: Tensor, threshold: float | None = None) -> dict[str, float]:
    """AUROC and EER (distance as the score of "dissimilar"), pair accuracy at `threshold` (chosen
    here when None), and the mean distance of similar and of dissimilar pairs."""
    target = target.long()
    if threshold is None:
        threshold = best_threshold(distance, target)
    score = distance / distance.max().clamp_min(1e-12)  # in [0, 1], so torchmetrics takes it as is
    return {
        "auroc": float(binary_auroc(score, target)),
        "eer": float(binary_eer(score, target)),
        "pair_acc": float(((distance > threshold).long() == target).float().mean()),
        "threshold": float(threshold),
        "d_similar": float(distance[target == SIMILAR].mean()),
        "d_dissimilar": float(distance[target == DISSIMILAR].mean()),
    }


def nearest(queries: Tensor, gallery: Tensor, k: int, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """(distances, indices) of the k nearest gallery rows of each query, in query chunks."""
    k = min(k, len(gallery))
    out = [torch.cdist(q, gallery).topk(k, dim=1, largest=False) for q in queries.split(chunk)]
    return torch.cat([o.values for o in out]), torch.cat([o.indices for o in out])


def knn_predict(queries: Tensor, gallery: Tensor, gallery_labels: Tensor, k: int = 5) -> Tensor:
    """Majority label of the k nearest gallery embeddings; ties go to the nearer neighbours."""
    _, idx = nearest(queries, gallery, k)
    labels = gallery_labels[idx]  # (N, k)
    num_classes = int(gallery_labels.max()) + 1
    rank_bonus = 1e-3 / torch.arange(1, idx.shape[1] + 1, device=idx.device)
    votes = F.one_hot(labels, num_classes).float() * (1 + rank_bonus)[None, :, None]
    return votes.sum(1).argmax(1)


def oneshot_accuracy(embeddings: Tensor, labels: Tensor, episodes: int, seed: int) -> float:
    """N-way one-shot accuracy over the classes of `labels`: in each seeded episode, one reference
    image per class; every other image is answered by its nearest reference."""
    sampler = PairSampler(labels)
    refs = sampler.one_per_class(episodes, torch.Generator().manual_seed(seed)).to(labels.device)
    classes = torch.tensor(sampler.classes, device=labels.device)
    correct = total = 0
    for ep in refs:  # (C,) per episode; each is one (N, C) cdist
        pred = classes[torch.cdist(embeddings, embeddings[ep]).argmin(1)]
        query = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        query[ep] = False
        correct += int((pred[query] == labels[query]).sum())
        total += int(query.sum())
    return correct / total
