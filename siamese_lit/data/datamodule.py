"""MNIST held in memory as uint8 tensors (on the training device), batched by indexing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from siamese_lit.checkpoints.specs import plain
from siamese_lit.data.augment import build_augmentation
from siamese_lit.data.loader import BatchLoader, seeded
from siamese_lit.data.mnist import ensure_mnist, load_mnist
from siamese_lit.data.normalization import Normalization
from siamese_lit.utils.errors import check


class MNISTDataModule(L.LightningDataModule):
    """The 60k training images split (seeded) into train/val, and the untouched 10k test images.

    Batches are (images uint8 (B, 28, 28), labels) for training and (images, labels, indices) for
    evaluation; images are normalised (and optionally augmented) per batch on the batch's device in
    `on_after_batch_transfer`, so the loop never touches single items.

    Args:
        data_dir: folder holding MNIST/raw/ (torchvision layout).
        download: fetch the files with torchvision when they are missing.
        batch_size: training batch size; eval_batch_size: for validation and test.
        val_size: images held out of the 60k training images for validation.
        train_size / test_size: use only that many (seeded) images, e.g. for quick runs; None = all.
        classes: digits to keep for training and validation (None = all ten).
        test_classes: digits to keep for testing (None = `classes`).
        seed: seeds the training order (pass the run's seed).
        split_seed: seeds the train/val split and every fixed evaluation sample, independently of
            `seed`, so runs with different seeds are scored on the same images.
        mean, std: normalisation of pixel values in [0, 1].
        augment: None, or the Hydra config of an augmentation policy (conf/data/augment/: none,
            affine, robust), applied to each training image with parameters drawn per image on
            the device (siamese_lit.data.augment).
    """

    def __init__(
        self,
        data_dir: str,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        train_size: int | None = None,
        test_size: int | None = None,
        classes: Sequence[int] | None = None,
        test_classes: Sequence[int] | None = None,
        seed: int = 0,
        split_seed: int = 0,
        mean: float = 0.1307,
        std: float = 0.3081,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check(str(data_dir).strip() != "", "data.data_dir (paths.data_dir) is empty: give the MNIST folder.")
        check(batch_size >= 1, f"data.batch_size must be >= 1, got {batch_size}.")
        check(eval_batch_size >= 1, f"data.eval_batch_size must be >= 1, got {eval_batch_size}.")
        check(0 < val_size < 60_000, f"data.val_size must be in 1..59999, got {val_size}.")
        check(math.isfinite(mean), f"data.mean must be a finite number, got {mean}.")
        check(0 < std < math.inf, f"data.std must be > 0 and finite, got {std}.")
        for name, size in (("train_size", train_size), ("test_size", test_size)):
            check(size is None or size >= 1, f"data.{name} must be >= 1 (or null: all), got {size}.")
        for name, digits in (("classes", classes), ("test_classes", test_classes)):
            if digits is not None:
                check(
                    len(set(digits)) >= 2 and all(0 <= int(d) <= 9 for d in digits),
                    f"data.{name} must list at least 2 distinct digits in 0..9, got {list(digits)}.",
                )
        self.save_hyperparameters(logger=False)
        self.hparams.update({k: plain(v) for k, v in self.hparams.items()})  # subclasses' too
        self.data_dir, self.download = str(data_dir), download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.classes = sorted({int(c) for c in classes}) if classes is not None else list(range(10))
        self.test_classes = sorted({int(c) for c in test_classes}) if test_classes else self.classes
        self.seed, self.split_seed = seed, split_seed
        self.mean, self.std = mean, std
        self.normalization = Normalization(mean, std)
        self.augment = build_augmentation(plain(augment))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    # ---- loading -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        ensure_mnist(self.data_dir, self.download)

    @property
    def device(self) -> torch.device:
        """The device the data lives on: the training device once a Trainer is attached."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        x, y = load_mnist(self.data_dir, train=True)
        perm = torch.randperm(len(y), generator=seeded(self.split_seed))
        val_idx, train_idx = perm[: self.hparams.val_size], perm[self.hparams.val_size :]
        x_test, y_test = load_mnist(self.data_dir, train=False)
        splits = {
            # the whole training split, whatever the class filter: galleries of references come from it
            "train_all": (x[train_idx], y[train_idx]),
            "train": self._subset(x[train_idx], y[train_idx], self.classes, self.hparams.train_size, 1),
            "val": self._subset(x[val_idx], y[val_idx], self.classes, None, 2),
            "test": self._subset(x_test, y_test, self.test_classes, self.hparams.test_size, 3),
        }
        device = self.device
        self.splits = {k: (xs.to(device), ys.to(device)) for k, (xs, ys) in splits.items()}
        if self.augment is not None:  # kornia draws its parameters where its module lives
            self.augment.to(device)

    def _subset(
        self, x: Tensor, y: Tensor, classes: list[int], size: int | None, salt: int
    ) -> tuple[Tensor, Tensor]:
        keep = torch.isin(y, torch.tensor(classes, device=y.device))
        x, y = x[keep], y[keep]
        if size is not None and size < len(y):
            pick = torch.randperm(len(y), generator=seeded(self.split_seed + salt))[:size].sort().values
            x, y = x[pick], y[pick]
        return x, y

    # ---- loaders -------------------------------------------------------------------------------

    def context(self) -> tuple[int, int, int]:
        """(epoch, rank, world size) of the run the loaders serve."""
        t = self.trainer
        return (t.current_epoch, t.global_rank, t.world_size) if t is not None else (0, 0, 1)

    def image_loader(self, split: str, batch_size: int | None = None) -> BatchLoader:
        """(images, labels, indices) of one split, in order: what evaluation embeds once."""
        x, y = self.splits[split]
        index = torch.arange(len(y), device=y.device)
        return BatchLoader(
            lambda epoch: (index,),
            lambda i: (x[i], y[i], i),
            len(y),
            batch_size or self.eval_batch_size,
            context=self.context,
        )

    def train_dataloader(self) -> BatchLoader:
        return self.image_batches()

    def image_batches(self) -> BatchLoader:
        """(images, labels) of the training split, every image once per epoch in a seeded order."""
        x, y = self.splits["train"]

        def rows(epoch: int) -> tuple[Tensor]:
            return (torch.randperm(len(y), generator=seeded(self.seed * 100_003 + epoch)).to(y.device),)

        return BatchLoader(
            rows, lambda i: (x[i], y[i]), len(y), self.batch_size, even_shards=True, context=self.context
        )

    def val_dataloader(self) -> BatchLoader:
        return self.image_loader("val")

    def test_dataloader(self) -> BatchLoader:
        return self.image_loader("test")

    # ---- per-batch preprocessing on the device -------------------------------------------------

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (..., 28, 28) -> float, normalised."""
        return self.normalization(images)

    def prepare_training(self, images: Tensor) -> Tensor:
        """uint8 (B, 28, 28) training images -> normalised, each under its own draw of the
        augmentation policy when there is one."""
        if self.augment is None:
            return self.normalize(images)
        return self.normalization(self.augment(images.unsqueeze(1).float() / 255.0).squeeze(1))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        training = self.trainer is not None and self.trainer.training
        prepare = self.prepare_training if training else self.normalize
        return tuple(prepare(t) if isinstance(t, Tensor) and t.dtype == torch.uint8 else t for t in batch)
