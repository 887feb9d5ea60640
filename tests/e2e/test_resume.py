"""Reliability, faults: a killed run resumes to the same numbers, a NaN loss stops cleanly, no run
writes into another's folder, and the same seed gives the same metrics.json."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from siamese_lit import PROJECT_ROOT
from siamese_lit.runs.faults import RefuseUsedOutputDir, ResumableModelCheckpoint, TrainingDivergedError
from siamese_lit.train import train
from siamese_lit.utils.errors import ConfigError
from tests.helpers.runs import compose_cfg, run_cli, smaller_siamese

# Two short epochs of a small LSTM Siamese net; batch 32 makes epochs long enough (31 steps) to
# kill one in the middle.
RUN = [
    *smaller_siamese(
        data__batch_size="32",
        data__eval_batch_size="1000",
        model__oneshot_episodes="10",
        trainer__max_epochs="2",
    ),
    "logger=csv",
]


def _metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())


def _train(out: Path, *extra: str) -> Path:
    train(compose_cfg([*RUN, *extra], out))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """An uninterrupted run with seed 7."""
    return _train(tmp_path_factory.mktemp("reference") / "run", "seed=7")


def _logged_epochs(run: Path) -> set[str]:
    """Epochs of the training steps the run has logged to csv/metrics.csv so far."""
    try:
        rows = list(csv.DictReader((run / "csv" / "metrics.csv").read_text().splitlines()))
    except (FileNotFoundError, csv.Error):  # not written yet, or caught mid-write
        return set()
    return {row.get("epoch") or "" for row in rows if row.get("train/loss_step")}


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The output dir of the same run (CLI, seed 7) SIGKILLed during its second epoch."""
    out = tmp_path_factory.mktemp("killed") / "run"
    # every step logged and flushed, so the test sees the second epoch under way (no effect on training)
    watch = ["trainer.log_every_n_steps=1", "+logger.csv.flush_logs_every_n_steps=1"]
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    log = out.with_name("stderr.txt")  # a file, not a pipe nobody reads while the run goes on
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "siamese_lit.train", *RUN, *watch, "seed=7", f"hydra.run.dir={out}"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        ) as proc,
    ):
        deadline = time.monotonic() + 300
        while "1" not in _logged_epochs(out):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its second epoch"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    return out


def test_killed_run_resumes_to_the_uninterrupted_metrics(
    killed: Path, reference: Path, tmp_path: Path
) -> None:
    last = killed / "checkpoints" / "last.ckpt"
    assert not (killed / "metrics.json").exists()
    assert (
        torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    )  # first epoch done, not the second
    resumed = _train(tmp_path / "resumed", "seed=7", f"ckpt_path={last}")
    assert _metrics(resumed) == _metrics(reference)
    assert (
        torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1
    )


def test_resumed_run_remembers_the_best_checkpoint_so_far(killed: Path, tmp_path: Path) -> None:
    callbacks = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "callbacks"
    ]
    (saved,) = [v for k, v in callbacks.items() if k.startswith(ResumableModelCheckpoint.__name__)]
    resumed = ResumableModelCheckpoint(dirpath=tmp_path / "new", monitor="val/auroc", mode="max")
    resumed.load_state_dict(saved)
    assert resumed.best_model_score == saved["best_model_score"] is not None
    assert resumed.best_k_models == saved["best_k_models"] and resumed.dirpath == str(tmp_path / "new")
    plain = ModelCheckpoint(dirpath=tmp_path / "new", monitor="val/auroc", mode="max")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        plain.load_state_dict(saved)
    assert plain.best_model_score is None  # what Lightning alone does: a worse epoch would become "best"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_no_run_writes_into_another_runs_dir(killed: Path, reference: Path) -> None:
    """Hydra writes .hydra/ and its log before the task starts: the CLI refuses the dir before that."""
    before = {run: _snapshot(run) for run in (killed, reference)}
    result = run_cli("siamese_lit.train", [*RUN, f"hydra.run.dir={killed}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: {killed} already holds a run (.hydra, checkpoints): choose a new hydra.run.dir or "
        "hydra.sweep.dir (or leave it to its timestamped default); to resume, pass "
        "ckpt_path=<that run>/checkpoints/last.ckpt."
    )
    with pytest.raises(ConfigError, match="already holds a run \\(metrics.json, checkpoints\\)"):
        _train(reference)  # the in-process entry (no Hydra run) refuses a finished run's dir too
    assert {run: _snapshot(run) for run in (killed, reference)} == before


def test_a_used_sweep_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(SystemExit) as exit_:
        RefuseUsedOutputDir().on_multirun_start(
            OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
        )
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} already holds a run (multirun.yaml)")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    # the LR jumps by 1e30 after the first epoch, unclipped: the second epoch's loss blows up
    blow_up = [
        "model.scheduler._target_=torch.optim.lr_scheduler.ExponentialLR",
        "~model.scheduler.max_lr",
        "~model.scheduler.pct_start",
        "+model.scheduler.gamma=1e30",
        "model.scheduler.interval=epoch",
        "trainer.gradient_clip_val=null",
    ]
    with pytest.raises(TrainingDivergedError) as err:
        _train(tmp_path / "run", *blow_up)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    msg = str(err.value)
    assert re.search(r"loss became (nan|inf) at epoch 1", msg) and f"last good checkpoint is {last}" in msg
    assert "\n" not in msg and "model.optimizer.lr" in msg
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0 and all(torch.isfinite(w).all() for w in state["state_dict"].values())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_same_seed_same_metrics_other_seed_differs(reference: Path, tmp_path: Path) -> None:
    again = _metrics(_train(tmp_path / "again", "seed=7"))
    assert again == _metrics(reference)
    other = _metrics(_train(tmp_path / "other", "seed=8"))
    assert other.keys() == again.keys()
    assert other["test/loss"] != again["test/loss"] and other["val/auroc"] != again["val/auroc"]
