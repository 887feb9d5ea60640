"""The Siamese model as classifier, corrector and search engine, on embeddings computed once.

Everything here takes embeddings (and labels) already on the evaluation device and works with
batched tensor ops: the article's protocol (k references of each digit per query), prototype and
k-NN classification against a gallery, the correction of a classifier, and retrieval figures.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

from siamese_lit.data.pairs import PairSampler
from siamese_lit.evaluation.metrics import knn_predict
from siamese_lit.utils.errors import check

#: Test images the article shows misread by its LSTM classifier and answered right by the Siamese model.
ARTICLE_INDICES = (3762, 3767, 3941)


def sample_references(labels: Tensor, k: int, g: torch.Generator) -> Tensor:
    """(N, C, k) indices into `labels`: for each image, k distinct images of each class, never itself.

    Vectorised Floyd sampling (k rounds of tensor ops over all (image, class) cells at once): round
    j draws t uniform in [0, n - k + j] and keeps t unless already drawn, then takes n - k + j, which
    gives k distinct positions uniformly. An image's own class has one candidate fewer (n - 1), and
    positions at or past its own are shifted by one, so it is never its own reference.
    """
    sampler = PairSampler(labels.cpu())
    counts, offsets = sampler.counts, sampler.offsets
    check(k >= 1, f"protocol.k must be >= 1, got {k}.")
    check(
        k < int(counts.min()),
        f"protocol.k={k}: every digit needs more than k images, the rarest has {int(counts.min())}.",
    )
    where = torch.empty_like(sampler.table)
    where[sampler.table] = torch.arange(len(sampler.table))
    own = torch.searchsorted(offsets, where, right=True) - 1  # class position of each image
    local = where - offsets[own]  # its position within its class
    n_classes = len(sampler.classes)
    is_own = F.one_hot(own, n_classes).bool()  # (N, C)
    n = counts.expand(len(labels), -1) - is_own.long()
    drawn = torch.empty(*n.shape, k, dtype=torch.long)
    for j in range(k):
        top = n - k + j
        t = PairSampler._uniform(top + 1, g)
        taken = (drawn[..., :j] == t.unsqueeze(-1)).any(-1)
        drawn[..., j] = torch.where(taken, top, t)
    drawn += (is_own.unsqueeze(-1) & (drawn >= local[:, None, None])).long()
    return sampler.table[offsets[None, :, None] + drawn].to(labels.device)


def reference_distances(embeddings: Tensor, refs: Tensor, chunk: int = 2048) -> Tensor:
    """(N, C): mean distance of each image to its k references of each class (refs from sample_references)."""
    out = []
    for e, r in zip(embeddings.split(chunk), refs.split(chunk), strict=True):
        out.append((embeddings[r] - e[:, None, None, :]).norm(dim=-1).mean(-1))
    return torch.cat(out)


def answer(mean_distance: Tensor, classes: Tensor, threshold: float) -> Tensor:
    """The closest class of each row, or -1 ("unknown") when even that one is farther than `threshold`."""
    best, pos = mean_distance.min(1)
    return torch.where(best <= threshold, classes[pos], torch.full_like(pos, -1))


def answer_fractions(pred: Tensor, labels: Tensor) -> dict[str, float | None]:
    """Fractions correct / unknown / wrong (they sum to 1), and the accuracy on the answered images
    (None when every answer is "unknown")."""
    known = pred >= 0
    correct = float((pred == labels).float().mean())
    unknown = float((~known).float().mean())
    answered = float((pred[known] == labels[known]).float().mean()) if bool(known.any()) else None
    return {
        "correct": correct,
        "unknown": unknown,
        "wrong": 1.0 - correct - unknown,
        "answered_accuracy": answered,
    }


def classification(pred: Tensor, labels: Tensor, classes: Tensor) -> dict:
    """Accuracy, accuracy per digit and confusion matrix (rows: true digit, columns: answer)."""
    num = int(classes.max()) + 1
    confusion = multiclass_confusion_matrix(pred, labels, num)[classes][:, classes]
    per_digit = confusion.diagonal() / confusion.sum(1).clamp_min(1)
    return {
        "accuracy": float((pred == labels).float().mean()),
        "per_digit": {str(int(c)): float(a) for c, a in zip(classes, per_digit, strict=True)},
        "confusion": confusion.tolist(),
    }


def prototypes(gallery: Tensor, gallery_labels: Tensor, classes: Tensor) -> Tensor:
    """(C, D): the mean gallery embedding of each class."""
    onehot = (gallery_labels[:, None] == classes[None, :]).float()
    return (onehot.T @ gallery) / onehot.sum(0)[:, None].clamp_min(1)


def gallery_classification(
    queries: Tensor, labels: Tensor, gallery: Tensor, gallery_labels: Tensor, classes: Tensor, knn_k: int
) -> dict[str, dict]:
    """Prototype (nearest class mean) and k-NN classification of the queries against a labelled gallery."""
    proto_pred = classes[torch.cdist(queries, prototypes(gallery, gallery_labels, classes)).argmin(1)]
    knn_pred = knn_predict(queries, gallery, gallery_labels, knn_k)
    return {
        "prototype": classification(proto_pred, labels, classes),
        "knn": classification(knn_pred, labels, classes),
    }


def checked(logits: Tensor, mean_distance: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(classifier answers, Siamese check of each, Siamese answers).

    The check is the image's mean distance to the references of the predicted digit (a column of
    `mean_distance`); a digit outside the evaluated ones gets an infinite distance. The Siamese
    answer is the digit with the closest references.
    """
    pred = logits.argmax(1)
    col = torch.searchsorted(classes, pred).clamp_max(len(classes) - 1)
    known = classes[col] == pred
    check_distance = torch.where(known, mean_distance.gather(1, col[:, None]).squeeze(1), torch.inf)
    return pred, check_distance, classes[mean_distance.argmin(1)]


def correction_threshold(logits: Tensor, labels: Tensor, mean_distance: Tensor, classes: Tensor) -> float:
    """The check threshold with the best combined accuracy (on validation images), over all cut points.

    Sorted by check distance, cutting after the i first keeps their classifier answers and overrules
    the rest: correct(i) = classifier hits among the first i + Siamese hits among the others. Ties go
    to the highest threshold (fewest overrules); when overruling never helps, that is "never".
    """
    pred, check_distance, siamese = checked(logits, mean_distance, classes)
    d, order = check_distance.double().sort()
    zero = torch.zeros(1, dtype=torch.long, device=d.device)
    kept = torch.cat([zero, torch.cumsum(pred[order] == labels[order], 0)])
    overruled = torch.cat([zero, torch.cumsum(siamese[order] == labels[order], 0)])
    correct = kept + overruled[-1] - overruled
    i = len(correct) - 1 - int(torch.argmax(correct.flip(0)))  # the last of the best cuts
    finite = d[torch.isfinite(d)]
    if i == len(d) or not torch.isfinite(d[i]):
        return float(finite.max() + 1) if len(finite) else float("inf")  # overrule no finite check
    return float((d[i - 1] + d[i]) / 2) if i > 0 else float(d[0] - 1)


def correction(
    logits: Tensor, labels: Tensor, mean_distance: Tensor, classes: Tensor, threshold: float
) -> tuple[dict, Tensor, Tensor, Tensor]:
    """The classifier checked by the Siamese model: (figures, classifier, Siamese and combined answers).

    A prediction whose check (see `checked`) is above `threshold` is replaced by the Siamese answer.
    fixed - broken = N * (combined accuracy - classifier accuracy).
    """
    pred, check_distance, siamese = checked(logits, mean_distance, classes)
    overruled = check_distance > threshold
    combined = torch.where(overruled, siamese, pred)
    fixed = (pred != labels) & (combined == labels)
    broken = (pred == labels) & (combined != labels)
    figures = {
        "threshold": threshold,
        "classifier_accuracy": float((pred == labels).float().mean()),
        "combined_accuracy": float((combined == labels).float().mean()),
        "classifier_errors": int((pred != labels).sum()),
        "overruled": int(overruled.sum()),
        "fixed": int(fixed.sum()),
        "broken": int(broken.sum()),
        "fixed_indices": torch.nonzero(fixed).squeeze(1).tolist(),
        "broken_indices": torch.nonzero(broken).squeeze(1).tolist(),
    }
    return figures, pred, siamese, combined


def article_cases(labels: Tensor, pred: Tensor, siamese: Tensor, combined: Tensor) -> dict[str, dict]:
    """The article's three test images: label, classifier and Siamese answers, error / fixed flags."""
    out = {}
    for i in ARTICLE_INDICES:
        if i >= len(labels):
            continue
        y = int(labels[i])
        out[str(i)] = {
            "label": y,
            "classifier": int(pred[i]),
            "siamese": int(siamese[i]),
            "combined": int(combined[i]),
            "classifier_error": int(pred[i]) != y,
            "fixed": int(pred[i]) != y and int(combined[i]) == y,
        }
    return out


def retrieval(embeddings: Tensor, labels: Tensor, ks: list[int], chunk: int = 1000) -> dict[str, float]:
    """precision@k for each k, mAP, and the metric-learning figures of Musgrave et al. (2020):
    R-precision and MAP@R (R: the number of other images of the query's digit), every image
    querying all the others (relevant: same label).

    Batched by hand: torchmetrics' RetrievalMAP groups a flat (query, document) list with a Python
    loop per query, far slower for 10k x 10k pairs (tests check both agree on some queries). The
    relevance flag rides in the lowest bit of each distance's float32 bits (the int order of
    non-negative floats is their order), so one value sort per row gives the ranked relevances.
    Those sorts are most of the time (10k rows of 10k keys): see `sort_rows`.
    """
    n = len(labels)
    ks = [min(k, n - 1) for k in ks]
    precision = torch.zeros(len(ks), dtype=torch.float64, device=embeddings.device)
    sums = torch.zeros(3, dtype=torch.float64, device=embeddings.device)  # AP, R-precision, MAP@R
    ranks = torch.arange(1, n, device=embeddings.device, dtype=torch.float32)
    _, digit, counts = labels.unique(return_inverse=True, return_counts=True)
    relevant = counts[digit] - 1  # R of each query
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=embeddings.device)
        d = torch.cdist(embeddings[rows], embeddings).abs()  # abs: no -0.0, whose bits sort first
        d[torch.arange(len(rows)), rows] = torch.inf  # the query itself sorts last, then is dropped
        rel = (labels[None, :] == labels[rows, None]).int()
        key = (d.view(torch.int32) & ~1) | rel
        ranked = (sort_rows(key)[:, :-1] & 1).float()  # (Q, n - 1) relevance in rank order
        for i, k in enumerate(ks):
            precision[i] += ranked[:, :k].mean(1).sum()
        hit_precision = ranked.cumsum(1) / ranks * ranked  # P(i) at each relevant rank i
        r = relevant[rows].clamp_min(1).float()
        within_r = ranks[None, :] <= r[:, None]
        sums[0] += (hit_precision.sum(1) / ranked.sum(1).clamp_min(1)).sum()
        sums[1] += ((ranked * within_r).sum(1) / r).sum()
        sums[2] += ((hit_precision * within_r).sum(1) / r).sum()
    out = {f"precision@{k}": float(p / n) for k, p in zip(ks, precision, strict=True)}
    out |= {name: float(v / n) for name, v in zip(("mAP", "r_precision", "map_at_r"), sums, strict=True)}
    return out


def sort_rows(keys: Tensor) -> Tensor:
    """Each row of an int32 tensor sorted. On the CPU through NumPy (>= 1.25), whose sort is
    vectorised (x86-simd-sort, AVX-512/AVX2): 7.5x torch's CPU sort on the 1000 x 10000 keys of a
    retrieval chunk, measured on this project's 2-core CI machine. Elsewhere torch's own sort."""
    if keys.device.type != "cpu":
        return keys.sort(1).values
    return torch.from_numpy(np.sort(keys.numpy(), axis=1))


def neighbours(embeddings: Tensor, queries: Tensor, n: int) -> Tensor:
    """(Q, n): the n nearest other images of each query image (indices into `embeddings`)."""
    d = torch.cdist(embeddings[queries], embeddings)
    d[torch.arange(len(queries)), queries] = torch.inf  # not the query itself, even among exact duplicates
    return d.topk(min(n, len(embeddings) - 1), dim=1, largest=False).indices
