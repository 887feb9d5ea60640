"""Open-set recognition: telling test digits of the known classes from digits of no known class.

The protocol of Neal et al. (2018), as ARPL (Chen et al. 2021) and Vaze et al. (2022) run it on
MNIST: a model trained on 6 known digits is tested on all ten; the figures are the AUROC of known
against unknown test images, the closed-set accuracy on the known ones, and the share of unknowns
accepted where 95% of the knowns are (FPR at 95% TPR). A query's rejection score is its mean distance
to its k nearest gallery embeddings, the gallery holding labelled training images of the known
digits only: the further, the more likely unknown.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from siamese_lit.evaluation.classification import nearest
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import CheckpointError

#: the share of known images accepted at which the FPR of unknowns is read
TPR = 0.95


def open_set(neighbour_distances: Tensor, knn_predictions: Tensor, labels: Tensor, known: Tensor) -> dict:
    """The open-set figures of queries with true `labels`, given the distances (N, k) of their k
    nearest gallery embeddings and the label those neighbours voted for (N,); `known` (N,) marks the
    queries of a known digit (the others are the unknowns, and there must be some of each)."""
    score = neighbour_distances.mean(1)  # of "unknown"
    unknown = ~known
    accept_below = torch.quantile(score[known].double(), TPR)
    closed = knn_predictions[known] == labels[known]
    return {
        "openset_auroc": unknown_auroc(score[known], score[unknown]),
        "openset_fpr95": float((score[unknown].double() <= accept_below).float().mean()),
        "closed_acc": float(closed.float().mean()),
    }


def unknown_auroc(known: Tensor, unknown: Tensor) -> float:
    """The AUROC of a score of "unknown" (>= 0, higher: more likely unknown) telling the `unknown`
    scores from the `known` ones."""
    from torchmetrics.functional.classification import binary_auroc  # not on the inference road

    score = torch.cat([known, unknown]).double()
    target = torch.cat([torch.zeros(len(known)), torch.ones(len(unknown))]).long().to(score.device)
    return float(
        binary_auroc(score / score.max().clamp_min(1e-12), target)
    )  # in [0, 1], as torchmetrics takes it


#: The rejection score: the mean distance of a query to its REJECT_K nearest reference embeddings.
REJECT_K = 5
#: The share of known validation digits the calibrated rejection threshold accepts.
ACCEPTED = 0.995
#: The most reference (or outlier) embeddings a checkpoint may hold (a gallery: data.gallery_size).
MAX_REFERENCES = 100_000
#: The smallest distance to the outliers a score divides by (a query on an outlier: huge, rejected).
NEAR = 1e-6


def rejection_scores(
    queries: Tensor, references: Tensor, distance: Distance, outliers: Tensor | None = None, k: int = REJECT_K
) -> Tensor:
    """(N,) the score of "unknown" of each query: its mean distance to its k nearest `references`
    (known digits), divided, when there are `outliers` (non-digits trained on), by its mean distance
    to its k nearest outliers. Far from every digit, or nearer a non-digit than a digit: unknown."""
    score = nearest(queries, references.to(queries.device), k, distance)[0].mean(1)
    if outliers is None or not len(outliers):
        return score
    return score / nearest(queries, outliers.to(queries.device), k, distance)[0].mean(1).clamp_min(NEAR)


class Rejection(nn.Module):
    """What says "unknown": a query whose rejection score (`rejection_scores` against `references`,
    labelled training digits embedded at the validation that chose the checkpoint, and `outliers`,
    training non-digits embedded with them) is above `threshold`, the score that accepts ACCEPTED of
    the known validation digits. All are buffers, so the checkpoint carries them and every command,
    the index, the ONNX graph and the page use the same. The pair threshold stays for same/different
    verdicts.

    `references` is (0, D) and `threshold` NaN until a validation calibrates them ("never
    calibrated": nothing is rejected); `outliers` is (0, D) for a model trained on digits only (its
    score is then the distance to the digits alone)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("references", torch.zeros(0, dim))
        self.register_buffer("outliers", torch.zeros(0, dim))
        self.register_buffer("threshold", torch.tensor(float("nan")))

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.threshold)) and len(self.references) > 0

    @property
    def rule(self) -> str:
        """The score in words, for the commands and reports that say `unknown`."""
        digits = f"mean distance to the {REJECT_K} nearest of {len(self.references)} reference digits"
        if not len(self.outliers):
            return digits
        return f"{digits}, over that to the {REJECT_K} nearest of {len(self.outliers)} training non-digits"

    def scores(self, embeddings: Tensor, distance: Distance) -> Tensor:
        """(N,) rejection scores of `embeddings`; NaN when never calibrated."""
        if not len(self.references):
            return torch.full((len(embeddings),), float("nan"), device=embeddings.device)
        return rejection_scores(embeddings, self.references, distance, self.outliers)

    @torch.no_grad()
    def calibrate(
        self, known: Tensor, references: Tensor, distance: Distance, outliers: Tensor | None = None
    ) -> float:
        """Keep `references` (and `outliers`, none when None) and set the threshold accepting
        ACCEPTED of the `known` embeddings (validation digits, none of them a reference); returns it."""
        self.references = references.detach().float().clone()
        self.outliers = (
            outliers.detach().float().clone()
            if outliers is not None
            else self.references.new_zeros(0, self.references.shape[1])
        )
        scores = self.scores(known, distance).double()
        self.threshold.fill_(float(torch.quantile(scores, ACCEPTED)))
        return float(self.threshold)

    def fit_state(self, state_dict: dict[str, Any], prefix: str, where: str) -> None:
        """Before `state_dict` is loaded: take the checkpoint's number of references and outliers
        (bounded), and give a checkpoint saved before rejection existed this module's "never
        calibrated" state (and one saved before outliers existed, none)."""
        if state_dict.get(f"{prefix}references") is None:
            state_dict[f"{prefix}references"] = self.references.clone()
            state_dict.setdefault(f"{prefix}threshold", self.threshold.clone())
        state_dict.setdefault(f"{prefix}outliers", self.outliers.new_zeros(0, self.outliers.shape[1]))
        for name in ("references", "outliers"):
            key = f"{prefix}{name}"
            saved = state_dict[key]
            if isinstance(saved, Tensor) and saved.dim() == 2:
                if saved.shape[0] > MAX_REFERENCES:
                    raise CheckpointError(
                        f"{where}: {key} holds {saved.shape[0]} {name[:-1]} embeddings, more than "
                        f"{MAX_REFERENCES} (an edited checkpoint)."
                    )
                mine = getattr(self, name)
                setattr(self, name, mine.new_zeros(saved.shape[0], mine.shape[1]))
