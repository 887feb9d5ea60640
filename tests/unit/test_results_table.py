"""results' table of experiments on hand-made sweep dirs: one row per experiment, over every seed
of the sources that ran it, however the seeds were swept."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from siamese_lit.results import PUBLISHED_OPENSET_AUROC, results
from siamese_lit.summarize import summarize
from tests.helpers.worlds import sweep_dir


def _seeds(root: Path, aurocs: dict[int, float], *overrides: str, commit: str = "") -> Path:
    """A multirun of `siamese_unseen` over the seeds of `aurocs`, as `train -m seed=...` leaves it
    (at `commit`, when given: each job's provenance.json)."""
    jobs = {
        str(i): {"overrides": [*overrides, f"seed={seed}"], "metrics": {"test/auroc": auroc}}
        for i, (seed, auroc) in enumerate(aurocs.items())
    }
    made = sweep_dir(root, jobs, task_name="siamese_unseen", trainer={"max_epochs": 10})
    for name in jobs if commit else ():
        (made / name / "provenance.json").write_text(json.dumps({"commit": commit, "date": "2026-12-04"}))
    return made


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


def test_the_same_seeds_at_another_commit_are_another_row(tmp_path: Path) -> None:
    """The same overrides at another commit may be another experiment (its config changed in
    between): seeds run again there make a row of their own; seeds that only add to the first
    (seed 2 later) still join its row."""
    before = _seeds(tmp_path / "before", {0: 0.88, 1: 0.90}, commit="aaaaaaa")
    after = _seeds(tmp_path / "after", {0: 0.93, 1: 0.95}, commit="bbbbbbb")
    warnings: list[str] = []
    rows = _rows(results([before, after], warn=warnings.append))
    assert len(rows) == 2 and not warnings
    assert "auroc 0.89 ± " in rows[0] and "aaaaaaa" in rows[0] and "bbbbbbb" not in rows[0]
    assert "auroc 0.94 ± " in rows[1] and "bbbbbbb" in rows[1]
    later = _seeds(tmp_path / "later", {2: 0.92}, commit="ccccccc")
    (row,) = _rows(results([before, later], warn=warnings.append))
    assert "(n=3)" in row and "aaaaaaa, ccccccc" in row and not warnings


def _splits(root: Path, aurocs: dict[int, float], *overrides: str) -> Path:
    """A multirun of `siamese_openset` over the open-set splits of `aurocs`."""
    jobs = {
        str(i): {
            "overrides": [*overrides, f"open_split=split{split}"],
            "metrics": {"test/openset_auroc": auroc, "test/openset_fpr95": 0.02, "test/closed_acc": 0.997},
        }
        for i, (split, auroc) in enumerate(aurocs.items())
    }
    return sweep_dir(root, jobs, task_name="siamese_openset", trainer={"max_epochs": 10})


def _section(text: str, heading: str) -> list[str]:
    lines = text.split(heading, 1)[1].split("\n## ", 1)[0].splitlines()
    return [line for line in lines if line.startswith("| ") and not line.startswith("| method")]


def test_the_open_set_table_sets_the_splits_mean_among_the_published_aurocs(tmp_path: Path) -> None:
    """The field reports the mean over its 5 splits: one row over them, each split's figure beside it,
    in the order of the published AUROCs (highest first)."""
    aurocs = {3: 0.9911, 0: 0.9941, 1: 0.9928, 4: 0.9928, 2: 0.9915}  # run out of the splits' order
    text = results([_splits(tmp_path / "aux", aurocs, "data.glyph_classes=true")])
    rows = _section(text, "## Open-set recognition")
    assert len(rows) == len(PUBLISHED_OPENSET_AUROC) + 1
    (ours,) = [row for row in rows if row.startswith("| `siamese_openset`")]
    mean, std = statistics.fmean(aurocs.values()), statistics.stdev(aurocs.values())
    assert f"| {mean:.4g} ± {std:.2g} (n=5) |" in ours and "`data.glyph_classes=true`" in ours
    assert "split0 0.9941, split1 0.9928, split2 0.9915, split3 0.9911, split4 0.9928" in ours
    above = {method for method, auroc, _ in PUBLISHED_OPENSET_AUROC if auroc > mean}
    assert {row.split(" | ")[0].removeprefix("| ") for row in rows[: rows.index(ours)]} == above
    shown = [float(row.split(" | ")[2].split(" ")[0]) for row in rows]
    assert shown == sorted(shown, reverse=True)


def test_there_is_no_open_set_table_without_an_open_set_run(tmp_path: Path) -> None:
    text = results([_seeds(tmp_path / "unseen", {0: 0.93})])
    assert "## Open-set recognition" not in text and "ARPL" not in text


@pytest.mark.parametrize("seeds", [{0: 0.8, 1: 0.9}, {3: 0.8}])
def test_summarize_has_a_seed_section_only_when_seeds_vary(tmp_path: Path, seeds: dict[int, float]) -> None:
    sweep = _seeds(tmp_path / "sweep", seeds)
    _, text = summarize(sweep)
    assert ("## Over seeds" in text) == (len(seeds) > 1)
    assert (sweep / "summary_seeds.csv").exists() == (len(seeds) > 1)


def test_evaluations_of_a_seed_trained_at_two_commits_are_two_rows() -> None:
    """The eval table splits an experiment's checkpoints by the commit they were trained at when a
    seed was trained more than once, and names that commit; otherwise one row."""
    from siamese_lit.results import eval_table

    def report(seed: int, commit: str, auroc: float) -> dict:
        trained = {"overrides": {"seed": str(seed)}, "provenance": {"commit": commit}}
        return {
            "experiment": "siamese_robust",
            "rejection": {"nondigits": {"auroc": auroc}},
            "provenance": {"commit": "eeeeeee"},
            "trained": trained,
        }

    def rows(reports: list[dict]) -> list[str]:
        return [line for line in eval_table(reports) if line.startswith("| `siamese_robust`")]

    split = rows([report(0, "aaaaaaa", 0.990), report(1, "aaaaaaa", 0.992), report(0, "bbbbbbb", 0.996)])
    assert len(split) == 2
    assert split[0].startswith("| `siamese_robust` trained at aaaaaaa |") and "0.991 ± " in split[0]
    assert split[1].startswith("| `siamese_robust` trained at bbbbbbb |") and "0.996 ± n/a (n=1)" in split[1]
    (row,) = rows([report(0, "aaaaaaa", 0.990), report(1, "bbbbbbb", 0.992)])
    assert row.startswith("| `siamese_robust` |") and "(n=2)" in row
    longer = report(0, "aaaaaaa", 0.997)
    longer["trained"]["overrides"]["trainer.max_epochs"] = "10"  # another experiment: a row of its own
    five, ten = rows([report(0, "aaaaaaa", 0.990), longer])
    assert five.startswith("| `siamese_robust` |") and ten.startswith(
        "| `siamese_robust` `trainer.max_epochs=10` |"
    )


def test_evaluations_of_checkpoints_trained_for_other_epochs_are_other_rows() -> None:
    """The epochs the checkpoints were trained for (their run's config) key the eval table's rows as
    the train table's: a config that changed its epochs makes another row, with the epochs shown, and
    its seeds trained at two commits still join (no seed repeats within it)."""
    from siamese_lit.results import eval_table

    def report(seed: int, commit: str, epochs: int | None, auroc: float) -> dict:
        trained = {"overrides": {"seed": str(seed)}, "provenance": {"commit": commit}, "epochs": epochs}
        return {
            "experiment": "siamese_robust",
            "rejection": {"nondigits": {"auroc": auroc}},
            "trained": trained,
        }

    reports = [report(0, "aaaaaaa", 5, 0.990), report(1, "aaaaaaa", 5, 0.992)]
    reports += [report(0, "bbbbbbb", 10, 0.996), report(1, "ccccccc", 10, 0.998)]
    five, ten = (line for line in eval_table(reports) if line.startswith("| `siamese_robust`"))
    assert five.startswith("| `siamese_robust` | 5 | ") and "0.991 ± " in five and "(n=2)" in five
    assert ten.startswith("| `siamese_robust` | 10 | ") and "0.997 ± " in ten and "(n=2)" in ten
    (unknown,) = (line for line in eval_table([report(0, "a", None, 0.99)]) if "siamese_robust" in line)
    assert unknown.startswith("| `siamese_robust` |  | ")  # a run whose config is unreadable
