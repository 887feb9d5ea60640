"""Verification figures of pair distances, and the one threshold search of the project.

Distances are the score of "dissimilar" (label 1, see siamese_lit.data.sampler): a pair is called
dissimilar when its distance is above the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_eer

from siamese_lit.data.sampler import DISSIMILAR, SIMILAR


def best_cut(score: Tensor, right_below: Tensor, right_above: Tensor, prefer_high: bool = False) -> float:
    """The threshold on `score` that gets the most items right, over every cut point at once.

    An item at or below the threshold is right when `right_below`, one above it when `right_above`
    (bool, per item). Sorted by score, cutting after the i first gets cumsum(right_below)[i] +
    (the rest of right_above) right. Ties between cuts go to the lowest threshold, or with
    `prefer_high` to the highest. The threshold lies midway between the scores around the cut; past
    every finite score when nothing finite is to be called "above" (infinite scores stay above).
    """
    d, order = torch.sort(score.double())
    zero = torch.zeros(1, dtype=torch.long, device=d.device)
    below = torch.cat([zero, torch.cumsum(right_below[order].long(), 0)])
    above = torch.cat([zero, torch.cumsum(right_above[order].long(), 0)])
    right = below + above[-1] - above
    i = len(right) - 1 - int(torch.argmax(right.flip(0))) if prefer_high else int(torch.argmax(right))
    finite = d[torch.isfinite(d)]
    if i == len(d) or not torch.isfinite(d[i]):
        return float(finite.max()) + 1e-6 if len(finite) else float("inf")
    return float((d[i - 1] + d[i]) / 2) if i > 0 else float(d[0]) - 1e-6


def best_threshold(distance: Tensor, target: Tensor) -> float:
    """The distance threshold with the highest pair accuracy."""
    return best_cut(distance, target == SIMILAR, target == DISSIMILAR)


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
