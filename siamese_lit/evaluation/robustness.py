"""The robustness suite scored: a model's accuracy on the test digits under every corruption.

Each corrupted test set (siamese_lit.evaluation.corruptions) is embedded once and classified
against the clean gallery, by k-NN and by prototypes (`score_embeddings`), and, when a classifier is
given, by that classifier. The means are reported over all corruptions and apart over the kinds the
`robust` training augmentation also applies (`trained`) and the kinds it never applies
(`held_out`): robustness to damage never trained on is the real test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean
from typing import Any

from torch import Tensor

from siamese_lit.evaluation.corruptions import CORRUPTIONS, corrupt
from siamese_lit.evaluation.scoring import score_embeddings
from siamese_lit.objectives.distance import Distance
from siamese_lit.utils.errors import check

#: uint8 (N, 28, 28) test digits -> what is scored: embeddings (N, D), or a classifier's logits (N, C).
Forward = Callable[[Tensor], Tensor]


def corruption_names(names: Sequence[str] | None) -> list[str]:
    """The corruptions a `robustness.corruptions` setting names (None: all of them), checked, so that
    a typo stops the evaluation before any work."""
    names = list(CORRUPTIONS) if names is None else list(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    check(not unknown, f"robustness.corruptions: unknown {unknown}; valid: {', '.join(CORRUPTIONS)}.")
    return names


def robustness(
    images: Tensor,
    labels: Tensor,
    embed: Forward,
    gallery: tuple[Tensor, Tensor],
    clean: dict[str, float],
    *,
    distance: Distance,
    knn_k: int = 5,
    names: Sequence[str] | None = None,
    seed: int = 0,
    classify: Forward | None = None,
) -> dict[str, Any]:
    """Per corruption: `knn_acc`, `prototype_acc` and, with `classify`, `classifier_acc`, next to the
    `clean` row the caller scored already (the clean test images are not embedded again); `means`
    over all corruptions, the `trained` and the `held_out` kinds; the `worst` corruption of each
    figure. `names` None: every corruption of the suite."""
    names = corruption_names(names)
    rows: dict[str, dict[str, float]] = {"clean": dict(clean)}
    for name in names:
        x = corrupt(images, name, seed)
        scores = score_embeddings(embed(x), labels, distance=distance, gallery=gallery, knn_k=knn_k)
        rows[name] = {k: scores.metrics[k] for k in ("knn_acc", "prototype_acc")}
        if classify is not None:
            rows[name]["classifier_acc"] = float((classify(x).argmax(1) == labels).float().mean())
    groups = {
        "all": names,
        "trained": [n for n in names if CORRUPTIONS[n].trained],
        "held_out": [n for n in names if not CORRUPTIONS[n].trained],
    }
    figures = list(rows["clean"])
    means = {
        group: {f: fmean(rows[n][f] for n in members) for f in figures}
        for group, members in groups.items()
        if members
    }
    worst = {f: min(((n, rows[n][f]) for n in names), key=lambda r: r[1]) for f in figures} if names else {}
    return {
        "seed": seed,
        "corruptions": rows,
        "kinds": {
            n: {"trained": CORRUPTIONS[n].trained, "description": CORRUPTIONS[n].description} for n in names
        },
        "means": means,
        "worst": {f: {"corruption": n, "value": v} for f, (n, v) in worst.items()},
    }
