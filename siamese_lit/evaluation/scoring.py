"""Scoring a set of embeddings: one pure function for every figure a Siamese model is judged by.

`LitSiamese` (validation and test), `evaluate` (the robustness suite, unseen digits) and the bench
call `score_embeddings` with embeddings already computed once; nothing here runs the model. The
embeddings are those the model outputs (siamese_lit.distances: unit vectors under the cosine
distance), compared by their Euclidean distance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from siamese_lit.evaluation.metrics import knn_predict, oneshot_accuracy, pair_distances, verification
from siamese_lit.evaluation.protocols import prototypes, retrieval

Pairs = tuple[Tensor, Tensor, Tensor]


def score_embeddings(
    embeddings: Tensor,
    labels: Tensor,
    *,
    pairs: Pairs | None = None,
    threshold: float | None = None,
    gallery: tuple[Tensor, Tensor] | None = None,
    knn_k: int = 5,
    oneshot_episodes: int = 0,
    with_retrieval: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """The figures of `embeddings` (N, D) with their `labels` (N,), each when its input is given.

    - `pairs` (a, b, y), indices into the embeddings, y = 1 dissimilar: `auroc`, `eer`, `pair_acc`
      at `threshold` (chosen on these pairs when None, returned as `threshold`), `d_similar`,
      `d_dissimilar`;
    - `gallery` (embeddings, labels) of labelled references: `knn_acc` (k = `knn_k`) and
      `prototype_acc` (nearest class mean);
    - `oneshot_episodes` > 0: `oneshot_acc`, N-way one-shot over the digits of `labels`;
    - `with_retrieval`: `p_at_1`, `r_precision`, `map_at_r` (Musgrave et al. 2020), every image
      querying all the others.
    """
    out: dict[str, float] = {}
    if pairs is not None:
        a, b, y = (t.to(embeddings.device) for t in pairs)
        out |= verification(pair_distances(embeddings, a, b), y, threshold)
    if gallery is not None and len(gallery[1]):
        g_emb, g_labels = gallery
        out["knn_acc"] = float((knn_predict(embeddings, g_emb, g_labels, knn_k) == labels).float().mean())
        classes = g_labels.unique()
        nearest_mean = torch.cdist(embeddings, prototypes(g_emb, g_labels, classes)).argmin(1)
        out["prototype_acc"] = float((classes[nearest_mean] == labels).float().mean())
    several = labels.unique().numel() >= 2
    if oneshot_episodes > 0 and several:
        out["oneshot_acc"] = oneshot_accuracy(embeddings, labels, oneshot_episodes, seed=seed)
    if with_retrieval and several:
        figures = retrieval(embeddings, labels, [1])
        out |= {"p_at_1": figures["precision@1"], **{k: figures[k] for k in ("r_precision", "map_at_r")}}
    return out
