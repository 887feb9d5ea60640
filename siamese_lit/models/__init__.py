"""Networks (plain nn.Modules) and the LightningModules that train them.

The LightningModules load on first use, so the encoders (and a checkpoint's `net`, which names
`siamese_lit.models.SequenceEncoder`) import without Lightning.
"""

from importlib import import_module
from typing import Any

from siamese_lit.models.encoders import CNNEncoder, Encoder, MLPEncoder, SequenceEncoder

#: the LightningModules, by the module defining each, imported when first used
_LIGHTNING = {"LitClassifier": "classifier", "LitSiamese": "siamese"}

__all__ = ["CNNEncoder", "Encoder", "LitClassifier", "LitSiamese", "MLPEncoder", "SequenceEncoder"]


def __getattr__(name: str) -> Any:
    if name not in _LIGHTNING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LIGHTNING[name]}"), name)
