"""What a model's hyper-parameters may hold where: each argument takes one kind of class, and a
checkpoint's tensors are plain dense CPU tensors.

The allow-list (siamese_lit.checkpoints.specs) says which classes may be built at all; a class it admits
can still be out of place: a callback or `torch.nn.Identity` as `net`, a data module as `objective`. Built,
such a model fails later with a traceback (or, for a data module, reads files). So each model
argument names the kind of class it takes, checked on the class before anything is built; and the
state dict may hold only strided CPU tensors of real numbers (a sparse or meta tensor fails inside
`load_state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from siamese_lit.checkpoints.limits import NETWORKS
from siamese_lit.checkpoints.specs import _import, check_target
from siamese_lit.utils.errors import CheckpointError, ConfigError

#: model argument -> (what it is, the base classes one of which its class must subclass)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "distance": ("a distance", ("siamese_lit.objectives.Distance",)),
    "objective": ("an objective", ("siamese_lit.objectives.Objective",)),
    "optimizer": ("an optimizer", ("torch.optim.Optimizer",)),
    "scheduler": ("an LR scheduler", ("torch.optim.lr_scheduler.LRScheduler",)),
}
NETWORK_ROLES = ("net",)


def check_roles(hparams: Mapping[str, Any], where: str, error: type[Exception] = ConfigError) -> None:
    """`error` naming the first model argument whose `_target_` is not of the kind the argument takes
    (the networks: one of siamese_lit.checkpoints.limits.NETWORKS)."""
    for key in (*NETWORK_ROLES, *ROLES):
        spec = hparams.get(key)
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            continue
        target = spec["_target_"]
        cls = check_target(target, f"{where}.{key}")  # the allow-list first: nothing else is imported
        if key in NETWORK_ROLES:
            if target not in NETWORKS:
                names = sorted({t.rsplit(".", 1)[1] for t in NETWORKS})
                raise error(
                    f"{where}.{key}._target_={target} is not a network: {key} must be one of "
                    f"{', '.join(names)} (siamese_lit.models)."
                )
            continue
        what, bases = ROLES[key]
        if not any(issubclass(cls, _import(base)) for base in bases):
            raise error(f"{where}.{key}._target_={target} is not {what}: {key} must be {what} class.")


#: dtypes a stored weight may have (what a model's parameters and buffers hold)
WEIGHT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensors(state_dict: Mapping[str, Any], where: str) -> None:
    """CheckpointError naming the first entry of a state dict that is not a dense CPU tensor of real
    numbers: sparse, meta (no values), quantized or complex tensors, and anything else."""
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            kind = type(tensor).__name__
        elif tensor.layout != torch.strided:
            kind = f"a {tensor.layout} tensor"
        elif tensor.device.type != "cpu":
            kind = f"a tensor on the {tensor.device.type} device (no values)"
        elif tensor.dtype not in WEIGHT_DTYPES:
            kind = f"a {tensor.dtype} tensor"
        else:
            continue
        raise CheckpointError(
            f"{where}: {name} is {kind}, not a dense tensor of real numbers (an edited checkpoint): refused."
        )
