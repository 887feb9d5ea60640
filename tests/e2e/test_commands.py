"""Every command's entry point keeps the same promises, as a real subprocess: a command line it cannot
use is one `error:` line and exit 2, Ctrl-C is one line and exit 130 (also while the command still
imports its libraries), and an output it could not write is refused before any work.

The command-line cases are a table of the one harness (tests/helpers/table.py), run a few at a time
in one fixture: each command's unparsable line cold (a whole `python -m`), the others forked from a
case server.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siamese_lit import PROJECT_ROOT
from tests.helpers.table import Case, Run, assert_refused, case, run_cases

pytestmark = pytest.mark.e2e

#: every command, and the key its positional paths land in (None: it takes no positional paths)
COMMANDS = {
    "train": None,
    "evaluate": None,
    "compare": "images",
    "index": None,
    "search": "queries",
    "export": None,
    "demo": None,
    "summarize": "dirs",
    "results": "sources",
}
#: command lines no command can use: an unparsable override, an unknown key, a file named with `=`
#: (a positional path that Hydra reads as an override of an unknown key), a config group's option
#: given as a number (Hydra raises a bare ValueError)
BAD_LINES = {
    "unparsable": ["x=["],
    "unknown_key": ["no_such_setting=1"],
    "file_with_equals": ["a=b.png"],
    "group_option_a_number": ["hydra/job_logging=3"],
}


def command_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1", **extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_command(command: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    module = "siamese_lit.demo" if command == "demo" else f"siamese_lit.{command}"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=command_env(**env),
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=300,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The process ended with `code` and exactly one line on stderr, an `error:` line; that line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


#: every command with every bad command line, run in a folder that holds a real file named `a=b.png`:
#: one line on stderr, an `error: command line: ` line, and exit 2
BAD_LINE_CASES = [
    case(f"{command}-{name}", command, args, r"^error: command line: ", quiet=True, cwd="<here>")
    for command in COMMANDS
    for name, args in BAD_LINES.items()
]


@pytest.fixture(scope="module")
def bad_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The unparsable line cold, as a whole `python -m`, for a command of each weight (train:
    Lightning in its task; compare: torch at its top; summarize: neither): it is refused before the
    task imports its libraries, and its stderr holds nothing an import might print; the others
    forked from a case server (tests/helpers/case_server.py), as the other tables."""
    here = tmp_path_factory.mktemp("bad_lines")
    (here / "a=b.png").write_bytes(b"not an image")
    world, env = {"here": here}, {"PYTHONPATH": str(PROJECT_ROOT)}
    cold = [
        c
        for c in BAD_LINE_CASES
        if c.id in ("train-unparsable", "compare-unparsable", "summarize-unparsable")
    ]
    forked = [c for c in BAD_LINE_CASES if c not in cold]
    return {
        **run_cases(cold, world, here / "cold", env=env, workers=4, cold=True),
        **run_cases(forked, world, here / "forked", env=env),
    }


@pytest.mark.parametrize("case", BAD_LINE_CASES, ids=[c.id for c in BAD_LINE_CASES])
def test_a_command_line_it_cannot_use_is_one_error_line_and_exit_2(
    case: Case, bad_lines: dict[str, Run]
) -> None:
    assert_refused(case, bad_lines[case.id].result)
    assert len(bad_lines[case.id].result.stderr.strip().splitlines()) == 1, bad_lines[case.id].result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("delay", [1.0, 1.5])
@pytest.mark.parametrize("command", ["train", "demo"])
def test_ctrl_c_while_starting_is_one_line_and_exit_130(command: str, delay: float, tmp_path: Path) -> None:
    """SIGINT shortly after the start, while the command still imports its libraries (not sooner:
    inside the interpreter's own start-up, before any of the package runs, nothing can catch it)."""
    args = [f"port={free_port()}", "ckpt_path=missing.ckpt"] if command == "demo" else []
    module = "siamese_lit.demo" if command == "demo" else f"siamese_lit.{command}"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    assert proc.poll() is None, "the command ended before the signal was sent"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    line = assert_one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 130)
    assert "SIGINT" in line


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in, even by root: made immutable (chattr +i) where the file
    system allows it, else sysfs (read-only to everyone)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode == 0
    yield folder if made else Path("/sys")
    if made:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


#: (command, its arguments with OUT for the output file): each fails before any work on a missing
#: checkpoint or index, so the refusal shows that the output is checked first
OUTPUTS = {
    "index": ["ckpt_path=missing.ckpt", "index_path=OUT", "hydra.run.dir=RUN"],
    "search": ["index_path=missing.index", "output=OUT", "q.png", "hydra.run.dir=RUN"],
    "export": ["ckpt_path=missing.ckpt", "output=OUT", "hydra.run.dir=RUN"],
    "results": ["missing-dir", "out=OUT"],
}


@pytest.mark.parametrize("command", OUTPUTS)
def test_an_unwritable_output_is_refused_before_any_work(
    command: str, unwritable_folder: Path, tmp_path: Path
) -> None:
    out = unwritable_folder / "out.file"
    args = [a.replace("OUT", str(out)).replace("RUN", str(tmp_path / "run")) for a in OUTPUTS[command]]
    line = assert_one_error_line(run_command(command, args, tmp_path))
    assert f"cannot write into {unwritable_folder}" in line, line
    assert not out.exists()


def test_an_output_path_is_never_interpolated(tmp_path: Path) -> None:
    line = assert_one_error_line(
        run_command(
            "search",
            [
                "index_path=missing.index",
                "output=${oc.env:HOME}.json",
                "q.png",
                f"hydra.run.dir={tmp_path / 'r'}",
            ],
            tmp_path,
        )
    )
    assert "would be interpolated" in line
    assert not list(tmp_path.glob("*.json")) and not Path(os.environ["HOME"] + ".json").exists()


@pytest.mark.parametrize("seed", ["100000000000000000000", "10**20", "-1"])
def test_a_seed_numpy_cannot_take_is_one_line(seed: str, tmp_path: Path) -> None:
    assert_one_error_line(
        run_command("search", ["index_path=missing.index", f"seed={seed}", "q.png"], tmp_path)
    )


def test_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path: Path) -> None:
    """Under PYTHONIOENCODING=utf-8 an undecodable name would stop the print with a UnicodeEncodeError."""
    name = os.fsencode(tmp_path) + b"/\xff\xfe-digit.png"
    with open(name, "wb") as f:
        f.write(b"not an image")
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    proc = run_command(
        "compare",
        ["ckpt_path=missing.ckpt", run_dir, os.fsdecode(name), os.fsdecode(name)],
        tmp_path,
        PYTHONIOENCODING="utf-8",
    )
    line = assert_one_error_line(proc)
    assert "\\xff\\xfe-digit.png" in line or "\\udcff\\udcfe-digit.png" in line, line


def test_a_write_that_fails_during_the_work_is_one_line_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    """A file-size limit (as a full disk would) stops the write of RESULTS.md half-way: one line,
    exit 1, and neither the file nor its temporary is left."""
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"mode": "tiny", "figures": {f"figure_{i}": i for i in range(200)}}))
    out = tmp_path / "RESULTS.md"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    proc = subprocess.run(
        [sys.executable, "-m", "siamese_lit.results", str(bench), f"out={out}"],
        cwd=tmp_path,
        env=command_env(PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    line = assert_one_error_line(proc, code=1)
    assert f"cannot write {out}" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]


#: a Siamese model trained in seconds: enough for a command that needs a checkpoint
TINY_TRAINING = [
    "+experiment=siamese",
    "data.train_size=1000",
    "data.val_size=500",
    "data.test_size=500",
    "data.eval_batch_size=500",
    "data.eval_pairs=500",
    "data.gallery_size=500",
    "model.oneshot_episodes=10",
    "model.net.hidden_size=32",
    "model.net.num_layers=1",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def test_val_check_interval_past_the_epoch_is_one_line(tmp_path: Path) -> None:
    args = [*TINY_TRAINING, "+trainer.val_check_interval=1000", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_command(
        "train", args, tmp_path, SIAMESE_LIT_DATA_DIR=os.environ.get("SIAMESE_LIT_DATA_DIR", "")
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert proc.returncode == 2, proc.stderr
    assert (
        len(errors) == 1 and "trainer.val_check_interval=1000 is more than the training batches" in errors[0]
    )
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))


def test_the_page_exits_130_on_ctrl_c_while_serving(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trained = run_command("train", [*TINY_TRAINING, f"hydra.run.dir={run_dir}"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    args = [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "gallery_size=100", "device=cpu"]
    args += [f"port={free_port()}", f"hydra.run.dir={tmp_path / 'demo'}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "siamese_lit.demo", *args],
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    served = next((True for line in proc.stdout if line.startswith("serving on http://127.0.0.1:")), False)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert served, err
    line = assert_one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 130)
    assert "SIGINT" in line


#: a refusal of each kind of command (Lightning's, torch's, neither's), run forked from a case server
#: and cold: the same status and output, so that the tables' forked cases stand for cold ones
FORKED_AND_COLD = [
    case(
        "train", "train", ["+experiment=siamese", "trainer.max_epochs=0"], r"trainer\.max_epochs must be >= 1"
    ),
    case("evaluate", "evaluate", "ckpt_path=<here>/missing.ckpt", "does not exist"),
    case("compare", "compare", "ckpt_path=<here>/missing.ckpt <here>/a.png <here>/b.png", "no such image"),
    case("summarize", "summarize", "<here>/missing-dir", "is not a directory"),
]


def test_a_forked_case_ends_as_the_same_command_run_cold(tmp_path: Path) -> None:
    world = {"here": tmp_path}
    forked = run_cases(FORKED_AND_COLD, world, tmp_path / "forked", workers=2)
    cold = run_cases(FORKED_AND_COLD, world, tmp_path / "cold", workers=2, cold=True)
    for c in FORKED_AND_COLD:
        one, other = forked[c.id].result, cold[c.id].result
        assert_refused(c, one)
        assert (one.returncode, one.stdout) == (other.returncode, other.stdout)
        # a message that names the run dir names forked/<id> or cold/<id>
        assert one.stderr.replace(str(tmp_path / "forked"), "") == other.stderr.replace(
            str(tmp_path / "cold"), ""
        )
