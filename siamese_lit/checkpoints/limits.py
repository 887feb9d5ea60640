"""Sizes a checkpoint may ask for, checked by arithmetic before anything is allocated.

A checkpoint is a small file from anywhere, and three things in it can make the loader allocate far
more than the file holds: the zip entries (a deflated entry inflates to whatever its header says),
the containers of its pickle (nested thousands deep, or a few lists referring to each other
millions of times), and the hyper-parameters (`hidden_size=12000` builds 3.3 GB of LSTM before any
shape is compared; `num_layers=10**6` allocates until the machine runs out). Each is refused here
from what the file says about itself: the zip's central directory (read without inflating), a
bounded walk of the loaded containers, and the parameter count the hyper-parameters imply, against
the tensors the checkpoint stores and MAX_PARAMETERS. The model's own classes are the only `net` a
checkpoint may build (siamese_lit.checkpoints.roles), so the arithmetic covers every network it can ask for.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from siamese_lit.utils.errors import CheckpointError, ConfigError

#: Bytes a checkpoint's entries may inflate to in all (a 50M-parameter model with Adam's two states).
MAX_CHECKPOINT_BYTES = 1 << 30
#: How many times its stored size a compressed entry may inflate to (torch.save stores, never deflates).
MAX_RATIO = 20
#: Parameters a model may have: 200 MB of float32 (the project's largest network has 3.2M).
MAX_PARAMETERS = 50_000_000
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


# ---- the parameters a network's hyper-parameters imply --------------------------------------------


def _linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def _int(spec: Mapping[str, Any], key: str, default: Any, where: str) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key} must be an int >= 1, got {value!r}.")
    return value


def _widths(spec: Mapping[str, Any], key: str, default: list[int], where: str) -> list[int]:
    value = spec.get(key, default)
    if not isinstance(value, list | tuple) or len(value) > 1000:
        raise ConfigError(f"{where}.{key} must be a list of at most 1000 widths, got {str(value)[:80]}.")
    return [_int({key: w}, key, None, where) for w in value]


def _sequence(spec: Mapping[str, Any], where: str) -> int:
    hidden = _int(spec, "hidden_size", 128, where)
    layers = _int(spec, "num_layers", 1, where)
    inputs = _int(spec, "input_size", 28, where)
    out_dim = _int(spec, "out_dim", 10, where)
    directions = 2 if spec.get("bidirectional") else 1
    gates = {"lstm": 4, "gru": 3, "rnn": 1}.get(spec.get("cell", "lstm"), 4)
    # per direction: weight_ih (gates*H x in), weight_hh (gates*H x H), two biases (gates*H)
    first = gates * hidden * (inputs + hidden + 2)
    rest = gates * hidden * (hidden * directions + hidden + 2)
    features = hidden * directions * (layers if spec.get("readout") == "layers" else 1)
    return directions * (first + (layers - 1) * rest) + _linear(features, out_dim)


def _cnn(spec: Mapping[str, Any], where: str) -> int:
    channels = _int(spec, "channels", 128, where)
    widths = [channels * 3 * 3, *_widths(spec, "hidden", [512, 128], where), _int(spec, "out_dim", 10, where)]
    conv = channels * 25 + channels
    return conv + sum(_linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))


def _mlp(spec: Mapping[str, Any], where: str) -> int:
    widths = [
        _int(spec, "input_size", 784, where),
        *_widths(spec, "hidden", [1024, 1024], where),
        _int(spec, "out_dim", 2, where),
    ]
    return sum(_linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))


#: The networks a model may build (siamese_lit.checkpoints.roles) and the parameters their arguments imply.
NETWORKS = {
    "siamese_lit.models.SequenceEncoder": _sequence,
    "siamese_lit.models.encoders.SequenceEncoder": _sequence,
    "siamese_lit.models.CNNEncoder": _cnn,
    "siamese_lit.models.encoders.CNNEncoder": _cnn,
    "siamese_lit.models.MLPEncoder": _mlp,
    "siamese_lit.models.encoders.MLPEncoder": _mlp,
}
#: The largest int a spec other than a network may pass (a PML loss's num_classes x embedding_size
#: allocates their product); the optimizer's and scheduler's ints allocate nothing.
MAX_ARGUMENT = 4096
NOT_ALLOCATING = ("optimizer", "scheduler")


def _specs(tree: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """(key path, spec) of every mapping with a `_target_` in `tree` (bounded by check_structure)."""
    found, stack = [], [(tree, "")]
    while stack:
        value, key = stack.pop()
        if isinstance(value, Mapping):
            if "_target_" in value:
                found.append((key, value))
            stack += [(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return found


def implied_parameters(spec: Any, where: str) -> int:
    """The parameters the network `spec` ({_target_: one of NETWORKS, ...}) would have."""
    target = spec.get("_target_") if isinstance(spec, Mapping) else None
    if target not in NETWORKS:
        raise ConfigError(
            f"{where}._target_={target} is not a network a model may build: one of "
            f"{', '.join(sorted({t.rsplit('.', 1)[1] for t in NETWORKS}))} (siamese_lit.models)."
        )
    return NETWORKS[target](spec, where)


def check_parameters(
    hparams: Mapping[str, Any], where: str, state_dict: Mapping[str, Any] | None = None
) -> None:
    """ConfigError (CheckpointError with `state_dict`) when the networks of a model's hyper-parameters
    (wherever they are nested) would have more than MAX_PARAMETERS parameters in all, or more than
    the checkpoint stores (building them would allocate more than the file holds), or when another
    spec passes an int above MAX_ARGUMENT. A model of at most the stored size is built, and
    siamese_lit.checkpoints.reader.check_weights names the tensor that differs."""
    error = ConfigError if state_dict is None else CheckpointError
    total = 0
    for key, spec in _specs(hparams):
        if spec.get("_target_") not in NETWORKS:
            for name, value in spec.items():
                big = isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT
                if big and key and not key.startswith(NOT_ALLOCATING):  # "": the model's own
                    raise error(
                        f"{where}.{key}.{name}={value}: more than the {MAX_ARGUMENT} any class but a network "
                        "takes here (it could allocate that many rows): refused before building it."
                    )
            continue
        try:
            total += implied_parameters(spec, f"{where}.{key}")
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
    stored = sum(t.numel() for t in state_dict.values() if hasattr(t, "numel"))
    if total > stored:
        raise error(
            f"{where}: these sizes make networks of {total} parameters but the checkpoint stores {stored} "
            "values in all (a mismatched or edited checkpoint): refused before building them."
        )
