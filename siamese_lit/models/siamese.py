"""LitSiamese: one shared encoder, trained with an objective, scored on embeddings computed once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from siamese_lit.checkpoints.specs import plain
from siamese_lit.evaluation.collector import EmbeddingCollector
from siamese_lit.evaluation.openset import Rejection
from siamese_lit.evaluation.scoring import Evaluation, score_split
from siamese_lit.models.base import LitBase, Spec, module_from
from siamese_lit.objectives import Centering, Distance, Objective, centering
from siamese_lit.utils.errors import check

#: What an evaluation embeds, by dataloader: the split's images, the gallery of labelled training
#: digits and (training with glyph classes, validation only) the outliers: training non-digits.
COLLECTED = ("images", "gallery", "outliers")


class LitSiamese(LitBase):
    """A Siamese network: the encoder `net` applied to every image of a batch in one forward pass,
    the `objective` (siamese_lit.objectives) turning their embeddings into the loss.

    The objective decides the training batches (pairs, triplets or two views of each image; the
    data module builds them). Evaluation embeds every image of the split once, plus a gallery of
    labelled training images, and hands them to `score_split` (siamese_lit.evaluation.scoring): on
    the fixed pairs `auroc`, `eer`, `pair_acc` (at the threshold chosen on validation, kept in the
    `threshold` buffer and applied unchanged on test), `d_similar`, `d_dissimilar`; against the
    gallery `knn_acc` and `prototype_acc`. Each validation also calibrates `rejection`
    (siamese_lit.evaluation.openset.Rejection: the gallery's embeddings as references, the training
    non-digits' as outliers when the data module has glyph classes, and the threshold that says
    "unknown" past the scores of 99.5% of the validation digits); on test also
    `oneshot_acc` and the retrieval figures. The last result is `self.evaluation` (an `Evaluation`),
    which the TensorBoard callbacks draw.

    Args:
        net: the shared encoder (its `out_dim` is the embedding size) or its Hydra config.
        objective: an Objective (contrastive, triplet, views) or its Hydra config.
        optimizer, scheduler: as in LitBase.
        distance: the distance of the embeddings (None: Euclidean), used by the objective, every
            figure, evaluate and compare.
        embedding_dim: the embedding size, checked against the encoder's `out_dim`.
        knn_k: neighbours voting in `knn_acc`.
        oneshot_episodes: seeded episodes averaged in `oneshot_acc` (test only).
        test_retrieval: compute the retrieval figures on test (every test image queries the others).
        center_embeddings: measure the embeddings less the mean embedding of the gallery's training
            digits, fitted at each validation (siamese_lit.objectives.Centering); for digits never
            seen in training.
    """

    unset_when_nan = ("threshold", "rejection.threshold")  # NaN: no validation ran

    def __init__(
        self,
        net: Spec,
        objective: Spec,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        distance: Spec = None,
        embedding_dim: int | None = None,
        knn_k: int = 5,
        oneshot_episodes: int = 100,
        test_retrieval: bool = True,
        center_embeddings: bool = False,
    ) -> None:
        super().__init__()
        net, objective, optimizer, scheduler = (
            plain(net),
            plain(objective),
            plain(optimizer),
            plain(scheduler),
        )
        distance = plain(distance)
        check(
            embedding_dim is None or embedding_dim >= 1,
            f"model.embedding_dim must be >= 1, got {embedding_dim}.",
        )
        check(knn_k >= 1, f"model.knn_k must be >= 1, got {knn_k}.")
        check(oneshot_episodes >= 1, f"model.oneshot_episodes must be >= 1, got {oneshot_episodes}.")
        modules = (("net", net), ("objective", objective), ("distance", distance))
        ignore = [k for k, v in modules if isinstance(v, nn.Module)]
        self.save_hyperparameters(logger=False, ignore=ignore or None)
        self.net = module_from(net)
        self.distance: Distance = module_from(distance, "model.distance") or Distance()
        self.objective: Objective = module_from(objective, "model.objective")
        check(
            isinstance(self.objective, Objective),
            "model.objective must be an objective of siamese_lit.objectives, got "
            f"{type(self.objective).__name__}.",
        )
        self.objective.bind(self.distance)
        out_dim = getattr(self.net, "out_dim", embedding_dim)
        check(
            embedding_dim is None or out_dim == embedding_dim,
            f"model.embedding_dim={embedding_dim} but the encoder outputs {out_dim}: "
            "set model.net.out_dim too.",
        )
        check(
            not center_embeddings or bool(out_dim),
            "model.center_embeddings needs the encoder's out_dim (the embedding size).",
        )
        # in eval mode: less the gallery's mean embedding (fitted on validation; saved in the checkpoint)
        self.centering = centering(int(out_dim or 0), center_embeddings)
        # epoch means of the distances the objective reports (similar and dissimilar pairs, views)
        self.train_metrics.update({name: MeanMetric() for name in self.objective.logged})
        # the pair-accuracy threshold chosen on validation; saved with the checkpoint
        self.register_buffer("threshold", torch.tensor(float("nan")))
        # what says "unknown" (references and threshold, chosen on validation); saved with the checkpoint
        self.rejection = Rejection(int(out_dim or 0))
        self.collectors = nn.ModuleDict({name: EmbeddingCollector() for name in COLLECTED})
        self.evaluation: Evaluation | None = None

    def fit_state(self, state_dict: dict[str, Any], where: str = "the checkpoint") -> None:
        """Before `state_dict` is loaded into this model: its rejection references' size (and the
        uncalibrated rejection of a checkpoint saved before rejection existed)."""
        self.rejection.fit_state(state_dict, "rejection.", where)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.fit_state(checkpoint["state_dict"])

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings of a batch of normalised images, in float32 also under mixed precision (the
        distances, thresholds and neighbours computed from them need more than bfloat16's 8 bits),
        as the distance measures them (centred in eval mode when `center_embeddings`, unit vectors
        under the cosine distance)."""
        return self.measured(self.net(x).float())

    def measured(self, embeddings: Tensor) -> Tensor:
        """The encoder's float32 `embeddings` as the distance measures them."""
        return self.distance.prepare(self.centering(embeddings))

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 2048) -> Tensor:
        """Embeddings of many normalised images, in batches (evaluation outside the Trainer)."""
        return torch.cat([self(chunk) for chunk in images.split(batch_size)])

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        *images, target = batch
        embeddings = self(torch.cat(images)).chunk(len(images))  # one forward through the shared encoder
        loss, distances = self.objective(embeddings, target)
        self.log_train(loss, **distances)  # distances: epoch means over the batch's items
        return loss

    def _collect(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> None:
        x, y, idx = batch
        # the encoder's own embeddings: the centring is fitted on them before they are measured
        self.collectors[COLLECTED[dataloader_idx]].update(self.net(x).float(), y, idx)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def _evaluate(self, stage: str) -> None:
        collected = {name: c.compute() for name, c in self.collectors.items() if c.update_called}
        for c in self.collectors.values():
            c.reset()
        self.evaluation = None
        if self.trainer.sanity_checking:
            return
        if stage == "val" and isinstance(self.centering, Centering) and len(collected["gallery"][0]):
            self.centering.fit(collected["gallery"][0])
        collected = {name: (self.measured(e), *rest) for name, (e, *rest) in collected.items()}
        (images, _, _), (gallery, gallery_labels, _) = collected["images"], collected["gallery"]
        outliers = collected["outliers"][0] if "outliers" in collected else None
        saved = float(self.threshold)
        test = stage == "test"
        evaluation = score_split(
            stage,
            collected["images"],
            (gallery, gallery_labels),
            self.trainer.datamodule.eval_set(stage),
            distance=self.distance,
            threshold=saved if test and saved == saved else None,  # NaN: no validation ran
            knn_k=self.hparams.knn_k,
            oneshot_episodes=self.hparams.oneshot_episodes if test else 0,
            retrieval_at=(1,) if test and self.hparams.test_retrieval else (),
            loss=self.objective,
        )
        if evaluation is None:
            return
        if stage == "val":
            self.threshold.fill_(evaluation.threshold)
            if len(gallery):
                self.rejection.calibrate(images, gallery, self.distance, outliers)
        self.evaluation = evaluation
        shown = ("auroc", "knn_acc")
        for prog_bar in (False, True):
            logged = {f"{stage}/{k}": v for k, v in evaluation.metrics.items() if (k in shown) == prog_bar}
            self.log_dict(logged, prog_bar=prog_bar, sync_dist=True)
