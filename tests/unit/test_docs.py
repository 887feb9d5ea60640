"""The docs stay true: the README's map of the package is the tree, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "RESULTS.md", *sorted((ROOT / "docs").glob("*.md"))]
#: [text](target) in Markdown, images included; a target up to its first space or closing bracket
LINK = re.compile(r"\]\(([^)\s]+)(?:\s[^)]*)?\)")


def package_map() -> dict[str, set[str]]:
    """{folder: modules} as the README's "The package" block lists them: a line starting with `name/`
    opens a folder (its modules follow on its line and the indented lines after it); `.` is the
    package's own top level."""
    text = ROOT.joinpath("README.md").read_text()
    block = text.split("## The package", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    folder = None
    for line in block.splitlines()[1:]:
        head = re.match(r"^  (\S+)/\s", line)
        if head and head[1] != "siamese_lit":
            folder = head[1]
        elif re.match(r"^  \S", line):
            folder = "."
        if folder is not None:
            listed.setdefault(folder, set()).update(re.findall(r"\b([a-z_]+)\.py\b", line))
    return listed


def package_tree() -> dict[str, set[str]]:
    """{folder: modules} of siamese_lit/ as it stands (`.` for the top level), without __init__."""
    tree: dict[str, set[str]] = {}
    for path in sorted(ROOT.joinpath("siamese_lit").rglob("*.py")):
        rel = path.relative_to(ROOT / "siamese_lit")
        folder = "." if len(rel.parts) == 1 else "/".join(rel.parts[:-1])
        if path.stem != "__init__":
            tree.setdefault(folder, set()).add(path.name.removesuffix(".py"))
    return tree


def test_the_readme_maps_every_module_of_the_package_and_nothing_else() -> None:
    listed, tree = package_map(), package_tree()
    assert sorted(listed) == sorted(tree), "folders: README's map against siamese_lit/"
    for folder, modules in tree.items():
        assert listed[folder] == modules, (
            f"{folder}: missing {modules - listed[folder]}, stale {listed[folder] - modules}"
        )


def links() -> list[tuple[Path, str]]:
    found = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if not re.match(r"^[a-z]+:", target) and not target.startswith("#"):
                found.append((doc, target))
    return found


@pytest.mark.parametrize(("doc", "target"), links(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_relative_link_in_the_docs_resolves(doc: Path, target: str) -> None:
    path = target.split("#", 1)[0]
    assert (doc.parent / path).exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"


def test_the_docs_have_links_to_check() -> None:
    assert len(links()) >= 5  # the README links RESULTS.md and the docs; a parsing regression would find none


def named_files() -> list[tuple[Path, str]]:
    """(doc, path) of every repository file a doc names in code quotes (`siamese_lit/...py`,
    `tests/...py`, `conf/...yaml`, ...); placeholders in capitals (NAME.yaml) are not files."""
    pattern = re.compile(r"`((?:siamese_lit|tests|bench|conf|scripts|docs)/[\w/.-]+\.(?:py|yaml|md|sh))")
    return [
        (doc, path)
        for doc in DOCS
        for path in pattern.findall(doc.read_text())
        if not re.search(r"/[A-Z]+\.\w+$", path)
    ]


@pytest.mark.parametrize(("doc", "path"), named_files(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_file_the_docs_name_exists(doc: Path, path: str) -> None:
    assert (ROOT / path).exists(), f"{doc.relative_to(ROOT)} names {path}, which does not exist"
