"""`python -m siamese_lit.summarize DIR...`: one row per job of a multirun, best first.

Reads each job dir's `.hydra/overrides.yaml`, `.hydra/config.yaml` and `metrics.json` (or the
`error.json` of a failed job, see siamese_lit.runs.sweep), sorts by the sweep's `optimized_metric` and
writes `summary.csv` (every metric) and `summary.md` (the optimized and test metrics) into DIR.
Jobs that differ only in `seed` are also grouped: mean ± sample std over their seeds, in summary.md
and `summary_seeds.csv`. A job whose files are unreadable (truncated, hand-edited) is listed as
such, with the reason; it never stops the summary. The multirun writes the same summary when it
ends (`SweepSummary`, a Hydra callback).
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.reports.sweep_dir import (
    REPLICATES,
    Sweep,
    mean_std,
    ranked,
    read_sweep,
    replicated,
    seed_groups,
    varying_keys,
)
from siamese_lit.utils.errors import DataError, check
from siamese_lit.utils.files import write_atomic
from siamese_lit.utils.tables import markdown_table

# not siamese_lit.utils' logger: the CLI stays free of torch/Lightning imports, so it starts at once
log = logging.getLogger("siamese_lit")


def _metric_order(sweep: Sweep, names: set[str]) -> list[str]:
    first = [sweep.metric] if sweep.metric in names else []
    return first + sorted(names - set(first), key=lambda n: (not n.startswith("test/"), n))


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
    unreadable = [j.name for j in sweep.jobs if j.status == "unreadable"]
    if unreadable:
        lines.append(f"Unreadable jobs (skipped): {', '.join(unreadable)}; see the error column.")
    if common:
        lines.append("Common overrides: " + " ".join(f"`{o}`" for o in common))
    if "best_value" in sweep.optuna:
        best = sweep.optuna
        lines.append(f"Optuna best value: {best['best_value']:.6g}, params: {best['best_params']}")
    lines += ["", *markdown_table(header, rows)]
    lines += seeds_markdown(sweep)
    return "\n".join(lines) + "\n"


def seeds_table(sweep: Sweep, everything: bool) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of seed_groups: the overrides that vary between groups, the jobs, the seeds
    that finished, then mean and std of each metric."""
    groups = seed_groups(sweep)
    varying = [k for k in varying_keys(sweep) if k not in REPLICATES]
    names = {n for g in groups for n in g.stats}
    if not everything:
        names = {n for n in names if n == sweep.metric or n.startswith("test/")}
    metrics = _metric_order(sweep, names)
    header = [*varying, "jobs", "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    rows = []
    for g in groups:
        n = max((count for _, _, count in g.stats.values()), default=0)
        cells: list[Any] = [g.overrides.get(k, "") for k in varying]
        cells += [" ".join(j.name for j in g.jobs), n]
        for m in metrics:
            mean, std, _ = g.stats.get(m, (None, None, 0))
            cells += [mean, std]
        rows.append(cells)
    return header, rows


def seeds_markdown(sweep: Sweep) -> list[str]:
    """summary.md's section on seeds: mean ± sample std (n seeds) of each metric per group."""
    if not replicated(sweep):
        return []
    groups = seed_groups(sweep)
    varying = [k for k in varying_keys(sweep) if k not in REPLICATES]
    names = {n for g in groups for n in g.stats if n == sweep.metric or n.startswith("test/")}
    metrics = _metric_order(sweep, names)
    rows = [
        [g.overrides.get(k, "") for k in varying]
        + [" ".join(j.name for j in g.jobs)]
        + [mean_std(*g.stats.get(m, (None, None, 0))) for m in metrics]
        for g in groups
    ]
    lines = [
        "",
        "## Over seeds",
        "",
        "Mean ± sample standard deviation over the seeds (or open-set splits) that finished (n).",
    ]
    return [*lines, "", *markdown_table([*varying, "jobs", *metrics], rows)]


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    return out.getvalue()


def summarize(sweep_dir: Path) -> tuple[Sweep, str]:
    """Write summary.csv, summary.md (and summary_seeds.csv when seeds vary) into `sweep_dir`;
    returns the sweep and the Markdown. A file that cannot be written is logged, not raised: the
    summary is still returned (and printed by the CLI)."""
    sweep = read_sweep(sweep_dir)
    text = markdown(sweep, sweep_dir)
    files = {"summary.csv": _csv(*table(sweep, everything=True)), "summary.md": text}
    if replicated(sweep):
        files["summary_seeds.csv"] = _csv(*seeds_table(sweep, everything=True))
    for name, content in files.items():
        try:
            write_atomic(sweep_dir / name, content)
        except OSError as exc:
            log.warning("Cannot write %s (%s): the summary is only printed.", sweep_dir / name, exc)
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


def summarize_command(cfg: DictConfig) -> None:
    """The task of `python -m siamese_lit.summarize` (its settings: siamese_lit.cli.schemas): each
    multirun dir of `cfg.dirs` summarized, and its summary printed."""
    check(bool(cfg.dirs), "no dir: give a multirun dir, e.g. outputs/siamese/multiruns/<timestamp>.")
    for name in cfg.dirs:
        if not Path(name).is_dir():
            raise DataError(f"{name} is not a directory: give a multirun dir.")
    for name in cfg.dirs:
        print(summarize(Path(name))[1], end="")


def main(argv: Sequence[str] | None = None) -> None:
    run_command(summarize_command, "summarize", positional="dirs", argv=argv)


if __name__ == "__main__":
    main()
