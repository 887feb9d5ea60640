"""Bad input to the index, search and export commands, as real subprocesses (the table
harness of tests/helpers/table.py, for the commands of siamese_lit.inference).

Each case asserts exit status 2, exactly one `error: ` line matching its pattern and no traceback;
after the whole table, no payload ran, every file that existed before is byte-identical, and no
temporary file is left anywhere. Where some images cannot be read, the others are still indexed or
answered (checked after the table).
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference.index import build_index, checkpoint_fingerprint, load_index, save_index
from siamese_lit.models.loading import load_model
from tests.helpers.table import Case, Table, assert_refused, case, run_table
from tests.helpers.worlds import Payload

EXISTS = r"already exists: choose another path, or pass overwrite=true"
NOT_INDEX = r"is not a siamese_lit index"
# `@` is the case's own output file: <out>/<case id>
INDEX = "ckpt_path=<siamese> device=cpu gallery_size=200 index_path=@"
FOLDER = "ckpt_path=<siamese> index_path=@ gallery="
SEARCH = "index_path=<index> device=cpu <digit>"
EXPORT = "ckpt_path=<siamese> check_images=8"

TABLE: dict[str, dict[str, tuple[str, str]]] = {
    "index": {
        "no-ckpt": ("index_path=@ device=cpu", r"ckpt_path is required"),
        "missing-ckpt": ("ckpt_path=<nowhere> index_path=@", r"does not exist"),
        "pickle-ckpt": ("ckpt_path=<pickle> index_path=@", "refused unread"),
        "classifier": ("ckpt_path=<classifier> index_path=@", "is a classifier checkpoint"),
        "no-index-path": ("ckpt_path=<siamese> device=cpu", r"index_path is required"),
        "path-exists": ("ckpt_path=<siamese> index_path=<user_index>", EXISTS),
        "path-is-a-folder": ("ckpt_path=<siamese> index_path=<inputs>", r"is a folder"),
        "path-under-a-file": ("ckpt_path=<siamese> index_path=<user_file>/x", r"is a file, not a folder"),
        "gallery-size-0": (f"{INDEX} gallery_size=0", r"gallery_size must be >= 1"),
        "reject-threshold": (f"{INDEX} reject_threshold=-1", r"reject_threshold must be >= 0"),
        # finite weights of 1e38: finite embeddings whose distances overflow; no index is made
        "huge-weights": (
            "ckpt_path=<huge> index_path=<out>/huge.index device=cpu gallery_size=200",
            r"NaN or infinite distances between embeddings",
        ),
        "batch-abc": (f"{INDEX} batch_size=abc", r"batch_size must be int"),
        "gallery-missing": (f"{FOLDER}<nowhere>", r"neither `mnist` nor a folder"),
        "gallery-empty": (f"{FOLDER}<empty_dir>", r"holds no label folders"),
        "gallery-files-only": (f"{FOLDER}<flat_dir>", r"holds no label folders"),
        "label-no-images": (f"{FOLDER}<no_images>", r"label folder 3/ holds no image files"),
        "label-unknown": (f"{FOLDER}<unknown_label>", r"may not be named `unknown`"),
        "all-unreadable": (
            f"{FOLDER}<all_broken>",
            r"none of its 2 images could be read: .*broken_a\.png \(not a readable image",
        ),
        "one-unreadable": (
            "ckpt_path=<siamese> index_path=<out>/partial.index gallery=<one_broken> device=cpu",
            r"1 gallery images could not be read and were left out of .*partial\.index "
            r"\(the other 2 are indexed\): .*blank\.png \(blank",
        ),
    },
    "search": {
        "no-index": ("<digit> device=cpu", r"index_path is required"),
        "missing-index": ("index_path=<nowhere> <digit>", r"does not exist or is not a file"),
        "text-index": ("index_path=<user_file> <digit>", NOT_INDEX),
        "pickle-index": ("index_path=<pickle_index> <digit>", NOT_INDEX),
        "truncated-index": ("index_path=<truncated_index> <digit>", r"not a readable siamese_lit index"),
        "huge-header": ("index_path=<huge_index> <digit>", NOT_INDEX),
        "other-ckpt": (f"{SEARCH} ckpt_path=<other>", r"was built with another checkpoint"),
        "ckpt-gone": (
            "index_path=<orphan_index> <digit>",
            r"built with .*gone\.ckpt, which is not there any more",
        ),
        "pickle-ckpt": (f"{SEARCH} ckpt_path=<pickle>", "refused unread"),
        "no-queries": ("index_path=<index> device=cpu", r"no query images"),
        "all-unreadable": (
            "index_path=<index> <broken> <nowhere>",
            r"none of the query images could be read",
        ),
        "empty-folder": (
            "index_path=<index> <empty_dir>",
            r"could be read: .* \(folder holds no image files",
        ),
        "one-unreadable": (
            f"{SEARCH} <broken> output=<out>/partial.json",
            r"1 of the query images could not be read \(the other 1 are answered\): "
            r".*broken\.png \(not a readable image",
        ),
        "k-0": (f"{SEARCH} k=0", r"k must be >= 1"),
        "k-abc": (f"{SEARCH} k=abc", r"k must be int or null"),
        "protocol": (f"{SEARCH} protocol=cosine", r"protocol must be one of \['knn', 'article'\]"),
        "threshold": (f"{SEARCH} threshold=-1", r"threshold must be >= 0"),
        "reject-threshold": (f"{SEARCH} reject_threshold=-1", r"reject_threshold must be >= 0"),
        "article-k": (f"{SEARCH} protocol=article k=500", r"k=500 references per label: must be in 1\.\.\d+"),
        "output-exists": (f"{SEARCH} output=<user_file>", EXISTS),
        "both-forms": (f"{SEARCH} queries=[<digit>]", r"either as positional arguments or as queries="),
    },
    "export": {
        "format": (f"{EXPORT} format=tflite output=@", r"format must be one of \['onnx'\]"),
        "no-output": (EXPORT, r"output is required"),
        "output-exists": (f"{EXPORT} output=<user_onnx>", EXISTS),
        "missing-ckpt": ("ckpt_path=<nowhere> output=@", r"does not exist"),
        "pickle-ckpt": ("ckpt_path=<pickle> output=@", "refused unread"),
        "classifier": ("ckpt_path=<classifier> output=@", "is a classifier checkpoint"),
        "tolerance": (f"{EXPORT} output=@ tolerance=-1", r"tolerance must be >= 0"),
        "opset": (f"{EXPORT} output=@ opset=7", r"opset must be in 18\.\.23"),
    },
}
CASES = [
    case(f"{module}-{name}", module, args.replace("=@", f"=<out>/{module}-{name}"), expect)
    for module, cases in TABLE.items()
    for name, (args, expect) in cases.items()
]


def _png(path: Path, pixels: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)
    return path


def _build_world(root: Path, siamese: Path, classifier: Path, data_dir: Path) -> dict[str, Path]:
    inputs = root / "inputs"
    w: dict[str, Path] = {"siamese": siamese, "classifier": classifier, "inputs": inputs, "out": root / "out"}
    w["nowhere"] = inputs / "nowhere.png"
    w["markers"] = inputs / "markers"
    w["markers"].mkdir(parents=True)
    w["out"].mkdir()
    ckpt = torch.load(siamese, map_location="cpu", weights_only=True)
    torch.save(
        {**ckpt, "payload": Payload(w["markers"] / "pickle")}, w.setdefault("pickle", inputs / "pickle.ckpt")
    )
    other = {**ckpt["state_dict"], "net.head.bias": ckpt["state_dict"]["net.head.bias"] + 0.01}
    torch.save({**ckpt, "state_dict": other}, w.setdefault("other", inputs / "other.ckpt"))
    huge = {**ckpt["state_dict"], "net.head.weight": ckpt["state_dict"]["net.head.weight"] * 1e38}
    torch.save({**ckpt, "state_dict": huge}, w.setdefault("huge", inputs / "huge.ckpt"))
    for name, text in (
        ("user_file", "a user's file\n"),
        ("user_index", "a user's index\n"),
        ("user_onnx", "x\n"),
    ):
        w[name] = inputs / f"{name}.txt"
        w[name].write_text(text)
    images, labels = load_mnist(data_dir, train=False)
    w["digit"] = _png(inputs / "digit.png", images[0])
    (w.setdefault("broken", inputs / "broken.png")).write_text("not an image\n")
    model, _ = load_model(siamese, "Siamese")
    fp = checkpoint_fingerprint(model.state_dict())
    index = build_index(
        model,
        images[:300],
        [str(int(y)) for y in labels[:300]],
        [f"t:{i}" for i in range(300)],
        fingerprint=fp,
        mean=0.1307,
        std=0.3081,
        ckpt_path=str(siamese),
    )
    save_index(index, w.setdefault("index", inputs / "good.index"))
    orphan = build_index(
        model,
        images[:20],
        [str(int(y)) for y in labels[:20]],
        [str(i) for i in range(20)],
        fingerprint=fp,
        mean=0.1307,
        std=0.3081,
        ckpt_path=str(inputs / "gone.ckpt"),
    )
    save_index(orphan, w.setdefault("orphan_index", inputs / "orphan.index"))
    (w.setdefault("truncated_index", inputs / "truncated.index")).write_bytes(w["index"].read_bytes()[:-500])
    (w.setdefault("huge_index", inputs / "huge.index")).write_bytes(struct.pack("<Q", 2**60) + b"{}")
    (w.setdefault("pickle_index", inputs / "pickle.index")).write_bytes(
        pickle.dumps(Payload(w["markers"] / "pickle_index"))
    )
    (w.setdefault("empty_dir", inputs / "empty_dir")).mkdir()
    _png(w.setdefault("flat_dir", inputs / "flat") / "1.png", images[1])
    _png(w.setdefault("no_images", inputs / "no_images") / "1" / "a.png", images[2])
    (w["no_images"] / "3").mkdir()
    (w["no_images"] / "3" / "notes.txt").write_text("no image here\n")
    _png(w.setdefault("unknown_label", inputs / "unknown_label") / "unknown" / "a.png", images[3])
    for name in ("broken_a.png", "broken_b.png"):
        (w.setdefault("all_broken", inputs / "all_broken") / "7").mkdir(parents=True, exist_ok=True)
        (w["all_broken"] / "7" / name).write_text("not an image\n")
    one_broken = w.setdefault("one_broken", inputs / "one_broken")
    _png(one_broken / "7" / "a.png", images[0])
    _png(one_broken / "2" / "b.png", images[1])
    _png(one_broken / "2" / "blank.png", torch.zeros(28, 28, dtype=torch.uint8))
    return w


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_siamese_run: Path, tiny_classifier_run: Path, data_dir: Path) -> Table:
    root = tmp_path_factory.mktemp("inference_inputs")
    world = _build_world(
        root,
        tiny_siamese_run / "checkpoints" / "last.ckpt",
        tiny_classifier_run / "checkpoints" / "last.ckpt",
        data_dir,
    )
    watched = (world["inputs"], tiny_siamese_run, tiny_classifier_run)
    return run_table(CASES, world, root / "runs", watched)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, table: Table) -> None:
    assert_refused(case, table.runs[case.id].result)
    assert not any(table.world["markers"].iterdir())
    assert table.after == table.before


def test_nothing_half_written(table: Table) -> None:
    """Only the two partial cases wrote an output; no temporary file anywhere."""
    written = sorted(p.name for p in table.world["out"].iterdir())
    assert written == ["partial.index", "partial.json"]
    root = table.world["out"].parent
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_the_readable_images_are_still_indexed_and_answered(table: Table) -> None:
    index = load_index(table.world["out"] / "partial.index")
    assert sorted(Path(s).name for s in index.sources) == ["a.png", "b.png"] and sorted(index.labels) == [
        "2",
        "7",
    ]
    rows = json.loads((table.world["out"] / "partial.json").read_text())
    by_path = {r["path"]: r for r in rows}
    digit, broken = str(table.world["digit"]), str(table.world["broken"])
    assert (
        by_path[digit]["label"] in {str(d) for d in range(10)} | {"unknown"}
        and by_path[digit]["error"] is None
    )
    assert by_path[broken]["label"] is None and "not a readable image" in by_path[broken]["error"]
