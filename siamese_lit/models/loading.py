"""A trained model rebuilt from a checkpoint (siamese_lit.checkpoints.reader reads and checks the file).

The kinds of model a checkpoint can hold are told apart by their hyper-parameters: a checkpoint is
whichever kind's constructor those arguments fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from siamese_lit.checkpoints.reader import (
    check_finite,
    check_weights,
    read_checkpoint,
    saved_data_settings,
    why,
)
from siamese_lit.models.base import LitBase
from siamese_lit.models.classifier import LitClassifier
from siamese_lit.models.roles import MODEL_ROLES
from siamese_lit.models.siamese import LitSiamese
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
    ckpt = read_checkpoint(path, what, roles=MODEL_ROLES)
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
    model.fit_state(ckpt["state_dict"], where)
    check_weights(model, ckpt["state_dict"], where)
    model.load_state_dict(ckpt["state_dict"])
    check_finite(model, where, model.unset_when_nan)
    return model.eval().to(device), saved_data_settings(ckpt)


def check_resume(path: str | Path, model: LitBase, trainer: Mapping[str, Any] | None = None) -> None:
    """Refuse, before fitting, a checkpoint `model` cannot resume from: unreadable, of the other kind,
    with weights of other shapes (Lightning would fail deep in the restore, with a traceback), with
    another optimizer or LR scheduler (their saved state would be loaded into the new ones all the
    same), or, given the run's `trainer` settings, one that has already trained as long as this run
    would (nothing left to train). Lightning then reads it again with weights_only=True
    (siamese_lit.train); the LR schedule is fitted to the new run's length after the restore
    (siamese_lit.runs.schedules)."""
    ckpt = read_checkpoint(path, "ckpt_path", roles=MODEL_ROLES)
    kind = next(name for name, (cls, _) in KINDS.items() if isinstance(model, cls))
    where = f"ckpt_path={path}"
    _check_kind(ckpt["hyper_parameters"], kind, where, f"this run trains a {kind} model ({KINDS[kind][1]})")
    model.fit_state(ckpt["state_dict"], where)
    check_weights(model, ckpt["state_dict"], where)
    if trainer is None:  # train=false: the checkpoint is only tested
        return
    for part in ("optimizer", "scheduler"):
        saved, wanted = (_target(h.get(part)) for h in (ckpt["hyper_parameters"], model.hparams))
        if part in ckpt["hyper_parameters"] and saved != wanted:
            raise CheckpointError(
                f"{where} was trained with model.{part}={saved}, this run has model.{part}={wanted}: "
                f"its {part} state cannot be resumed by another {part}; resume with model.{part} as it "
                "was, or start a new run."
            )
    epochs, steps = _trained(ckpt, where)
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    for done, limit, key in ((epochs, max_epochs, "max_epochs"), (steps, max_steps, "max_steps")):
        if limit is not None and limit != -1 and done >= limit:
            raise CheckpointError(
                f"{where} has trained {epochs} epoch{'s' * (epochs != 1)} ({steps} steps): "
                f"trainer.{key}={limit} leaves nothing to train. To train longer, raise trainer.{key}; "
                "to test it, pass train=false."
            )


def _target(spec: Any) -> str:
    return str(spec.get("_target_")) if isinstance(spec, Mapping) else "null"


def _trained(ckpt: dict[str, Any], where: str) -> tuple[int, int]:
    """(epochs done, optimizer steps done) by the run that saved `ckpt`: its epoch counts as done when
    the checkpoint was saved at its end (the last batch seen), as the checkpoints of siamese_lit are."""
    try:
        epoch, steps = int(ckpt["epoch"]), int(ckpt["global_step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} holds no training state (epoch, global_step) to resume.") from exc
    try:
        ended = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"] is True
    except (KeyError, TypeError):
        ended = False
    return epoch + ended, steps
