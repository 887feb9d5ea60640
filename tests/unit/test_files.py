"""Result files: strict JSON written whole (atomically), with the umask's mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from siamese_lit.utils.files import write_atomic, write_json


def test_json_results_are_strict_and_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.json"
    write_json(path, {"a": float("nan"), "b": {"c": [1.0, float("inf"), {"d": -float("inf")}]}, "e": 2})

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in strict JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": {"c": [1.0, None, {"d": None}]},
        "e": 2,
    }
    before = path.read_bytes()

    def crash(*args: Any) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        write_atomic(path, "half")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_result_files_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        write_json(tmp_path / "metrics.json", {"a": 1.0})
        (tmp_path / "beside.log").write_text("a log\n")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"metrics.json": 0o664, "beside.log": 0o664}
