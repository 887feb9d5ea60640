"""`python -m siamese_lit.results` on hostile and broken run outputs, as real subprocesses.

Each case hands the command a copy of a well-formed sweep (the real composed `+experiment=siamese`
config as Hydra writes it, unresolved) with one thing broken, or a broken source of its own. The
command must name each file it could not read on one `warning: skipped <path>: <reason>` line, make
the tables from the rest (exit 0), or exit 2 with one `error:` line when nothing usable remains,
and never write RESULTS.md then. A secret in the children's environment must appear in no output,
and every case's peak RSS stays within 400 MB of the bare command's (the same command on the
well-formed sweep, measured in the same test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from siamese_lit import PROJECT_ROOT

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-token-7f1c9a"
#: what a hostile input may add to the bare command's peak RSS
RSS_MARGIN_MIB = 400
#: Runs the command given as its arguments and writes its child's peak RSS (KiB) to $PEAK_FILE. A
#: small process: a child's ru_maxrss starts at its parent's RSS at the fork, and pytest's would
#: hide the child's.
LAUNCHER = (
    "import os, resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(os.environ['PEAK_FILE'], 'w').write(str(u.ru_maxrss)); sys.exit(rc)"
)
#: how long a case may run before it counts as hung (a safety net, not a speed requirement)
HANG_S = 120
METRICS = {"test/auroc": 0.97, "test/knn_acc": 0.95, "test/eer": 0.08, "val/auroc_best": 0.96}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _sweep(root: Path, config: str) -> Path:
    """A 2-seed multirun dir as `train -m +experiment=siamese seed=0,1` leaves it."""
    for seed in (0, 1):
        job = root / str(seed)
        _write(job / ".hydra" / "overrides.yaml", f"- +experiment=siamese\n- seed={seed}\n")
        _write(job / ".hydra" / "config.yaml", config)
        metrics = {k: v + seed / 100 for k, v in METRICS.items()}
        _write(job / "metrics.json", json.dumps(metrics))
        provenance = {
            "commit": f"abc12345678{seed}",
            "date": "2026-12-01 15:00:00 UTC",
            "device": "x86_64 CPU",
        }
        _write(job / "provenance.json", json.dumps({**provenance, "load_average": 0.5}))
    return root


def _billion_laughs() -> str:
    """Nine levels of ten aliases each: 10**9 strings once expanded; a few hundred bytes as written."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\ntask_name: laughs\n"


def _evaluate_dir(root: Path, run_config: str, report: object) -> Path:
    """An evaluate run dir whose report.json names a checkpoint of a run with `run_config`."""
    _write(root / "run" / ".hydra" / "config.yaml", run_config)
    if isinstance(report, dict):
        report = {"checkpoint": str(root / "run" / "checkpoints" / "epoch_000.ckpt"), **report}
    _write(root / "eval" / "report.json", json.dumps(report))
    return root / "eval"


@dataclass(frozen=True)
class Case:
    id: str
    #: builds the sources in the given folder from the well-formed sweep; returns (sources, the
    #: paths that must each be named on one warning line)
    build: Callable[[Path, Path, str], tuple[list[Path], list[Path]]]
    rc: int


def _bare(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    return [sweep], []


def _secret(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    """The secret named in a job's config and in an evaluated run's config: shown nowhere."""
    leaky = config.replace("task_name: siamese", "task_name: ${oc.env:SECRET_TOKEN}")
    assert leaky != config
    report = {"gallery": {"knn": {"accuracy": 0.9}}}
    return [_sweep(tmp / "sweep", leaky), _evaluate_dir(tmp, leaky, report)], []


def _laughs(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    copy = shutil.copytree(sweep, tmp / "sweep")
    bomb = _write(copy / "0" / ".hydra" / "config.yaml", _billion_laughs())
    return [copy], [bomb]


def _huge_provenance(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    copy = shutil.copytree(sweep, tmp / "sweep")
    huge = copy / "1" / "provenance.json"
    with open(huge, "r+b") as f:  # 1 GiB, sparse: nothing written beyond the real JSON
        f.truncate(1 << 30)
    return [copy], [huge]


def _fifo(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    os.mkfifo(tmp / "bench.json")  # nobody writes into it: opening it for read would block
    return [tmp / "bench.json"], [tmp / "bench.json"]


def _missing(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    return [tmp / "no_such_sweep", sweep], [tmp / "no_such_sweep"]


def _no_config(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    copy = shutil.copytree(sweep, tmp / "sweep")
    configs = [copy / job / ".hydra" / "config.yaml" for job in ("0", "1")]
    for path in configs:
        path.unlink()
    return [copy], configs


def _report_list(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    path = _evaluate_dir(tmp, config, [{"gallery": {"knn": {"accuracy": 0.9}}}])
    return [path], [path / "report.json"]


def _report_fields(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    """One report names no checkpoint, another holds no figure of an evaluate report."""
    without_checkpoint = _write(
        tmp / "a" / "report.json", json.dumps({"gallery": {"knn": {"accuracy": 0.9}}})
    )
    no_figures = _evaluate_dir(tmp / "b", config, {"gallery": {"knn": "high"}})
    return [without_checkpoint.parent, no_figures], [without_checkpoint, no_figures / "report.json"]


def _device_and_forged_rows(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    """Not in the red team's list: a job's provenance.json that is /dev/zero (a device: endless
    bytes), and a bench JSON whose values and provenance hold line breaks and table pipes."""
    copy = shutil.copytree(sweep, tmp / "sweep")
    zero = copy / "0" / "provenance.json"
    zero.unlink()
    zero.symlink_to("/dev/zero")
    forged = {"commit": "abc\n| forged | row |", "date": "2026-12-01", "device": "cpu\n\n# Forged heading"}
    bench = {"mode": "quick\n| forged | row |", "samples_per_s": 123.0, "provenance": forged}
    return [copy, _write(tmp / "bench.json", json.dumps(bench))], [zero]


CASES = [
    Case("bare", _bare, 0),
    Case("secret-in-config", _secret, 0),
    Case("billion-laughs-config", _laughs, 0),
    Case("1GiB-provenance", _huge_provenance, 0),
    Case("fifo-source", _fifo, 2),
    Case("missing-source", _missing, 0),
    Case("sweep-without-config", _no_config, 0),
    Case("report-is-a-list", _report_list, 2),
    Case("report-lacks-fields", _report_fields, 2),
    Case("dev-zero-and-forged-rows", _device_and_forged_rows, 0),
]


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess
    peak_rss_mib: float
    out: Path
    unreadable: list[Path]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        config = OmegaConf.to_yaml(compose(config_name="train", overrides=["+experiment=siamese"]))
    root = tmp_path_factory.mktemp("reports_hostile")
    sweep = _sweep(root / "well_formed", config)
    env = {**os.environ, "SECRET_TOKEN": SECRET, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = {}
    for case in CASES:
        tmp = root / case.id
        tmp.mkdir()
        sources, unreadable = case.build(tmp, sweep, config)
        results_md, peak = tmp / "RESULTS.md", tmp / "peak"
        command = [sys.executable, "-m", "siamese_lit.results", *map(str, sources), f"out={results_md}"]
        out[case.id] = Run(
            *_run_measured(command, {**env, "PEAK_FILE": str(peak)}, peak), results_md, unreadable
        )
    return out


def _run_measured(
    command: list[str], env: dict[str, str], peak: Path
) -> tuple[subprocess.CompletedProcess, float]:
    """`command` through LAUNCHER: its result and peak RSS (MiB). One that hangs is killed with its
    launcher after HANG_S and comes back as rc -9, so that only its own case fails."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *command],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = launcher.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        stdout, stderr = launcher.communicate()
        return subprocess.CompletedProcess(command, -9, stdout, f"hung for {HANG_S} s\n{stderr}"), float(
            "inf"
        )
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr), int(
        peak.read_text()
    ) / 1024


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_results_names_each_unreadable_file_once_and_goes_on(case: Case, runs: dict[str, Run]) -> None:
    run = runs[case.id]
    stdout, stderr = run.result.stdout, run.result.stderr
    assert "Traceback" not in stderr and run.result.returncode == case.rc, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: skipped ")]
    for path in run.unreadable:
        named = [line for line in warnings if line.startswith(f"warning: skipped {path}: ")]
        assert len(named) == 1, (path, stderr)
    assert len(warnings) == len(run.unreadable), stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    text = run.out.read_text() if run.out.exists() else ""
    if case.rc == 0:
        assert errors == [] and text.startswith("# Results")
        assert all(str(path) in text for path in run.unreadable)  # the file says what it left out
    else:
        assert len(errors) == 1 and "nothing usable" in errors[0] and not run.out.exists(), stderr
    assert len(stderr.splitlines()) == len(warnings) + len(errors), stderr  # nothing else said
    assert SECRET not in stdout + stderr + text


def test_hostile_inputs_stay_within_the_bare_commands_memory(runs: dict[str, Run]) -> None:
    bare = runs["bare"].peak_rss_mib
    for case, run in runs.items():
        print(f"{case}: peak RSS {run.peak_rss_mib:.0f} MiB (bare command {bare:.0f} MiB)")
        assert run.peak_rss_mib <= bare + RSS_MARGIN_MIB, case


def test_tables_hold_what_could_be_read(runs: dict[str, Run]) -> None:
    """The rows a hostile source leaves: its readable jobs, under the sweep's own name where the
    job config's task_name is an interpolation or missing, and no row forged by a line break."""
    rows = {
        case: [line for line in runs[case].out.read_text().splitlines() if line.startswith("| `")]
        for case in ("bare", "secret-in-config", "billion-laughs-config", "sweep-without-config")
    }
    assert rows["bare"][0].startswith("| `siamese` | 5 | auroc 0.975 ± 0.0071 (n=2)")
    assert rows["billion-laughs-config"][0].startswith("| `siamese` | 5 | auroc 0.975")  # job 1's config
    assert rows["secret-in-config"][0].startswith("| `sweep` | 5 | auroc 0.975")
    assert rows["secret-in-config"][1].startswith(f"| `{runs['secret-in-config'].out.parent / 'run'}` |")
    assert rows["sweep-without-config"][0].startswith("| `sweep` |  | auroc 0.975 ± 0.0071 (n=2); eer")
    forged = runs["dev-zero-and-forged-rows"].out.read_text()
    assert not re.search(r"^(\| forged|# Forged)", forged, re.MULTILINE), forged
