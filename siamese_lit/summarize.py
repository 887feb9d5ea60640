"""`python -m siamese_lit.summarize DIR`: one row per job of a multirun, best first.

Reads each job dir's `.hydra/overrides.yaml`, `.hydra/config.yaml` and `metrics.json` (or the
`error.json` of a failed job, see siamese_lit.sweep), sorts by the sweep's `optimized_metric` and
writes `summary.csv` (every metric) and `summary.md` (the optimized and test metrics) into DIR.
The multirun writes the same summary when it ends (`SweepSummary`, a Hydra callback).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from siamese_lit.errors import DataError, exit_on_user_error

# what siamese_lit.sweep writes into the dir of a failed job
ERROR_FILE = "error.json"
# not siamese_lit.utils' logger: the CLI stays free of torch/Lightning imports, so it starts at once
log = logging.getLogger("siamese_lit")


@dataclass
class Job:
    """What one job of a multirun left in its dir."""

    name: str
    overrides: dict[str, str]
    metrics: dict[str, float | None]
    status: str  # ok | failed | no result (still running, or killed)
    error: str = ""


@dataclass
class Sweep:
    jobs: list[Job]
    metric: str | None
    maximize: bool
    optuna: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]


def _job_number(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, path.name)


def read_job(job_dir: Path) -> Job:
    pairs = (o.split("=", 1) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    overrides = {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    metrics_file, error_file = job_dir / "metrics.json", job_dir / ERROR_FILE
    if error_file.is_file():
        error = json.loads(error_file.read_text())["error"]
        return Job(job_dir.name, overrides, {}, "failed", error)
    if metrics_file.is_file():
        return Job(job_dir.name, overrides, json.loads(metrics_file.read_text()), "ok")
    return Job(job_dir.name, overrides, {}, "no result")


def read_sweep(sweep_dir: Path) -> Sweep:
    """The jobs of a multirun dir; the optimized metric and its direction come from the jobs'
    config: `optimized_metric` is `<checkpoint monitor>_best`, so it goes the checkpoint's way
    (`callbacks.model_checkpoint.mode`), as the Optuna configs' `direction` does."""
    job_dirs = sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=_job_number)
    if not job_dirs:
        raise DataError(f"{sweep_dir} holds no job dirs (<job>/.hydra/overrides.yaml): give a multirun dir.")
    cfg = OmegaConf.load(job_dirs[0] / ".hydra" / "config.yaml")
    mode = OmegaConf.select(cfg, "callbacks.model_checkpoint.mode", default="max")
    results = sweep_dir / "optimization_results.yaml"
    optuna = OmegaConf.to_container(OmegaConf.load(results)) if results.is_file() else {}
    return Sweep([read_job(d) for d in job_dirs], cfg.get("optimized_metric"), mode == "max", optuna)


def ranked(sweep: Sweep) -> list[Job]:
    """Jobs best first; failed jobs and jobs without the metric last."""

    def key(job: Job) -> tuple[bool, float]:
        value = job.metrics.get(sweep.metric) if sweep.metric else None
        if value is None or math.isnan(value):
            return True, 0.0
        return False, -value if sweep.maximize else value

    return sorted(sweep.jobs, key=key)


def _metric_order(sweep: Sweep, names: set[str]) -> list[str]:
    first = [sweep.metric] if sweep.metric in names else []
    return first + sorted(names - set(first), key=lambda n: (not n.startswith("test/"), n))


def varying_keys(sweep: Sweep) -> list[str]:
    """The override keys whose values differ between jobs: what the sweep is about."""
    keys = dict.fromkeys(k for j in sweep.jobs for k in j.overrides)
    return [k for k in keys if len({j.overrides.get(k) for j in sweep.jobs}) > 1]


def table(sweep: Sweep, everything: bool) -> tuple[list[str], list[list[Any]]]:
    """(header, rows): the overrides that differ between jobs, the status and the metrics (every
    metric, or only the optimized and test ones; None where a job has none), and failed jobs' errors."""
    varying = varying_keys(sweep)
    names = {n for j in sweep.jobs for n in j.metrics}
    if not everything:
        names = {n for n in names if n == sweep.metric or n.startswith("test/")}
    metrics = _metric_order(sweep, names)
    errors = ["error"] if sweep.failed else []
    header = ["job", *varying, "status", *metrics, *errors]
    rows = []
    for job in ranked(sweep):
        row = [job.name, *(job.overrides.get(k, "") for k in varying), job.status]
        rows.append(row + [job.metrics.get(m) for m in metrics] + [job.error] * len(errors))
    return header, rows


def _cell(value: Any) -> str:
    text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def markdown(sweep: Sweep, sweep_dir: Path) -> str:
    header, rows = table(sweep, everything=False)
    varying = varying_keys(sweep)
    common = [f"{k}={v}" if v else k for k, v in sweep.jobs[0].overrides.items() if k not in varying]
    direction = "max" if sweep.maximize else "min"
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(sweep.jobs)} jobs, {len(sweep.failed)} failed; sorted by `{sweep.metric}`, {direction} first.",
    ]
    if common:
        lines.append("Common overrides: " + " ".join(f"`{o}`" for o in common))
    if "best_value" in sweep.optuna:
        best = sweep.optuna
        lines.append(f"Optuna best value: {best['best_value']:.6g}, params: {best['best_params']}")
    cells = [[_cell(c) for c in row] for row in (header, *rows)]
    lines += ["", "| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines) + "\n"


def summarize(sweep_dir: Path) -> tuple[Sweep, str]:
    """Write summary.csv and summary.md into `sweep_dir`; returns the sweep and the Markdown."""
    sweep = read_sweep(sweep_dir)
    header, rows = table(sweep, everything=True)
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    text = markdown(sweep, sweep_dir)
    (sweep_dir / "summary.md").write_text(text)
    return sweep, text


class SweepSummary(Callback):
    """Hydra callback: when a multirun ends, writes its summary and reports failed jobs; the
    command then exits with status 1 if any job failed (after every job has run)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep, text = summarize(sweep_dir)
        log.info("Sweep summary (also in %s and summary.csv):\n%s", sweep_dir / "summary.md", text)
        if sweep.failed:
            first, names = sweep.failed[0], ", ".join(j.name for j in sweep.failed)
            print(
                f"error: {len(sweep.failed)} of {len(sweep.jobs)} jobs failed: {names} (job {first.name}: "
                f"{first.error or first.status}); see {sweep_dir / 'summary.md'}",
                file=sys.stderr,
            )
            raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a multirun dir, e.g. outputs/siamese/multiruns/<timestamp>")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if not args.dir.is_dir():
            raise DataError(f"{args.dir} is not a directory: give a multirun dir.")
        print(summarize(args.dir)[1], end="")


if __name__ == "__main__":
    main()
