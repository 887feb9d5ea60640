"""Imports run downward only (docs/architecture.md): a module imports from its own layer or below."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "siamese_lit"
#: each sub-package's layer, top (0) to bottom; "." is the commands at the package's top level
LAYERS = {
    ".": 0,
    "demo": 0,
    "inference": 1,
    "models": 2,
    "callbacks": 3,
    "evaluation": 4,
    "objectives": 5,
    "data": 6,
    "checkpoints": 7,
    "runs": 7,
    "cluster": 7,
    "reports": 7,
    "cli": 7,
    "utils": 8,
}
IMPORT = re.compile(r"^\s*(?:from|import) siamese_lit\.(\w+)", re.M)


def part(name: str) -> str:
    return name if (PACKAGE / name).is_dir() else "."


def imports() -> list[tuple[str, str, str]]:
    """(file, its sub-package, the sub-package it imports) for every siamese_lit import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0] if len(rel.parts) > 1 else "."
        found += [(str(rel), source, part(name)) for name in IMPORT.findall(path.read_text())]
    return found


def test_every_sub_package_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= LAYERS.keys(), f"give {folders - LAYERS.keys()} a layer"


def test_imports_run_downward_only() -> None:
    found = imports()
    assert len(found) > 50  # a regression in the pattern would find nothing and pass
    upward = [
        f"{file} imports {target}/" for file, source, target in found if LAYERS[target] < LAYERS[source]
    ]
    assert not upward, upward


def test_the_sub_packages_of_one_layer_import_each_other_without_a_cycle() -> None:
    edges = {(s, t) for _, s, t in imports() if s != t and LAYERS[s] == LAYERS[t]}
    assert not {(s, t) for s, t in edges if (t, s) in edges}
