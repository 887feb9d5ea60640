"""Runs that stop early say the truth and lose nothing (SIGTERM and Ctrl-C in every phase, a disk
filling up and a folder turned read-only mid-run), and runs resume for more epochs. Real subprocess
runs with real faults (tests/helpers/fault_injection.py: kill(2), a full tmpfs, `chattr +i`) at chosen
moments.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from siamese_lit import PROJECT_ROOT
from tests.helpers.runs import run_cli, smaller_siamese
from tests.helpers.table import TRAIN

# Two epochs of 31 steps of a small LSTM Siamese net; evaluation in batches of 100 (not one batch)
RUN = smaller_siamese(
    data__batch_size="32", data__eval_batch_size="100", model__oneshot_episodes="10", trainer__max_epochs="2"
)
# The monitored value never improves after epoch 0 (the epoch number, "min"): Lightning alone would
# leave last.ckpt at epoch 0 for good.
NO_IMPROVEMENT = [
    "callbacks.model_checkpoint.monitor=epoch",
    "callbacks.model_checkpoint.mode=min",
    "callbacks.early_stopping=null",
]
ENV = {"OMP_NUM_THREADS": "1"}


def _fault(cls: str, **args: object) -> list[str]:
    """The overrides adding the callback `tests.helpers.fault_injection.<cls>(**args)` to a run."""
    return [
        f"+callbacks.fault._target_=tests.helpers.fault_injection.{cls}",
        *(f"+callbacks.fault.{k}={v}" for k, v in args.items()),
    ]


@dataclass(frozen=True)
class Stop:
    """A run stopped by `fault`: its exit status and the one `error: ` line (`<run>` its dir)."""

    fault: tuple[str, ...]
    rc: int
    line: str


RESUME = "resume with the same overrides and ckpt_path=<run>/checkpoints/last.ckpt"
STOPS = {
    "sigterm-sanity-check": Stop(
        tuple(_fault("SendSignal", name="SIGTERM", phase="sanity")),
        143,
        "training stopped by SIGTERM in the sanity check at epoch 0, step 0: no checkpoint had been saved "
        "yet: run it again.",
    ),
    "sigterm-fit": Stop(
        tuple(_fault("SendSignal", name="SIGTERM", phase="train", epoch=1, batch=3)),
        143,
        f"training stopped by SIGTERM at epoch 1, step 35: {RESUME}.",
    ),
    "ctrl-c-fit": Stop(
        tuple(_fault("SendSignal", name="SIGINT", phase="train", epoch=1, batch=3)),
        130,
        f"training stopped by SIGINT at epoch 1, step 35: {RESUME}.",
    ),
    "sigterm-validation": Stop(
        tuple(_fault("SendSignal", name="SIGTERM", phase="validation", epoch=1)),
        143,
        f"training stopped by SIGTERM at epoch 1, step 62: {RESUME}.",
    ),
    "sigterm-between-fit-and-test": Stop(
        tuple(_fault("SendSignal", name="SIGTERM", phase="fit_end")),
        143,
        "the run stopped by SIGTERM after training had finished (at epoch 2, step 62; its checkpoints are "
        "kept), before metrics.json was written: test it with the same overrides and train=false "
        "ckpt_path=<run>/checkpoints/epoch_000.ckpt.",
    ),
    "sigterm-test": Stop(
        tuple(_fault("SendSignal", name="SIGTERM", phase="test")),
        143,
        "testing stopped by SIGTERM after training had finished (at epoch 2, step 62; its checkpoints are "
        "kept), before metrics.json was written: test it with the same overrides and train=false "
        "ckpt_path=<run>/checkpoints/epoch_000.ckpt.",
    ),
}


@pytest.fixture(scope="module")
def stopped(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each run of STOPS, 3 at a time: (its run dir, the finished process)."""
    root = tmp_path_factory.mktemp("stops")

    def run(name: str) -> tuple[Path, subprocess.CompletedProcess]:
        out = root / name
        args = [*RUN, *NO_IMPROVEMENT, *STOPS[name].fault, f"hydra.run.dir={out}"]
        return out, run_cli("siamese_lit.train", args, timeout=300, env=ENV)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(STOPS, pool.map(run, STOPS), strict=True))


def _error_line(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def _epoch(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]


def _whole_checkpoints(run: Path) -> dict[str, int]:
    """name -> epoch of every file in the run's checkpoints (each loads: none truncated or temporary)."""
    folder = run / "checkpoints"
    return {p.name: _epoch(p) for p in sorted(folder.iterdir())} if folder.is_dir() else {}


@pytest.mark.parametrize("name", STOPS)
def test_a_signal_in_every_phase_ends_with_its_status_and_a_true_line(name: str, stopped) -> None:
    run, result = stopped[name]
    stop = STOPS[name]
    assert result.returncode == stop.rc, (result.returncode, result.stderr[-3000:])
    assert _error_line(result) == "error: " + stop.line.replace("<run>", str(run))
    assert not (run / "metrics.json").exists()
    checkpoints = _whole_checkpoints(run)
    if name == "sigterm-sanity-check":
        assert checkpoints == {}
    elif name in ("sigterm-between-fit-and-test", "sigterm-test"):  # training had finished:
        assert checkpoints == {"epoch_000.ckpt": 0, "last.ckpt": 1}  # last.ckpt its end, not the best's
    else:  # the line's last.ckpt is the state it names: the end of epoch 0
        assert checkpoints == {"epoch_000.ckpt": 0, "last.ckpt": 0}


def test_last_ckpt_is_the_last_epoch_without_improvement(stopped) -> None:
    """The run stopped in its test phase had two epochs, the second no better: last.ckpt is the
    second's whole state (Lightning alone leaves it at the first), and resuming from it is refused
    with a line, as nothing is left to train."""
    run, _ = stopped["sigterm-test"]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 62
    result = run_cli(
        "siamese_lit.train",
        [*RUN, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run.parent / 'again'}"],
    )
    assert result.returncode == 2
    line = _error_line(result)
    assert "has trained 2 epochs (62 steps): trainer.max_epochs=2 leaves nothing to train" in line


# ---- a full disk and a folder turned read-only, mid-run ---------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small file system of its own (mounted as root, as the tests run in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _assert_stopped_on_write(result: subprocess.CompletedProcess, run: Path, why: str) -> None:
    last = run / "checkpoints" / "last.ckpt"
    assert result.returncode == 1, result.stderr[-3000:]
    line = _error_line(result)
    assert re.fullmatch(
        rf"error: cannot write .+: {why} \(epoch 1, step \d+\); the run stopped, the last whole checkpoint "
        rf"is {re.escape(str(last))}: make room \(or make the folder writable\) and resume with the same "
        rf"overrides and ckpt_path={re.escape(str(last))}\.",
        line,
    ), line
    assert _epoch(last) == 0
    assert not (run / "metrics.json").exists()


def test_a_full_disk_mid_run_leaves_whole_checkpoints_and_one_line(tmpfs: Path, data_dir: Path) -> None:
    run = tmpfs / "run"
    args = [*RUN, *_fault("FillDisk", path=tmpfs / "filler", epoch=1), f"hydra.run.dir={run}"]
    result = run_cli("siamese_lit.train", args, timeout=300, env=ENV)
    _assert_stopped_on_write(result, run, "No space left on device")
    assert set(_whole_checkpoints(run)) <= {"epoch_000.ckpt", "epoch_001.ckpt", "last.ckpt"}


def test_a_checkpoint_folder_turned_read_only_mid_run(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    args = [*RUN, *_fault("Freeze", path=run / "checkpoints", epoch=1), f"hydra.run.dir={run}"]
    try:
        result = run_cli("siamese_lit.train", args, timeout=300, env=ENV)
    finally:
        subprocess.run(["chattr", "-i", str(run / "checkpoints")], check=False)
    _assert_stopped_on_write(result, run, "Operation not permitted")
    assert set(_whole_checkpoints(run)) == {"epoch_000.ckpt", "last.ckpt"}


# ---- resuming for more epochs ----------------------------------------------------------------------


def test_resume_for_more_epochs_rebuilds_the_schedule(tmp_path: Path, data_dir: Path) -> None:
    """One epoch, then two from its last.ckpt, under the same experiment and under one sharing the
    encoder (triplets): OneCycleLR rebuilt for the longer run, said in the log; results have the
    log's mode (umask 027)."""
    first = tmp_path / "first"
    umask = {"preexec_fn": lambda: os.umask(0o027)}
    result = run_cli("siamese_lit.train", [*RUN, "trainer.max_epochs=1", f"hydra.run.dir={first}"], **umask)
    assert result.returncode == 0, result.stderr[-3000:]
    last = first / "checkpoints" / "last.ckpt"
    runs = {"same": "+experiment=siamese", "triplets": "+experiment=siamese_triplet"}

    def resume(name: str) -> subprocess.CompletedProcess:
        args = [runs[name], *RUN[1:], f"ckpt_path={last}", f"hydra.run.dir={tmp_path / name}"]
        return run_cli("siamese_lit.train", args, **umask)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(runs, pool.map(resume, runs), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, result.stderr[-3000:]
        run = tmp_path / name
        log_name = "siamese.log" if name == "same" else "siamese_triplet.log"
        log = (run / log_name).read_text()
        assert re.search(
            r"Resumed at step 31: the OneCycleLR schedule rebuilt for 62 steps in all \(the "
            r"checkpoint's was built for 31\)",
            log,
        ), log
        state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        (schedule,) = state["lr_schedulers"]
        assert state["epoch"] == 1 and schedule["last_epoch"] == schedule["total_steps"] == 62
        assert set(json.loads((run / "metrics.json").read_text())) >= {"test/auroc", "val/auroc_best"}
        beside = [run / "metrics.json", run / "checkpoints" / "last.ckpt", run / log_name]
        assert {stat.S_IMODE(p.stat().st_mode) for p in beside} == {0o640}  # the log's, not 0600


def test_sigterm_exits_143_keeps_last_ckpt_and_says_how_to_resume(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    args = [*TRAIN, "data.train_size=500", "data.batch_size=16", "trainer.max_epochs=20", "logger=csv"]
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    with subprocess.Popen(
        [sys.executable, "-m", "siamese_lit.train", *args, f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints" / "last.ckpt").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the deadline"
            time.sleep(0.05)
        time.sleep(0.5)  # let the first save finish
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    last = out / "checkpoints" / "last.ckpt"
    assert proc.returncode == 143, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    resume = f"resume with the same overrides and ckpt_path={re.escape(str(last))}"
    assert re.fullmatch(rf"error: training stopped by SIGTERM at epoch \d+, step \d+: {resume}\.", errors[0])
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 0
    assert not (out / "metrics.json").exists()
    # the run's log has a line per validation, from the progress callback
    assert re.search(
        r"epoch 0, step \d+: val/auroc=[\d.]+, [\d.]+ s elapsed", (out / "siamese.log").read_text()
    )
