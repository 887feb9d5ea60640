"""Sizes a checkpoint may ask for, checked by arithmetic before anything is allocated.

A checkpoint is a small file from anywhere, and three things in it can make the loader allocate far
more than the file holds: the zip entries (a deflated entry inflates to whatever its header says),
the containers of its pickle (nested thousands deep, or a few lists referring to each other
millions of times), and the hyper-parameters (`hidden_size=12000` builds 3.3 GB of LSTM before any
shape is compared; `num_layers=10**6` allocates until the machine runs out). Each is refused here
from what the file says about itself: the zip's central directory (read without inflating), a
bounded walk of the loaded containers, and the parameter count of the network the hyper-parameters
describe, against the values the checkpoint stores (siamese_lit.checkpoints.tensors) and
MAX_PARAMETERS. That count is the network's own: it is built on the meta device (shapes, no
values), so a new network needs no formula here. Its int arguments are capped first, and the
modules, parameters and buffers it registers are counted as it is built, so the meta build itself
stays small.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules import module as torch_module

from siamese_lit.checkpoints.specs import build, check_spec, check_target
from siamese_lit.checkpoints.tensors import stored_values
from siamese_lit.utils.errors import CheckpointError, ConfigError, find_user_error

#: Bytes a checkpoint's entries may inflate to in all (a 50M-parameter model with Adam's two states).
MAX_CHECKPOINT_BYTES = 1 << 30
#: How many times its stored size a compressed entry may inflate to (torch.save stores, never deflates).
MAX_RATIO = 20
#: Parameters a model may have: 200 MB of float32 (the project's largest network has 3.2M).
MAX_PARAMETERS = 50_000_000
#: The largest int a network's arguments may hold (a width, a depth), checked before it is built.
MAX_NETWORK_ARGUMENT = 1 << 16
#: Modules, parameters and buffers a network may register: each costs time even on the meta device.
MAX_PARTS = 2000
#: How deep the containers of a checkpoint may nest, and how many values they may hold in all.
MAX_DEPTH, MAX_VALUES = 32, 200_000

GIB = float(1 << 30)


def check_archive(path: Path, where: str) -> None:
    """CheckpointError unless `path` is a zip archive (torch.save's format) whose entries inflate to
    at most MAX_CHECKPOINT_BYTES, none more than MAX_RATIO times its stored size."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{where} is not a readable checkpoint (truncated or corrupted? not a zip archive: "
            f"{type(exc).__name__})."
        ) from exc
    for e in entries:
        if e.compress_type != zipfile.ZIP_STORED and e.file_size > MAX_RATIO * max(e.compress_size, 1024):
            raise CheckpointError(
                f"{where}: entry {e.filename!r} inflates {e.file_size // max(e.compress_size, 1)} times its "
                f"stored size ({e.file_size / GIB:.2f} GiB; torch.save stores entries uncompressed): "
                "refused unread."
            )
    total = sum(e.file_size for e in entries)
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{where}: its entries inflate to {total / GIB:.1f} GiB, more than the "
            f"{MAX_CHECKPOINT_BYTES / GIB:.0f} GiB a siamese_lit checkpoint may hold: refused unread."
        )


def check_structure(obj: Any, where: str) -> None:
    """CheckpointError when the containers of `obj` nest deeper than MAX_DEPTH or hold more than
    MAX_VALUES values in all, counting every reference (a list may hold the same list many times).
    Iterative, so nothing recurses before the limit is known to hold."""
    stack: list[tuple[Any, int, str]] = [(obj, 0, "")]
    count = 0
    while stack:
        value, depth, key = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise CheckpointError(
                f"{where} holds more than {MAX_VALUES} values (containers repeating one another?): refused."
            )
        if depth > MAX_DEPTH:
            raise CheckpointError(
                f"{where}: its values nest more than {MAX_DEPTH} deep (at {key[:80]}...): refused."
            )
        if isinstance(value, Mapping):
            stack += [(v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in value.items()]
        elif isinstance(value, list | tuple | set | frozenset):
            stack += [(v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value)]


# ---- the parameters of the network a model's hyper-parameters describe ------------------------------

#: The largest int a spec other than a network may pass (a PML loss's num_classes x embedding_size
#: allocates their product); the optimizer's and scheduler's ints allocate nothing.
MAX_ARGUMENT = 4096
NOT_ALLOCATING = ("optimizer", "scheduler")


def _specs(tree: Any, network: type, where: str) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(key path, spec, whether it builds a `network`) of every mapping with a `_target_` in `tree`
    (bounded by check_structure), not descending into networks (their build counts what they hold).
    The targets were checked against the allow-list before (siamese_lit.checkpoints.specs)."""
    found, stack = [], [(tree, "")]
    while stack:
        value, key = stack.pop()
        if isinstance(value, Mapping):
            if "_target_" in value:
                target = value["_target_"]
                at = f"{where}.{key}" if key else where
                cls = check_target(target, at) if isinstance(target, str) else None
                is_network = cls is not None and issubclass(cls, network)
                found.append((key, value, is_network))
                if is_network:
                    continue
            stack += [(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return found


def _check_ints(value: Any, where: str) -> None:
    """ConfigError naming the first int in a network's arguments above MAX_NETWORK_ARGUMENT."""
    stack = [(value, where)]
    while stack:
        value, key = stack.pop()
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NETWORK_ARGUMENT:
            raise ConfigError(
                f"{key}={value}: more than the {MAX_NETWORK_ARGUMENT} a network's argument may be: refused "
                "before building it."
            )
        if isinstance(value, Mapping):
            stack += [(v, f"{key}.{k}") for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, f"{key}[{i}]") for i, v in enumerate(value)]


def network_parameters(spec: Mapping[str, Any], where: str) -> int:
    """The values (parameters and buffers) of the network `spec` builds, counted on a build on the
    meta device (no values allocated) after its ints are capped; ConfigError when it takes more than
    MAX_PARTS modules, parameters and buffers, or cannot be built from these arguments."""
    _check_ints(spec, where)
    # its classes imported here, not on the meta device (a module's own tensors would stay there)
    check_spec(spec, where, allowed_only=True)
    parts = 0

    def count(*_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts > MAX_PARTS:
            raise ConfigError(
                f"{where}: these arguments make a network of more than {MAX_PARTS} modules, parameters "
                "and buffers: refused before building it."
            )

    hooks = [
        torch_module.register_module_module_registration_hook(count),
        torch_module.register_module_parameter_registration_hook(count),
        torch_module.register_module_buffer_registration_hook(count),
    ]
    try:
        with torch.device("meta"):
            net = build(spec, where, allowed_only=True)
    except Exception as exc:
        user_error = find_user_error(exc)
        if user_error is not None:
            raise user_error from exc
        cause = exc.__cause__ or exc  # Hydra's InstantiationException wraps what the class raised
        lines = str(cause).strip().splitlines()
        raise ConfigError(
            f"{where}: {spec['_target_']} cannot be built from these arguments: {type(cause).__name__}"
            + (f": {lines[0]}" if lines else "")
        ) from exc
    finally:
        for hook in hooks:
            hook.remove()
    return sum(t.numel() for t in net.state_dict().values())


def check_parameters(
    hparams: Mapping[str, Any],
    where: str,
    state_dict: Mapping[str, Any] | None = None,
    *,
    network: type,
) -> None:
    """ConfigError (CheckpointError with `state_dict`) when the networks of a model's hyper-parameters
    (the specs of subclasses of `network`, wherever they are nested) would have more than
    MAX_PARAMETERS values in all, or more than the checkpoint's tensors store (building them would
    allocate more than the file holds), or when another spec passes an int above MAX_ARGUMENT. A
    model of at most the stored size is built, and siamese_lit.checkpoints.reader.check_weights
    names the tensor that differs."""
    error = ConfigError if state_dict is None else CheckpointError
    try:
        specs = _specs(hparams, network, where)
    except ConfigError as exc:
        raise error(str(exc)) from None
    total = 0
    for key, spec, is_network in specs:
        if not is_network:
            for name, value in spec.items():
                big = isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT
                if big and key and not key.startswith(NOT_ALLOCATING):  # "": the model's own
                    raise error(
                        f"{where}.{key}.{name}={value}: more than the {MAX_ARGUMENT} any class but a network "
                        "takes here (it could allocate that many rows): refused before building it."
                    )
            continue
        try:
            total += network_parameters(spec, f"{where}.{key}")
        except ConfigError as exc:
            raise error(str(exc)) from None
        if total > MAX_PARAMETERS:
            raise error(
                f"{where}.{key}: these sizes make a network of {total:.3g} parameters "
                f"({4 * total / GIB:.3g} GiB), more than the {MAX_PARAMETERS:.0e} allowed: refused before "
                "building it."
            )
    if state_dict is None:
        return
    stored = stored_values(state_dict)
    if total > stored:
        raise error(
            f"{where}: these sizes make networks of {total} parameters but the checkpoint stores {stored} "
            "values in all (a mismatched or edited checkpoint): refused before building them."
        )
