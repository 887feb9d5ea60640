"""Evaluation arithmetic, in-process on made-up data: the correction threshold, the metric-learning
retrieval figures against their definitions, the row sort."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from siamese_lit.evaluation import correction as C
from siamese_lit.evaluation.retrieval import retrieval, sort_rows
from siamese_lit.objectives import Distance


def test_correction_threshold_is_the_best_cut() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=g)
    logits = torch.randn(400, 10, generator=g) + 2.5 * F.one_hot(labels, 10)  # right about 3 times in 4
    distance = torch.rand(400, 10, generator=g) + 0.8 * (1 - F.one_hot(labels, 10))  # mostly right too
    classes = torch.arange(10)
    best = C.correction_threshold(logits, labels, distance, classes)

    def accuracy(t: float) -> float:
        return C.correction(logits, labels, distance, classes, t)[0]["combined_accuracy"]

    _, check_distance, _ = C.checked(logits, distance, classes)
    cuts = [float(t) for t in check_distance] + [float("inf")]  # every distinct choice
    assert accuracy(best) == max(accuracy(t) for t in cuts) > accuracy(float("inf"))


def test_r_precision_and_map_at_r_are_musgraves_definitions() -> None:
    """Against a per-query loop of the definitions (Musgrave et al. 2020, section 3.2): R = the other
    images of the query's digit; R-precision = relevant among the R nearest / R; MAP@R = mean over
    i <= R of P(i) at the relevant ranks i (irrelevant ranks count 0), divided by R."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (60,), generator=g)
    emb = torch.randn(60, 3, generator=g) + labels[:, None].float()  # some structure, many mistakes
    r_precision, map_at_r = [], []
    for q in range(60):
        d = torch.cdist(emb[q : q + 1], emb)[0]
        d[q] = float("inf")
        ranked = (labels[d.argsort()[:-1]] == labels[q]).float()
        r = int((labels == labels[q]).sum()) - 1
        hits = ranked[:r]
        precision_at = hits.cumsum(0) / torch.arange(1, r + 1)
        r_precision.append(float(hits.sum()) / r)
        map_at_r.append(float((precision_at * hits).sum()) / r)
    figures = retrieval(emb, labels, [1], Distance())
    assert figures["r_precision"] == pytest.approx(sum(r_precision) / 60, abs=1e-6)
    assert figures["map_at_r"] == pytest.approx(sum(map_at_r) / 60, abs=1e-6)


def test_sort_rows_sorts_like_torch() -> None:
    keys = torch.randint(0, 2**31 - 1, (7, 5000), dtype=torch.int32)
    assert torch.equal(sort_rows(keys), keys.sort(1).values)
