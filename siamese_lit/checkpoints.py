"""Loading a trained model from a checkpoint, with one-line errors for the ways that goes wrong.

The network's Hydra config is in the checkpoint's hyper-parameters (siamese_lit.models.base), so
`LitX.load_from_checkpoint(path)` needs no other input. What it does not do is say clearly that the
file is missing, truncated, or of the other kind of model: a classifier's hyper-parameters passed
to LitSiamese end in a TypeError deep in Lightning. `load_model` checks those first.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, TypeVar

import torch

from siamese_lit.errors import CheckpointError
from siamese_lit.models import LitClassifier, LitSiamese
from siamese_lit.models.base import LitBase

#: The kinds of checkpoint, by the name users know them under, and the experiments that make them.
KINDS: dict[str, tuple[type[LitBase], str]] = {
    "Siamese": (LitSiamese, "+experiment=siamese (or another siamese_* experiment)"),
    "classifier": (LitClassifier, "+experiment=classifier (or rnn_/bilstm_classifier)"),
}

M = TypeVar("M", bound=LitBase)


def _fits(cls: type[LitBase], hparams: dict[str, Any]) -> bool:
    """Whether `cls(**hparams)` matches its signature: every required argument and no unknown one."""
    params = inspect.signature(cls.__init__).parameters
    required = {n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty}
    return required <= hparams.keys() <= params.keys() - {"self"}


def _why(exc: Exception) -> str:
    """The exception's type and the first line of its message, for a one-line error."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def checkpoint_kind(hparams: dict[str, Any]) -> str | None:
    """The name in KINDS whose model these hyper-parameters build, or None."""
    return next((name for name, (cls, _) in KINDS.items() if _fits(cls, hparams)), None)


def read_checkpoint(path: str | Path | None, what: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint dict at `path`; CheckpointError when it is not given, missing or unreadable."""
    if not path:
        raise CheckpointError(f"{what} is required: pass {what}=<run dir>/checkpoints/<name>.ckpt.")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"{what}={path} does not exist or is not a file: give the path of a .ckpt file."
        )
    try:
        # a Lightning checkpoint holds more than weights (loops, callbacks state): the same
        # unpickling load_from_checkpoint does; only load checkpoints you trust
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, not a torch file, pickle errors: all mean "unreadable"
        raise CheckpointError(
            f"{what}={path} is not a readable checkpoint (truncated or corrupted?): {_why(exc)}"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{what}={path} is not a siamese_lit Lightning checkpoint (no state_dict/hyper_parameters)."
        )
    return ckpt


def load_model(
    path: str | Path | None, kind: str, device: torch.device | str = "cpu", what: str = "ckpt_path"
) -> Any:
    """The `kind` model ("Siamese" or "classifier", see KINDS) of a checkpoint, in eval mode on `device`."""
    cls, experiment = KINDS[kind]
    ckpt = read_checkpoint(path, what)
    found = checkpoint_kind(ckpt["hyper_parameters"])
    if found != kind:
        is_a = f"a {found} checkpoint" if found else "not a checkpoint of a siamese_lit model"
        raise CheckpointError(
            f"{what}={path} is {is_a}; a {kind} checkpoint is expected (trained with {experiment})."
        )
    try:
        model = cls.load_from_checkpoint(path, map_location=device)
    except Exception as exc:  # e.g. weights that do not fit the configured network
        raise CheckpointError(f"{what}={path}: cannot rebuild the {kind} model: {_why(exc)}") from exc
    return model.eval().to(device)


def resolve_device(name: str) -> torch.device:
    """`auto`: the accelerator when there is one (CUDA, then MPS), else the CPU; otherwise torch's name."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise CheckpointError(
                f"device={name!r} is not a torch device: use auto, cpu, cuda or mps."
            ) from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
