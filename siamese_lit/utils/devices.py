"""The device a command runs its model on."""

from __future__ import annotations

import torch

from siamese_lit.utils.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto`: the accelerator when there is one (CUDA, then MPS), else the CPU; otherwise torch's name."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(f"device={name!r} is not a torch device: use auto, cpu, cuda or mps.") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
