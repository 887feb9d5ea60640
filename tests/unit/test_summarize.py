"""summarize on a sweep dir: seeds grouped with their mean and sample standard deviation."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from siamese_lit.summarize import summarize
from tests.helpers.worlds import sweep_dir


def test_summarize_groups_seeds_with_mean_and_sample_std(tmp_path: Path) -> None:
    def job(lr: str, seed: int, auroc: float) -> dict[str, Any]:
        return {
            "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}"],
            "metrics": {"val/auroc_best": auroc, "test/auroc": auroc - 0.1},
        }

    values = {"0.01": [0.90, 0.92, 0.94], "0.001": [0.80, 0.84]}
    jobs = {
        str(i): job(lr, seed, v)
        for i, (lr, seed, v) in enumerate((lr, s, v) for lr, vs in values.items() for s, v in enumerate(vs))
    }
    sweep = sweep_dir(tmp_path / "sweep", jobs)
    _, text = summarize(sweep)
    rows = {r["model.optimizer.lr"]: r for r in _read_csv(sweep / "summary_seeds.csv")}
    assert rows["0.01"]["n"] == "3" and float(rows["0.01"]["val/auroc_best_mean"]) == pytest.approx(0.92)
    assert float(rows["0.01"]["val/auroc_best_std"]) == pytest.approx(0.02)  # sample std (n - 1)
    assert float(rows["0.001"]["test/auroc_std"]) == pytest.approx(np.std([0.7, 0.74], ddof=1))
    assert "## Over seeds" in text and "| 0.01 | 0 1 2 | 0.92 ± 0.02 (n=3) |" in text


def test_open_set_splits_are_replicates_as_seeds_are(tmp_path: Path) -> None:
    """The field reports an open-set figure as the mean over its 5 splits (conf/open_split/)."""
    aurocs = [0.99, 0.98, 0.97, 0.99, 0.96]
    jobs = {
        str(i): {
            "overrides": ["+experiment=siamese_openset", f"open_split=split{i}", "data.new_classes=[]"],
            "metrics": {"val/knn_acc_best": 0.99, "test/openset_auroc": a},
        }
        for i, a in enumerate(aurocs)
    }
    sweep = sweep_dir(tmp_path / "sweep", jobs)
    summarize(sweep)
    (row,) = _read_csv(sweep / "summary_seeds.csv")
    assert row["n"] == "5" and "open_split" not in row
    assert float(row["test/openset_auroc_mean"]) == pytest.approx(np.mean(aurocs))
    assert float(row["test/openset_auroc_std"]) == pytest.approx(np.std(aurocs, ddof=1))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
