"""Through a real one-node SLURM (scripts/slurm_local.sh: munged, slurmdbd, slurmctld, slurmd): a job
array with a failing job, DDP over two srun tasks, a job stopped before its time limit and resumed by
hand, and one that submitit requeues and that resumes by itself. Marked `slurm`; where the daemons
cannot start the tests skip, except in CI (CI=true), where they fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from siamese_lit import PROJECT_ROOT
from tests.helpers.runs import read_summary, require, run_cli
from tests.helpers.runs import smaller_siamese as tiny

pytestmark = pytest.mark.slurm
SCRIPT = PROJECT_ROOT / "scripts" / "slurm_local.sh"
# one CPU and a little memory per task: the node is this machine
SMALL_JOB = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_per_cpu=2G"]
# Runs until stopped before the time limit: SLURM checks limits every 30 s, so SIGUSR2 comes 30 to
# 60 s before the 2-minute limit, after the job has started; max_time (kept in the checkpoint) bounds
# the whole training, longer than any first run can train, so a resumed run finishes.
UNTIL_STOPPED = [
    "trainer.max_epochs=1000",
    "+trainer.max_time=00:00:01:30",
    "callbacks.early_stopping=null",
    "data.batch_size=32",
    "trainer.log_every_n_steps=5",
    "hydra.launcher.timeout_min=2",
    "hydra.launcher.signal_delay_s=30",
]


@pytest.fixture(scope="session")
def slurm() -> Iterator[dict[str, str]]:
    """The cluster, started by the project's script (stopped at the end if this session started it);
    SLURM_CONF is set for the session's subprocesses. The environment that reaches the cluster."""
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=1200)
    if started.returncode != 0:
        require("SLURM", (started.stderr.strip().splitlines() or ["slurm_local.sh start failed"])[-1])
    where = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True)
    conf = re.fullmatch(r"export SLURM_CONF=(\S+)\s*", where.stdout)
    assert conf, where.stdout
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf.group(1)
    yield dict(os.environ)
    if before is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = before
    if "already running" not in started.stdout:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=300)


def sacct(env: dict[str, str], job: str, fields: str = "JobID,State,ExitCode,NTasks") -> list[dict[str, str]]:
    """sacct's records of `job` (every run of it: -D, and their steps), one dict per line, once every
    record has ended (slurmdbd is told a little after the job's files are written, and a requeued
    job's second run can be listed before its own steps: waiting on the last line alone is a race)."""
    cmd = ["sacct", "-D", "-n", "-P", "-j", job, "-o", f"{fields},End"]
    deadline = time.monotonic() + 120
    while True:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [
            dict(zip([*fields.split(","), "End"], line.split("|"), strict=True)) for line in out.splitlines()
        ]
        ended = rows and all(row["End"] not in ("", "Unknown") for row in rows)
        if ended or time.monotonic() > deadline:
            return [{k: v for k, v in row.items() if k != "End" or "End" in fields} for row in rows]
        time.sleep(1)


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM ids of the sweep's jobs that started, from submitit's folders: `<array>_<task>`, or
    `<job>` for a sweep of one job."""
    folders = (sweep_dir / ".submitit").iterdir()
    return sorted(p.name for p in folders if re.fullmatch(r"\d+(_\d+)?", p.name) and any(p.glob("*_log.out")))


def task_log(sweep_dir: Path, job: str, task: int) -> str:
    folder = sweep_dir / ".submitit" / job
    return "".join((folder / f"{job}_{task}_log.{ext}").read_text() for ext in ("out", "err"))


def slurm_cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m siamese_lit.train -m hydra/launcher=slurm ...`, submitted to the cluster."""
    return run_cli("siamese_lit.train", ["-m", *SMALL_JOB, *args], timeout=timeout)


@pytest.fixture(scope="module")
def array(slurm: dict[str, str], tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """A 3-job sweep as one job array; the job with margin -1 fails (a config error)."""
    sweep = tmp_path_factory.mktemp("slurm") / "array"
    proc = slurm_cli([*tiny(), "model.objective.margin=1.0,2.0,-1.0", f"hydra.sweep.dir={sweep}"])
    return sweep, proc


def test_sweep_runs_as_a_job_array_and_is_summarised(array, slurm: dict[str, str]) -> None:
    sweep, proc = array
    jobs = job_ids(sweep)
    assert len({j.split("_")[0] for j in jobs}) == 1 and len(jobs) == 3, (jobs, proc.stderr[-3000:])
    for job in jobs:  # every array task ran its Hydra job to the end (the failing one records its error)
        assert [r["State"] for r in sacct(slurm, job) if "." not in r["JobID"]] == ["COMPLETED"], job
    rows = {r["job"]: r for r in read_summary(sweep)}
    assert {j: (r["model.objective.margin"], r["status"]) for j, r in rows.items()} == {
        "0": ("1.0", "ok"),
        "1": ("2.0", "ok"),
        "2": ("-1.0", "failed"),
    }
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert float(rows[job]["test/auroc"]) == pytest.approx(metrics["test/auroc"], rel=1e-3)
        assert 0.0 <= metrics["test/auroc"] <= 1.0 and "val/auroc_best" in metrics
    summary = (sweep / "summary.md").read_text()
    assert "3 jobs, 1 failed" in summary and "| model.objective.margin |" in summary


def test_failing_job_leaves_its_error_and_the_others_finish(array) -> None:
    sweep, proc = array
    assert proc.returncode == 1, proc.stderr[-3000:]
    refused = "model.objective.margin must be > 0"
    assert f"error: 1 of 3 jobs failed: 2 (job 2: ConfigError: {refused}" in proc.stderr
    assert refused in json.loads((sweep / "2" / "error.json").read_text())["error"]
    assert not (sweep / "2" / "metrics.json").exists()


def test_ddp_job_of_two_srun_tasks_trains_on_both_ranks(
    slurm: dict[str, str], tmp_path: Path, data_dir: Path
) -> None:
    sweep = tmp_path / "ddp"
    args = [*tiny(trainer__devices="2", data__batch_size="128"), "trainer=ddp", f"hydra.sweep.dir={sweep}"]
    proc = slurm_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = job_ids(sweep)
    (step,) = [r for r in sacct(slurm, job) if r["JobID"].endswith(".0")]  # the srun step
    assert (step["State"], step["NTasks"]) == ("COMPLETED", "2")
    rank0, rank1 = (task_log(sweep, job, task) for task in (0, 1))
    # Lightning took its ranks from SLURM: one process per task, no process started by Lightning
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in rank0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in rank1
    assert "Metrics written to" in rank0 and "Metrics written to" not in rank1  # rank zero writes
    out = sweep / "0"
    ckpt = next((out / "checkpoints").glob("epoch_*.ckpt"))
    # each rank trained on its half of the 1000 pairs: 500 // 128 steps in the epoch, not 1000 // 128
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 500 // 128
    assert list(sweep.rglob("metrics.json")) == [out / "metrics.json"]
    # The same weights tested by one process: the two ranks' gathered metrics differ from it only by
    # the order float sums are taken in (the test set is split between the ranks), hence 1e-4.
    single = run_cli(
        "siamese_lit.train",
        [
            *tiny(data__batch_size="128"),
            "train=false",
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={tmp_path / 'one'}",
        ],
    )
    assert single.returncode == 0, single.stderr[-3000:]
    distributed, reference = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "one"))
    tested = {k for k in reference if k.startswith("test/")}
    assert {"test/auroc", "test/pair_acc", "test/knn_acc", "test/loss"} <= tested
    for name in tested:
        assert distributed[name] == pytest.approx(reference[name], abs=1e-4), name


def _release_when_requeued(env: dict[str, str], sweep: Path, stop: threading.Event) -> None:
    """SLURM holds a requeued job back for two minutes (BeginTime) and gives it its old time limit;
    as an operator would, let it start soon, with room to finish (what this test is not about). Not
    at once: slurmd refuses a job whose credential is as old as its revocation at the requeue (to the
    second: "Job credential revoked"), and the job fails."""
    while not stop.wait(0.5):
        try:
            (job,) = job_ids(sweep)
        except (FileNotFoundError, ValueError):
            continue
        show = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True)
        if "Restarts=1" in show.stdout and "JobState=PENDING" in show.stdout:
            update = ["scontrol", "update", f"JobId={job}", "StartTime=now+5", "TimeLimit=10"]
            subprocess.run(update, env=env, capture_output=True, timeout=60)
            return


@pytest.fixture(scope="module")
def stopped(slurm: dict[str, str], tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """Two jobs that reach their time limit, at the same time: `by_hand` with no requeue
    (max_num_timeout=0), `requeued` with max_num_timeout=1. Their multirun processes and dirs."""
    root = tmp_path_factory.mktemp("slurm")
    runs, logs = {}, {}
    for name, requeues in (("by_hand", 0), ("requeued", 1)):
        sweep = root / name
        args = [
            *tiny(),
            *UNTIL_STOPPED,
            f"hydra.launcher.max_num_timeout={requeues}",
            f"hydra.sweep.dir={sweep}",
        ]
        logs[name] = (root / f"{name}.log").open("w")
        runs[name] = (
            sweep,
            subprocess.Popen(
                [sys.executable, "-m", "siamese_lit.train", "-m", *SMALL_JOB, *args],
                cwd=PROJECT_ROOT,
                env={**slurm, "PYTHONUNBUFFERED": "1"},
                stdout=logs[name],
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    stop = threading.Event()
    releaser = threading.Thread(target=_release_when_requeued, args=(slurm, runs["requeued"][0], stop))
    releaser.start()
    yield {name: (sweep, proc, root / f"{name}.log") for name, (sweep, proc) in runs.items()}
    stop.set()
    releaser.join()
    for name, (_, proc) in runs.items():
        if proc.poll() is None:
            proc.kill()
        logs[name].close()


def _saved_step(log: str) -> int:
    """The step at which the run saved last.ckpt on the signal (StopBeforeTimeLimit's message)."""
    found = re.findall(r"SIGUSR2: the time limit is near; at epoch \d+, step (\d+) saved \S+last\.ckpt", log)
    assert found, log[-3000:]
    return int(found[0])


@pytest.mark.slow  # trains until SLURM's 2-minute time limit stops it
def test_job_at_its_time_limit_stops_keeps_last_ckpt_and_resumes_by_hand(
    stopped, slurm: dict[str, str], tmp_path: Path
) -> None:
    sweep, proc, log = stopped["by_hand"]
    assert proc.wait(timeout=600) == 1, log.read_text()[-3000:]
    (job,) = job_ids(sweep)
    (record,) = [r for r in sacct(slurm, job, "JobID,State,Timelimit") if "." not in r["JobID"]]
    assert (record["State"], record["Timelimit"]) == ("FAILED", "00:02:00")
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    error = json.loads((sweep / "0" / "error.json").read_text())["error"]
    assert error.startswith("TimeLimitReached: training stopped by SIGUSR2") and "not requeued" in error
    assert f"resume with the same overrides and ckpt_path={last}" in error
    saved = _saved_step(task_log(sweep, job, 0))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == saved > 0
    # the resume command docs/slurm.md gives: the job's overrides, ckpt_path, run here (or re-submitted)
    overrides = list(OmegaConf.load(sweep / "0" / ".hydra" / "overrides.yaml"))
    resumed = tmp_path / "resumed"
    proc = run_cli("siamese_lit.train", [*overrides, f"ckpt_path={last}", f"hydra.run.dir={resumed}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in proc.stdout + proc.stderr
    final = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] > saved and "test/auroc" in json.loads((resumed / "metrics.json").read_text())


@pytest.mark.slow  # trains until SLURM's 2-minute time limit stops it
def test_job_requeued_by_submitit_resumes_from_its_last_ckpt_by_itself(
    stopped, slurm: dict[str, str]
) -> None:
    sweep, proc, log = stopped["requeued"]
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    (job,) = job_ids(sweep)
    runs = [r["State"] for r in sacct(slurm, job) if "." not in r["JobID"]]
    assert runs == ["REQUEUED", "COMPLETED"], runs
    output = task_log(sweep, job, 0)
    saved = _saved_step(output)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    assert f"Requeued job {job}" in output
    assert f"Restoring states from the checkpoint path at {last}" in output  # the same run, its own ckpt
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] > saved
    assert not (sweep / "0" / "error.json").exists() and (sweep / "0" / "metrics.json").is_file()
    assert "1 jobs, 0 failed" in (sweep / "summary.md").read_text()
