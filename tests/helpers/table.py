"""The one bad-input table harness: cases, their runs as real subprocesses, and the assertions.

A table is a list of `Case`s naming files of a "world" as `<name>`. `run_cases` runs every case as
`python -m siamese_lit.<module> <args>` (a few at a time) through a small launcher process that
reads the child's peak RSS and CPU time with os.wait4; `assert_refused` checks what every table
promises: the exit status, exactly one `error: ` line matching the case (or stdout, for rc 0), and
no traceback. `snapshot` fingerprints the files that must come out byte-identical.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from siamese_lit import PROJECT_ROOT
from tests.helpers.runs import SMALL_NET, TINY_SIAMESE, cli_env

# a training run that would take seconds if it started: every case must stop before it does
TRAIN = ["+experiment=siamese", *TINY_SIAMESE, *SMALL_NET, "model.net.hidden_size=64"]
EVALUATE = "device=cpu data.gallery_size=500"
COMPARE = "device=cpu <digit_a> <digit_b>"


@dataclass(frozen=True)
class Case:
    """A bad input: `python -m siamese_lit.<module> <args>`, where `<name>` is a path of the world.

    `expect` is a regex the single `error: ` line must match (or, with rc 0, stdout). Hydra entry
    points get a fresh run dir unless the case sets its own.
    """

    id: str
    module: str
    args: tuple[str, ...]
    expect: str
    rc: int = 2


def case(id: str, module: str, args: str | list[str], expect: str, rc: int = 2) -> Case:
    """A Case whose `args` may be one string split on spaces."""
    return Case(id, module, tuple(args.split() if isinstance(args, str) else args), expect, rc)


@dataclass(frozen=True)
class Run:
    """One case's subprocess: its output and status, its peak RSS, CPU time and wall time."""

    result: subprocess.CompletedProcess
    peak_rss_mib: float
    cpu_s: float
    wall_s: float


#: Runs the command given as its arguments, then writes the child's peak RSS (KiB) and CPU seconds
#: (user + system, its own children included) as read by os.wait4 to the file named first. A small
#: process: a child's ru_maxrss starts at its parent's at the fork or exec, and pytest's own RSS
#: (torch imported, a model trained) would hide the child's.
LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, status, u = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)"
)


def run_measured(
    module: str, args: list[str], usage_file: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Run:
    """`python -m <module> <args>` through LAUNCHER, output captured, with its peak RSS and CPU time."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(usage_file), sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert usage_file.is_file(), f"the launcher did not run {module}: {result.stderr[-3000:]}"
    rss_kib, cpu_s = usage_file.read_text().split()
    return Run(result, int(rss_kib) / 1024, float(cpu_s), time.monotonic() - start)


def fill(arg: str, world: dict[str, Path]) -> str:
    """`arg` with every `<name>` replaced by the world's path of that name."""
    return re.sub(r"<(\w+)>", lambda m: str(world[m[1]]), arg)


def run_cases(
    cases: Iterable[Case],
    world: dict[str, Path],
    out: Path,
    env: dict[str, str] | None = None,
    workers: int = 3,
) -> dict[str, Run]:
    """Every case run as a real subprocess, `workers` at a time, one thread each (OMP_NUM_THREADS=1).
    A Hydra entry point (all but summarize) runs in out/<case id> unless the case names its own dir."""
    out.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1", **(env or {})}

    def run(case: Case) -> Run:
        args = [fill(a, world) for a in case.args]
        own_dir = any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args)
        if case.module != "summarize" and not own_dir:
            args.append(f"hydra.run.dir={out / case.id}")
        return run_measured(f"siamese_lit.{case.module}", args, out / f"{case.id}.usage", env)

    cases = list(cases)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip([c.id for c in cases], pool.map(run, cases), strict=True))


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_refused(case: Case, result: subprocess.CompletedProcess) -> None:
    """No traceback, the case's exit status, and one `error: ` line matching it (rc 0: stdout does)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == case.rc, (result.returncode, output[-3000:])
    errors = error_lines(result)
    if case.rc == 0:
        assert errors == [] and re.search(case.expect, result.stdout), output[-3000:]
    else:
        assert len(errors) == 1 and re.search(case.expect, errors[0]), output[-3000:]


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders` (what must be byte-identical afterwards)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@dataclass
class Table:
    """A table's world, its runs by case id, and the watched files' fingerprints before and after."""

    world: dict[str, Path]
    runs: dict[str, Run] = field(default_factory=dict)
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)


def run_table(
    cases: Iterable[Case],
    world: dict[str, Path],
    out: Path,
    watched: Iterable[Path],
    env: dict[str, str] | None = None,
) -> Table:
    """`run_cases`, with the files under `watched` fingerprinted before and after."""
    watched = tuple(watched)
    before = snapshot(*watched)
    runs = run_cases(cases, world, out, env)
    return Table(world, runs, before, snapshot(*watched))
