"""The one bad-input table harness: cases, their runs as real subprocesses, and the assertions.

A table is a list of `Case`s naming files of a "world" as `<name>`. `run_cases` runs every case as
`python -m siamese_lit.<module> <args>` would (a few at a time), in a process of its own forked
from a case server that has imported the commands' libraries once (tests/helpers/case_server.py),
or cold, through a small launcher process (`cold=True`, or SIAMESE_LIT_TABLES_COLD=1 for every
table); either reads the child's peak RSS and CPU time with os.wait4; `assert_refused` checks what every table
promises: the exit status, exactly one `error: ` line matching the case (or stdout, for rc 0), and
no traceback, plus the `warning: ` lines and the quiet stderr a case may ask for;
`assert_memory_bounded` the relative bound on a hostile input's peak RSS. `snapshot` fingerprints the
files that must come out byte-identical.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
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
    points get a fresh run dir unless the case sets its own. `warnings`, when given, are regexes
    that each match exactly one `warning: ` line, and there is no other; `quiet`: stderr holds
    nothing but those `warning: ` and `error: ` lines. The child runs under `umask` when given, in
    the folder `cwd` (a `<name>` of the world; default the project root), and is killed (its case
    then fails) after `timeout` seconds.
    """

    id: str
    module: str
    args: tuple[str, ...]
    expect: str
    rc: int = 2
    warnings: tuple[str, ...] | None = None
    quiet: bool = False
    umask: int | None = None
    cwd: str | None = None
    timeout: float = 600


def case(id: str, module: str, args: str | list[str], expect: str, rc: int = 2, **options) -> Case:
    """A Case whose `args` may be one string split on spaces; `options` are Case's other fields."""
    return Case(id, module, tuple(args.split() if isinstance(args, str) else args), expect, rc, **options)


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


def _hung(command: list[str], timeout: float, stdout: str, stderr: str, start: float) -> Run:
    hung = subprocess.CompletedProcess(command, -9, stdout, f"hung for {timeout} s\n{stderr}")
    return Run(hung, math.inf, math.inf, time.monotonic() - start)


def run_measured(
    module: str,
    args: list[str],
    usage_file: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    umask: int | None = None,
    cwd: Path = PROJECT_ROOT,
    cold: bool = False,
) -> Run:
    """`python -m <module> <args>`, output captured, with its peak RSS and CPU time: forked from a
    case server, or `cold` through LAUNCHER. One that runs past `timeout` is killed with its process
    group and comes back as rc -9 (infinite RSS and CPU), so that only its own case fails."""
    if not (cold or os.environ.get("SIAMESE_LIT_TABLES_COLD")):
        return SERVERS.run(module, args, usage_file.with_suffix(""), cli_env(env), timeout, umask, cwd)
    start = time.monotonic()
    command = [sys.executable, "-c", LAUNCHER, str(usage_file), sys.executable, "-m", module, *args]
    launcher = subprocess.Popen(
        command,
        cwd=cwd,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hung child is killed with it
        umask=-1 if umask is None else umask,
    )
    try:
        stdout, stderr = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        stdout, stderr = launcher.communicate()
        return _hung(command, timeout, stdout, stderr, start)
    result = subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)
    assert usage_file.is_file(), f"the launcher did not run {module}: {result.stderr[-3000:]}"
    rss_kib, cpu_s = usage_file.read_text().split()
    return Run(result, int(rss_kib) / 1024, float(cpu_s), time.monotonic() - start)


#: what a case server imports once: every command's libraries (not the command modules themselves,
#: which each case runs as __main__)
PRELOADED = ("lightning", "torchvision", "PIL.Image", "hydra.main", "siamese_lit")


class CaseServers:
    """The session's case servers: one per case running at once, started when first needed, kept
    for the next table, and killed when the session ends."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[tuple[subprocess.Popen, Path]] = queue.SimpleQueue()
        self._started: list[tuple[subprocess.Popen, Path]] = []
        self._lock = threading.Lock()

    def _start(self) -> tuple[subprocess.Popen, Path]:
        fd, name = tempfile.mkstemp(prefix="case_server_", suffix=".log")
        log = Path(name)
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.case_server", *PRELOADED],
            cwd=PROJECT_ROOT,
            env=cli_env({"OMP_NUM_THREADS": "1"}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=fd,
            text=True,
        )
        os.close(fd)
        with self._lock:
            self._started.append((server, log))
        assert server.stdout.readline(), f"the case server did not start: {log.read_text()[-3000:]}"
        return server, log

    def run(
        self,
        module: str,
        args: list[str],
        out: Path,
        env: dict[str, str],
        timeout: float,
        umask: int | None,
        cwd: Path,
    ) -> Run:
        try:
            server, log = self._idle.get_nowait()
        except queue.Empty:
            server, log = self._start()
        start = time.monotonic()
        stdout, stderr = out.with_name(out.name + ".stdout"), out.with_name(out.name + ".stderr")
        request = {"module": module, "args": args, "env": env, "cwd": str(cwd), "umask": umask}
        server.stdin.write(
            json.dumps({**request, "stdout": str(stdout), "stderr": str(stderr), "timeout": timeout})
        )
        server.stdin.write("\n")
        server.stdin.flush()
        answer = server.stdout.readline()
        assert answer, f"the case server died running {module} {args}: {log.read_text()[-3000:]}"
        self._idle.put((server, log))
        answer = json.loads(answer)
        command = [sys.executable, "-m", module, *args]
        out_text, err_text = (p.read_text(errors="backslashreplace") for p in (stdout, stderr))
        if answer["hung"]:
            return _hung(command, timeout, out_text, err_text, start)
        result = subprocess.CompletedProcess(command, answer["returncode"], out_text, err_text)
        return Run(result, answer["rss_kib"] / 1024, answer["cpu_s"], time.monotonic() - start)

    def close(self) -> None:
        with self._lock:
            for server, log in self._started:
                server.kill()
                server.wait()
                log.unlink(missing_ok=True)


SERVERS = CaseServers()
atexit.register(SERVERS.close)


def fill(arg: str, world: dict[str, Path]) -> str:
    """`arg` with every `<name>` replaced by the world's path of that name."""
    return re.sub(r"<(\w+)>", lambda m: str(world[m[1]]), arg)


def run_cases(
    cases: Iterable[Case],
    world: dict[str, Path],
    out: Path,
    env: dict[str, str] | None = None,
    workers: int = 3,
    cold: bool = False,
) -> dict[str, Run]:
    """Every case run as a process of its own (forked from a case server, or `cold`: a whole
    `python -m`), `workers` at a time, one thread each (OMP_NUM_THREADS=1). A Hydra entry point (all
    but summarize) runs in out/<case id> unless the case names its own dir."""
    out.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1", **(env or {})}

    def run(case: Case) -> Run:
        args = [fill(a, world) for a in case.args]
        own_dir = any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args)
        if case.module != "summarize" and not own_dir:
            args.append(f"hydra.run.dir={out / case.id}")
        usage = out / f"{case.id}.usage"
        cwd = Path(fill(case.cwd, world)) if case.cwd else PROJECT_ROOT
        return run_measured(
            f"siamese_lit.{case.module}", args, usage, env, case.timeout, case.umask, cwd, cold
        )

    cases = list(cases)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip([c.id for c in cases], pool.map(run, cases), strict=True))


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_refused(case: Case, result: subprocess.CompletedProcess) -> None:
    """No traceback, the case's exit status, and one `error: ` line matching it (rc 0: stdout does);
    the case's `warning: ` lines, each once, and no other (when it names them); nothing else on
    stderr (when it is quiet)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == case.rc, (result.returncode, output[-3000:])
    errors = error_lines(result)
    if case.rc == 0:
        assert errors == [] and re.search(case.expect, result.stdout), output[-3000:]
    else:
        assert len(errors) == 1 and re.search(case.expect, errors[0]), output[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    if case.warnings is not None:
        for pattern in case.warnings:
            assert len([line for line in warnings if re.match(pattern, line)]) == 1, (pattern, result.stderr)
        assert len(warnings) == len(case.warnings), result.stderr
    if case.quiet:
        assert len(result.stderr.splitlines()) == len(warnings) + len(errors), result.stderr


#: What a hostile input may add to the peak RSS of the same command on plain input (its bare run),
#: both measured in the same session.
MEMORY_MARGIN_MIB = 400


def assert_memory_bounded(name: str, run: Run, bare: Run) -> None:
    """`run`'s peak RSS is at most MEMORY_MARGIN_MIB above its bare run's."""
    print(f"{name}: peak RSS {run.peak_rss_mib:.0f} MiB (bare command {bare.peak_rss_mib:.0f} MiB)")
    assert run.peak_rss_mib <= bare.peak_rss_mib + MEMORY_MARGIN_MIB, (
        name,
        run.peak_rss_mib,
        bare.peak_rss_mib,
    )


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
