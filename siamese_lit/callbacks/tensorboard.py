"""TensorBoard inspection as Lightning callbacks: figures, distance histograms, projector, model text.

Each callback writes through the run's TensorBoardLogger (its SummaryWriter) on the main process and
does nothing without one, during the sanity check, or for a module it does not apply to, so every
callback can stay in conf/callbacks/default.yaml for every experiment. They draw from what the
evaluation computed anyway and only at validation/test end, so the training loop pays nothing per
step: a Siamese model's `evaluation` (siamese_lit.evaluation.scoring.Evaluation, the one value they
read), a classifier's eval-step logits and batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix

from siamese_lit.callbacks.figures import captioned_grid, roc_figure, scatter_figure
from siamese_lit.evaluation.scoring import Evaluation


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The run's SummaryWriter on the main process, else None (no TensorBoardLogger, sanity check).

    Callbacks draw nothing then: a run without TensorBoard (logger=csv) pays nothing for them.
    """
    if not trainer.is_global_zero or trainer.sanity_checking:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_final_hparams(trainer: L.Trainer, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """The run's hyper-parameters with its final metrics (as `final/<metric>`), for the HPARAMS tab.

    TensorBoard's hparams plugin compares runs on metrics given along with the hyper-parameters, so
    this is called once the run is over; the `final/` prefix keeps these one-point scalars apart from
    the training curves of the same names.
    """
    final = {f"final/{k}": float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics=final, step=trainer.global_step)
            logger.finalize("success")


class ModelSummaryText(L.Callback):
    """The layer table (parameter counts) and the module tree as text, once per run."""

    def __init__(self, max_depth: int = 2) -> None:
        self.max_depth = max_depth
        self.logged = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or self.logged:
            return
        text = f"{ModelSummary(pl_module, max_depth=self.max_depth)}\n\n{pl_module}"
        code_block = "    " + text.replace("\n", "\n    ")  # markdown: kept monospaced, as printed
        writer.add_text("model/summary", code_block, trainer.global_step)
        self.logged = True


class ClassifierFigures(L.Callback):
    """Misclassified images captioned "predicted (true)" and the confusion matrix, at val and test end.

    Per batch it keeps the predictions and labels, and the first `max_images` misclassified images.
    Applies to modules whose evaluation steps return logits (LitClassifier); does nothing otherwise.
    """

    def __init__(self, max_images: int = 64, ncol: int = 8) -> None:
        self.max_images, self.ncol = max_images, ncol
        self.rows: list[tuple[Tensor, Tensor]] = []
        self.wrong: list[tuple[Tensor, Tensor, Tensor]] = []  # (images, predicted, true), up to max_images

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._keep(trainer, pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(trainer, pl_module, outputs, batch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, "test")

    def _keep(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any) -> None:
        if trainer.sanity_checking or not isinstance(outputs, Tensor) or outputs.dim() != 2:
            return
        pred, target = outputs.detach().argmax(1), batch[1]
        self.rows.append((pred, target))
        kept = sum(len(w[0]) for w in self.wrong)
        wrong = (pred != target).nonzero().squeeze(1)[: max(self.max_images - kept, 0)]
        if len(wrong):
            self.wrong.append((batch[0][wrong].detach(), pred[wrong], target[wrong]))

    def _draw(self, trainer: L.Trainer, stage: str) -> None:
        if not self.rows:
            return
        pred, target = (torch.cat(t) for t in zip(*self.rows, strict=True))
        wrong = [torch.cat(t) for t in zip(*self.wrong, strict=True)] if self.wrong else []
        self.rows, self.wrong = [], []
        num_classes = int(trainer.lightning_module.hparams.get("num_classes", int(target.max()) + 1))
        confmat = MulticlassConfusionMatrix(num_classes).to(pred.device)
        confmat.update(pred, target)
        matrix = confmat.compute()  # on every process: under DDP it gathers all of them
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        step = trainer.global_step
        fig, ax = confmat.plot(matrix, labels=[str(c) for c in range(num_classes)])
        ax.set_title(f"{stage} confusion matrix, step {step}")
        writer.add_figure(f"{stage}/confusion_matrix", fig, step)
        if not wrong:
            return
        images, shown_pred, shown_true = wrong
        errors = int((pred != target).sum())
        captions = [f"{p} ({t})" for p, t in zip(shown_pred.tolist(), shown_true.tolist(), strict=True)]
        title = f"{stage}: {errors} of {len(pred)} misclassified; first {len(images)}, predicted (true)"
        writer.add_figure(
            f"{stage}/misclassified",
            captioned_grid(images, captions, ["red"] * len(images), self.ncol, title),
            step,
        )


class SiameseCallback(L.Callback):
    """Base: calls `draw` with the module's `evaluation` (an Evaluation) at the end of each validation
    and test; does nothing for modules without one."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_draw(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_draw(trainer, pl_module, "test")

    def _maybe_draw(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        evaluation = getattr(pl_module, "evaluation", None)
        writer = tensorboard_writer(trainer)
        if writer is not None and isinstance(evaluation, Evaluation) and evaluation.stage == stage:
            self.draw(writer, evaluation, trainer)

    def draw(self, writer: SummaryWriter, evaluation: Evaluation, trainer: L.Trainer) -> None:
        raise NotImplementedError


class SiameseFigures(SiameseCallback):
    """A grid of evaluation pairs with distance and verdict, the ROC curve, the 2-D embedding scatter.

    Args:
        pairs: fixed evaluation pairs shown (the same ones every epoch, so they can be followed).
        ncol: pairs per row of the grid.
        scatter_points: embeddings in the scatter (the embedding itself when 2-D, else its PCA).
    """

    def __init__(self, pairs: int = 24, ncol: int = 4, scatter_points: int = 2000) -> None:
        self.pairs, self.ncol, self.scatter_points = pairs, ncol, scatter_points

    def draw(self, writer: SummaryWriter, evaluation: Evaluation, trainer: L.Trainer) -> None:
        ev, stage, step = evaluation, evaluation.stage, trainer.global_step
        writer.add_figure(f"{stage}/pairs", self._pair_grid(ev, step), step)
        writer.add_figure(
            f"{stage}/roc",
            roc_figure(ev.distance, ev.target, ev.threshold, f"{stage} ROC, step {step}"),
            step,
        )
        n = self.scatter_points
        title = f"{stage} embeddings of {min(n, len(ev.labels))} images, step {step}"
        writer.add_figure(
            f"{stage}/embedding_2d", scatter_figure(ev.embeddings[:n], ev.labels[:n], title), step
        )

    def _pair_grid(self, ev: Evaluation, step: int) -> Any:
        a, b = (t[: self.pairs] for t in ev.pairs)
        distance, similar = ev.distance[: self.pairs].tolist(), (ev.target[: self.pairs] == 0).tolist()
        called_same = [d <= ev.threshold for d in distance]
        captions = [
            f"d={d:.2f} {'same' if s else 'diff'}" for d, s in zip(distance, called_same, strict=True)
        ]
        colors = ["green" if c == s else "red" for c, s in zip(called_same, similar, strict=True)]
        title = (
            f"{ev.stage} pairs, step {step}: distance and verdict at threshold {ev.threshold:.2f}\n"
            "(green right, red wrong)"
        )
        return captioned_grid(
            torch.cat([ev.images[a], ev.images[b]], dim=2), captions, colors, self.ncol, title
        )


class DistanceHistograms(SiameseCallback):
    """Histograms of the distances of similar and of dissimilar evaluation pairs, each validation."""

    def draw(self, writer: SummaryWriter, evaluation: Evaluation, trainer: L.Trainer) -> None:
        for name, value in (("similar", 0), ("dissimilar", 1)):
            distance = evaluation.distance[evaluation.target == value]
            writer.add_histogram(f"{evaluation.stage}/distance_{name}", distance, trainer.global_step)


class EmbeddingProjector(SiameseCallback):
    """Embeddings of `num_points` test images, with labels and sprite thumbnails, for the PROJECTOR tab.

    Drawn from the test evaluation (the embeddings of the checkpoint that is tested), written with
    `add_embedding` (projector_config.pbtxt, tensors.tsv, metadata.tsv, sprite.png under the
    TensorBoard log dir).
    """

    def __init__(self, num_points: int = 2000) -> None:
        self.num_points = num_points

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Test only."""

    def draw(self, writer: SummaryWriter, evaluation: Evaluation, trainer: L.Trainer) -> None:
        n = self.num_points
        writer.add_embedding(
            evaluation.embeddings[:n].cpu(),
            metadata=evaluation.labels[:n].tolist(),
            label_img=evaluation.images[:n].unsqueeze(1).float().div(255).cpu(),
            global_step=trainer.global_step,
            tag=f"{evaluation.stage}_embeddings",
        )
