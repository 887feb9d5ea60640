"""Networks (plain nn.Modules) and the LightningModules that train them."""

from siamese_lit.models.classifier import LitClassifier
from siamese_lit.models.encoders import CNNEncoder, Encoder, MLPEncoder, SequenceEncoder
from siamese_lit.models.siamese import LitSiamese

__all__ = ["CNNEncoder", "Encoder", "LitClassifier", "LitSiamese", "MLPEncoder", "SequenceEncoder"]
