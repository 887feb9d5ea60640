"""The kinds of training batch a Siamese objective takes, each built by indexing in-memory tensors.

Every kind yields `(*images, target)` (siamese_lit.objectives.base):

- `pairs`: `(x1, x2, y)`, balanced pairs drawn afresh each epoch, y = 0 similar, 1 dissimilar;
- `triplets`: `(anchor, positive, negative, anchor label)`;
- `views`: `(view1, view2, labels)`, every training image once per epoch, augmented twice on the device.

`BATCHES` maps the names objectives give (`Objective.batches`) to these; the data module picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from siamese_lit.data.augment import SYMMETRIES, new_classes
from siamese_lit.data.loader import BatchLoader, seeded
from siamese_lit.data.sampler import DISSIMILAR, SIMILAR, PairSampler
from siamese_lit.utils.errors import check

#: the data module a batch kind serves (siamese_lit.data.pairs.PairDataModule)
PairDataModule = Any

__all__ = ["BATCHES", "DISSIMILAR", "SIMILAR", "BatchKind"]

#: fixed (index rows..., target) on which an objective's evaluation loss is computed
Rows = tuple[Tensor, ...]


class BatchKind:
    """One kind of training batch: how an epoch's rows are drawn and turned into batches.

    Args:
        symmetries: new classes from the square's symmetries (`data.new_classes`): views only.
    """

    images: ClassVar[int]  # images per item (2 for a pair): what `bench` counts
    needs_augmentation: ClassVar[bool] = False  # two views of an image differ only by augmentation

    def __init__(self, symmetries: Sequence[str] = ()) -> None:
        check(
            not symmetries,
            f"data.new_classes makes new classes of two-view batches; {type(self).__name__} takes none.",
        )

    def loader(self, dm: PairDataModule) -> BatchLoader:
        raise NotImplementedError

    def on_device(self, dm: PairDataModule, batch: Any) -> Any:
        """A training batch on its device: each uint8 image tensor normalised (augmented if set)."""
        return tuple(dm.prepare_training(t) if t.dtype == torch.uint8 else t for t in batch)

    def loss_rows(self, sampler: PairSampler, pairs: Rows, g: Any) -> Rows | None:
        """Fixed rows of this kind for the objective's evaluation loss (None: no fixed rows)."""
        return pairs

    @staticmethod
    def sampled(dm: PairDataModule, draw: Any, take: Any) -> BatchLoader:
        """A loader of `take(x, y, *rows)` over the rows `draw(sampler, n, generator)` gives each epoch."""
        x, y = dm.splits["train"]
        n = dm.pairs_per_epoch or len(y)

        def rows(epoch: int) -> tuple[Tensor, ...]:
            return tuple(t.to(x.device) for t in draw(dm.sampler, n, seeded(dm.seed * 100_003 + epoch)))

        return BatchLoader(
            rows,
            lambda *r: take(x, y, *r),
            n,
            dm.batch_size,
            even_shards=True,
            drop_last=True,
            context=dm.context,
        )


class PairBatches(BatchKind):
    images = 2

    def loader(self, dm: PairDataModule) -> BatchLoader:
        return self.sampled(
            dm,
            lambda sampler, n, g: sampler.pairs(n, dm.similar_fraction, g),
            lambda x, y, a, b, target: (x[a], x[b], target),
        )


class TripletBatches(BatchKind):
    images = 3

    def loader(self, dm: PairDataModule) -> BatchLoader:
        return self.sampled(
            dm,
            lambda sampler, n, g: sampler.triplets(n, g),
            lambda x, y, a, p, q: (x[a], x[p], x[q], y[a]),
        )

    def loss_rows(self, sampler: PairSampler, pairs: Rows, g: Any) -> Rows | None:
        a, p, q = sampler.triplets(len(pairs[0]), g)
        return a, p, q, sampler.labels[a]


class ViewBatches(BatchKind):
    images = 2
    needs_augmentation = True

    def __init__(self, symmetries: Sequence[str] = ()) -> None:  # noqa: D107 (BatchKind's)
        unknown = sorted(set(symmetries) - set(SYMMETRIES))
        check(not unknown, f"data.new_classes: unknown {unknown}; valid: {', '.join(SYMMETRIES)}.")
        self.symmetries = list(symmetries)

    def loader(self, dm: PairDataModule) -> BatchLoader:
        return dm.image_batches()

    def on_device(self, dm: PairDataModule, batch: Any) -> Any:
        images, labels = batch
        if self.symmetries:
            images, labels = new_classes(images, labels, self.symmetries, dm.label_stride)
        return dm.prepare_training(images), dm.prepare_training(images), labels

    def loss_rows(self, sampler: PairSampler, pairs: Rows, g: Any) -> Rows | None:
        return None  # two augmented views of each image: nothing fixed to evaluate the loss on


#: the batch kinds by the name objectives give them (Objective.batches)
BATCHES: dict[str, type[BatchKind]] = {"pairs": PairBatches, "triplets": TripletBatches, "views": ViewBatches}
