"""MNIST in memory: the image data module, the Siamese data module, its batch kinds and the sampler.

The data modules (Lightning) load on first use, so the modules a trained model needs (images,
normalization, mnist) import without Lightning: `siamese_lit.data.MNISTDataModule` still resolves.
"""

from importlib import import_module
from typing import Any

#: name -> the module defining it, imported when the name is first used
_WHERE = {
    "BATCHES": "batches",
    "DISSIMILAR": "batches",
    "SIMILAR": "batches",
    "EvalSet": "pairs",
    "MNISTDataModule": "datamodule",
    "PairDataModule": "pairs",
    "PairSampler": "sampler",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
