"""Reading a checkpoint to rebuild a trained model from, with one-line errors for the ways that goes wrong.

The network's Hydra config is in the checkpoint's hyper-parameters, so the model rebuilds itself
with no other input; the layer above says which class each argument takes (`roles`). A checkpoint
is a file from anywhere, so nothing in it may run code: it is read with
`torch.load(weights_only=True)` (plain containers, tensors and numbers only; the project's
checkpoints hold nothing else, so no type is allow-listed), and its hyper-parameters may only name
the classes siamese_lit.checkpoints.specs allows. Lightning's `load_from_checkpoint` is not used:
it would instantiate before those checks. Missing, truncated files, the other kind of model,
weights of other shapes and non-finite weights get one-line errors.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from siamese_lit.checkpoints.limits import check_archive, check_parameters, check_structure
from siamese_lit.checkpoints.roles import NETWORK, Roles, check_roles
from siamese_lit.checkpoints.specs import check_spec
from siamese_lit.checkpoints.tensors import check_tensors
from siamese_lit.utils.errors import CheckpointError

#: The data settings evaluate and compare take from the checkpoint unless given on the command line.
SAVED_DATA_KEYS = ("classes", "test_classes", "mean", "std")


def why(exc: Exception) -> str:
    """The exception's type and the first line of its message, for a one-line error."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_checkpoint(path: str | Path | None, what: str = "ckpt_path", *, roles: Roles) -> dict[str, Any]:
    """The checkpoint dict at `path`, its contents checked (check_contents with `roles`);
    CheckpointError when it is not given, missing, unreadable or refused."""
    if not path:
        raise CheckpointError(f"{what} is required: pass {what}=<run dir>/checkpoints/<name>.ckpt.")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"{what}={path} does not exist or is not a file: give the path of a .ckpt file."
        )
    check_archive(p, f"{what}={path}")  # sizes from the zip's directory, before anything is inflated
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, a type weights_only refuses
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                f"{what}={path} refers to {refused[1]}, which a siamese_lit checkpoint never does: refused "
                "unread (loading it could run code)."
            ) from exc
        raise CheckpointError(
            f"{what}={path} is not a readable checkpoint (truncated or corrupted?): {why(exc)}"
        ) from exc
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("state_dict"), dict)
        or not isinstance(ckpt.get("hyper_parameters"), dict)
    ):
        raise CheckpointError(
            f"{what}={path} is not a siamese_lit Lightning checkpoint (no state_dict/hyper_parameters)."
        )
    check_contents(ckpt, f"{what}={path}", roles)
    return ckpt


def check_contents(ckpt: dict[str, Any], where: str, roles: Roles) -> None:
    """What a loaded checkpoint may hold, checked before anything is built from it: bounded
    containers, no ${...} (OmegaConf and Hydra would resolve it: `${oc.env:SECRET}` reads the
    environment), allowed classes in their places (`roles`: model argument -> base class, the
    network's under NETWORK), plain tensors backed by their own values, and a network that fits
    them."""
    check_structure(ckpt, where)
    hparams = ckpt["hyper_parameters"]
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        check_no_interpolation(ckpt.get(key), f"{where}: {key}")
    check_roles(hparams, f"{where}: hyper-parameters", CheckpointError, roles=roles)
    check_spec(hparams, f"{where}: hyper-parameters", allowed_only=True)
    check_tensors(ckpt["state_dict"], where)
    check_parameters(hparams, f"{where}: hyper-parameters", ckpt["state_dict"], network=roles[NETWORK])


def check_no_interpolation(obj: Any, where: str) -> None:
    """CheckpointError naming the first key or string of `obj` holding `${`: what a run saves is
    resolved, so an interpolation in a file was put there, and resolving it could read the
    environment or files into an error line. The string is quoted as written, never resolved."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, key = stack.pop()
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(
                f"{where}{key} holds {value[:80]!r}: a checkpoint holds no ${{...}} interpolations "
                "(refused unresolved)."
            )
        if isinstance(value, dict):
            stack += [(k, f"{key} (a key)") for k in value if isinstance(k, str)]
            stack += [(v, f"{key}.{k}") for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, f"{key}[{i}]") for i, v in enumerate(value)]


def check_weights(model: torch.nn.Module, state_dict: dict[str, Any], where: str) -> None:
    """CheckpointError naming the first tensor that `model` lacks, misses, or holds in another shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: the weights do not fit the model its hyper-parameters build ("
            + "; ".join(
                f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected))
                if keys
            )
            + ")."
        )
    for name, tensor in own.items():
        saved = state_dict[name]
        if not isinstance(saved, torch.Tensor) or saved.shape != tensor.shape:
            got = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise CheckpointError(
                f"{where}: tensor {name} is {got} in the checkpoint but {tuple(tensor.shape)} in the model "
                "its hyper-parameters build (a mismatched or edited checkpoint)."
            )


def check_finite(model: torch.nn.Module, where: str, unset_when_nan: Collection[str] = ()) -> None:
    """CheckpointError naming the first parameter or buffer with a NaN or infinite value: such a model
    scores every input as NaN, which would read as a verdict. NaN is allowed in the buffers named in
    `unset_when_nan`, for which the model says NaN means "never set" (not a diverged run)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        unset = torch.isnan(tensor) if name in unset_when_nan else torch.zeros_like(tensor, dtype=torch.bool)
        if not bool((torch.isfinite(tensor) | unset).all()):
            raise CheckpointError(
                f"{where}: {name} holds NaN or infinite values (a diverged run?): use an earlier "
                "checkpoint of that run."
            )


def check_finite_outputs(values: torch.Tensor, what: str, path: Any) -> torch.Tensor:
    """`values` (embeddings, logits, distances, scores) when all finite; CheckpointError otherwise: a
    NaN distance compares as "not the same", so it would be printed as a verdict. Finite embeddings
    can still give infinite distances (weights of 1e38 overflow float32): every figure drawn from a
    model is checked, not only its embeddings."""
    if not bool(torch.isfinite(values).all()):
        raise CheckpointError(
            f"the model of {path} gives NaN or infinite {what} for these inputs (a diverged or edited "
            "checkpoint, or weights too large?): no result can be drawn from it."
        )
    return values


def check_embedding_scale(embeddings: torch.Tensor, what: str, path: Any) -> torch.Tensor:
    """`embeddings` when every distance between two of them is finite in their dtype: the largest
    squared distance, (2 * largest norm)^2, must be representable. CheckpointError otherwise."""
    check_finite_outputs(embeddings, what, path)
    norm = embeddings.detach().float().norm(dim=-1).max() if embeddings.numel() else torch.tensor(0.0)
    check_finite_outputs((2 * norm) ** 2, f"distances between {what}", path)
    return embeddings


def command_line_keys() -> set[str]:
    """The keys set on the command line (Hydra's task overrides); none outside a Hydra run."""
    if not HydraConfig.initialized():
        return set()
    return {o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.task}


def saved_data_settings(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The SAVED_DATA_KEYS of the data module a checkpoint was trained with (those it recorded)."""
    saved = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(saved, dict):
        return {}
    return {key: saved[key] for key in SAVED_DATA_KEYS if key in saved}


def with_saved_data(data: DictConfig, saved: dict[str, Any], what: str) -> DictConfig:
    """A copy of the data config with the checkpoint's `saved` settings, except those given on the
    command line: a model trained on some digits, or with another normalisation, is scored the way
    it was trained unless the user says otherwise."""
    given = command_line_keys()
    data = data.copy()
    with open_dict(data):
        for key, value in saved.items():
            if f"data.{key}" not in given:
                data[key] = value
    check_spec(data, f"data (with the settings saved in {what})")
    return data
