"""The sources of the results tables (siamese_lit.results) read back: multirun dirs, evaluate run dirs
and bench JSON files.

Everything is read through the bounded readers summarize uses (siamese_lit.reports.bounded): regular
files of a bounded size only, YAML without aliases, strict JSON, and nothing through OmegaConf, so a
`${oc.env:...}` in a job's config stays text and is never shown. What comes back is checked for the
shape siamese_lit writes. A source or file that cannot be used is named in `Sources.skipped` with the
reason, one line each, and the rest is still read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese_lit.reports.bounded import UnreadableFile, load_json, load_yaml, select
from siamese_lit.reports.sweep_dir import Sweep, read_overrides, read_sweep

#: the provenance fields a table shows (siamese_lit.runs.provenance), and how long a text one may be
PROVENANCE_TEXT = ("commit", "date", "device")
MAX_TEXT = 100
KINDS = "a multirun dir (<job>/.hydra/overrides.yaml), an evaluate run dir (report.json) or a bench JSON"


@dataclass
class SweepSource:
    """A multirun dir: its jobs, the first job config that reads as a mapping ({} if none does), and
    the provenance of each job that finished ({} where it has none)."""

    path: Path
    sweep: Sweep
    config: dict[str, Any]
    provenances: dict[str, dict[str, Any]]

    def setting(self, key: str, kind: type) -> Any:
        return setting(self.config, key, kind)


def setting(config: dict[str, Any], key: str, kind: type) -> Any:
    """A job config's value at `key` if it is a `kind` (None for anything else, an interpolation
    included: it is never resolved)."""
    value = select(config, key)
    if isinstance(value, str):
        value = one_line(value)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


@dataclass
class Sources:
    sweeps: list[SweepSource] = field(default_factory=list)
    #: evaluate reports, each with `experiment` (the task_name of the run its checkpoint comes from,
    #: or that run's dir) and `source` (its evaluate run dir)
    reports: list[dict[str, Any]] = field(default_factory=list)
    #: bench JSON objects holding one of the keys asked for
    benches: list[dict[str, Any]] = field(default_factory=list)
    #: `<path>: <reason>`, one per source or file that could not be used
    skipped: list[str] = field(default_factory=list)


def one_line(text: str) -> str:
    """Text from a file, as a table shows it: on one line, at most MAX_TEXT characters."""
    return " ".join(text.split())[:MAX_TEXT]


def shown(path: Path) -> str:
    """A path as a line may show it: line breaks and undecodable bytes escaped."""
    text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def provenance(data: Any) -> dict[str, Any]:
    """The provenance fields of the right types (text on one line, cut to MAX_TEXT; a number for the
    load average); the others, and anything in a value that is not a mapping, are dropped."""
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {k: one_line(data[k]) for k in PROVENANCE_TEXT if isinstance(data.get(k), str)}
    load = data.get("load_average")
    if isinstance(load, int | float) and not isinstance(load, bool):
        out["load_average"] = float(load)
    return out


def _object(path: Path) -> dict[str, Any]:
    data = load_json(path)  # bounded, strict: UnreadableFile otherwise
    if not isinstance(data, dict):
        raise UnreadableFile(f"{path.name} holds a {type(data).__name__}, not an object")
    return data


def _exists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except ValueError:  # a NUL byte in the name
        return False


class _Reader:
    def __init__(self, bench_keys: Collection[str]) -> None:
        self.sources = Sources()
        self.bench_keys = set(bench_keys)

    def skip(self, path: Path, reason: str) -> None:
        self.sources.skipped.append(f"{shown(path)}: {reason}")

    def sweep(self, path: Path) -> None:
        sweep = read_sweep(path)
        config: dict[str, Any] = {}
        for job in sweep.jobs:
            if job.status == "unreadable":
                self.skip(path / job.name, job.error)
            elif not config:
                try:
                    loaded = load_yaml(path / job.name / ".hydra" / "config.yaml")
                except UnreadableFile as exc:
                    self.skip(path / job.name / ".hydra" / "config.yaml", str(exc))
                    continue
                if isinstance(loaded, dict):
                    config = loaded
                else:
                    self.skip(path / job.name / ".hydra" / "config.yaml", "not a mapping")
        provenances = {}
        for job in (j for j in sweep.jobs if j.status == "ok"):
            file = path / job.name / "provenance.json"
            try:
                provenances[job.name] = provenance(_object(file)) if _exists(file) else {}
            except UnreadableFile as exc:
                self.skip(file, str(exc))
                provenances[job.name] = {}
        if provenances:
            self.sources.sweeps.append(SweepSource(path, sweep, config, provenances))
        else:
            self.skip(path, "no job of this multirun finished (no readable metrics.json)")

    def report(self, path: Path) -> None:
        file = path / "report.json"
        try:
            report = _object(file)
        except UnreadableFile as exc:
            return self.skip(file, str(exc))
        checkpoint = report.get("checkpoint")
        if not isinstance(checkpoint, str) or not checkpoint.strip():
            return self.skip(file, "names no checkpoint: not a report of siamese_lit.evaluate")
        run_dir = Path(checkpoint).parent.parent
        config, trained_with = run_dir / ".hydra" / "config.yaml", {}
        if _exists(config):
            try:
                trained_with = load_yaml(config)
            except UnreadableFile as exc:
                self.skip(config, f"{exc} (the report is grouped under its run dir)")
        report = {
            **report,
            "experiment": setting(trained_with, "task_name", str) or shown(run_dir),
            "source": shown(path),
            "provenance": provenance(report.get("provenance")),
            "trained": {
                **self._training(run_dir),
                "epochs": setting(trained_with, "trainer.max_epochs", int),
            },
        }
        self.sources.reports.append(report)

    def _training(self, run_dir: Path) -> dict[str, Any]:
        """The overrides and provenance of the training job a checkpoint comes from (empty where
        its files are missing or unreadable: the report is then grouped by its experiment alone)."""
        trained: dict[str, Any] = {"overrides": {}, "provenance": {}}
        if _exists(overrides := run_dir / ".hydra" / "overrides.yaml"):
            try:
                trained["overrides"] = read_overrides(run_dir)
            except UnreadableFile as exc:
                self.skip(overrides, str(exc))
        if _exists(made := run_dir / "provenance.json"):
            try:
                trained["provenance"] = provenance(_object(made))
            except UnreadableFile as exc:
                self.skip(made, str(exc))
        return trained

    def bench(self, path: Path) -> None:
        try:
            bench = _object(path)
        except UnreadableFile as exc:
            return self.skip(path, str(exc))
        if not self.bench_keys & bench.keys():
            return self.skip(
                path, f"not a bench JSON (it has none of the keys {', '.join(sorted(self.bench_keys))})"
            )
        self.sources.benches.append({**bench, "provenance": provenance(bench.get("provenance"))})

    def source(self, path: Path) -> None:
        try:
            info = os.stat(path)
        except (OSError, ValueError) as exc:
            return self.skip(path, exc.strerror if isinstance(exc, OSError) else str(exc))
        if stat.S_ISDIR(info.st_mode) and any(path.glob("*/.hydra/overrides.yaml")):
            return self.sweep(path)
        if stat.S_ISDIR(info.st_mode) and _exists(path / "report.json"):
            return self.report(path)
        if path.suffix == ".json" and not stat.S_ISDIR(info.st_mode):
            return self.bench(path)  # a FIFO or device is refused there, unopened
        self.skip(path, f"not {KINDS}")


def read_sources(paths: list[Path], bench_keys: Collection[str]) -> Sources:
    """Each path read as the kind of source it is (a bench JSON must hold one of `bench_keys`); the
    ones that cannot be used in `skipped`."""
    reader = _Reader(bench_keys)
    for path in paths:
        reader.source(path)
    return reader.sources
