"""Batches built by indexing in-memory tensors: one gather per batch, no per-item Python work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from siamese_lit.utils.seeding import seeded

__all__ = ["BatchLoader", "Context", "seeded", "single_process"]

#: (epoch, rank, world_size) of the run the loader serves.
Context = Callable[[], tuple[int, int, int]]


def single_process() -> tuple[int, int, int]:
    return 0, 0, 1


class BatchLoader:
    """A re-iterable of batches, usable wherever Lightning takes a dataloader.

    `rows(epoch)` gives the epoch's rows as index tensors of equal length: a permutation of image
    indices, or the (a, b, y) of sampled pairs. `take(*rows)` turns a batch of rows into the batch
    by indexing the data tensors. Each rank of a distributed run takes every `world_size`-th row, so
    no row is seen twice in an epoch; with `even_shards` the rows are first cut to a multiple of
    `world_size` so every rank runs the same number of steps (DDP training needs that).
    """

    def __init__(
        self,
        rows: Callable[[int], tuple[Tensor, ...]],
        take: Callable[..., Any],
        num_rows: int,
        batch_size: int,
        *,
        even_shards: bool = False,
        drop_last: bool = False,
        context: Context = single_process,
    ) -> None:
        self.rows, self.take, self.num_rows = rows, take, num_rows
        self.batch_size, self.even_shards, self.drop_last = batch_size, even_shards, drop_last
        self.context = context

    def _shard_size(self, rank: int, world: int) -> int:
        n = self.num_rows - self.num_rows % world if self.even_shards else self.num_rows
        return len(range(rank, n, world))

    def __len__(self) -> int:
        _, rank, world = self.context()
        n = self._shard_size(rank, world)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        epoch, rank, world = self.context()
        rows = self.rows(epoch)
        n = self.num_rows - self.num_rows % world if self.even_shards else self.num_rows
        rows = [r[:n][rank::world] for r in rows]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.take(*(r[start : start + self.batch_size] for r in rows))
