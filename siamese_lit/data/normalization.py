"""The input normalisation of every model: pixels in [0, 1] (uint8 / 255), then (x - mean) / std.

One definition for training (the data module, after its augmentation), for using a trained model
(siamese_lit.inference.SiameseModel, which reads mean and std from the checkpoint) and inside the
exported ONNX graph (siamese_lit.inference.onnx_export).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: MNIST's pixel mean and standard deviation (of values in [0, 1]): conf/data/mnist.yaml's defaults.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class Normalization:
    """`(pixels - mean) / std` of uint8 images (0..255, divided by 255 first) or float pixels in [0, 1]."""

    mean: float = MNIST_MEAN
    std: float = MNIST_STD

    def __call__(self, images: Tensor) -> Tensor:
        pixels = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return (pixels - self.mean) / self.std
