"""Lightning callbacks of siamese_lit, configured in conf/callbacks/."""

from siamese_lit.callbacks.progress import LogProgress
from siamese_lit.callbacks.tensorboard import (
    ClassifierFigures,
    DistanceHistograms,
    EmbeddingProjector,
    ModelSummaryText,
    SiameseFigures,
    log_final_hparams,
    tensorboard_writer,
)

__all__ = [
    "ClassifierFigures",
    "DistanceHistograms",
    "EmbeddingProjector",
    "LogProgress",
    "ModelSummaryText",
    "SiameseFigures",
    "log_final_hparams",
    "tensorboard_writer",
]
