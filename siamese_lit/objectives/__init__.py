"""Training objectives of the Siamese model (each names the batches it takes) and the one distance."""

from siamese_lit.objectives.base import Objective
from siamese_lit.objectives.contrastive import ContrastiveObjective, contrastive_loss
from siamese_lit.objectives.distance import Centering, Distance, centering
from siamese_lit.objectives.triplet import TripletObjective
from siamese_lit.objectives.views import ViewObjective

__all__ = [
    "Centering",
    "ContrastiveObjective",
    "Distance",
    "Objective",
    "TripletObjective",
    "ViewObjective",
    "centering",
    "contrastive_loss",
]
