"""Using a trained Siamese model: a searchable gallery index, the article's reference protocol,
and the encoder exported for use outside Python."""

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

__all__ = [
    "GalleryIndex",
    "GalleryIndexError",
    "Match",
    "build_index",
    "checkpoint_fingerprint",
    "embed_digits",
    "identify",
    "load_index",
    "save_index",
]
