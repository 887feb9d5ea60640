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
from siamese_lit.distances import Distance
from siamese_lit.evaluation.metrics import EmbeddingCollector
from siamese_lit.evaluation.scoring import score_embeddings
from siamese_lit.losses import ViewLoss
from siamese_lit.models.base import LitBase, Spec, build
from siamese_lit.utils.errors import ConfigError, check
from siamese_lit.utils.specs import plain


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


#: The training batches (data.mode) of the losses that do not take pairs.
MODES: dict[str, type[nn.Module]] = {"triplets": nn.TripletMarginLoss, "views": ViewLoss}


class LitSiamese(LitBase):
    """Siamese network trained with the contrastive loss (pairs), the triplet loss (triplets) or a
    loss on two augmented views of each image (views: SupCon, NT-Xent, ... see losses.ViewLoss).

    Evaluation embeds every image of the split once, plus a gallery of labelled training images,
    and scores them with `score_embeddings` (siamese_lit.evaluation.scoring): on the data module's
    fixed pairs `auroc`, `eer`, `pair_acc` (at the threshold chosen on validation, kept in the
    `threshold` buffer and applied unchanged on test), `d_similar`, `d_dissimilar`; against the
    gallery `knn_acc` and `prototype_acc`; on test also `oneshot_acc` and the retrieval figures
    `p_at_1`, `r_precision`, `map_at_r`. Label convention: y = 0 similar, y = 1 dissimilar
    (siamese_lit.data.pairs).

    Args:
        net: the shared encoder (its `out_dim` is the embedding size) or its Hydra config.
        loss: ContrastiveLoss, torch.nn.TripletMarginLoss or ViewLoss, or its Hydra config.
        optimizer, scheduler: as in LitBase.
        distance: the distance of the embeddings (siamese_lit.distances; None: Euclidean), used by
            the loss, every figure, evaluate and compare.
        projection: views only, optional: a head (e.g. an MLPEncoder config) that maps the
            embedding to what the loss sees during training, as SimCLR's projection head g(h); the
            embedding h before it is what is evaluated and used (Chen et al. 2020: h transfers
            better than g(h), which the loss makes invariant to what it is told to ignore).
        embedding_dim: the embedding size, checked against the encoder's `out_dim`.
        knn_k: neighbours voting in `knn_acc`.
        oneshot_episodes: seeded episodes averaged in `oneshot_acc` (test only).
        test_retrieval: compute the retrieval figures on test (every test image queries the others).
    """

    def __init__(
        self,
        net: Spec,
        loss: Spec,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        distance: Spec = None,
        projection: Spec = None,
        embedding_dim: int | None = None,
        knn_k: int = 5,
        oneshot_episodes: int = 100,
        test_retrieval: bool = True,
    ) -> None:
        super().__init__()
        net, loss, optimizer, scheduler = plain(net), plain(loss), plain(optimizer), plain(scheduler)
        distance, projection = plain(distance), plain(projection)
        check(
            embedding_dim is None or embedding_dim >= 1,
            f"model.embedding_dim must be >= 1, got {embedding_dim}.",
        )
        check(knn_k >= 1, f"model.knn_k must be >= 1, got {knn_k}.")
        check(oneshot_episodes >= 1, f"model.oneshot_episodes must be >= 1, got {oneshot_episodes}.")
        modules = (("net", net), ("loss", loss), ("distance", distance), ("projection", projection))
        ignore = [k for k, v in modules if isinstance(v, nn.Module)]
        self.save_hyperparameters(logger=False, ignore=ignore or None)
        # checked before building: torch's TripletMarginLoss would raise its own ValueError (a traceback)
        margin = loss.get("margin", 1.0) if isinstance(loss, Mapping) else getattr(loss, "margin", 1.0)
        check(margin > 0, f"model.loss.margin must be > 0, got {margin}.")
        self.net = build(net)
        self.distance: Distance = build(distance, "model.distance") or Distance()
        self.loss_fn = build(loss, "model.loss")
        if isinstance(self.loss_fn, ViewLoss):
            self.loss_fn.bind(self.distance)
        self.projection = build(projection, "model.projection")
        check(
            self.projection is None or isinstance(self.loss_fn, ViewLoss),
            "model.projection is a head for the views losses (model/loss=supcon, ntxent, ...): "
            "set model.projection=null for the pair and triplet losses.",
        )
        out_dim = getattr(self.net, "out_dim", embedding_dim)
        check(
            embedding_dim is None or out_dim == embedding_dim,
            f"model.embedding_dim={embedding_dim} but the encoder outputs {out_dim}: "
            "set model.net.out_dim too.",
        )
        self.mode = next(
            (mode for mode, kind in MODES.items() if isinstance(self.loss_fn, kind)), "pairs"
        )  # the batches the loss takes (data.mode): any other loss is taken as a pair loss
        self.triplet = self.mode == "triplets"
        # epoch means of the distances between the two images of similar and of dissimilar pairs
        # (views: between the two views of each image)
        distances = ("d_similar",) if self.mode == "views" else ("d_similar", "d_dissimilar")
        self.train_metrics.update({name: MeanMetric() for name in distances})
        # the pair-accuracy threshold chosen on validation; saved with the checkpoint
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.collectors = nn.ModuleDict({name: EmbeddingCollector() for name in ("images", "gallery")})
        self.last_eval: Evaluation | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings of a batch of normalised images, in float32 also under mixed precision (the
        distances, thresholds and neighbours computed from them need more than bfloat16's 8 bits),
        as the distance measures them (unit vectors under the cosine distance)."""
        return self.distance.prepare(self.net(x).float())

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 2048) -> Tensor:
        """Embeddings of many normalised images, in batches (evaluation outside the Trainer)."""
        return torch.cat([self(chunk) for chunk in images.split(batch_size)])

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        mode = getattr(dm, "mode", None)
        if mode is not None and mode != self.mode:
            raise ConfigError(
                f"model.loss is {type(self.loss_fn).__name__}, which trains on {self.mode}, but data.mode "
                f"is {mode!r}: use data.mode={self.mode}, or a loss for {mode} (conf/model/loss/)."
            )

    def _loss(self, embeddings: tuple[Tensor, ...], target: Tensor | None = None) -> Tensor:
        if self.triplet:
            return self.loss_fn(*embeddings)
        return self.loss_fn(embeddings[0], embeddings[1], target)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        if self.mode == "views":
            first, second, labels = batch
            features = self.net(torch.cat([first, second])).float()
            z = features if self.projection is None else self.projection(features).float()
            loss = self.loss_fn(self.distance.prepare(z), labels)
            d_views = F.pairwise_distance(*self.distance.prepare(features.detach()).chunk(2))
            self.log_train(loss, d_similar=d_views)
            return loss
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
        threshold = None if stage == "val" else float(self.threshold)
        if threshold is not None and threshold != threshold:  # NaN: no validation ran
            threshold = None
        test = stage == "test"
        rows = (torch.searchsorted(idx, a), torch.searchsorted(idx, b))  # the pairs' rows of `emb`
        metrics = score_embeddings(
            emb,
            labels,
            pairs=(*rows, y),
            threshold=threshold,
            gallery=(g_emb, g_labels),
            knn_k=self.hparams.knn_k,
            oneshot_episodes=self.hparams.oneshot_episodes if test else 0,
            with_retrieval=test and self.hparams.test_retrieval,
        )
        distance = self.distance.pairwise(emb[rows[0]], emb[rows[1]])
        if stage == "val":
            self.threshold.fill_(metrics["threshold"])
        self.last_eval = Evaluation(stage, emb, labels, (a, b), y, distance, metrics["threshold"])
        if self.mode != "views":  # the views loss needs two augmented views: no fixed evaluation set
            tuples = [t.to(emb.device) for t in dm.eval_tuples(stage)]
            images = tuples[:3] if self.triplet else tuples[:2]
            ok = torch.stack([present[t] for t in images]).all(0)
            target = None if self.triplet else tuples[2][ok]
            metrics["loss"] = float(self._loss(tuple(table[t[ok]] for t in images), target))
        shown = ("auroc", "knn_acc")
        for prog_bar in (False, True):
            logged = {f"{stage}/{k}": v for k, v in metrics.items() if (k in shown) == prog_bar}
            self.log_dict(logged, prog_bar=prog_bar, sync_dist=True)
