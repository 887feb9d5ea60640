"""MNIST in memory: the image data module, the Siamese data module, its batch kinds and the sampler."""

from siamese_lit.data.batches import BATCHES, DISSIMILAR, SIMILAR
from siamese_lit.data.datamodule import MNISTDataModule
from siamese_lit.data.pairs import EvalSet, PairDataModule
from siamese_lit.data.sampler import PairSampler

__all__ = ["BATCHES", "DISSIMILAR", "SIMILAR", "EvalSet", "MNISTDataModule", "PairDataModule", "PairSampler"]
