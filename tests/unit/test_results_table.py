"""results' table of experiments on hand-made sweep dirs: one row per experiment, over every seed
of the sources that ran it, however the seeds were swept."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from siamese_lit.results import results
from siamese_lit.summarize import summarize
from tests.helpers.worlds import sweep_dir


def _seeds(root: Path, aurocs: dict[int, float], *overrides: str) -> Path:
    """A multirun of `siamese_unseen` over the seeds of `aurocs`, as `train -m seed=...` leaves it."""
    jobs = {
        str(i): {"overrides": [*overrides, f"seed={seed}"], "metrics": {"test/auroc": auroc}}
        for i, (seed, auroc) in enumerate(aurocs.items())
    }
    return sweep_dir(root, jobs, task_name="siamese_unseen", trainer={"max_epochs": 10})


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `siamese_unseen` |")]


def test_a_sweep_of_one_seed_is_a_row_of_one(tmp_path: Path) -> None:
    (row,) = _rows(results([_seeds(tmp_path / "s2", {2: 0.917}, "data.stroke_classes=0")]))
    assert "auroc 0.917 ± n/a (n=1)" in row and "`data.stroke_classes=0`" in row


def test_seeds_swept_in_several_multiruns_make_one_row(tmp_path: Path) -> None:
    first = _seeds(tmp_path / "s01", {0: 0.88, 1: 0.90}, "data.stroke_classes=0")
    later = _seeds(tmp_path / "s2", {2: 0.92}, "data.stroke_classes=0")
    other = _seeds(tmp_path / "recipe", {0: 0.91}, "data.stroke_classes=2000")
    warnings: list[str] = []
    rows = _rows(results([first, later, other], warn=warnings.append))
    assert len(rows) == 2 and not warnings
    mean, std = statistics.fmean([0.88, 0.90, 0.92]), statistics.stdev([0.88, 0.90, 0.92])
    assert f"auroc {mean:.4g} ± {std:.2g} (n=3)" in rows[0] and "stroke_classes=0`" in rows[0]
    assert "auroc 0.91 ± n/a (n=1)" in rows[1] and "stroke_classes=2000`" in rows[1]


def test_a_seed_run_twice_is_counted_twice_and_said(tmp_path: Path) -> None:
    first = _seeds(tmp_path / "a", {0: 0.88, 1: 0.90})
    again = _seeds(tmp_path / "b", {1: 0.94})
    warnings: list[str] = []
    (row,) = _rows(results([first, again], warn=warnings.append))
    assert "(n=3)" in row
    assert warnings == ["`siamese_unseen`: seed=1 ran more than once, each run counted"]


@pytest.mark.parametrize("seeds", [{0: 0.8, 1: 0.9}, {3: 0.8}])
def test_summarize_has_a_seed_section_only_when_seeds_vary(tmp_path: Path, seeds: dict[int, float]) -> None:
    sweep = _seeds(tmp_path / "sweep", seeds)
    _, text = summarize(sweep)
    assert ("## Over seeds" in text) == (len(seeds) > 1)
    assert (sweep / "summary_seeds.csv").exists() == (len(seeds) > 1)
