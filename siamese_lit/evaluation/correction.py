"""The Siamese model as corrector of a classifier: overrule an answer its references do not support.

A classifier's answer is checked by the image's mean distance to the references of that digit
(siamese_lit.evaluation.protocol); past a threshold the Siamese model's own answer replaces it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from siamese_lit.evaluation.verification import best_cut

#: Test images the article shows misread by its LSTM classifier and answered right by the Siamese model.
ARTICLE_INDICES = (3762, 3767, 3941)


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
    """The check threshold with the best combined accuracy (on validation images): at or below it
    the classifier's answer is kept, above it the Siamese answer is taken (`best_cut`). Ties go to
    the highest threshold (fewest overrules); when overruling never helps, that is "never"."""
    pred, check_distance, siamese = checked(logits, mean_distance, classes)
    return best_cut(check_distance, pred == labels, siamese == labels, prefer_high=True)


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
