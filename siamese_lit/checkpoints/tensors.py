"""A checkpoint's tensors: plain dense CPU tensors of real numbers, each backed by its own values.

A sparse or meta tensor fails inside `load_state_dict`. A view can claim far more values than the
file holds: `torch.zeros(1).expand(47_000_000)` is 47M values in 4 bytes of storage, so a 7.8 KB
file could pass for a model of 47M parameters (and be exported and compared as one). So every
tensor must fit in its storage from its offset on, and what a checkpoint stores is counted by its
distinct storages, not by the views onto them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from siamese_lit.utils.errors import CheckpointError

#: dtypes a stored weight may have (what a model's parameters and buffers hold)
WEIGHT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _backing(tensor: torch.Tensor) -> int:
    """How many values of `tensor`'s dtype its storage holds from the tensor's offset on."""
    return tensor.untyped_storage().nbytes() // tensor.element_size() - tensor.storage_offset()


def check_tensors(state_dict: Mapping[str, Any], where: str) -> None:
    """CheckpointError naming the first entry of a state dict that is not a dense CPU tensor of real
    numbers (sparse, meta, quantized or complex tensors, and anything else), or whose storage holds
    fewer values than the tensor has (a stride-0 or overlapping view)."""
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            kind = type(tensor).__name__
        elif tensor.layout != torch.strided:
            kind = f"a {tensor.layout} tensor"
        elif tensor.device.type != "cpu":
            kind = f"a tensor on the {tensor.device.type} device (no values)"
        elif tensor.dtype not in WEIGHT_DTYPES:
            kind = f"a {tensor.dtype} tensor"
        elif tensor.numel() > _backing(tensor):
            raise CheckpointError(
                f"{where}: {name} has {tensor.numel()} values but its storage holds {_backing(tensor)} (a "
                "stride-0 or overlapping view: an edited checkpoint): refused."
            )
        else:
            continue
        raise CheckpointError(
            f"{where}: {name} is {kind}, not a dense tensor of real numbers (an edited checkpoint): refused."
        )


def stored_values(state_dict: Mapping[str, Any]) -> int:
    """The values a state dict's tensors hold, counted once per distinct storage (views that share
    one, as tied weights do, count once): what a model built from the file may fill at most."""
    storages: dict[tuple[int, int], int] = {}
    for tensor in state_dict.values():
        if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided:
            storage = tensor.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            storages[key] = max(storages.get(key, 0), storage.nbytes() // tensor.element_size())
    return sum(storages.values())
