"""The devices a test runs on: the CPU always, CUDA where there is a GPU (skipped, with the reason,
elsewhere)."""

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]
