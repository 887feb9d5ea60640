"""What a training objective of a Siamese model is: the batches it takes and how they become a loss.

An objective is the one place that decides a training recipe's batch kind. `batches` names what
the data module must yield (siamese_lit.data.batches: "pairs", "triplets" or "views"; the config
reads it with `${batches_of:...}`, so an experiment chooses the objective only). Every kind of batch
is `(*images, target)`: the model embeds all the images in one forward pass of the shared encoder
and hands the objective their embeddings, in the batch's order, with the target.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from siamese_lit.objectives.distance import Distance

#: (loss, per-item distances logged as epoch means, e.g. {"d_similar": (B,) tensor})
Output = tuple[Tensor, dict[str, Tensor]]


class Objective(nn.Module):
    """Base of the objectives: `batches` and `logged` (the names of the distances `forward` returns)."""

    batches: ClassVar[str]
    logged: ClassVar[tuple[str, ...]] = ("d_similar", "d_dissimilar")

    def __init__(self) -> None:
        super().__init__()
        self.distance = Distance()

    def bind(self, distance: Distance) -> None:
        """Measure with the model's distance (LitSiamese calls it once, before training)."""
        self.distance = distance

    def forward(self, embeddings: tuple[Tensor, ...], target: Tensor) -> Output:
        raise NotImplementedError
