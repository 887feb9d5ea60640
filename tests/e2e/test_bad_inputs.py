"""Hardening (issue 14): hostile and broken inputs through every entry point, as real subprocesses.

A table of bad inputs (CASES) runs once, in parallel, against a world of files: the tiny real runs'
checkpoints, hostile checkpoints made from them (a pickle payload, `_target_`s that would copy onto a
user's file, open one or save over it), broken checkpoints, images, MNIST copies and sweep dirs.
Each case asserts its exit status, exactly one `error: ` line naming the problem and no traceback;
and after the whole table, no payload ran (no marker file) and every file that existed before is
byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from siamese_lit.data.mnist import MNIST_FILES, load_mnist, raw_folder
from siamese_lit.evaluation.openset import MAX_REFERENCES
from tests.helpers.table import COMPARE, EVALUATE, TRAIN, Case, Table, assert_refused, case, run_table
from tests.helpers.worlds import Payload, read_only_dir, sweep_dir, with_hparams, with_weights

REFUSED = r"is not allowed: a model \(and a checkpoint\) may only build"
RUNS_CODE = r"refers to [\w.]+, which a siamese_lit checkpoint never does: refused unread"

CASES = [
    # 1. checkpoints that would run code: a pickle payload, hostile _target_s, every entry point
    case("pickle-evaluate", "evaluate", f"ckpt_path=<pickle> {EVALUATE}", RUNS_CODE),
    case(
        "pickle-evaluate-classifier",
        "evaluate",
        f"ckpt_path=<siamese> classifier_ckpt_path=<pickle_classifier> {EVALUATE}",
        "classifier_ckpt_path=.* " + RUNS_CODE,
    ),
    case("pickle-compare", "compare", f"ckpt_path=<pickle> {COMPARE}", RUNS_CODE),
    case("pickle-train", "train", [*TRAIN, "ckpt_path=<pickle>"], RUNS_CODE),
    case(
        "copyfile-evaluate",
        "evaluate",
        f"ckpt_path=<copyfile> {EVALUATE}",
        r"net\._target_=shutil.copyfile " + REFUSED,
    ),
    case(
        "copyfile-evaluate-classifier",
        "evaluate",
        f"ckpt_path=<siamese> classifier_ckpt_path=<copyfile_classifier> {EVALUATE}",
        r"classifier_ckpt_path=.*net\._target_=shutil.copyfile " + REFUSED,
    ),
    case("copyfile-compare", "compare", f"ckpt_path=<copyfile> {COMPARE}", "shutil.copyfile " + REFUSED),
    case("copyfile-train", "train", [*TRAIN, "ckpt_path=<copyfile>"], "shutil.copyfile " + REFUSED),
    case(
        "open-compare", "compare", f"ckpt_path=<open> {COMPARE}", r"loss\._target_=builtins.open " + REFUSED
    ),
    case("torch-save-evaluate", "evaluate", f"ckpt_path=<torch_save> {EVALUATE}", "torch.save " + REFUSED),
    case(
        "nested-target-compare",
        "compare",
        f"ckpt_path=<nested> {COMPARE}",
        r"net\.cell\._target_=shutil.copyfile " + REFUSED,
    ),
    case(
        "torch-nn-prefix-compare",
        "compare",
        f"ckpt_path=<sneaky> {COMPARE}",
        "torch.nn.modules.module.torch.save " + REFUSED,
    ),
    case(
        "os-system-optimizer-train",
        "train",
        [*TRAIN, "ckpt_path=<system>"],
        r"optimizer\._target_=os.system " + REFUSED,
    ),
    case(
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
    case(
        "nan-weights-compare",
        "compare",
        f"ckpt_path=<nan> {COMPARE}",
        r"net\.head\.weight holds NaN or infinite",
    ),
    case(
        "inf-weights-evaluate",
        "evaluate",
        f"ckpt_path=<inf> {EVALUATE}",
        r"net\.rnn\.weight_hh_l0 holds NaN or infinite",
    ),
    case(
        "inf-threshold-compare",
        "compare",
        f"ckpt_path=<inf_threshold> {COMPARE}",
        "threshold holds NaN or infinite",
    ),
    case(
        "nan-references-compare",
        "compare",
        f"ckpt_path=<nan_references> {COMPARE}",
        r"rejection\.references holds NaN or infinite",
    ),
    case(
        "many-references-compare",
        "compare",
        f"ckpt_path=<many_references> {COMPARE}",
        r"rejection\.references holds 100001 reference embeddings, more than 100000",
    ),
    case(
        "many-references-evaluate",
        "evaluate",
        f"ckpt_path=<many_references> {EVALUATE}",
        r"rejection\.references holds 100001 reference embeddings, more than 100000",
    ),
    case("max-epochs-0", "train", [*TRAIN, "trainer.max_epochs=0"], r"trainer\.max_epochs must be >= 1"),
    case("train-size-negative", "train", [*TRAIN, "data.train_size=-5"], r"data\.train_size must be >= 1"),
    case("train-size-0", "train", [*TRAIN, "data.train_size=0"], r"data\.train_size must be >= 1"),
    case("test-size-negative", "train", [*TRAIN, "data.test_size=-5"], r"data\.test_size must be >= 1"),
    case("val-size-0", "train", [*TRAIN, "data.val_size=0"], r"data\.val_size must be in 1\.\.59999"),
    case("eval-pairs-0", "train", [*TRAIN, "data.eval_pairs=0"], r"data\.eval_pairs must be >= 2"),
    case(
        "references-below-knn-k",
        "train",
        [*TRAIN, "data.reference_size=3"],
        r"model\.knn_k \(with data\.reference_size\) must be in 1\.\.3",
    ),
    # 3. values of the wrong type or range, config errors
    case(
        "margin-abc",
        "train",
        [*TRAIN, "model.objective.margin=abc"],
        r"model\.objective\.margin must be float, got 'abc'",
    ),
    case("lr-negative", "train", [*TRAIN, "model.optimizer.lr=-0.1"], "Invalid learning rate: -0.1"),
    case(
        "max-epochs-abc",
        "train",
        [*TRAIN, "trainer.max_epochs=abc"],
        r"trainer\.max_epochs must be int or null",
    ),
    case(
        "batch-size-float",
        "train",
        [*TRAIN, "data.batch_size=3.5"],
        r"data\.batch_size must be int, got 3\.5",
    ),
    case(
        "unknown-net-argument",
        "train",
        [*TRAIN, "+model.net.hiden_size=3"],
        r"SequenceEncoder takes no argument 'hiden_size'",
    ),
    case("missing-value", "train", [*TRAIN, "model.embedding_dim=???"], r"model\.embedding_dim"),
    case(
        "broken-interpolation",
        "train",
        [*TRAIN, "model.optimizer.lr=${nope}"],
        r"Interpolation key 'nope' not found",
    ),
    case("unknown-accelerator", "train", [*TRAIN, "trainer.accelerator=xyz"], r"invalid accelerator name"),
    case(
        "compare-threshold-abc",
        "compare",
        f"ckpt_path=<siamese> threshold=abc {COMPARE}",
        r"threshold must be float or null, got 'abc'",
    ),
    case(
        "compare-threshold-negative",
        "compare",
        f"ckpt_path=<siamese> threshold=-1 {COMPARE}",
        r"threshold must be >= 0",
    ),
    case(
        "compare-reject-threshold-negative",
        "compare",
        f"ckpt_path=<siamese> reject_threshold=-1 {COMPARE}",
        r"reject_threshold must be >= 0",
    ),
    case(
        "evaluate-neighbours-abc",
        "evaluate",
        f"ckpt_path=<siamese> retrieval.neighbours=abc {EVALUATE}",
        r"retrieval\.neighbours must be int",
    ),
    case(
        "evaluate-unknown-corruption",
        "evaluate",
        f"ckpt_path=<siamese> robustness.corruptions=[lowres_9] {EVALUATE}",
        r"robustness\.corruptions: unknown \['lowres_9'\]",
    ),
    # 3. checkpoints of the wrong kind, empty, truncated, of other shapes: train validates them too
    case(
        "train-wrong-kind",
        "train",
        [*TRAIN, "ckpt_path=<classifier>"],
        "is a classifier checkpoint; this run trains a Siamese model",
    ),
    case("train-empty-ckpt", "train", [*TRAIN, "ckpt_path=<empty>"], "is not a readable checkpoint"),
    case("train-truncated-ckpt", "train", [*TRAIN, "ckpt_path=<truncated>"], "is not a readable checkpoint"),
    case("train-missing-ckpt", "train", [*TRAIN, "ckpt_path=<nowhere>"], "does not exist"),
    case(
        "train-other-shapes",
        "train",
        [*TRAIN, "model.net.hidden_size=32", "ckpt_path=<siamese>"],
        r"tensor net\.rnn\.weight_ih_l0 is \(256, 28\) in the checkpoint but \(128, 28\) in the model",
    ),
    case(
        "evaluate-other-shapes",
        "evaluate",
        f"ckpt_path=<shapes> {EVALUATE}",
        r"tensor net\.rnn\.weight_ih_l0 is \(256, 28\)",
    ),
    case(
        "compare-not-a-dict",
        "compare",
        f"ckpt_path=<a_list> {COMPARE}",
        "is not a siamese_lit Lightning checkpoint",
    ),
    # 3. output dirs that cannot be written
    case(
        "train-run-dir-under-a-file",
        "train",
        [*TRAIN, "hydra.run.dir=<user_file>/run"],
        r"is a file, not a folder",
    ),
    case(
        "evaluate-run-dir-under-a-file",
        "evaluate",
        "ckpt_path=<siamese> hydra.run.dir=<user_file>/run",
        "is a file, not a folder",
    ),
    case("train-read-only-run-dir", "train", [*TRAIN, "hydra.run.dir=<read_only>/run"], r"is not writable"),
    case(
        "sweep-dir-under-a-file",
        "train",
        ["-m", *TRAIN, "hydra.sweep.dir=<user_file>/sweep"],
        "is a file, not a folder",
    ),
    # 3. MNIST files with a wrong header of the right size
    case(
        "idx-wrong-dimensions",
        "train",
        [*TRAIN, "paths.data_dir=<bad_idx>"],
        r"is not an MNIST IDX file \(type 0x08, 3 dimensions: 10000x784x1",
    ),
    # 3. summarize: broken job files are reported, the summary is still made (rc 0, on stdout)
    case(
        "summarize-truncated-metrics",
        "summarize",
        "<sweep_truncated>",
        r"\| 1 \| 1 \| unreadable \|.*metrics\.json: JSONDecodeError",
        rc=0,
    ),
    case(
        "summarize-list-metrics",
        "summarize",
        "<sweep_list>",
        r"metrics\.json holds a list, not an object",
        rc=0,
    ),
    case(
        "summarize-overrides-not-a-list",
        "summarize",
        "<sweep_overrides>",
        r"overrides\.yaml is not a list",
        rc=0,
    ),
    case("summarize-unwritable-summary", "summarize", "<sweep_unwritable>", r"2 jobs, 0 failed", rc=0),
    case("summarize-not-a-dir", "summarize", "<user_file>", "is not a directory"),
    # 4. (issue 20) checkpoints that cannot be resumed, refused before fitting; folders of the user's
    case(
        "resume-nothing-left",
        "train",
        [*TRAIN, "ckpt_path=<siamese>"],
        r"has trained 1 epoch \(\d+ steps\): trainer\.max_epochs=1 leaves nothing to train",
    ),
    case(
        "resume-other-optimizer",
        "train",
        [*TRAIN, "trainer.max_epochs=2", "model.optimizer._target_=torch.optim.SGD", "ckpt_path=<siamese>"],
        r"trained with model\.optimizer=torch\.optim\.AdamW, this run has model\.optimizer=torch\.optim\.SGD",
    ),
    case(
        "resume-without-scheduler",
        "train",
        [*TRAIN, "trainer.max_epochs=2", "model.scheduler=null", "ckpt_path=<siamese>"],
        r"model\.scheduler=torch\.optim\.lr_scheduler\.OneCycleLR, this run has model\.scheduler=null",
    ),
    case(
        "compare-run-dir-of-the-user",
        "compare",
        f"ckpt_path=<siamese> {COMPARE} hydra.run.dir=<user_folder>",
        r"user_folder is not empty \(inputs\.png\): a run writes only into a new or empty folder",
    ),
    case(
        "evaluate-run-dir-of-the-user",
        "evaluate",
        f"ckpt_path=<siamese> {EVALUATE} hydra.run.dir=<user_folder>",
        r"user_folder is not empty \(inputs\.png\)",
    ),
    case(
        "sweep-dir-of-the-user",
        "train",
        ["-m", *TRAIN, "hydra.sweep.dir=<user_folder>"],
        r"user_folder is not empty \(inputs\.png\)",
    ),
]


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
    w["copyfile"] = with_hparams(s, inputs / "copyfile.ckpt", net=copy)
    w["copyfile_classifier"] = with_hparams(c, inputs / "copyfile_classifier.ckpt", net=copy)
    open_ = {"_target_": "builtins.open", "file": str(w["markers"] / "open"), "mode": "w"}
    w["open"] = with_hparams(s, inputs / "open.ckpt", loss=open_)
    w["torch_save"] = with_hparams(s, inputs / "torch_save.ckpt", net={"_target_": "torch.save", **save})
    w["nested"] = with_hparams(s, inputs / "nested.ckpt", net={**s["hyper_parameters"]["net"], "cell": copy})
    sneaky = {"_target_": "torch.nn.modules.module.torch.save", **save}
    w["sneaky"] = with_hparams(s, inputs / "sneaky.ckpt", net=sneaky)
    system = {"_target_": "os.system", "command": f"touch {w['markers'] / 'system'}"}
    w["system"] = with_hparams(s, inputs / "system.ckpt", optimizer=system)
    w["shapes"] = with_hparams(
        s, inputs / "shapes.ckpt", net={**s["hyper_parameters"]["net"], "hidden_size": 32}
    )
    weights = s["state_dict"]
    w["nan"] = with_weights(
        s, inputs / "nan.ckpt", **{"net.head.weight": weights["net.head.weight"] * torch.nan}
    )
    w["inf"] = with_weights(
        s, inputs / "inf.ckpt", **{"net.rnn.weight_hh_l0": weights["net.rnn.weight_hh_l0"] / 0}
    )
    w["inf_threshold"] = with_weights(s, inputs / "inf_threshold.ckpt", threshold=torch.tensor(torch.inf))
    refs = weights["rejection.references"]
    w["nan_references"] = with_weights(
        s, inputs / "nan_references.ckpt", **{"rejection.references": refs * torch.nan}
    )
    many = torch.zeros(MAX_REFERENCES + 1, refs.shape[1])  # sized from the file before any load
    w["many_references"] = with_weights(s, inputs / "many_references.ckpt", **{"rejection.references": many})
    torch.save([1, 2, 3], w.setdefault("a_list", inputs / "a_list.ckpt"))
    (w.setdefault("empty", inputs / "empty.ckpt")).write_bytes(b"")
    (w.setdefault("truncated", inputs / "truncated.ckpt")).write_bytes(siamese.read_bytes()[:5000])
    (w.setdefault("text", inputs / "text.ckpt")).write_text("not a checkpoint\n")
    w["nowhere"] = inputs / "nowhere.ckpt"
    images, _ = load_mnist(data_dir, train=False)
    for name, i in (("digit_a", 0), ("digit_b", 1)):
        w[name] = inputs / f"{name}.png"
        Image.fromarray(images[i].numpy(), mode="L").save(w[name])
    w["read_only"] = read_only_dir(inputs.parent)
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
    w["sweep_truncated"] = sweep_dir(
        sweeps / "truncated", {"0": good, "1": {"overrides": ["seed=1"], "metrics_text": '{"val/au'}}
    )
    w["sweep_list"] = sweep_dir(
        sweeps / "list", {"0": good, "1": {"overrides": ["seed=1"], "metrics_text": "[1, 2]"}}
    )
    w["sweep_overrides"] = sweep_dir(
        sweeps / "overrides", {"0": good, "1": {"overrides_text": "just: text\n"}}
    )
    w["sweep_unwritable"] = sweep_dir(
        sweeps / "unwritable", {"0": good, "1": {**good, "overrides": ["seed=1"]}}
    )
    (w["sweep_unwritable"] / "summary.md").mkdir()
    return w


@pytest.fixture(scope="module")
def table(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_siamese_run: Path,
    tiny_classifier_run: Path,
    data_dir: Path,
) -> Table:
    """Every case of CASES run as a real subprocess; the watched files before and after."""
    root = tmp_path_factory.mktemp("bad_inputs")
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
    table = run_table(CASES, world, root / "out", watched)
    for files in (table.before, table.after):  # summarize writes the summaries
        for path in [p for p in files if "/summary" in p]:
            del files[path]
    return table


def test_the_table_has_at_least_40_bad_inputs() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, table: Table) -> None:
    assert_refused(case, table.runs[case.id].result)
    # no payload ran, no file that existed before changed
    assert not any(table.world["markers"].iterdir())
    assert table.world["user_file"].read_text() == "a user's file: must stay as it is\n"
    assert table.after == table.before


def test_unwritable_summary_is_printed_and_reported(table: Table) -> None:
    result = table.runs["summarize-unwritable-summary"].result
    assert "Cannot write" in result.stderr and "summary.md" in result.stderr
    assert (table.world["sweep_unwritable"] / "summary.csv").is_file()  # the other files are written
