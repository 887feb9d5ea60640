"""Using a trained Siamese model: `SiameseModel` (a checkpoint as one object: embed, compare,
identify), a searchable gallery index, the article's reference protocol, and the encoder exported
for use outside Python."""

from siamese_lit.inference.index import (
    GalleryIndex,
    GalleryIndexError,
    Match,
    build_index,
    checkpoint_fingerprint,
    embed_digits,
    identify,
    load_index,
    save_index,
)
from siamese_lit.inference.model import Comparison, SiameseModel, Threshold, choose_threshold

__all__ = [
    "Comparison",
    "GalleryIndex",
    "GalleryIndexError",
    "Match",
    "SiameseModel",
    "Threshold",
    "build_index",
    "checkpoint_fingerprint",
    "choose_threshold",
    "embed_digits",
    "identify",
    "load_index",
    "save_index",
]
