"""Open-set recognition: telling test digits of the known classes from digits of no known class.

The protocol of Neal et al. (2018), as ARPL (Chen et al. 2021) and Vaze et al. (2022) run it on
MNIST: a model trained on 6 known digits is tested on all ten; the figures are the AUROC of known
against unknown test images, the closed-set accuracy on the known ones, and the share of unknowns
accepted where 95% of the knowns are (FPR at 95% TPR). A query's rejection score is its mean distance
to its k nearest gallery embeddings, the gallery holding labelled training images of the known
digits only: the further, the more likely unknown.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

#: the share of known images accepted at which the FPR of unknowns is read
TPR = 0.95


def open_set(neighbour_distances: Tensor, knn_predictions: Tensor, labels: Tensor, known: Tensor) -> dict:
    """The open-set figures of queries with true `labels`, given the distances (N, k) of their k
    nearest gallery embeddings and the label those neighbours voted for (N,); `known` (N,) marks the
    queries of a known digit (the others are the unknowns, and there must be some of each)."""
    score = neighbour_distances.mean(1)  # of "unknown"
    unknown = ~known
    scaled = score / score.max().clamp_min(1e-12)  # in [0, 1], so torchmetrics takes it as is
    accept_below = torch.quantile(score[known].double(), TPR)
    closed = knn_predictions[known] == labels[known]
    return {
        "openset_auroc": float(binary_auroc(scaled, unknown.long())),
        "openset_fpr95": float((score[unknown].double() <= accept_below).float().mean()),
        "closed_acc": float(closed.float().mean()),
    }
