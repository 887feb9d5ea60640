"""A trained model rebuilt from a checkpoint (siamese_lit.utils.checkpoints reads and checks the file).

The kinds of model a checkpoint can hold are told apart by their hyper-parameters: a checkpoint is
whichever kind's constructor those arguments fit.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from siamese_lit.models.base import LitBase
from siamese_lit.models.classifier import LitClassifier
from siamese_lit.models.siamese import LitSiamese
from siamese_lit.utils.checkpoints import (
    check_finite,
    check_weights,
    read_checkpoint,
    saved_data_settings,
    why,
)
from siamese_lit.utils.errors import CheckpointError, find_user_error

#: The kinds of checkpoint, by the name users know them under, and the experiments that make them.
KINDS: dict[str, tuple[type[LitBase], str]] = {
    "Siamese": (LitSiamese, "+experiment=siamese (or another siamese_* experiment)"),
    "classifier": (LitClassifier, "+experiment=classifier (or rnn_/bilstm_classifier)"),
}


def _fits(cls: type[LitBase], hparams: dict[str, Any]) -> bool:
    """Whether `cls(**hparams)` matches its signature: every required argument and no unknown one."""
    params = inspect.signature(cls.__init__).parameters
    required = {n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty}
    return required <= hparams.keys() <= params.keys() - {"self"}


def checkpoint_kind(hparams: dict[str, Any]) -> str | None:
    """The name in KINDS whose model these hyper-parameters build, or None."""
    return next((name for name, (cls, _) in KINDS.items() if _fits(cls, hparams)), None)


def _check_kind(hparams: dict[str, Any], kind: str, where: str, expected: str) -> None:
    found = checkpoint_kind(hparams)
    if found != kind:
        is_a = f"a {found} checkpoint" if found else "not a checkpoint of a siamese_lit model"
        raise CheckpointError(f"{where} is {is_a}; {expected}.")


def load_model(
    path: str | Path | None, kind: str, device: torch.device | str = "cpu", what: str = "ckpt_path"
) -> tuple[Any, dict[str, Any]]:
    """(the `kind` model of a checkpoint ("Siamese" or "classifier", see KINDS) in eval mode on
    `device`, the data settings it was trained with (utils.checkpoints.saved_data_settings)): the
    caller merges those into its data config (utils.checkpoints.with_saved_data)."""
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
        raise CheckpointError(f"{where}: cannot rebuild the {kind} model: {why(exc)}") from exc
    check_weights(model, ckpt["state_dict"], where)
    model.load_state_dict(ckpt["state_dict"])
    check_finite(model, where)
    return model.eval().to(device), saved_data_settings(ckpt)


def check_resume(path: str | Path, model: LitBase, what: str = "ckpt_path") -> None:
    """Refuse, before fitting, a checkpoint `model` cannot resume from: unreadable, of the other kind,
    or with weights of other shapes (Lightning would fail deep in the restore, with a traceback).
    Lightning then reads it again with weights_only=True (siamese_lit.train)."""
    ckpt = read_checkpoint(path, what)
    kind = next(name for name, (cls, _) in KINDS.items() if isinstance(model, cls))
    where = f"{what}={path}"
    _check_kind(ckpt["hyper_parameters"], kind, where, f"this run trains a {kind} model ({KINDS[kind][1]})")
    check_weights(model, ckpt["state_dict"], where)
