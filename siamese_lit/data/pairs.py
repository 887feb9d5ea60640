"""PairDataModule: the training batches a Siamese objective takes, and fixed evaluation sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from siamese_lit.data.batches import BATCHES, BatchKind
from siamese_lit.data.datamodule import MNISTDataModule
from siamese_lit.data.loader import BatchLoader, seeded
from siamese_lit.data.nondigits import GlyphClasses
from siamese_lit.data.sampler import PairSampler
from siamese_lit.utils.errors import check


@dataclass(frozen=True)
class EvalSet:
    """What a Siamese model is scored on for one split ("val" or "test"): one value, so the model's
    evaluation and the callbacks that draw it never reach into the data module's tensors.

    `pairs` index the split's images; `loss_rows` are the fixed rows, in the objective's batch
    layout (indices..., target), that its evaluation loss is computed on (None for two-view batches).
    """

    images: Tensor  # uint8 (N, 28, 28): the split's images, in index order
    labels: Tensor
    pairs: tuple[Tensor, Tensor, Tensor]  # (a, b, y): fixed verification pairs, y = 1 dissimilar
    loss_rows: tuple[Tensor, ...] | None


class PairDataModule(MNISTDataModule):
    """MNIST for a Siamese model: the training batches its objective takes, fresh each epoch, and
    fixed evaluation sets.

    Training batches are of the kind `batches` names (siamese_lit.data.batches: "pairs",
    "triplets", "views"); the config reads it from the model's objective (`${batches_of:...}`), so an
    experiment chooses the objective only. Evaluation embeds each image once: its loaders yield the
    images of the split, then a gallery of labelled training images; `eval_set(stage)` holds the
    fixed pairs scored on those embeddings.

    Args (beyond MNISTDataModule's):
        batches: the training batches, or None for a data module that only evaluates.
        similar_fraction: share of similar pairs in training and evaluation, in (0, 1).
        pairs_per_epoch: training pairs or triplets per epoch (None = one per training image).
        eval_pairs: fixed pairs drawn from the val and from the test images.
        gallery_size: labelled training images the k-NN and prototype metrics compare with.
        reference_size: labelled training images of the validation's gallery, None = `gallery_size`:
            the references the validation's k-NN figures and the rejection score measure against,
            kept in the checkpoint (siamese_lit.evaluation.openset.Rejection); more than there are
            training images of the digits: all of them.
        new_classes: (two-view batches) symmetries of the square (siamese_lit.data.augment.SYMMETRIES)
            that make new training classes of the digits: each image is left as it is or
            mirrored/turned, both views alike, and labelled (class, symmetry): the glyph classes
            too, when there are.
        open_set: the test gallery holds the training digits (`classes`) only, so that the test
            digits beyond them are unknowns (siamese_lit.evaluation.openset); otherwise it holds
            the test digits.
        glyph_classes: (two-view batches) add letters and symbols as training classes beyond the
            digits, one per character (siamese_lit.data.nondigits.GlyphClasses, built once and
            cached under `cache_dir`): training only, never in validation, a gallery or a test; with
            `train_size`, cut in the same proportion as the digits.
        stroke_classes: with `glyph_classes`, this many procedural stroke glyphs (2-3 Bezier strokes)
            as more classes.
        polyline_classes: with `glyph_classes`, this many procedural polyline glyphs (1-2 open paths
            of straight segments) as more classes, after the stroke glyphs.
        cache_dir: where the glyph classes are cached.
    """

    def __init__(
        self,
        *args,
        batches: str | None = "pairs",
        similar_fraction: float = 0.5,
        pairs_per_epoch: int | None = None,
        eval_pairs: int = 10_000,
        gallery_size: int = 10_000,
        reference_size: int | None = None,
        new_classes: Sequence[str] = (),
        open_set: bool = False,
        glyph_classes: bool = False,
        stroke_classes: int = 0,
        polyline_classes: int = 0,
        cache_dir: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        check(
            batches is None or batches in BATCHES,
            f"data.batches must be one of {sorted(BATCHES)} (the model's objective decides), "
            f"got {batches!r}.",
        )
        check(
            0 < similar_fraction < 1,
            f"data.similar_fraction must be in (0, 1) exclusive, got {similar_fraction}.",
        )
        check(self.batch_size >= 2, f"data.batch_size must be >= 2 for pairs, got {self.batch_size}.")
        check(pairs_per_epoch is None or pairs_per_epoch >= 1, "data.pairs_per_epoch must be >= 1 or null.")
        check(eval_pairs >= 2, f"data.eval_pairs must be >= 2, got {eval_pairs}.")
        check(gallery_size >= 1, f"data.gallery_size must be >= 1, got {gallery_size}.")
        check(
            reference_size is None or reference_size >= 1,
            f"data.reference_size must be >= 1 or null, got {reference_size}.",
        )
        self.kind: BatchKind | None = BATCHES[batches](new_classes) if batches else None
        check(
            self.kind is None or not self.kind.needs_augmentation or self.augment is not None,
            "two-view batches (a views objective) need an augmentation: choose data/augment=robust or "
            "data/augment=affine.",
        )
        self.similar_fraction, self.pairs_per_epoch = similar_fraction, pairs_per_epoch
        self.num_eval_pairs, self.gallery_size, self.open_set = eval_pairs, gallery_size, open_set
        self.reference_size = gallery_size if reference_size is None else reference_size
        check(
            not glyph_classes or (self.kind is not None and self.kind.needs_augmentation),
            "data.glyph_classes adds classes to two-view batches: a views objective.",
        )
        check(not glyph_classes or bool(cache_dir), "data.glyph_classes needs data.cache_dir.")
        check(stroke_classes >= 0, f"data.stroke_classes must be >= 0, got {stroke_classes}.")
        check(polyline_classes >= 0, f"data.polyline_classes must be >= 0, got {polyline_classes}.")
        self.glyph_classes, self.cache_dir = glyph_classes, cache_dir
        self.stroke_classes, self.polyline_classes = stroke_classes, polyline_classes
        self.fixed: dict[str, EvalSet] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.fixed:
            return
        super().setup(stage)
        self.sampler = PairSampler(self.splits["train"][1], self.classes)
        for salt, split in enumerate(("val", "test"), start=11):
            g = seeded(self.split_seed + salt)
            images, labels = self.splits[split]
            sampler = PairSampler(labels)
            pairs = sampler.pairs(self.num_eval_pairs, self.similar_fraction, g)
            rows = self.kind.loss_rows(sampler, pairs, g) if self.kind is not None else None
            moved = tuple(t.to(labels.device) for t in rows) if rows is not None else None
            self.fixed[split] = EvalSet(images, labels, tuple(t.to(labels.device) for t in pairs), moved)
            self.splits[f"{split}_gallery"] = self._gallery(split)
        if self.glyph_classes:  # after the samplers and galleries: training batches only
            self.splits["train"] = self._with_glyphs(*self.splits["train"])
            self.splits["val_outliers"] = self._outliers()
        #: the label offset of each symmetry's new classes (data.new_classes): past every training label
        self.label_stride = max(10, int(self.splits["train"][1].max()) + 1)

    def _with_glyphs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training images and labels, then the glyph classes labelled after the digits; a run cut
        to `train_size` images takes a seeded share of the glyphs in the same proportion."""
        glyphs = GlyphClasses.load(self.cache_dir, self.stroke_classes, self.polyline_classes)
        images, labels = glyphs.images, glyphs.labels + 10
        if self.hparams.train_size is not None:
            keep = max(1, round(len(labels) * len(y) / len(self.splits["train_all"][1])))
            pick = torch.randperm(len(labels), generator=seeded(self.split_seed + 4))[:keep].sort().values
            images, labels = images[pick], labels[pick]
        return torch.cat([x, images.to(x.device)]), torch.cat([y, labels.to(y.device)])

    def _outliers(self) -> tuple[Tensor, Tensor]:
        """A seeded `gallery_size` of the training non-digits (the glyph classes): the outliers the
        rejection score of each validation measures queries against, beside the digits' gallery."""
        x, y = self.splits["train"]
        glyphs = (y >= 10).nonzero().squeeze(1)
        pick = torch.randperm(len(glyphs), generator=seeded(self.split_seed + 23))[: self.gallery_size]
        rows = glyphs[pick.to(glyphs.device)]
        return x[rows], y[rows]

    def _gallery(self, split: str) -> tuple[Tensor, Tensor]:
        """Labelled training images of the split's digits (on test with `open_set`, of the training
        digits): references never used as queries; `reference_size` of them for validation."""
        classes = self.test_classes if split == "test" and not self.open_set else self.classes
        x, y = self.splits["train_all"]
        if split == "test":
            return self._subset(x, y, classes, self.gallery_size, 21)
        return self._subset(x, y, classes, self.reference_size, 22)

    def eval_set(self, split: str) -> EvalSet:
        """The images, labels and fixed pairs of `split` ("val" or "test")."""
        return self.fixed[split]

    def train_dataloader(self) -> BatchLoader:
        check(self.kind is not None, "this data module has no training batches (data.batches is null).")
        return self.kind.loader(self)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            return self.kind.on_device(self, batch)
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def val_dataloader(self) -> list[BatchLoader]:
        outliers = [self.image_loader("val_outliers")] if "val_outliers" in self.splits else []
        return [self.image_loader("val"), self.image_loader("val_gallery"), *outliers]

    def test_dataloader(self) -> list[BatchLoader]:
        return [self.image_loader("test"), self.image_loader("test_gallery")]
