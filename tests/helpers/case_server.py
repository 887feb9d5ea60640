"""A process that imports the commands' libraries once, then runs each table case in a child forked
from it: `python -m tests.helpers.case_server MODULE...` imports the MODULEs, then answers one JSON
line on stdout per JSON line on stdin.

A case's child is a process of its own, as under `python -m siamese_lit.<command>`: its own
command line (`sys.argv`), environment, working folder, umask, session and standard streams (files,
stdin empty), the package's Ctrl-C hook, the command module run as `__main__` by runpy, and an exit
status that is its own. What it does not pay is the import of torch, Lightning and the rest, which is
most of a refused command's cost and the same in every case: a table of 70 refusals spends its time
on the refusals. What it does not test is therefore the cold start itself: the import-time promises
(a command that imports no Lightning or no torch, Ctrl-C while importing) have their own tests, run
cold, and `SIAMESE_LIT_TABLES_COLD=1` runs every table case cold as well (tests/helpers/table.py).

Its peak RSS starts at the server's (Linux counts the pages shared at the fork), as a cold
process's includes its imports; its CPU time is its own, without them. Both are read by os.wait4,
as for a cold run, and tables bound them relative to a bare case run the same way.

A request: {"module", "args", "env", "cwd", "umask", "stdout", "stderr", "timeout"}; the answer:
{"returncode", "rss_kib", "cpu_s", "hung"}. Standard library only, besides the MODULEs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import runpy
import signal
import sys
import time
import traceback


def _streams(stdout: str, stderr: str, unbuffered: bool) -> None:
    """fds 0, 1, 2 and sys.std* of a new process: stdin empty, stdout and stderr into their files."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, stdout, 0), (2, stderr, 0)):
        if fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = sys.__stdin__ = open(0, closefd=False, encoding="utf-8")  # noqa: SIM115
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=unbuffered
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict) -> None:
    """Run the case's command as `python -m` would, then end the process with its status."""
    code = 1
    try:
        os.setsid()  # its own process group, as the cold launcher's: a hung case is killed whole
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _streams(request["stdout"], request["stderr"], bool(request["env"].get("PYTHONUNBUFFERED")))
        os.chdir(request["cwd"])
        if request["umask"] is not None:
            os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m", *request["args"]]
        from siamese_lit.cli import ctrl_c

        ctrl_c.install()  # what `import siamese_lit` does under `python -m`
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as the interpreter: the traceback, status 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # what the interpreter runs at its exit (logging's flush...)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code % 256)


def _run(request: dict) -> dict:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _child(request)
    deadline = time.monotonic() + request["timeout"]
    hung = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if not hung and time.monotonic() > deadline:
            hung = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.01)
    return {
        "returncode": os.waitstatus_to_exitcode(status) % 256,
        "rss_kib": usage.ru_maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "hung": hung,
    }


def main() -> None:
    for module in sys.argv[1:]:
        importlib.import_module(module)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
