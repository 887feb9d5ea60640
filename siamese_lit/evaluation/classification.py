"""Embeddings classified against a labelled gallery: k nearest neighbours and prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from siamese_lit.objectives.distance import Distance


def nearest(
    queries: Tensor, gallery: Tensor, k: int, distance: Distance, chunk: int = 4096
) -> tuple[Tensor, Tensor]:
    """(distances, indices) of the k nearest gallery rows of each query, in query chunks."""
    k = min(k, len(gallery))
    out = [distance.matrix(q, gallery).topk(k, dim=1, largest=False) for q in queries.split(chunk)]
    return torch.cat([o.values for o in out]), torch.cat([o.indices for o in out])


def vote(neighbour_labels: Tensor) -> Tensor:
    """The majority label of each row of (N, k) labels ordered nearest first; ties go to the nearer."""
    num_classes = int(neighbour_labels.max()) + 1
    rank_bonus = 1e-3 / torch.arange(1, neighbour_labels.shape[1] + 1, device=neighbour_labels.device)
    votes = F.one_hot(neighbour_labels, num_classes).float() * (1 + rank_bonus)[None, :, None]
    return votes.sum(1).argmax(1)


def knn_predict(
    queries: Tensor, gallery: Tensor, gallery_labels: Tensor, k: int, distance: Distance
) -> Tensor:
    """Majority label of the k nearest gallery embeddings."""
    _, idx = nearest(queries, gallery, k, distance)
    return vote(gallery_labels[idx])


def prototypes(gallery: Tensor, gallery_labels: Tensor, classes: Tensor) -> Tensor:
    """(C, D): the mean gallery embedding of each class."""
    onehot = (gallery_labels[:, None] == classes[None, :]).float()
    return (onehot.T @ gallery) / onehot.sum(0)[:, None].clamp_min(1)


def prototype_predict(queries: Tensor, gallery: Tensor, gallery_labels: Tensor, distance: Distance) -> Tensor:
    """The class whose mean gallery embedding is nearest (Snell et al.'s prototypes)."""
    classes = gallery_labels.unique()
    return classes[distance.matrix(queries, prototypes(gallery, gallery_labels, classes)).argmin(1)]


def classification(pred: Tensor, labels: Tensor, classes: Tensor) -> dict:
    """Accuracy, accuracy per digit and confusion matrix (rows: true digit, columns: answer)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix  # evaluate's only

    num = int(max(classes.max(), pred.max())) + 1
    confusion = multiclass_confusion_matrix(pred, labels, num)[classes][:, classes]
    per_digit = confusion.diagonal() / confusion.sum(1).clamp_min(1)
    return {
        "accuracy": float((pred == labels).float().mean()),
        "per_digit": {str(int(c)): float(a) for c, a in zip(classes, per_digit, strict=True)},
        "confusion": confusion.tolist(),
    }
