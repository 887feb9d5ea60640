"""LitSiamese: one shared encoder applied to both images of a pair (or the three of a triplet)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from siamese_lit.data.pairs import DISSIMILAR, SIMILAR
from siamese_lit.errors import ConfigError, check
from siamese_lit.evaluation.metrics import (
    EmbeddingCollector,
    knn_predict,
    oneshot_accuracy,
    pair_distances,
    verification,
)
from siamese_lit.models.base import LitBase, Spec, build
from siamese_lit.utils import plain


@dataclass(frozen=True)
class Evaluation:
    """What the last validation or test computed, kept for the TensorBoard callbacks to draw."""

    stage: str
    embeddings: Tensor  # (N, D): the split's images embedded in this evaluation, in index order
    labels: Tensor
    pairs: tuple[Tensor, Tensor]  # the scored fixed pairs, as indices into datamodule.splits[stage]
    target: Tensor  # 0 similar, 1 dissimilar
    distance: Tensor
    threshold: float


class LitSiamese(LitBase):
    """Siamese network trained with the contrastive loss (pairs) or the triplet loss (triplets).

    Evaluation embeds every image of the split once, plus a gallery of labelled training images,
    then scores the data module's fixed pairs: `auroc`, `eer`, `pair_acc` (at the threshold chosen
    on validation, kept in the `threshold` buffer and applied unchanged on test), `d_similar`,
    `d_dissimilar`, `knn_acc` (k nearest gallery embeddings) and `oneshot_acc`. Label convention:
    y = 0 similar, y = 1 dissimilar (siamese_lit.data.pairs).

    Args:
        net: the shared encoder (its `out_dim` is the embedding size) or its Hydra config.
        loss: ContrastiveLoss or torch.nn.TripletMarginLoss, or its Hydra config.
        optimizer, scheduler: as in LitBase.
        embedding_dim: the embedding size, checked against the encoder's `out_dim`.
        knn_k: neighbours voting in `knn_acc`.
        oneshot_episodes: seeded episodes averaged in `oneshot_acc` (test only).
    """

    def __init__(
        self,
        net: Spec,
        loss: Spec,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        embedding_dim: int | None = None,
        knn_k: int = 5,
        oneshot_episodes: int = 100,
    ) -> None:
        super().__init__()
        net, loss, optimizer, scheduler = plain(net), plain(loss), plain(optimizer), plain(scheduler)
        check(
            embedding_dim is None or embedding_dim >= 1,
            f"model.embedding_dim must be >= 1, got {embedding_dim}.",
        )
        check(knn_k >= 1, f"model.knn_k must be >= 1, got {knn_k}.")
        check(oneshot_episodes >= 1, f"model.oneshot_episodes must be >= 1, got {oneshot_episodes}.")
        ignore = [k for k, v in (("net", net), ("loss", loss)) if isinstance(v, nn.Module)]
        self.save_hyperparameters(logger=False, ignore=ignore or None)
        # checked before building: torch's TripletMarginLoss would raise its own ValueError (a traceback)
        margin = loss.get("margin", 1.0) if isinstance(loss, Mapping) else getattr(loss, "margin", 1.0)
        check(margin > 0, f"model.loss.margin must be > 0, got {margin}.")
        self.net = build(net)
        self.loss_fn = build(loss, "model.loss")
        out_dim = getattr(self.net, "out_dim", embedding_dim)
        check(
            embedding_dim is None or out_dim == embedding_dim,
            f"model.embedding_dim={embedding_dim} but the encoder outputs {out_dim}: "
            "set model.net.out_dim too.",
        )
        self.triplet = isinstance(self.loss_fn, nn.TripletMarginLoss)
        self.train_metrics.update({name: MeanMetric() for name in ("d_similar", "d_dissimilar")})
        # the pair-accuracy threshold chosen on validation; saved with the checkpoint
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.collectors = nn.ModuleDict({name: EmbeddingCollector() for name in ("images", "gallery")})
        self.last_eval: Evaluation | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings of a batch of normalised images, in float32 also under mixed precision (the
        distances, thresholds and neighbours computed from them need more than bfloat16's 8 bits)."""
        return self.net(x).float()

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 2048) -> Tensor:
        """Embeddings of many normalised images, in batches (evaluation outside the Trainer)."""
        return torch.cat([self(chunk) for chunk in images.split(batch_size)])

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        mode = getattr(dm, "mode", None)
        if mode is not None and (mode == "triplets") != self.triplet:
            raise ConfigError(
                f"model.loss is {type(self.loss_fn).__name__} but data.mode is {mode!r}: use data.mode="
                f"{'triplets' if self.triplet else 'pairs'} (or +experiment=siamese_triplet)."
            )

    def _loss(self, embeddings: tuple[Tensor, ...], target: Tensor | None = None) -> Tensor:
        if self.triplet:
            return self.loss_fn(*embeddings)
        return self.loss_fn(embeddings[0], embeddings[1], target)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        images = batch[:3] if self.triplet else batch[:2]
        emb = self(torch.cat(images)).chunk(len(images))  # one forward through the shared encoder
        target = None if self.triplet else batch[2]
        loss = self._loss(emb, target)
        with torch.no_grad():
            d_pos = F.pairwise_distance(emb[0], emb[1])
            if self.triplet:
                d_sim, d_dis = d_pos, F.pairwise_distance(emb[0], emb[2])
            else:
                d_sim, d_dis = d_pos[target == SIMILAR], d_pos[target == DISSIMILAR]
        self.log_train(loss, d_similar=d_sim, d_dissimilar=d_dis)  # distances: epoch means over pairs
        return loss

    def _collect(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> None:
        x, y, idx = batch
        self.collectors["images" if dataloader_idx == 0 else "gallery"].update(self(x), y, idx)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def _evaluate(self, stage: str) -> None:
        (emb, labels, idx), (g_emb, g_labels, _) = (c.compute() for c in self.collectors.values())
        for c in self.collectors.values():
            c.reset()
        self.last_eval = None
        if self.trainer.sanity_checking:
            return
        dm = self.trainer.datamodule
        # full-size tables: with limit_*_batches only part of the split was embedded
        n = len(dm.splits[stage][1])
        table = torch.full((n, emb.shape[1]), float("nan"), device=emb.device)
        table[idx] = emb
        present = torch.zeros(n, dtype=torch.bool, device=emb.device)
        present[idx] = True
        a, b, y = (t.to(emb.device) for t in dm.eval_pairs(stage))
        keep = present[a] & present[b]
        if keep.sum() < 2 or y[keep].unique().numel() < 2:
            return
        a, b, y = a[keep], b[keep], y[keep]
        distance = pair_distances(table, a, b)
        threshold = None if stage == "val" else float(self.threshold)
        if threshold is not None and threshold != threshold:  # NaN: no validation ran
            threshold = None
        metrics = verification(distance, y, threshold)
        if stage == "val":
            self.threshold.fill_(metrics["threshold"])
        self.last_eval = Evaluation(stage, emb, labels, (a, b), y, distance, metrics["threshold"])
        tuples = [t.to(emb.device) for t in dm.eval_tuples(stage)]
        images = tuples[:3] if self.triplet else tuples[:2]
        ok = torch.stack([present[t] for t in images]).all(0)
        target = None if self.triplet else tuples[2][ok]
        metrics["loss"] = float(self._loss(tuple(table[t[ok]] for t in images), target))
        if len(g_emb):
            pred = knn_predict(emb, g_emb, g_labels, self.hparams.knn_k)
            metrics["knn_acc"] = float((pred == labels).float().mean())
        if stage == "test" and labels.unique().numel() >= 2:
            metrics["oneshot_acc"] = oneshot_accuracy(emb, labels, self.hparams.oneshot_episodes, seed=0)
        shown = ("auroc", "knn_acc")
        for prog_bar in (False, True):
            logged = {f"{stage}/{k}": v for k, v in metrics.items() if (k in shown) == prog_bar}
            self.log_dict(logged, prog_bar=prog_bar, sync_dist=True)
