"""The one way the project seeds a random draw that must be the same everywhere."""

from __future__ import annotations

import torch


def seeded(seed: int) -> torch.Generator:
    """A CPU generator: samples are the same on every device and every rank."""
    return torch.Generator().manual_seed(int(seed))
