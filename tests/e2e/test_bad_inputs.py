"""Hardening (issue 14): hostile and broken inputs through every entry point, as real subprocesses.

A table of bad inputs (CASES) runs once, in parallel, against a world of files: the tiny real runs'
checkpoints, hostile checkpoints made from them (a pickle payload, `_target_`s that would copy onto a
user's file, open one or save over it), broken checkpoints, images, MNIST copies and sweep dirs.
Each case asserts its exit status, exactly one `error: ` line naming the problem and no traceback;
and after the whole table, no payload ran (no marker file) and every file that existed before is
byte-identical. The units the table cannot see (the NaN check's device syncs, atomic writes, image
modes, seed grouping) are tested in-process below it.
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SMALL_NET, TINY_SIAMESE, run_cli
from omegaconf import OmegaConf
from PIL import Image

from siamese_lit import PROJECT_ROOT
from siamese_lit.checkpoints.reader import saved_data_settings, with_saved_data
from siamese_lit.data.images import load_digit
from siamese_lit.data.mnist import MNIST_FILES, load_mnist, raw_folder
from siamese_lit.runs.faults import StopOnNonFiniteLoss, TrainingDivergedError
from siamese_lit.summarize import summarize
from siamese_lit.utils.files import write_atomic, write_json

MODULES = {m: f"siamese_lit.{m}" for m in ("train", "evaluate", "compare", "summarize")}
# a training run that would take seconds if it started: every case must stop before it does
TRAIN = ["+experiment=siamese", *TINY_SIAMESE, *SMALL_NET, "model.net.hidden_size=64"]


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


def _case(id: str, module: str, args: str | list[str], expect: str, rc: int = 2) -> Case:
    return Case(id, module, tuple(args.split() if isinstance(args, str) else args), expect, rc)


EVALUATE = "device=cpu data.gallery_size=500"
COMPARE = "device=cpu <digit_a> <digit_b>"
REFUSED = r"is not allowed: a model \(and a checkpoint\) may only build"
RUNS_CODE = r"refers to [\w.]+, which a siamese_lit checkpoint never does: refused unread"

CASES = [
    # 1. checkpoints that would run code: a pickle payload, hostile _target_s, every entry point
    _case("pickle-evaluate", "evaluate", f"ckpt_path=<pickle> {EVALUATE}", RUNS_CODE),
    _case(
        "pickle-evaluate-classifier",
        "evaluate",
        f"ckpt_path=<siamese> classifier_ckpt_path=<pickle_classifier> {EVALUATE}",
        "classifier_ckpt_path=.* " + RUNS_CODE,
    ),
    _case("pickle-compare", "compare", f"ckpt_path=<pickle> {COMPARE}", RUNS_CODE),
    _case("pickle-train", "train", [*TRAIN, "ckpt_path=<pickle>"], RUNS_CODE),
    _case(
        "copyfile-evaluate",
        "evaluate",
        f"ckpt_path=<copyfile> {EVALUATE}",
        r"net\._target_=shutil.copyfile " + REFUSED,
    ),
    _case(
        "copyfile-evaluate-classifier",
        "evaluate",
        f"ckpt_path=<siamese> classifier_ckpt_path=<copyfile_classifier> {EVALUATE}",
        r"classifier_ckpt_path=.*net\._target_=shutil.copyfile " + REFUSED,
    ),
    _case("copyfile-compare", "compare", f"ckpt_path=<copyfile> {COMPARE}", "shutil.copyfile " + REFUSED),
    _case("copyfile-train", "train", [*TRAIN, "ckpt_path=<copyfile>"], "shutil.copyfile " + REFUSED),
    _case(
        "open-compare", "compare", f"ckpt_path=<open> {COMPARE}", r"loss\._target_=builtins.open " + REFUSED
    ),
    _case("torch-save-evaluate", "evaluate", f"ckpt_path=<torch_save> {EVALUATE}", "torch.save " + REFUSED),
    _case(
        "nested-target-compare",
        "compare",
        f"ckpt_path=<nested> {COMPARE}",
        r"net\.cell\._target_=shutil.copyfile " + REFUSED,
    ),
    _case(
        "torch-nn-prefix-compare",
        "compare",
        f"ckpt_path=<sneaky> {COMPARE}",
        "torch.nn.modules.module.torch.save " + REFUSED,
    ),
    _case(
        "os-system-optimizer-train",
        "train",
        [*TRAIN, "ckpt_path=<system>"],
        r"optimizer\._target_=os.system " + REFUSED,
    ),
    _case(
        "copyfile-command-line-train",
        "train",
        [
            *TRAIN,
            "model.objective._target_=shutil.copyfile",
            "+model.objective.src=<evil>",
            "+model.objective.dst=<user_file>",
        ],
        r"model\.objective\._target_=shutil.copyfile " + REFUSED,
    ),
    # 2. results that would lie: non-finite weights, a run of no epochs, sizes out of range
    _case(
        "nan-weights-compare",
        "compare",
        f"ckpt_path=<nan> {COMPARE}",
        r"net\.head\.weight holds NaN or infinite",
    ),
    _case(
        "inf-weights-evaluate",
        "evaluate",
        f"ckpt_path=<inf> {EVALUATE}",
        r"net\.rnn\.weight_hh_l0 holds NaN or infinite",
    ),
    _case(
        "inf-threshold-compare",
        "compare",
        f"ckpt_path=<inf_threshold> {COMPARE}",
        "threshold holds NaN or infinite",
    ),
    _case("max-epochs-0", "train", [*TRAIN, "trainer.max_epochs=0"], r"trainer\.max_epochs must be >= 1"),
    _case("train-size-negative", "train", [*TRAIN, "data.train_size=-5"], r"data\.train_size must be >= 1"),
    _case("train-size-0", "train", [*TRAIN, "data.train_size=0"], r"data\.train_size must be >= 1"),
    _case("test-size-negative", "train", [*TRAIN, "data.test_size=-5"], r"data\.test_size must be >= 1"),
    _case("val-size-0", "train", [*TRAIN, "data.val_size=0"], r"data\.val_size must be in 1\.\.59999"),
    _case("eval-pairs-0", "train", [*TRAIN, "data.eval_pairs=0"], r"data\.eval_pairs must be >= 2"),
    # 3. values of the wrong type or range, config errors
    _case(
        "margin-abc",
        "train",
        [*TRAIN, "model.objective.margin=abc"],
        r"model\.objective\.margin must be float, got 'abc'",
    ),
    _case("lr-negative", "train", [*TRAIN, "model.optimizer.lr=-0.1"], "Invalid learning rate: -0.1"),
    _case(
        "max-epochs-abc",
        "train",
        [*TRAIN, "trainer.max_epochs=abc"],
        r"trainer\.max_epochs must be int or null",
    ),
    _case(
        "batch-size-float",
        "train",
        [*TRAIN, "data.batch_size=3.5"],
        r"data\.batch_size must be int, got 3\.5",
    ),
    _case(
        "unknown-net-argument",
        "train",
        [*TRAIN, "+model.net.hiden_size=3"],
        r"SequenceEncoder takes no argument 'hiden_size'",
    ),
    _case("missing-value", "train", [*TRAIN, "model.embedding_dim=???"], r"model\.embedding_dim"),
    _case(
        "broken-interpolation",
        "train",
        [*TRAIN, "model.optimizer.lr=${nope}"],
        r"Interpolation key 'nope' not found",
    ),
    _case("unknown-accelerator", "train", [*TRAIN, "trainer.accelerator=xyz"], r"invalid accelerator name"),
    _case(
        "compare-threshold-abc",
        "compare",
        f"ckpt_path=<siamese> threshold=abc {COMPARE}",
        r"threshold must be float or null, got 'abc'",
    ),
    _case(
        "compare-threshold-negative",
        "compare",
        f"ckpt_path=<siamese> threshold=-1 {COMPARE}",
        r"threshold must be >= 0",
    ),
    _case(
        "evaluate-neighbours-abc",
        "evaluate",
        f"ckpt_path=<siamese> retrieval.neighbours=abc {EVALUATE}",
        r"retrieval\.neighbours must be int",
    ),
    _case(
        "evaluate-unknown-corruption",
        "evaluate",
        f"ckpt_path=<siamese> robustness.corruptions=[lowres_9] {EVALUATE}",
        r"robustness\.corruptions: unknown \['lowres_9'\]",
    ),
    # 3. checkpoints of the wrong kind, empty, truncated, of other shapes: train validates them too
    _case(
        "train-wrong-kind",
        "train",
        [*TRAIN, "ckpt_path=<classifier>"],
        "is a classifier checkpoint; this run trains a Siamese model",
    ),
    _case("train-empty-ckpt", "train", [*TRAIN, "ckpt_path=<empty>"], "is not a readable checkpoint"),
    _case("train-truncated-ckpt", "train", [*TRAIN, "ckpt_path=<truncated>"], "is not a readable checkpoint"),
    _case("train-missing-ckpt", "train", [*TRAIN, "ckpt_path=<nowhere>"], "does not exist"),
    _case(
        "train-other-shapes",
        "train",
        [*TRAIN, "model.net.hidden_size=32", "ckpt_path=<siamese>"],
        r"tensor net\.rnn\.weight_ih_l0 is \(256, 28\) in the checkpoint but \(128, 28\) in the model",
    ),
    _case(
        "evaluate-other-shapes",
        "evaluate",
        f"ckpt_path=<shapes> {EVALUATE}",
        r"tensor net\.rnn\.weight_ih_l0 is \(256, 28\)",
    ),
    _case(
        "compare-not-a-dict",
        "compare",
        f"ckpt_path=<a_list> {COMPARE}",
        "is not a siamese_lit Lightning checkpoint",
    ),
    # 3. output dirs that cannot be written
    _case(
        "train-run-dir-under-a-file",
        "train",
        [*TRAIN, "hydra.run.dir=<user_file>/run"],
        r"is a file, not a folder",
    ),
    _case(
        "evaluate-run-dir-under-a-file",
        "evaluate",
        "ckpt_path=<siamese> hydra.run.dir=<user_file>/run",
        "is a file, not a folder",
    ),
    _case("train-read-only-run-dir", "train", [*TRAIN, "hydra.run.dir=<read_only>/run"], r"is not writable"),
    _case(
        "sweep-dir-under-a-file",
        "train",
        ["-m", *TRAIN, "hydra.sweep.dir=<user_file>/sweep"],
        "is a file, not a folder",
    ),
    # 3. MNIST files with a wrong header of the right size
    _case(
        "idx-wrong-dimensions",
        "train",
        [*TRAIN, "paths.data_dir=<bad_idx>"],
        r"is not an MNIST IDX file \(type 0x08, 3 dimensions: 10000x784x1",
    ),
    # 3. summarize: broken job files are reported, the summary is still made (rc 0, on stdout)
    _case(
        "summarize-truncated-metrics",
        "summarize",
        "<sweep_truncated>",
        r"\| 1 \| 1 \| unreadable \|.*metrics\.json: JSONDecodeError",
        rc=0,
    ),
    _case(
        "summarize-list-metrics",
        "summarize",
        "<sweep_list>",
        r"metrics\.json holds a list, not an object",
        rc=0,
    ),
    _case(
        "summarize-overrides-not-a-list",
        "summarize",
        "<sweep_overrides>",
        r"overrides\.yaml is not a list",
        rc=0,
    ),
    _case("summarize-unwritable-summary", "summarize", "<sweep_unwritable>", r"2 jobs, 0 failed", rc=0),
    _case("summarize-not-a-dir", "summarize", "<user_file>", "is not a directory"),
    # 4. (issue 20) checkpoints that cannot be resumed, refused before fitting; folders of the user's
    _case(
        "resume-nothing-left",
        "train",
        [*TRAIN, "ckpt_path=<siamese>"],
        r"has trained 1 epoch \(\d+ steps\): trainer\.max_epochs=1 leaves nothing to train",
    ),
    _case(
        "resume-other-optimizer",
        "train",
        [*TRAIN, "trainer.max_epochs=2", "model.optimizer._target_=torch.optim.SGD", "ckpt_path=<siamese>"],
        r"trained with model\.optimizer=torch\.optim\.AdamW, this run has model\.optimizer=torch\.optim\.SGD",
    ),
    _case(
        "resume-without-scheduler",
        "train",
        [*TRAIN, "trainer.max_epochs=2", "model.scheduler=null", "ckpt_path=<siamese>"],
        r"model\.scheduler=torch\.optim\.lr_scheduler\.OneCycleLR, this run has model\.scheduler=null",
    ),
    _case(
        "compare-run-dir-of-the-user",
        "compare",
        f"ckpt_path=<siamese> {COMPARE} hydra.run.dir=<user_folder>",
        r"user_folder is not empty \(inputs\.png\): a run writes only into a new or empty folder",
    ),
    _case(
        "evaluate-run-dir-of-the-user",
        "evaluate",
        f"ckpt_path=<siamese> {EVALUATE} hydra.run.dir=<user_folder>",
        r"user_folder is not empty \(inputs\.png\)",
    ),
    _case(
        "sweep-dir-of-the-user",
        "train",
        ["-m", *TRAIN, "hydra.sweep.dir=<user_folder>"],
        r"user_folder is not empty \(inputs\.png\)",
    ),
]


class Payload:
    """Unpickled, it would create the file `marker` (what a real attack does much worse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


def _hostile(ckpt: dict, path: Path, **hparams: Any) -> Path:
    torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], **hparams}}, path)
    return path


def _with_weights(ckpt: dict, path: Path, **tensors: torch.Tensor) -> Path:
    torch.save({**ckpt, "state_dict": {**ckpt["state_dict"], **tensors}}, path)
    return path


def _read_only_dir(base: Path) -> Path:
    """A dir nobody may write into: root writes through file modes, so for root a read-only mount."""
    if os.geteuid() == 0:
        return Path("/sys/siamese_lit_test")
    path = base / "read_only"
    path.mkdir()
    path.chmod(0o555)
    return path


def _sweep(root: Path, jobs: dict[str, dict[str, Any]]) -> Path:
    """A multirun dir with `jobs` (name -> overrides, metrics; raw texts override the files)."""
    root.mkdir(parents=True)
    config = {"optimized_metric": "val/auroc_best", "callbacks": {"model_checkpoint": {"mode": "max"}}}
    for name, job in jobs.items():
        hydra = root / name / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(OmegaConf.to_yaml(config))
        overrides = job.get("overrides_text") or OmegaConf.to_yaml(OmegaConf.create(job["overrides"]))
        (hydra / "overrides.yaml").write_text(overrides)
        if "metrics" in job or "metrics_text" in job:
            (root / name / "metrics.json").write_text(job.get("metrics_text") or json.dumps(job["metrics"]))
    return root


def _build_world(inputs: Path, siamese: Path, classifier: Path, data_dir: Path) -> dict[str, Path]:
    """Every file the cases name; all under `inputs` (watched), except the tiny runs' own."""
    s = torch.load(siamese, map_location="cpu", weights_only=True)
    c = torch.load(classifier, map_location="cpu", weights_only=True)
    w: dict[str, Path] = {"siamese": siamese, "classifier": classifier, "inputs": inputs}
    w["user_file"] = inputs / "user.txt"
    w["user_file"].write_text("a user's file: must stay as it is\n")
    w["evil"] = inputs / "evil.txt"
    w["evil"].write_text("overwritten\n")
    w["markers"] = inputs / "markers"
    w["markers"].mkdir()
    copy = {"_target_": "shutil.copyfile", "src": str(w["evil"]), "dst": str(w["user_file"])}
    save = {"obj": "overwritten", "f": str(w["user_file"])}
    torch.save(
        {**s, "payload": Payload(w["markers"] / "pickle")}, w.setdefault("pickle", inputs / "pickle.ckpt")
    )
    torch.save(
        {**c, "payload": Payload(w["markers"] / "pickle_classifier")}, inputs / "pickle_classifier.ckpt"
    )
    w["pickle_classifier"] = inputs / "pickle_classifier.ckpt"
    w["copyfile"] = _hostile(s, inputs / "copyfile.ckpt", net=copy)
    w["copyfile_classifier"] = _hostile(c, inputs / "copyfile_classifier.ckpt", net=copy)
    open_ = {"_target_": "builtins.open", "file": str(w["markers"] / "open"), "mode": "w"}
    w["open"] = _hostile(s, inputs / "open.ckpt", loss=open_)
    w["torch_save"] = _hostile(s, inputs / "torch_save.ckpt", net={"_target_": "torch.save", **save})
    w["nested"] = _hostile(s, inputs / "nested.ckpt", net={**s["hyper_parameters"]["net"], "cell": copy})
    sneaky = {"_target_": "torch.nn.modules.module.torch.save", **save}
    w["sneaky"] = _hostile(s, inputs / "sneaky.ckpt", net=sneaky)
    system = {"_target_": "os.system", "command": f"touch {w['markers'] / 'system'}"}
    w["system"] = _hostile(s, inputs / "system.ckpt", optimizer=system)
    w["shapes"] = _hostile(s, inputs / "shapes.ckpt", net={**s["hyper_parameters"]["net"], "hidden_size": 32})
    weights = s["state_dict"]
    w["nan"] = _with_weights(
        s, inputs / "nan.ckpt", **{"net.head.weight": weights["net.head.weight"] * torch.nan}
    )
    w["inf"] = _with_weights(
        s, inputs / "inf.ckpt", **{"net.rnn.weight_hh_l0": weights["net.rnn.weight_hh_l0"] / 0}
    )
    w["inf_threshold"] = _with_weights(s, inputs / "inf_threshold.ckpt", threshold=torch.tensor(torch.inf))
    torch.save([1, 2, 3], w.setdefault("a_list", inputs / "a_list.ckpt"))
    (w.setdefault("empty", inputs / "empty.ckpt")).write_bytes(b"")
    (w.setdefault("truncated", inputs / "truncated.ckpt")).write_bytes(siamese.read_bytes()[:5000])
    (w.setdefault("text", inputs / "text.ckpt")).write_text("not a checkpoint\n")
    w["nowhere"] = inputs / "nowhere.ckpt"
    images, _ = load_mnist(data_dir, train=False)
    for name, i in (("digit_a", 0), ("digit_b", 1)):
        w[name] = inputs / f"{name}.png"
        Image.fromarray(images[i].numpy(), mode="L").save(w[name])
    w["read_only"] = _read_only_dir(inputs.parent)
    w["user_folder"] = inputs / "user_folder"  # a user's folder holding an inputs.png of theirs
    w["user_folder"].mkdir()
    Image.fromarray(images[2].numpy(), mode="L").save(w["user_folder"] / "inputs.png")
    # MNIST with the test images' header saying 10000x784x1: the right byte count, the wrong shape
    w["bad_idx"] = inputs / "bad_idx"
    raw = raw_folder(w["bad_idx"])
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).symlink_to(raw_folder(data_dir) / name)
    broken = raw / "t10k-images-idx3-ubyte"
    original = broken.resolve().read_bytes()
    broken.unlink()
    broken.write_bytes(original[:8] + (784).to_bytes(4, "big") + (1).to_bytes(4, "big") + original[16:])
    good = {"overrides": ["seed=0"], "metrics": {"val/auroc_best": 0.9, "test/auroc": 0.8}}
    sweeps = inputs.parent / "sweeps"  # summarize writes its summary there: not watched
    w["sweep_truncated"] = _sweep(
        sweeps / "truncated", {"0": good, "1": {"overrides": ["seed=1"], "metrics_text": '{"val/au'}}
    )
    w["sweep_list"] = _sweep(
        sweeps / "list", {"0": good, "1": {"overrides": ["seed=1"], "metrics_text": "[1, 2]"}}
    )
    w["sweep_overrides"] = _sweep(sweeps / "overrides", {"0": good, "1": {"overrides_text": "just: text\n"}})
    w["sweep_unwritable"] = _sweep(sweeps / "unwritable", {"0": good, "1": {**good, "overrides": ["seed=1"]}})
    (w["sweep_unwritable"] / "summary.md").mkdir()
    return w


def _fill(arg: str, world: dict[str, Path]) -> str:
    return re.sub(r"<(\w+)>", lambda m: str(world[m[1]]), arg)


def _snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders` (what must be byte-identical afterwards)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@dataclass
class Table:
    world: dict[str, Path]
    results: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def table(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_siamese_run: Path,
    tiny_classifier_run: Path,
    data_dir: Path,
) -> Table:
    """Every case of CASES run as a real subprocess, 3 at a time; the files before and after."""
    root = tmp_path_factory.mktemp("hardening")
    inputs = root / "inputs"
    inputs.mkdir()
    world = _build_world(
        inputs,
        tiny_siamese_run / "checkpoints" / "last.ckpt",
        tiny_classifier_run / "checkpoints" / "last.ckpt",
        data_dir,
    )
    watched = (
        inputs,
        tiny_siamese_run,
        tiny_classifier_run,
        *(world[k] for k in world if k.startswith("sweep_")),
    )
    result = Table(world, before=_snapshot(*watched))

    def run(case: Case) -> subprocess.CompletedProcess:
        args = [_fill(a, world) for a in case.args]
        if case.module != "summarize" and not any(
            a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args
        ):
            args.append(f"hydra.run.dir={root / 'out' / case.id}")
        return run_cli(MODULES[case.module], args, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        result.results = dict(zip([c.id for c in CASES], pool.map(run, CASES), strict=True))
    result.after = {k: v for k, v in _snapshot(*watched).items() if "/summary" not in k}
    result.before = {k: v for k, v in result.before.items() if "/summary" not in k}
    return result


def test_the_table_has_at_least_40_bad_inputs() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, table: Table) -> None:
    result = table.results[case.id]
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == case.rc, (result.returncode, output[-3000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    if case.rc == 0:
        assert errors == [] and re.search(case.expect, result.stdout), output[-3000:]
    else:
        assert len(errors) == 1 and re.search(case.expect, errors[0]), output[-3000:]
    # no payload ran, no file that existed before changed
    assert not any(table.world["markers"].iterdir())
    assert table.world["user_file"].read_text() == "a user's file: must stay as it is\n"
    assert table.after == table.before


def test_unwritable_summary_is_printed_and_reported(table: Table) -> None:
    result = table.results["summarize-unwritable-summary"]
    assert "Cannot write" in result.stderr and "summary.md" in result.stderr
    assert (table.world["sweep_unwritable"] / "summary.csv").is_file()  # the other files are written


def test_sigterm_exits_143_keeps_last_ckpt_and_says_how_to_resume(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    args = [*TRAIN, "data.train_size=500", "data.batch_size=16", "trainer.max_epochs=20", "logger=csv"]
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    with subprocess.Popen(
        [sys.executable, "-m", "siamese_lit.train", *args, f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints" / "last.ckpt").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the deadline"
            time.sleep(0.05)
        time.sleep(0.5)  # let the first save finish
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    last = out / "checkpoints" / "last.ckpt"
    assert proc.returncode == 143, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    resume = f"resume with the same overrides and ckpt_path={re.escape(str(last))}"
    assert re.fullmatch(rf"error: training stopped by SIGTERM at epoch \d+, step \d+: {resume}\.", errors[0])
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 0
    assert not (out / "metrics.json").exists()
    # the run's log has a line per validation, from the progress callback
    assert re.search(
        r"epoch 0, step \d+: val/auroc=[\d.]+, [\d.]+ s elapsed", (out / "siamese.log").read_text()
    )


# ---- units the table cannot see -------------------------------------------------------------------


def _trainer(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        current_epoch=1,
        global_step=step,
        log_every_n_steps=4,
        checkpoint_callback=None,
        state=SimpleNamespace(fn=None),  # not fitting from a checkpoint: nothing resumed from
        ckpt_path=None,
    )


def test_nan_check_reads_the_device_only_every_n_steps() -> None:
    """A meta tensor has no values: reading one on the host raises. Steps 1-3 must not read."""
    guard = StopOnNonFiniteLoss()
    for step in range(3):
        guard.on_train_batch_end(_trainer(step), None, {"loss": torch.empty((), device="meta")}, None, step)
    with pytest.raises(RuntimeError, match="meta tensors"):  # the 4th step (log_every_n_steps) reads the flag
        guard.on_train_batch_end(_trainer(3), None, {"loss": torch.empty((), device="meta")}, None, 3)


def test_nan_check_names_the_first_bad_step_and_stops_before_a_checkpoint() -> None:
    guard = StopOnNonFiniteLoss()
    losses = [1.0, float("nan"), float("inf")]
    for step, loss in enumerate(losses):  # below the check cadence: nothing raised yet
        guard.on_train_batch_end(_trainer(10 + step), None, torch.tensor(loss), None, step)
    with pytest.raises(
        TrainingDivergedError, match=r"loss became nan at epoch 1, step 11: run stopped, no checkpoint"
    ):
        guard.on_save_checkpoint(_trainer(13), None, {})  # before the checkpoint file is written
    guard.on_train_batch_end(_trainer(14), None, torch.tensor(2.0), None, 0)
    guard.on_validation_start(_trainer(14), None)  # checked and reset: no bad step since


def test_json_results_are_strict_and_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.json"
    write_json(path, {"a": float("nan"), "b": {"c": [1.0, float("inf"), {"d": -float("inf")}]}, "e": 2})

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in strict JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": {"c": [1.0, None, {"d": None}]},
        "e": 2,
    }
    before = path.read_bytes()

    def crash(*args: Any) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        write_atomic(path, "half")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def _digit_canvas(data_dir: Path) -> np.ndarray:
    """An MNIST digit scaled 8x, white on black, as floats in 0..1."""
    images, _ = load_mnist(data_dir, train=False)
    return np.kron(images[0].numpy() / 255, np.ones((8, 8)))


SAVED_AS: dict[str, Callable[[np.ndarray], tuple[Image.Image, str]]] = {
    "1": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("1"), "png"),
    "LA": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("LA"), "png"),
    "P": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("P"), "png"),
    "RGB": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("RGB"), "png"),
    "RGBA": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("RGBA"), "png"),
    "CMYK": lambda d: (Image.fromarray((d * 255).astype(np.uint8), "L").convert("CMYK"), "tiff"),
    "I;16": lambda d: (Image.fromarray((d * 65535).astype(np.uint16)), "png"),
    "I (16-bit values)": lambda d: (Image.fromarray((d * 65535).astype(np.int32)), "tiff"),
    "F (0..1)": lambda d: (Image.fromarray(d.astype(np.float32)), "tiff"),
    "F (0..255)": lambda d: (Image.fromarray((d * 255).astype(np.float32)), "tiff"),
}


@pytest.mark.parametrize("mode", SAVED_AS)
def test_every_image_mode_keeps_its_grey_levels(mode: str, data_dir: Path, tmp_path: Path) -> None:
    digit = _digit_canvas(data_dir)
    if mode == "1":  # black and white only: compared with the same digit in two levels
        digit = (digit >= 0.5).astype(np.float64)
    reference = load_digit(_save(Image.fromarray((digit * 255).astype(np.uint8), "L"), tmp_path / "L.png"))
    image, suffix = SAVED_AS[mode](digit)
    seen = load_digit(_save(image, tmp_path / f"digit.{suffix}"))
    assert (seen.float() - reference.float()).abs().mean() < 0.5  # the same 28x28 digit


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_faint_digit_on_a_large_canvas_is_framed(data_dir: Path, tmp_path: Path) -> None:
    """A pencil digit 30 levels darker than white paper, on 1024x1024 (the ink never reaches the old
    absolute threshold); framed like the same digit at full contrast."""
    digit = np.pad(_digit_canvas(data_dir), 400)
    faint = load_digit(
        _save(Image.fromarray((255 - digit * 30).astype(np.uint8), "L"), tmp_path / "faint.png")
    )
    strong = load_digit(
        _save(Image.fromarray((255 - digit * 255).astype(np.uint8), "L"), tmp_path / "strong.png")
    )
    assert faint.shape == (28, 28) and (faint.float() - strong.float()).abs().mean() < 2


def test_data_settings_come_from_the_checkpoint_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {
        "classes": [0, 1, 2, 3, 4],
        "test_classes": [5, 6, 7, 8, 9],
        "mean": 0.5,
        "std": 0.25,
        "test_size": 7,
    }
    data = OmegaConf.create(
        {
            "_target_": "siamese_lit.data.PairDataModule",
            "data_dir": "x",
            "classes": None,
            "test_classes": None,
            "mean": 0.1307,
            "std": 0.3081,
            "test_size": None,
        }
    )
    monkeypatch.setattr("siamese_lit.checkpoints.reader.command_line_keys", lambda: {"data.mean"})
    original = data.copy()
    data = with_saved_data(data, saved_data_settings({"datamodule_hyper_parameters": saved}), "ckpt_path")
    assert original.classes is None and original.std == 0.3081  # the caller's config is left as it was
    assert data.classes == [0, 1, 2, 3, 4] and data.test_classes == [5, 6, 7, 8, 9] and data.std == 0.25
    assert data.mean == 0.1307 and data.test_size is None  # given on the command line; not a data setting


def test_evaluate_takes_the_data_settings_from_the_checkpoint_unless_given(
    tiny_siamese_run: Path, tmp_path: Path
) -> None:
    """A model trained to be tested on digits 1 and 7 is tested on them (1135 + 1028 test images),
    not on all ten; `data.test_classes` on the command line still wins (+ 980 zeros)."""
    saved = torch.load(tiny_siamese_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt = tmp_path / "ones_and_sevens.ckpt"
    data = {**saved["datamodule_hyper_parameters"], "test_classes": [1, 7]}
    torch.save({**saved, "datamodule_hyper_parameters": data}, ckpt)
    runs = {"saved": [], "given": ["data.test_classes=[0,1,7]"]}

    def evaluate(name: str) -> dict[str, Any]:
        out = tmp_path / name
        args = [
            f"ckpt_path={ckpt}",
            "device=cpu",
            "data.gallery_size=500",
            *runs[name],
            f"hydra.run.dir={out}",
        ]
        result = run_cli("siamese_lit.evaluate", args)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((out / "report.json").read_text())

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(zip(runs, pool.map(evaluate, runs), strict=True))
    assert reports["saved"]["test_images"] == 1135 + 1028
    assert reports["given"]["test_images"] == 980 + 1135 + 1028


def test_summarize_groups_seeds_with_mean_and_sample_std(tmp_path: Path) -> None:
    def job(lr: str, seed: int, auroc: float) -> dict[str, Any]:
        return {
            "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}"],
            "metrics": {"val/auroc_best": auroc, "test/auroc": auroc - 0.1},
        }

    values = {"0.01": [0.90, 0.92, 0.94], "0.001": [0.80, 0.84]}
    jobs = {
        str(i): job(lr, seed, v)
        for i, (lr, seed, v) in enumerate((lr, s, v) for lr, vs in values.items() for s, v in enumerate(vs))
    }
    sweep_dir = _sweep(tmp_path / "sweep", jobs)
    _, text = summarize(sweep_dir)
    rows = {r["model.optimizer.lr"]: r for r in _read_csv(sweep_dir / "summary_seeds.csv")}
    assert rows["0.01"]["n"] == "3" and float(rows["0.01"]["val/auroc_best_mean"]) == pytest.approx(0.92)
    assert float(rows["0.01"]["val/auroc_best_std"]) == pytest.approx(0.02)  # sample std (n - 1)
    assert float(rows["0.001"]["test/auroc_std"]) == pytest.approx(np.std([0.7, 0.74], ddof=1))
    assert "## Over seeds" in text and "| 0.01 | 0 1 2 | 0.92 ± 0.02 (n=3) |" in text


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
