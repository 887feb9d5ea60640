"""MNIST in memory: the image data module, the pair/triplet data module and the pair sampler."""

from siamese_lit.data.datamodule import MNISTDataModule
from siamese_lit.data.pairs import DISSIMILAR, SIMILAR, PairDataModule, PairSampler

__all__ = ["DISSIMILAR", "SIMILAR", "MNISTDataModule", "PairDataModule", "PairSampler"]
