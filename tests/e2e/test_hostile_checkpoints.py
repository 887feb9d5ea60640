"""Hardening, second round (issue 20, items 6-12): results that must not lie, a stranger's checkpoint,
one line as promised, summarize on hand-edited job files. Real subprocesses, as test_hardening.py.

A second table (CASES) runs against its own world of hostile files made from the tiny real runs:
checkpoints asking for networks of gigabytes or for a million layers, a deflate bomb, weights of
1e38, `${oc.env:SECRET_TOKEN}` in the hyper-parameters, classes out of place, containers nested
thousands deep or repeating one another, sparse and meta tensors; an image file named
`${oc.env:HOME}.png`; a sweep dir of hand-edited jobs (NaN, Infinity, a 400-digit integer,
non-ASCII digit folders, YAML aliases, a FIFO). Every case runs with SECRET_TOKEN set: its value
must appear in no output. Each child's peak RSS and CPU time are read with os.wait4
(tests/helpers/table.py): a hostile checkpoint's refusal may cost little more than the same command
refusing a missing checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from bench.throughput import peak_rss_mib_of_training
from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import load_mnist
from siamese_lit.utils.errors import SiameseLitError
from tests.helpers.table import COMPARE, EVALUATE, TRAIN, Case, Table, assert_refused, case, run_table
from tests.helpers.worlds import sweep_dir, with_hparams, with_weights

SECRET = "s3cr3t-4f9c1e"  # SECRET_TOKEN's value in every case's environment
#: The hostile checkpoints whose refusal may cost at most CPU_MARGIN_S more CPU time and RSS_MARGIN_MIB
#: more peak RSS than the bare command, its module's refusal of a missing checkpoint (BARE), measured in
#: the same table: a bound relative to this machine, whose imports alone may take seconds.
CPU_MARGIN_S, RSS_MARGIN_MIB = 3.0, 300.0
BARE = {m: f"missing-ckpt-{m}" for m in ("evaluate", "compare", "train")}
HOSTILE = (
    "big-hidden-evaluate",
    "many-layers-compare",
    "many-layers-train",
    "deflate-bomb-evaluate",
    "huge-pml-loss-compare",
    "deep-hparams-evaluate",
    "repeating-lists-compare",
)
NOT_IN = r"not an Encoder: net must be a subclass of .*\.Encoder \(CNNEncoder, MLPEncoder, SequenceEncoder\)"

CASES = [
    # the bare commands the hostile checkpoints' costs are compared with
    case(BARE["evaluate"], "evaluate", f"ckpt_path=<nowhere> {EVALUATE}", "does not exist"),
    case(BARE["compare"], "compare", f"ckpt_path=<nowhere> {COMPARE}", "does not exist"),
    case(BARE["train"], "train", [*TRAIN, "ckpt_path=<nowhere>"], "does not exist"),
    # 6. finite weights, infinite distances
    case("huge-weights-compare", "compare", f"ckpt_path=<huge> {COMPARE}", "NaN or infinite distances"),
    case("huge-weights-evaluate", "evaluate", f"ckpt_path=<huge> {EVALUATE}", "NaN or infinite distances"),
    # 7. runs that would exit 0 with figures that mean nothing
    case("train-false-no-ckpt", "train", [*TRAIN, "train=false"], "train=false tests a checkpoint: pass"),
    case("data-std-inf", "train", [*TRAIN, "data.std=inf"], r"data\.std must be a finite number, got inf"),
    case("data-mean-nan", "train", [*TRAIN, "data.mean=nan"], r"data\.mean must be a finite number"),
    case(
        "saved-std-inf-evaluate",
        "evaluate",
        f"ckpt_path=<std_inf> {EVALUATE}",
        r"data\.std must be > 0 and finite",
    ),
    case(
        "knn-k-0",
        "evaluate",
        f"ckpt_path=<siamese> gallery_knn_k=0 {EVALUATE}",
        r"gallery_knn_k must be >= 1",
    ),
    case(
        "knn-k-over-gallery",
        "evaluate",
        f"ckpt_path=<siamese> gallery_knn_k=501 {EVALUATE}",
        r"gallery_knn_k must be in 1\.\.500",
    ),
    # two digits hold fewer training images than gallery_size asks for: checked on the gallery made
    case(
        "knn-k-over-filtered-gallery",
        "evaluate",
        "ckpt_path=<siamese> device=cpu data.gallery_size=59000 data.test_classes=[0,1] gallery_knn_k=20000",
        r"gallery_knn_k must be in 1\.\.1[01]\d\d\d \(the gallery's images\)",
    ),
    case(
        "precision-abc-evaluate",
        "evaluate",
        f"ckpt_path=<siamese> precision=abc {EVALUATE}",
        r"precision='abc' is not a precision Lightning knows",
    ),
    case(
        "trainer-precision-abc",
        "train",
        [*TRAIN, "trainer.precision=abc"],
        r"trainer\.precision='abc' is not",
    ),
    # 8. sizes refused by arithmetic before anything is allocated
    case(
        "big-hidden-evaluate",
        "evaluate",
        f"ckpt_path=<big_hidden> {EVALUATE}",
        r"network of [\d.]+e\+\d+ parameters \(.* GiB\), more than the 5e\+07 allowed: refused before",
    ),
    case(
        "many-layers-compare", "compare", f"ckpt_path=<many_layers> {COMPARE}", r"refused before building it"
    ),
    case("many-layers-train", "train", [*TRAIN, "ckpt_path=<many_layers>"], r"refused before building it"),
    case(
        "many-layers-command-line",
        "train",
        [*TRAIN, "model.net.num_layers=1000000"],
        r"refused before building",
    ),
    case(
        "more-than-stored-compare",
        "compare",
        f"ckpt_path=<wider> {COMPARE}",
        r"networks of \d+ parameters but the checkpoint stores \d+ values in all",
    ),
    case(
        "huge-pml-loss-compare",
        "compare",
        f"ckpt_path=<arcface> {COMPARE}",
        r"objective\.supervised\.num_classes=1000000: more than the 4096 .* refused before building it",
    ),
    case(
        "deflate-bomb-evaluate",
        "evaluate",
        f"ckpt_path=<bomb> {EVALUATE}",
        r"entry 'archive/data/999' inflates \d+ times its stored size .* refused unread",
    ),
    # 9. nothing read from a file or a path is interpolated
    case(
        "secret-in-hparams-compare",
        "compare",
        f"ckpt_path=<secret> {COMPARE}",
        r"net\.readout holds '\$\{oc\.env:SECRET_TOKEN\}': a checkpoint holds no \$\{\.\.\.\}",
    ),
    case(
        "secret-in-data-evaluate",
        "evaluate",
        f"ckpt_path=<secret_data> {EVALUATE}",
        r"datamodule_hyper_parameters\.std holds '\$\{oc\.env:SECRET_TOKEN\}'",
    ),
    case(
        "secret-in-hparams-train",
        "train",
        [*TRAIN, "ckpt_path=<secret>"],
        r"holds '\$\{oc\.env:SECRET_TOKEN\}'",
    ),
    case(
        "image-named-like-interpolation",
        "compare",
        "ckpt_path=<siamese> device=cpu <digit_a> <dollar_image>",
        r"verdict: ",
        rc=0,
    ),
    # 10. allow-listed classes out of place, nesting, tensors that are not plain
    case("identity-as-net-evaluate", "evaluate", f"ckpt_path=<identity_net> {EVALUATE}", NOT_IN),
    case("callback-as-net-compare", "compare", f"ckpt_path=<callback_net> {COMPARE}", NOT_IN),
    case(
        "datamodule-as-objective-compare",
        "compare",
        f"ckpt_path=<data_loss> {COMPARE}",
        r"objective\._target_=siamese_lit\.data\.MNISTDataModule is not an Objective",
    ),
    case(
        "callback-as-net-train",
        "train",
        [*TRAIN, "model.net._target_=siamese_lit.callbacks.LogProgress"],
        NOT_IN,
    ),
    case("deep-hparams-evaluate", "evaluate", f"ckpt_path=<deep> {EVALUATE}", r"nest more than 32 deep"),
    case(
        "repeating-lists-compare",
        "compare",
        f"ckpt_path=<laughs> {COMPARE}",
        r"holds more than 200000 values",
    ),
    case(
        "sparse-weights-compare",
        "compare",
        f"ckpt_path=<sparse> {COMPARE}",
        r"net\.head\.weight is a torch\.sparse_coo tensor",
    ),
    case(
        "meta-weights-evaluate",
        "evaluate",
        f"ckpt_path=<meta> {EVALUATE}",
        r"net\.head\.weight is a tensor on the meta device",
    ),
    # 11. the libraries' errors about a user's value, as one line
    case(
        "seed-over-numpy-train",
        "train",
        [*TRAIN, "seed=8589934592"],
        r"seed must be an int in 0\.\.4294967295",
    ),
    case(
        "seed-negative-evaluate",
        "evaluate",
        f"ckpt_path=<siamese> seed=-1 {EVALUATE}",
        r"seed must be an int in",
    ),
    case(
        "lightning-misconfiguration",
        "train",
        [
            *TRAIN,
            "~model.scheduler",
            "+model.scheduler={_target_:torch.optim.lr_scheduler.ReduceLROnPlateau}",
        ],
        r"Lightning refused the settings: The lr scheduler dict must include a monitor",
    ),
    case("unknown-key-train", "train", [*TRAIN, "trainer.nope=1"], r"Could not override 'trainer\.nope'"),
    case(
        "unknown-key-evaluate",
        "evaluate",
        f"ckpt_path=<siamese> nope=1 {EVALUATE}",
        r"Could not override 'nope'",
    ),
    case(
        "unknown-experiment",
        "train",
        ["+experiment=siamese_xyz"],
        r"Could not find 'experiment/siamese_xyz'; Available options in 'experiment': bilstm_classifier; ",
    ),
    case(
        "cuda-99-evaluate",
        "evaluate",
        "ckpt_path=<siamese> device=cuda:99",
        r"device=cuda:99: this machine has",
    ),
    case(
        "meta-device-compare",
        "compare",
        "ckpt_path=<siamese> device=meta <digit_a> <digit_b>",
        r"device=meta cannot run a model on this machine",
    ),
    case(
        "batch-size-0-evaluate",
        "evaluate",
        f"ckpt_path=<siamese> batch_size=0 {EVALUATE}",
        r"batch_size must be >= 1",
    ),
    case(
        "unparsable-path",
        "evaluate",
        ["ckpt_path=<inputs>/a]b.ckpt", "device=cpu"],
        r"command line: .*quote a value holding spaces",
    ),
    # 12. summarize on hand-edited jobs: listed as unreadable, the summary goes on, in bounded time
    case(
        "summarize-hand-edited",
        "summarize",
        "<sweep_edited>",
        r"(?s)Unreadable jobs \(skipped\): 1, 2, 3, 4, 5.*\| 0 \| 0 \| ok \| 0\.9 ",
        rc=0,
    ),
]


def _dollar_image(inputs: Path, data_dir: Path) -> Path:
    """A digit saved as `${oc.env:HOME}.png`; nothing exists at the path it would interpolate to."""
    path = inputs / "${oc.env:HOME}.png"
    Image.fromarray(load_mnist(data_dir, train=False)[0][1].numpy(), mode="L").save(path)
    return path


def _bomb(siamese: Path, path: Path) -> Path:
    """The real checkpoint's entries, plus one deflated entry of 1.2 GB of zeros (1.2 MB stored)."""
    with zipfile.ZipFile(siamese) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info.filename))
        entry = zipfile.ZipInfo("archive/data/999")
        entry.compress_type = zipfile.ZIP_DEFLATED
        with out.open(entry, "w", force_zip64=True) as f:
            for _ in range(72):
                f.write(bytes(1 << 24))
    return path


def _editedsweep_dir(root: Path) -> Path:
    """A multirun whose jobs 1-5 were hand-edited; job 0 is whole. Job 1's config (read first for
    the sweep's metric) is a billion-laughs YAML; job 5's overrides.yaml is a FIFO."""
    good = {"overrides": ["seed=0"], "metrics": {"val/auroc_best": 0.9, "test/auroc": 0.8}}
    jobs = {
        "0": good,
        "1": {"overrides": ["seed=1"], "metrics_text": '{"val/auroc_best": NaN, "test/auroc": Infinity}'},
        "2": {"overrides": ["seed=2"], "metrics_text": '{"val/auroc_best": ' + "9" * 400 + "}"},
        "3": {"overrides": ["seed=3"], "metrics_text": '{"val/auroc_best": 1e999}'},
        "4": {
            "overrides_text": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        },
        "5": good,
        "\u0663": {**good, "overrides": ["seed=6"]},  # ARABIC-INDIC DIGIT THREE: int() takes it
        "\u00b2": {**good, "overrides": ["seed=7"]},  # SUPERSCRIPT TWO: isdigit(), but int() refuses it
    }
    sweep = sweep_dir(root, jobs)
    laughs = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (sweep / "0" / ".hydra" / "config.yaml").write_text("optimized_metric: val/auroc_best\n" + laughs)
    (sweep / "optimization_results.yaml").write_text("best_value: abc\nbest_params: [1, 2]\n")
    fifo = sweep / "5" / ".hydra" / "overrides.yaml"
    fifo.unlink()
    os.mkfifo(fifo)
    return sweep


def _world(inputs: Path, siamese: Path, data_dir: Path) -> dict[str, Path]:
    s = torch.load(siamese, map_location="cpu", weights_only=True)
    net, weights = s["hyper_parameters"]["net"], s["state_dict"]
    w: dict[str, Path] = {"siamese": siamese, "inputs": inputs, "nowhere": inputs / "nowhere.ckpt"}
    for name, image in (("digit_a", 0), ("digit_b", 1)):
        w[name] = inputs / f"{name}.png"
        Image.fromarray(load_mnist(data_dir, train=False)[0][image].numpy(), mode="L").save(w[name])
    w["dollar_image"] = _dollar_image(inputs, data_dir)
    w["huge"] = with_weights(
        s, inputs / "huge.ckpt", **{"net.head.weight": weights["net.head.weight"] * 1e38}
    )
    data = {**s["datamodule_hyper_parameters"]}
    torch.save({**s, "datamodule_hyper_parameters": {**data, "std": float("inf")}}, inputs / "std_inf.ckpt")
    torch.save(
        {**s, "datamodule_hyper_parameters": {**data, "std": "${oc.env:SECRET_TOKEN}"}}, inputs / "sd.ckpt"
    )
    w["std_inf"], w["secret_data"] = inputs / "std_inf.ckpt", inputs / "sd.ckpt"
    w["big_hidden"] = with_hparams(s, inputs / "big_hidden.ckpt", net={**net, "hidden_size": 12000})
    w["many_layers"] = with_hparams(s, inputs / "many_layers.ckpt", net={**net, "num_layers": 10**6})
    # wide enough that its weights outnumber every value stored, the rejection references included
    w["wider"] = with_hparams(s, inputs / "wider.ckpt", net={**net, "hidden_size": 8 * net["hidden_size"]})
    w["bomb"] = _bomb(siamese, inputs / "bomb.ckpt")
    arcface = {
        "_target_": "pytorch_metric_learning.losses.ArcFaceLoss",
        "num_classes": 10**6,
        "embedding_size": 10**5,
    }
    views = {"_target_": "siamese_lit.objectives.ViewObjective", "_recursive_": False, "supervised": arcface}
    w["arcface"] = with_hparams(s, inputs / "arcface.ckpt", objective=views)
    w["secret"] = with_hparams(s, inputs / "secret.ckpt", net={**net, "readout": "${oc.env:SECRET_TOKEN}"})
    w["identity_net"] = with_hparams(s, inputs / "identity.ckpt", net={"_target_": "torch.nn.Identity"})
    callback = {"_target_": "siamese_lit.callbacks.LogProgress"}
    w["callback_net"] = with_hparams(s, inputs / "callback_net.ckpt", net=callback)
    data_loss = {"_target_": "siamese_lit.data.MNISTDataModule", "data_dir": str(inputs)}
    w["data_loss"] = with_hparams(s, inputs / "data_loss.ckpt", objective=data_loss)
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"a": deep}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pickling it recurses
    try:
        w["deep"] = with_hparams(s, inputs / "deep.ckpt", knn_k=deep)
    finally:
        sys.setrecursionlimit(limit)
    laughs: Any = [0] * 10
    for _ in range(9):  # 10**10 references to one list of ten, in 90 stored values
        laughs = [laughs] * 10
    w["laughs"] = with_hparams(s, inputs / "laughs.ckpt", knn_k=laughs)
    w["sparse"] = with_weights(
        s, inputs / "sparse.ckpt", **{"net.head.weight": weights["net.head.weight"].to_sparse()}
    )
    w["meta"] = with_weights(
        s, inputs / "meta.ckpt", **{"net.head.weight": torch.empty(10, 1, device="meta")}
    )
    w["sweep_edited"] = _editedsweep_dir(inputs.parent / "sweeps" / "edited")
    return w


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory, tiny_siamese_run: Path, data_dir: Path) -> Table:
    root = tmp_path_factory.mktemp("hostile_checkpoints")
    (root / "inputs").mkdir()
    world = _world(root / "inputs", tiny_siamese_run / "checkpoints" / "last.ckpt", data_dir)
    watched = (root / "inputs", tiny_siamese_run)
    return run_table(CASES, world, root / "out", watched, env={"SECRET_TOKEN": SECRET})


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, table: Table) -> None:
    result = table.runs[case.id].result
    assert SECRET not in result.stdout + result.stderr  # no secret resolved into any line
    assert_refused(case, result)
    assert table.after == table.before  # no input file changed


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_checkpoints_are_refused_at_the_cost_of_a_missing_one(case: str, table: Table) -> None:
    run = table.runs[case]
    bare = table.runs[BARE[next(c.module for c in CASES if c.id == case)]]
    print(
        f"{case}: peak RSS {run.peak_rss_mib:.0f} MiB (bare {bare.peak_rss_mib:.0f}), "
        f"CPU {run.cpu_s:.1f} s (bare {bare.cpu_s:.1f}), wall {run.wall_s:.1f} s"
    )
    assert run.result.returncode == 2 and bare.result.returncode == 2
    assert run.peak_rss_mib <= bare.peak_rss_mib + RSS_MARGIN_MIB
    assert run.cpu_s <= bare.cpu_s + CPU_MARGIN_S


def test_empty_data_dir_variable_is_unset(tmp_path: Path) -> None:
    """SIAMESE_LIT_DATA_DIR="" means <repo>/data, not ./MNIST in the working dir."""
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": "", "PYTHONPATH": str(PROJECT_ROOT)}
    args = [*TRAIN, "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, "-m", "siamese_lit.train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert str(PROJECT_ROOT / "data" / "MNIST" / "raw") in errors[0]
    assert not (tmp_path / "MNIST").exists()


def test_bench_shows_its_childs_error(tmp_path: Path) -> None:
    with pytest.raises(SiameseLitError, match=r"exited 2: command line: .*Could not find 'experiment/nope'"):
        peak_rss_mib_of_training(["+experiment=nope", f"hydra.run.dir={tmp_path}"])
