"""The device a command runs its model on."""

from __future__ import annotations

import torch

from siamese_lit.utils.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto`: the accelerator when there is one (CUDA, then MPS), else the CPU; otherwise torch's name."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(f"device={name!r} is not a torch device: use auto, cpu, cuda or mps.") from exc
        check_usable(device, name)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_usable(device: torch.device, name: str) -> None:
    """ConfigError unless this machine can run a model on `device`: torch parses names (cuda:7,
    meta, xla, hpu) it cannot use here, and fails later with a traceback."""
    if device.type == "cpu":
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"device={name}: this machine has no CUDA GPU (torch sees none): use device=cpu."
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device={name}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}: "
                "pick one of them."
            )
        return
    if device.type == "mps" and torch.backends.mps.is_available():
        return
    raise ConfigError(
        f"device={name} cannot run a model on this machine: use auto, cpu, cuda[:N] (with a GPU) or "
        "mps (on a Mac)."
    )
