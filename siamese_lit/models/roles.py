"""The kind of class each argument of a model takes, passed to the checkpoint checks
(siamese_lit.checkpoints.roles), which name no model class themselves.

Any subclass of Encoder is a network a model may build as `net`: a new encoder needs no entry here.
"""

from __future__ import annotations

import torch

from siamese_lit.models.encoders import Encoder
from siamese_lit.objectives.base import Objective
from siamese_lit.objectives.distance import Distance

#: model argument -> the class its `_target_` must subclass
MODEL_ROLES: dict[str, type] = {
    "net": Encoder,
    "distance": Distance,
    "objective": Objective,
    "optimizer": torch.optim.Optimizer,
    "scheduler": torch.optim.lr_scheduler.LRScheduler,
}
