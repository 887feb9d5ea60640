"""What a model's hyper-parameters may hold where: each argument takes one kind of class.

The allow-list (siamese_lit.checkpoints.specs) says which classes may be built at all; a class it
admits can still be out of place: a callback or `torch.nn.Identity` as `net`, a data module as
`objective`. Built, such a model fails later with a traceback (or, for a data module, reads files).
So each model argument names the base class its `_target_` must subclass, checked on the class
before anything is built. The layer above passes those base classes in (`roles`): this package
names no model, encoder or objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from siamese_lit.checkpoints.specs import check_target
from siamese_lit.utils.errors import ConfigError

#: model argument -> the base class its `_target_` must subclass
Roles = Mapping[str, type]

#: The model argument that holds the network, whose size is bounded (siamese_lit.checkpoints.limits).
NETWORK = "net"
#: A role's subclasses are listed in its error line when there are at most this many.
LISTED = 8


def _a(name: str) -> str:
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _kinds(base: type) -> str:
    """The concrete subclasses of `base` already imported, when few enough to list."""
    found, stack = set(), [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if not sub.__name__.startswith("_"):
                found.add(sub.__name__)
    return f" ({', '.join(sorted(found))})" if 0 < len(found) <= LISTED else ""


def check_roles(
    hparams: Mapping[str, Any], where: str, error: type[Exception] = ConfigError, *, roles: Roles
) -> None:
    """`error` naming the first model argument in `roles` whose `_target_` is not a subclass of the
    class `roles` gives it (allowed by siamese_lit.checkpoints.specs first: nothing else is imported)."""
    for key, base in roles.items():
        spec = hparams.get(key)
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            continue
        target = spec["_target_"]
        cls = check_target(target, f"{where}.{key}")
        if not issubclass(cls, base):
            raise error(
                f"{where}.{key}._target_={target} is not {_a(base.__name__)}: {key} must be a subclass of "
                f"{base.__module__}.{base.__qualname__}{_kinds(base)}."
            )
