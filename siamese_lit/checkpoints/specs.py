"""Hydra specs (`{_target_: ..., **kwargs}`) checked before they are instantiated.

Two checks, both before any object is built:

- **Allowed targets.** A checkpoint's hyper-parameters are specs that `load_model` instantiates. A
  checkpoint is a file from anywhere, and a spec may name any importable callable
  (`shutil.copyfile`, `builtins.open`, `torch.save`: Hydra blocks only a few). So the model's specs
  may only name classes of the project, `torch.nn` modules, `torch.optim` optimizers and LR
  schedulers, and pytorch-metric-learning's losses, distances, miners and reducers. The rule is
  checked on the text of `_target_` first (nothing else is imported), then on the class it names
  (defined in that package, of that kind), so `torch.nn.modules.module.<something imported there>`
  does not pass either.
- **Argument names and types.** A value of the wrong type (`model.objective.margin=abc`) would end in a
  TypeError deep inside the class; the class's own annotations say what it takes, so a value that
  fits none of the plain types annotated (int, float, bool, str, None, a class) is refused with a
  line naming the key. Annotations with generics or literals are not checked.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from siamese_lit.utils.errors import ConfigError, find_user_error


@dataclass(frozen=True)
class Allowed:
    """Targets starting with `prefix` must be classes defined in `package` that subclass `base`."""

    prefix: str
    package: str
    base: str  # "module.Class", imported only when a target of this rule is checked


#: What a model spec (and so a checkpoint) may instantiate; the first matching prefix applies.
ALLOWED = (
    Allowed("siamese_lit.", "siamese_lit", "builtins.object"),
    Allowed("torch.nn.", "torch.nn", "torch.nn.Module"),
    Allowed("torch.optim.lr_scheduler.", "torch.optim.lr_scheduler", "torch.optim.lr_scheduler.LRScheduler"),
    Allowed("torch.optim.", "torch.optim", "torch.optim.Optimizer"),
    *(
        Allowed(f"pytorch_metric_learning.{part}.", f"pytorch_metric_learning.{part}", "torch.nn.Module")
        for part in ("losses", "distances", "miners", "reducers")
    ),
)

#: Keys of a spec that are not the target's arguments: Hydra's, and a scheduler's `interval`, which
#: LitBase takes out of the spec before building it.
NOT_ARGUMENTS = {"_target_", "_recursive_", "_convert_", "_partial_", "_args_", "interval"}


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _locate(target: str, where: str) -> Any:
    """The object `target` names (a module's attribute, or an attribute of a class in a module)."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"{where}._target_={target} does not name anything importable.")


def check_target(target: Any, where: str) -> type:
    """The class `target` names when the allow-list admits it; ConfigError naming it otherwise."""
    rule = next((r for r in ALLOWED if isinstance(target, str) and target.startswith(r.prefix)), None)
    refused = (
        f"{where}._target_={target} is not allowed: a model (and a checkpoint) may only build classes of "
        "siamese_lit, torch.nn modules, torch.optim optimizers and LR schedulers, and "
        "pytorch_metric_learning losses, distances, miners and reducers."
    )
    if rule is None:
        raise ConfigError(refused)
    cls = _locate(target, where)
    if not (
        inspect.isclass(cls)
        and (cls.__module__ == rule.package or cls.__module__.startswith(rule.package + "."))
        and issubclass(cls, _import(rule.base))
    ):
        raise ConfigError(refused)
    return cls


def check_allowed(spec: Any, where: str) -> None:
    """check_target on every `_target_` in `spec`, nested ones included."""
    if isinstance(spec, Mapping):
        if "_target_" in spec:
            check_target(spec["_target_"], where)
        for key, value in spec.items():
            if key != "_target_":
                check_allowed(value, f"{where}.{key}")
    elif isinstance(spec, list | tuple):
        for i, value in enumerate(spec):
            check_allowed(value, f"{where}[{i}]")


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """The classes an annotation admits, or None when it is not a plain class or a union of them."""
    members = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    classes = tuple(type(None) if m is None else m for m in members)
    plain = all(inspect.isclass(m) and m is not typing.Any and not typing.get_args(m) for m in classes)
    return classes if plain else None


def _fits(value: Any, classes: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to a config
        return bool in classes or object in classes
    if isinstance(value, int) and float in classes:
        return True
    return isinstance(value, classes)


def _describe(classes: tuple[type, ...]) -> str:
    names = [c.__name__ for c in classes if c is not type(None)]
    kind = " or ".join(names) if names else "null"
    return f"{kind} or null" if type(None) in classes and names else kind


def _signature(cls: Any) -> tuple[set[str], dict[str, Any], bool]:
    """(argument names, their annotations, whether it takes any keyword) of a callable; for a class,
    along its bases while each __init__ passes **kwargs on (PairDataModule -> MNISTDataModule)."""
    names: set[str] = set()
    hints: dict[str, Any] = {}
    for init in (
        [k.__init__ for k in cls.__mro__[:-1] if "__init__" in vars(k)] if inspect.isclass(cls) else [cls]
    ):
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        for name, hint in typing.get_type_hints(init).items():
            hints.setdefault(name, hint)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names - {"self"}, hints, False
    return names - {"self"}, hints, True


def check_arguments(cls: Any, spec: Mapping[str, Any], where: str) -> None:
    """ConfigError when `spec` passes `cls` an argument it does not take, or a value whose type fits
    none of the plain types the argument is annotated with."""
    try:
        names, hints, takes_any = _signature(cls)
    except (TypeError, ValueError, NameError, AttributeError):  # no signature, or unresolvable annotations
        return
    for key, value in spec.items():
        if key in NOT_ARGUMENTS:
            continue
        if key not in names and not takes_any:
            raise ConfigError(
                f"{where}.{key}: {cls.__name__} takes no argument {key!r} "
                f"(it takes: {', '.join(sorted(names))})."
            )
        classes = _plain_types(hints[key]) if key in hints else None
        if classes is None or (isinstance(value, Mapping) and "_target_" in value):
            continue
        if not _fits(value, classes):
            raise ConfigError(f"{where}.{key} must be {_describe(classes)}, got {value!r}.")


def check_spec(spec: Any, where: str, allowed_only: bool = False) -> None:
    """check_arguments on every spec in `spec`, nested ones included; with `allowed_only`, each
    `_target_` must pass the allow-list too (checked first, so nothing outside it is imported)."""
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    if allowed_only:
        check_allowed(spec, where)
    if isinstance(spec, Mapping):
        if isinstance(spec.get("_target_"), str):
            check_arguments(_locate(spec["_target_"], where), spec, where)
        for key, value in spec.items():
            check_spec(value, f"{where}.{key}")
    elif isinstance(spec, list | tuple):
        for i, value in enumerate(spec):
            check_spec(value, f"{where}[{i}]")


#: What a class raises about bad arguments (or a setting that needs a package not installed, as
#: trainer.accelerator=tpu: Lightning's MisconfigurationException, told by its name so that building
#: a checkpoint's encoder does not import Lightning); anything else is a bug and keeps its traceback.
ARGUMENT_ERRORS = (ValueError, TypeError, ImportError)
MISCONFIGURATION = "MisconfigurationException"


def _is_argument_error(exc: BaseException) -> bool:
    lightning = [c for c in type(exc).__mro__ if c.__module__.startswith("lightning")]
    return isinstance(exc, ARGUMENT_ERRORS) or any(c.__name__ == MISCONFIGURATION for c in lightning)


def build(spec: Any, where: str, allowed_only: bool = False, **kwargs: Any) -> Any:
    """`instantiate(spec, **kwargs)` after check_spec (with the allow-list when `allowed_only`). An
    error the class raises about its arguments (torch's "Invalid learning rate", Lightning's unknown
    accelerator) becomes a one-line ConfigError naming `where`."""
    check_spec(spec, where, allowed_only=allowed_only)
    try:
        return instantiate(spec, **kwargs)
    except Exception as exc:
        user_error = find_user_error(exc)
        if user_error is not None:
            raise user_error from exc
        cause = exc.__cause__ or exc
        if not _is_argument_error(cause):
            raise
        lines = str(cause).strip().splitlines()
        raise ConfigError(
            f"{where}: {spec['_target_']} refused its arguments: {type(cause).__name__}"
            + (f": {lines[0]}" if lines else "")
        ) from exc


def plain(spec: Any) -> Any:
    """An OmegaConf container as plain dicts and lists: checkpoints must hold no OmegaConf objects,
    which torch.load(weights_only=True) refuses."""
    return OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec


def check_values(cfg: Any, kinds: Mapping[str, tuple[type, ...]]) -> None:
    """ConfigError for the first `key` of `kinds` whose value in `cfg` fits none of its types: for an
    entry point's own settings, which no class signature describes."""
    for key, classes in kinds.items():
        value = OmegaConf.select(cfg, key)
        if not _fits(value, classes):
            raise ConfigError(f"{key} must be {_describe(classes)}, got {value!r}.")
