"""`python -m siamese_lit.results` on hostile and broken run outputs, as real subprocesses.

Each case hands the command a copy of a well-formed sweep (the real composed `+experiment=siamese`
config as Hydra writes it, unresolved) with one thing broken, or a broken source of its own. The
command must name each file it could not read on one `warning: skipped <path>: <reason>` line, make
the tables from the rest (exit 0), or exit 2 with one `error:` line when nothing usable remains,
and never write RESULTS.md then. A secret in the children's environment must appear in no output,
and every case's peak RSS stays within MEMORY_MARGIN_MIB of the bare command's (the same command on
the well-formed sweep, in the same table). The runs go through the one harness (tests/helpers/table.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from siamese_lit import PROJECT_ROOT
from tests.helpers.table import Case, Run, assert_memory_bounded, assert_refused, run_cases

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-token-7f1c9a"
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


#: builds a case's sources in the given folder from the well-formed sweep; returns (the sources, the
#: paths that must each be named on one warning line)
Build = Callable[[Path, Path, str], tuple[list[Path], list[Path]]]


@dataclass(frozen=True)
class Source:
    id: str
    build: Build
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


def _trained_run_files(tmp: Path, sweep: Path, config: str) -> tuple[list[Path], list[Path]]:
    """An evaluated checkpoint whose training job left a billion-laughs overrides.yaml and a
    provenance.json that is /dev/zero: both named, the report still tabled under its experiment."""
    evaluated = _evaluate_dir(tmp, config, {"gallery": {"knn": {"accuracy": 0.9}}})
    overrides = _write(tmp / "run" / ".hydra" / "overrides.yaml", _billion_laughs())
    (zero := tmp / "run" / "provenance.json").symlink_to("/dev/zero")
    return [evaluated], [overrides, zero]


SOURCES = [
    Source("bare", _bare, 0),
    Source("secret-in-config", _secret, 0),
    Source("billion-laughs-config", _laughs, 0),
    Source("1GiB-provenance", _huge_provenance, 0),
    Source("fifo-source", _fifo, 2),
    Source("missing-source", _missing, 0),
    Source("sweep-without-config", _no_config, 0),
    Source("report-is-a-list", _report_list, 2),
    Source("report-lacks-fields", _report_fields, 2),
    Source("dev-zero-and-forged-rows", _device_and_forged_rows, 0),
    Source("trained-run-files", _trained_run_files, 0),
]
IDS = [source.id for source in SOURCES]
#: how long a case may run before it counts as hung (a safety net, not a speed requirement)
HANG_S = 120


@dataclass(frozen=True)
class Table:
    """The cases (`python -m siamese_lit.results <sources> out=<folder>/RESULTS.md`), their runs, the
    RESULTS.md each may write, and the files each must name as unreadable."""

    cases: dict[str, Case]
    runs: dict[str, Run]
    out: dict[str, Path]
    unreadable: dict[str, list[Path]]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Table:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        config = OmegaConf.to_yaml(compose(config_name="train", overrides=["+experiment=siamese"]))
    root = tmp_path_factory.mktemp("reports_hostile")
    sweep = _sweep(root / "well_formed", config)
    cases, out, unreadable = {}, {}, {}
    for source in SOURCES:
        tmp = root / source.id
        tmp.mkdir()
        sources, unreadable[source.id] = source.build(tmp, sweep, config)
        out[source.id] = tmp / "RESULTS.md"
        cases[source.id] = Case(
            source.id,
            "results",
            (*map(str, sources), f"out={out[source.id]}"),
            expect="" if source.rc == 0 else "nothing usable",
            rc=source.rc,
            warnings=tuple(f"warning: skipped {re.escape(str(path))}: " for path in unreadable[source.id]),
            quiet=True,  # nothing said but the warnings and the error
            timeout=HANG_S,
        )
    runs = run_cases(cases.values(), {}, root / "runs", env={"SECRET_TOKEN": SECRET})
    return Table(cases, runs, out, unreadable)


@pytest.mark.parametrize("id", IDS)
def test_results_names_each_unreadable_file_once_and_goes_on(id: str, table: Table) -> None:
    result, out = table.runs[id].result, table.out[id]
    assert_refused(table.cases[id], result)
    text = out.read_text() if out.exists() else ""
    if table.cases[id].rc == 0:
        assert text.startswith("# Results")
        assert all(str(path) in text for path in table.unreadable[id])  # the file says what it left out
    else:
        assert not out.exists(), result.stderr
    assert SECRET not in result.stdout + result.stderr + text


def test_hostile_inputs_stay_within_the_bare_commands_memory(table: Table) -> None:
    for id, run in table.runs.items():
        assert_memory_bounded(id, run, table.runs["bare"])


def test_tables_hold_what_could_be_read(table: Table) -> None:
    """The rows a hostile source leaves: its readable jobs, under the sweep's own name where the
    job config's task_name is an interpolation or missing, and no row forged by a line break."""
    rows = {
        id: [line for line in table.out[id].read_text().splitlines() if line.startswith("| `")]
        for id in (
            "bare",
            "secret-in-config",
            "billion-laughs-config",
            "sweep-without-config",
            "trained-run-files",
        )
    }
    assert rows["trained-run-files"] == [rows["trained-run-files"][0]]
    assert rows["trained-run-files"][0].startswith(
        "| `siamese` | 5 |  | 0.9 ± n/a (n=1) |"
    )  # epochs, protocol, k-NN
    assert rows["bare"][0].startswith("| `siamese` | 5 | auroc 0.975 ± 0.0071 (n=2)")
    assert rows["billion-laughs-config"][0].startswith("| `siamese` | 5 | auroc 0.975")  # job 1's config
    assert rows["secret-in-config"][0].startswith("| `sweep` | 5 | auroc 0.975")
    assert rows["secret-in-config"][1].startswith(f"| `{table.out['secret-in-config'].parent / 'run'}` |")
    assert rows["sweep-without-config"][0].startswith("| `sweep` |  | auroc 0.975 ± 0.0071 (n=2); eer")
    forged = table.out["dev-zero-and-forged-rows"].read_text()
    assert not re.search(r"^(\| forged|# Forged)", forged, re.MULTILINE), forged
