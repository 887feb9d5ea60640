"""A multirun's dir read back: its jobs (overrides, metrics or error), the metric it optimises,
and the jobs grouped over seeds. Bounded and strict (siamese_lit.reports.bounded): a job whose files
are broken or hand-edited is `unreadable`, never a reason to stop.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese_lit.reports.bounded import UnreadableFile as Unreadable
from siamese_lit.reports.bounded import load_json, load_yaml, optuna_best, select
from siamese_lit.utils.errors import DataError
from siamese_lit.utils.files import ERROR_FILE


@dataclass
class Job:
    """What one job of a multirun left in its dir."""

    name: str
    overrides: dict[str, str]
    metrics: dict[str, float | None]
    status: str  # ok | failed | no result (still running, or killed) | unreadable (its files are broken)
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
    """Hydra's job numbers in order; other names (`٣` is a digit to str.isdigit) after them."""
    name = path.name
    return (int(name), "") if name.isascii() and name.isdigit() and len(name) < 19 else (sys.maxsize, name)


def _read_json_object(path: Path) -> dict[str, Any]:
    data = load_json(path)  # bounded, strict: Unreadable otherwise
    if not isinstance(data, dict):
        raise Unreadable(f"{path.name} holds a {type(data).__name__}, not an object")
    return data


def read_overrides(job_dir: Path) -> dict[str, str]:
    overrides = load_yaml(job_dir / ".hydra" / "overrides.yaml")  # bounded; Unreadable otherwise
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise Unreadable("overrides.yaml is not a list of key=value overrides")
    pairs = (o.split("=", 1) for o in overrides)
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


def _metric(value: Any) -> float | None:
    """A metric as a float; None for null and anything that is not a number."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_job(job_dir: Path) -> Job:
    try:
        overrides = read_overrides(job_dir)
    except Unreadable as exc:
        return Job(job_dir.name, {}, {}, "unreadable", str(exc))
    metrics_file, error_file = job_dir / "metrics.json", job_dir / ERROR_FILE
    try:
        if error_file.is_file():
            error = _read_json_object(error_file).get("error")
            return Job(job_dir.name, overrides, {}, "failed", str(error or "no message in error.json"))
        if metrics_file.is_file():
            metrics = {k: _metric(v) for k, v in _read_json_object(metrics_file).items()}
            return Job(job_dir.name, overrides, metrics, "ok")
    except Unreadable as exc:
        return Job(job_dir.name, overrides, {}, "unreadable", str(exc))
    return Job(job_dir.name, overrides, {}, "no result")


def _first_config(job_dirs: list[Path]) -> dict[str, Any]:
    """The first job config that reads as a mapping (an empty one if none does); plain YAML, never
    interpolated (utils.bounded)."""
    for job_dir in job_dirs:
        try:
            cfg = load_yaml(job_dir / ".hydra" / "config.yaml")
        except Unreadable:
            continue
        if isinstance(cfg, dict):
            return cfg
    return {}


def read_sweep(sweep_dir: Path) -> Sweep:
    """The jobs of a multirun dir; the optimized metric and its direction come from the jobs'
    config: `optimized_metric` is `<checkpoint monitor>_best`, so it goes the checkpoint's way
    (`callbacks.model_checkpoint.mode`), as the Optuna configs' `direction` does."""
    job_dirs = sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=_job_number)
    if not job_dirs:
        raise DataError(f"{sweep_dir} holds no job dirs (<job>/.hydra/overrides.yaml): give a multirun dir.")
    cfg = _first_config(job_dirs)
    mode = select(cfg, "callbacks.model_checkpoint.mode") or "max"
    metric = select(cfg, "optimized_metric")
    if metric is None and isinstance(monitor := select(cfg, "callbacks.model_checkpoint.monitor"), str):
        metric = f"{monitor}_best"  # conf/train.yaml's optimized_metric, read without interpolating
    optuna = optuna_best(sweep_dir / "optimization_results.yaml")
    return Sweep(
        [read_job(d) for d in job_dirs], metric if isinstance(metric, str) else None, mode == "max", optuna
    )


def ranked(sweep: Sweep) -> list[Job]:
    """Jobs best first; failed jobs and jobs without the metric last."""

    def key(job: Job) -> tuple[bool, float]:
        value = job.metrics.get(sweep.metric) if sweep.metric else None
        if value is None or math.isnan(value):
            return True, 0.0
        return False, -value if sweep.maximize else value

    return sorted(sweep.jobs, key=key)


def varying_keys(sweep: Sweep) -> list[str]:
    """The override keys whose values differ between jobs: what the sweep is about."""
    keys = dict.fromkeys(k for j in sweep.jobs for k in j.overrides)
    return [k for k in keys if len({j.overrides.get(k) for j in sweep.jobs}) > 1]


#: the overrides whose values are replicates of one experiment, averaged over: the seed, and the
#: open-set split (conf/open_split/: the field reports the mean over its 5 splits)
REPLICATES = ("seed", "open_split")


@dataclass
class SeedGroup:
    """Jobs with the same overrides apart from the REPLICATES, and each metric's (mean, sample std, n) over
    those of them that finished (std None for n = 1)."""

    overrides: dict[str, str]
    jobs: list[Job]
    stats: dict[str, tuple[float, float | None, int]]


def replicated(sweep: Sweep) -> bool:
    """Whether a replicate (the seed, the open-set split) varies between the sweep's jobs."""
    return bool(set(REPLICATES) & set(varying_keys(sweep)))


def replicate_key(overrides: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A job's overrides but the REPLICATES, in a fixed order: the jobs that share it replicate one
    experiment."""
    return tuple(sorted((k, v) for k, v in overrides.items() if k not in REPLICATES))


def replicate_stats(jobs: list[Job]) -> dict[str, tuple[float, float | None, int]]:
    """Each metric's (mean, sample std, n) over the jobs that finished (std None for n = 1)."""
    stats = {}
    for name in sorted({n for j in jobs if j.status == "ok" for n in j.metrics}):
        values = [v for j in jobs if j.status == "ok" and (v := j.metrics.get(name)) is not None]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else None
            stats[name] = (statistics.fmean(values), std, len(values))
    return stats


def seed_groups(sweep: Sweep) -> list[SeedGroup]:
    """The sweep's jobs grouped by everything but the REPLICATES, in the order of their first job; a
    sweep in which no replicate varies (one seed) gives groups of one job each."""
    groups: dict[tuple[tuple[str, str], ...], list[Job]] = {}
    for job in sweep.jobs:
        if job.status != "unreadable":
            groups.setdefault(replicate_key(job.overrides), []).append(job)
    return [SeedGroup(dict(key), jobs, replicate_stats(jobs)) for key, jobs in groups.items()]


def mean_std(mean: float | None, std: float | None, n: int) -> str:
    """`mean ± std (n=...)`, as summary.md and the results tables show a figure over seeds."""
    return "" if mean is None else f"{mean:.4g} ± {'n/a' if std is None else f'{std:.2g}'} (n={n})"
