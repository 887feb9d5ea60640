"""Balanced pairs and triplets sampled with tensor ops from per-class index tables.

Label convention (Hadsell, Chopra & LeCun 2006, and the source article), used everywhere in
siamese_lit — sampler, loss, metrics: **y = 0 for a similar pair** (same digit, two different
images) and **y = 1 for a dissimilar pair** (two different digits). Distance is the score of
"dissimilar": the larger, the more likely y = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from siamese_lit.data.augment import SYMMETRIES, new_classes
from siamese_lit.data.datamodule import MNISTDataModule
from siamese_lit.data.loader import BatchLoader, seeded
from siamese_lit.utils.errors import check

SIMILAR, DISSIMILAR = 0, 1


class PairSampler:
    """Samples pairs and triplets of indices into `labels`, vectorised.

    Images are sorted by class once into a table; an image is then drawn as `offset[c] + r` with
    `r` uniform in the class's count, so a whole epoch is a few tensor ops.
    """

    def __init__(self, labels: Tensor, classes: Sequence[int] | None = None) -> None:
        labels = labels.cpu()
        classes = sorted({int(c) for c in (classes if classes is not None else labels.unique().tolist())})
        check(len(classes) >= 2, f"pairs need at least 2 classes, got {classes}.")
        pool = torch.nonzero(torch.isin(labels, torch.tensor(classes))).squeeze(1)
        self.table = pool[torch.argsort(labels[pool], stable=True)]
        class_tensor = torch.tensor(classes)
        self.counts = torch.bincount(
            torch.searchsorted(class_tensor, labels[self.table]), minlength=len(classes)
        )
        empty = [c for c, n in zip(classes, self.counts.tolist(), strict=True) if n < 2]
        check(not empty, f"pairs need at least 2 images of each class; too few of digit(s) {empty}.")
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.classes = classes

    def __len__(self) -> int:
        return len(self.table)

    @staticmethod
    def _uniform(high: Tensor, g: torch.Generator) -> Tensor:
        """An integer uniform in [0, high) for each element of `high`."""
        r = (torch.rand(high.shape, generator=g, dtype=torch.float64) * high).long()
        return torch.minimum(r, high - 1)

    def _anchors(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """n images uniform over the pool: (table position, class position, position in class)."""
        pos = torch.randint(len(self.table), (n,), generator=g)
        cls = torch.searchsorted(self.offsets, pos, right=True) - 1
        return pos, cls, pos - self.offsets[cls]

    def _same_class(self, cls: Tensor, local: Tensor, g: torch.Generator) -> Tensor:
        """Another image of the same class (never the anchor itself)."""
        r = self._uniform(self.counts[cls] - 1, g)
        return self.table[self.offsets[cls] + r + (r >= local).long()]

    def _other_class(self, cls: Tensor, g: torch.Generator) -> Tensor:
        """An image of a class drawn uniformly among the other classes."""
        k = len(self.classes)
        other = (cls + 1 + torch.randint(k - 1, cls.shape, generator=g)) % k
        return self.table[self.offsets[other] + self._uniform(self.counts[other], g)]

    def pairs(self, n: int, similar_fraction: float, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(a, b, y): n pairs, round(n * similar_fraction) of them similar (y = 0), in random order."""
        pos, cls, local = self._anchors(n, g)
        n_sim = round(n * similar_fraction)
        y = torch.cat([torch.full((n_sim,), SIMILAR), torch.full((n - n_sim,), DISSIMILAR)])
        y = y[torch.randperm(n, generator=g)]
        similar = y == SIMILAR
        b = torch.where(similar, self._same_class(cls, local, g), self._other_class(cls, g))
        return self.table[pos], b, y

    def one_per_class(self, episodes: int, g: torch.Generator) -> Tensor:
        """(episodes, classes) indices: one random image of each class per episode (one-shot tests)."""
        counts = self.counts.expand(episodes, -1)
        return self.table[self.offsets + self._uniform(counts, g)]

    def triplets(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(anchor, positive, negative): positive of the anchor's digit, negative of another."""
        pos, cls, local = self._anchors(n, g)
        return self.table[pos], self._same_class(cls, local, g), self._other_class(cls, g)


class PairDataModule(MNISTDataModule):
    """Balanced pairs (or triplets) of MNIST images, fresh each epoch, and fixed evaluation sets.

    Training batches are `(x1, x2, y)` (mode "pairs") or `(anchor, positive, negative)` (mode
    "triplets"), sampled anew each epoch from a generator seeded by (seed, epoch), or (mode "views")
    `(view1, view2, labels)`: every training image once per epoch, augmented twice (two independent
    draws of `augment`, on the device) for SupCon / NT-Xent (siamese_lit.losses.ViewLoss). Evaluation
    embeds each image once: its loaders yield the images of the split, then a gallery of labelled
    training images; `eval_pairs(stage)` are the fixed index pairs scored on those embeddings.

    Args (beyond MNISTDataModule's):
        mode: "pairs" (contrastive loss), "triplets" (triplet loss) or "views" (ViewLoss).
        similar_fraction: share of similar pairs in training and evaluation, in (0, 1).
        pairs_per_epoch: training pairs per epoch (None = one per training image).
        eval_pairs: fixed pairs drawn from the val and from the test images.
        gallery_size: labelled training images the k-NN and prototype metrics compare with.
        clean_views: (mode "views") share of the first views left clean, not augmented: the loss
            then also ties damaged digits to clean ones, the digits the clean test set has.
        new_classes: (mode "views") symmetries of the square (siamese_lit.data.augment.SYMMETRIES)
            that make new training classes of the digits (`augment.new_classes`): each image is
            left as it is or mirrored/turned, both views alike, and labelled (digit, symmetry).
    """

    def __init__(
        self,
        *args,
        mode: str = "pairs",
        similar_fraction: float = 0.5,
        pairs_per_epoch: int | None = None,
        eval_pairs: int = 10_000,
        gallery_size: int = 10_000,
        clean_views: float = 0.0,
        new_classes: Sequence[str] = (),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        check(
            mode in ("pairs", "triplets", "views"),
            f"data.mode must be 'pairs', 'triplets' or 'views', got {mode!r}.",
        )
        check(
            mode != "views" or self.augment is not None,
            "data.mode=views trains on two augmented views of each image: choose an augmentation "
            "(data/augment=robust or data/augment=affine).",
        )
        check(
            0 < similar_fraction < 1,
            f"data.similar_fraction must be in (0, 1) exclusive, got {similar_fraction}.",
        )
        check(self.batch_size >= 2, f"data.batch_size must be >= 2 for pairs, got {self.batch_size}.")
        check(pairs_per_epoch is None or pairs_per_epoch >= 1, "data.pairs_per_epoch must be >= 1 or null.")
        check(eval_pairs >= 2, f"data.eval_pairs must be >= 2, got {eval_pairs}.")
        check(gallery_size >= 1, f"data.gallery_size must be >= 1, got {gallery_size}.")
        check(0 <= clean_views <= 1, f"data.clean_views must be in [0, 1], got {clean_views}.")
        unknown = sorted(set(new_classes) - set(SYMMETRIES))
        check(not unknown, f"data.new_classes: unknown {unknown}; valid: {', '.join(SYMMETRIES)}.")
        self.clean_views, self.new_classes = clean_views, list(new_classes)
        self.mode, self.similar_fraction = mode, similar_fraction
        self.pairs_per_epoch, self.num_eval_pairs, self.gallery_size = (
            pairs_per_epoch,
            eval_pairs,
            gallery_size,
        )
        self.fixed: dict[str, tuple[Tensor, ...]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.fixed:
            return
        super().setup(stage)
        self.sampler = PairSampler(self.splits["train"][1], self.classes)
        for salt, split in enumerate(("val", "test"), start=11):
            g = seeded(self.split_seed + salt)
            sampler = PairSampler(self.splits[split][1])
            self.fixed[split] = sampler.pairs(self.num_eval_pairs, self.similar_fraction, g)
            if self.mode == "triplets":
                self.fixed[f"{split}_triplets"] = sampler.triplets(self.num_eval_pairs, g)
            self.splits[f"{split}_gallery"] = self._gallery(split)

    def _gallery(self, split: str) -> tuple[Tensor, Tensor]:
        """Labelled training images of the split's digits: references never used as queries."""
        classes = self.test_classes if split == "test" else self.classes
        x, y = self.splits["train_all"]
        return self._subset(x, y, classes, self.gallery_size, 21 if split == "test" else 22)

    def eval_pairs(self, split: str) -> tuple[Tensor, Tensor, Tensor]:
        """The fixed (a, b, y) index pairs into `split`'s images ("val" or "test")."""
        return self.fixed[split]

    def eval_tuples(self, split: str) -> tuple[Tensor, Tensor, Tensor]:
        """What the loss is evaluated on: the fixed pairs, or fixed triplets in triplet mode."""
        return self.fixed[f"{split}_triplets"] if self.mode == "triplets" else self.fixed[split]

    def train_dataloader(self) -> BatchLoader:
        if self.mode == "views":
            return super().train_dataloader()
        x, y = self.splits["train"]
        n = self.pairs_per_epoch or len(y)

        def rows(epoch: int) -> tuple[Tensor, ...]:
            g = seeded(self.seed * 100_003 + epoch)
            sampled = (
                self.sampler.pairs(n, self.similar_fraction, g)
                if self.mode == "pairs"
                else (self.sampler.triplets(n, g))
            )
            return tuple(t.to(x.device) for t in sampled)

        if self.mode == "pairs":

            def take(a: Tensor, b: Tensor, t: Tensor) -> tuple[Tensor, ...]:
                return x[a], x[b], t
        else:

            def take(a: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, ...]:
                return x[a], x[p], x[q]

        return BatchLoader(
            rows, take, n, self.batch_size, even_shards=True, drop_last=True, context=self._context
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.mode == "views" and self.trainer is not None and self.trainer.training:
            images, labels = batch
            if self.new_classes:
                images, labels = new_classes(images, labels, self.new_classes)
            first = self.augmented(images)
            if self.clean_views > 0:
                clean = torch.rand(len(images), 1, 1, device=images.device) < self.clean_views
                first = torch.where(clean, self.normalize(images), first)
            return first, self.augmented(images), labels
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def val_dataloader(self) -> list[BatchLoader]:
        return [self.image_loader("val"), self.image_loader("val_gallery")]

    def test_dataloader(self) -> list[BatchLoader]:
        return [self.image_loader("test"), self.image_loader("test_gallery")]
