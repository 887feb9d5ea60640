"""Loading a trained model from a checkpoint, with one-line errors for the ways that goes wrong.

The network's Hydra config is in the checkpoint's hyper-parameters (siamese_lit.models.base), so
the model rebuilds itself with no other input. A checkpoint is a file from anywhere, so nothing in
it may run code: it is read with `torch.load(weights_only=True)` (plain containers, tensors and
numbers only; the project's checkpoints hold nothing else, so no type is allow-listed), and its
hyper-parameters may only name the classes siamese_lit.specs allows. Lightning's
`load_from_checkpoint` is not used: it would instantiate before those checks. Missing, truncated
files, the other kind of model, weights of other shapes and non-finite weights get one-line errors.
"""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from siamese_lit.errors import CheckpointError, find_user_error
from siamese_lit.models import LitClassifier, LitSiamese
from siamese_lit.models.base import LitBase
from siamese_lit.specs import check_spec

#: The kinds of checkpoint, by the name users know them under, and the experiments that make them.
KINDS: dict[str, tuple[type[LitBase], str]] = {
    "Siamese": (LitSiamese, "+experiment=siamese (or another siamese_* experiment)"),
    "classifier": (LitClassifier, "+experiment=classifier (or rnn_/bilstm_classifier)"),
}

#: The data settings evaluate and compare take from the checkpoint unless given on the command line.
SAVED_DATA_KEYS = ("classes", "test_classes", "mean", "std")


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
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, a type weights_only refuses
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                f"{what}={path} refers to {refused[1]}, which a siamese_lit checkpoint never does: refused "
                "unread (loading it could run code)."
            ) from exc
        raise CheckpointError(
            f"{what}={path} is not a readable checkpoint (truncated or corrupted?): {_why(exc)}"
        ) from exc
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("state_dict"), dict)
        or not isinstance(ckpt.get("hyper_parameters"), dict)
    ):
        raise CheckpointError(
            f"{what}={path} is not a siamese_lit Lightning checkpoint (no state_dict/hyper_parameters)."
        )
    check_spec(ckpt["hyper_parameters"], f"{what}={path}: hyper-parameters", allowed_only=True)
    return ckpt


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


def check_finite(model: torch.nn.Module, where: str) -> None:
    """CheckpointError naming the first parameter or buffer with a NaN or infinite value: such a model
    scores every input as NaN, which would read as a verdict. A NaN `threshold` is allowed: it means
    "never validated" (LitSiamese)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        allowed = torch.isnan(tensor) if name == "threshold" else torch.zeros_like(tensor, dtype=torch.bool)
        if not bool((torch.isfinite(tensor) | allowed).all()):
            raise CheckpointError(
                f"{where}: {name} holds NaN or infinite values (a diverged run?): use an earlier "
                "checkpoint of that run."
            )


def check_outputs(outputs: torch.Tensor, what: str, path: Any) -> torch.Tensor:
    """`outputs` (embeddings, logits) when all finite; CheckpointError otherwise: a NaN distance
    compares as "not the same", so it would be printed as a verdict."""
    if not bool(torch.isfinite(outputs).all()):
        raise CheckpointError(
            f"the model of {path} gives NaN or infinite {what} for these inputs: no result can be drawn "
            "from it (a diverged or edited checkpoint?)."
        )
    return outputs


def _check_kind(hparams: dict[str, Any], kind: str, where: str, expected: str) -> None:
    found = checkpoint_kind(hparams)
    if found != kind:
        is_a = f"a {found} checkpoint" if found else "not a checkpoint of a siamese_lit model"
        raise CheckpointError(f"{where} is {is_a}; {expected}.")


def command_line_keys() -> set[str]:
    """The keys set on the command line (Hydra's task overrides); none outside a Hydra run."""
    if not HydraConfig.initialized():
        return set()
    return {o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.task}


def use_saved_data(data: DictConfig, ckpt: dict[str, Any], what: str) -> None:
    """Set SAVED_DATA_KEYS of `data` to the checkpoint's data module settings, except those given on
    the command line: a model trained on some digits, or with another normalisation, is scored the
    way it was trained unless the user says otherwise."""
    saved = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(saved, dict):
        return
    given = command_line_keys()
    with open_dict(data):
        for key in SAVED_DATA_KEYS:
            if key in saved and f"data.{key}" not in given:
                data[key] = saved[key]
    check_spec(data, f"data (with the settings saved in {what})")


def load_model(
    path: str | Path | None,
    kind: str,
    device: torch.device | str = "cpu",
    what: str = "ckpt_path",
    data: DictConfig | None = None,
) -> Any:
    """The `kind` model ("Siamese" or "classifier", see KINDS) of a checkpoint, in eval mode on `device`.
    With `data` (the data config), use_saved_data applies the checkpoint's data settings to it."""
    cls, experiment = KINDS[kind]
    ckpt = read_checkpoint(path, what)
    where = f"{what}={path}"
    _check_kind(
        ckpt["hyper_parameters"], kind, where, f"a {kind} checkpoint is expected (trained with {experiment})"
    )
    try:
        model = cls(**ckpt["hyper_parameters"])
    except Exception as exc:
        if find_user_error(exc) is not None:
            raise
        raise CheckpointError(f"{where}: cannot rebuild the {kind} model: {_why(exc)}") from exc
    check_weights(model, ckpt["state_dict"], where)
    model.load_state_dict(ckpt["state_dict"])
    check_finite(model, where)
    if data is not None:
        use_saved_data(data, ckpt, what)
    return model.eval().to(device)


def check_resume(path: str | Path, model: LitBase, what: str = "ckpt_path") -> None:
    """Refuse, before fitting, a checkpoint `model` cannot resume from: unreadable, of the other kind,
    or with weights of other shapes (Lightning would fail deep in the restore, with a traceback).
    Lightning then reads it again with weights_only=True (siamese_lit.train)."""
    ckpt = read_checkpoint(path, what)
    kind = next(name for name, (cls, _) in KINDS.items() if isinstance(model, cls))
    where = f"{what}={path}"
    _check_kind(ckpt["hyper_parameters"], kind, where, f"this run trains a {kind} model ({KINDS[kind][1]})")
    check_weights(model, ckpt["state_dict"], where)


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
