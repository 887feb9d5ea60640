"""siamese_lit.results: tables written from real run outputs, with the commit they were measured at."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from siamese_lit import PROJECT_ROOT
from siamese_lit.evaluate import evaluate
from siamese_lit.results import results
from tests.helpers.runs import compose_cfg, run_cli
from tests.helpers.runs import smaller_siamese as tiny


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A real 2-seed sweep of +experiment=siamese (tiny), as the README's headline command runs it."""
    sweep = tmp_path_factory.mktemp("seeds") / "sweep"
    proc = run_cli("siamese_lit.train", ["-m", *tiny(), "seed=0,1", "logger=csv", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_the_train_table_is_the_mean_and_std_of_the_jobs_with_their_commit(seeds: Path) -> None:
    text = results([seeds])
    metrics = [json.loads((seeds / job / "metrics.json").read_text()) for job in ("0", "1")]
    auroc = [m["test/auroc"] for m in metrics]
    row = next(line for line in text.splitlines() if line.startswith("| `siamese` |"))
    assert f"auroc {statistics.fmean(auroc):.4g} ± {statistics.stdev(auroc):.2g} (n=2)" in row
    commit = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    provenance = json.loads((seeds / "0" / "provenance.json").read_text())
    assert provenance["commit"].startswith(commit) and provenance["commit"] in row
    assert provenance["date"][:10] in row


def test_the_eval_table_groups_reports_by_the_checkpoints_experiment(seeds: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    (ckpt,) = (seeds / "0" / "checkpoints").glob("epoch_*.ckpt")
    overrides = [f"ckpt_path={ckpt}", "device=cpu", "robustness.corruptions=[lowres_8,shear]"]
    overrides += ["data.test_size=500", "data.gallery_size=500", "data.val_size=500", "data.eval_pairs=500"]
    report = evaluate(compose_cfg(overrides, out, config_name="eval"))
    row = next(line for line in results([out]).splitlines() if line.startswith("| `siamese` `"))
    assert (
        "seed=" not in row.split("|")[1] and "trainer.max_epochs=" in row.split("|")[1]
    )  # the job's overrides
    assert f"{report['gallery']['knn']['accuracy']:.4g} ± n/a (n=1)" in row
    assert f"{report['robustness']['means']['all']['knn_acc']:.4g} ± n/a (n=1)" in row
    assert f"{report['rejection']['nondigits']['auroc']:.4g} ± n/a (n=1)" in row


def test_cli_writes_the_file_and_refuses_what_it_cannot_read(seeds: Path, tmp_path: Path) -> None:
    proc = run_cli("siamese_lit.results", [str(seeds), f"out={tmp_path / 'RESULTS.md'}"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "RESULTS.md").read_text().startswith("# Results")
    proc = run_cli("siamese_lit.results", [str(tmp_path)])
    assert (
        proc.returncode == 2
        and proc.stderr.startswith(f"warning: skipped {tmp_path}: not a multirun dir")
        and proc.stderr.splitlines()[-1].startswith("error: nothing usable")
        and "Traceback" not in proc.stderr
    )
