"""The index and search commands end to end, as real subprocesses on a real checkpoint and real
MNIST digits saved as image files: a folder gallery, the MNIST gallery, the k-NN vote, the article's
protocol, `unknown`, the JSON answers, and an index of another checkpoint refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from siamese_lit.data.images import load_digit
from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference import SiameseModel
from siamese_lit.inference.index import embed_digits, identify, load_index
from siamese_lit.inference.references import identify_by_references
from siamese_lit.models.loading import load_model
from tests.helpers.runs import run_cli

PER_DIGIT = 12


def _save(digit: torch.Tensor, path: Path, size: int) -> Path:
    """An MNIST digit as a file a user might have: enlarged, dark ink on white paper."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(255 - digit.numpy()).resize((size, size), Image.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tiny_siamese_run: Path) -> dict[str, Any]:
    """A folder gallery (12 training digits per label, as 64x64 PNG and JPEG), query files (test digits,
    two exact MNIST training digits as 28x28 PNG), and both indexes built by the command."""
    root = tmp_path_factory.mktemp("search")
    train_x, train_y = load_mnist(data_dir, train=True)
    test_x, test_y = load_mnist(data_dir, train=False)
    for d in range(10):
        for n, i in enumerate(torch.nonzero(train_y == d).squeeze(1)[:PER_DIGIT].tolist()):
            _save(train_x[i], root / "gallery" / str(d) / f"{i}.{'png' if n % 2 else 'jpg'}", 64)
    queries = [
        _save(test_x[i], root / "queries" / f"test_{i}_is_{int(test_y[i])}.png", 96) for i in range(30)
    ]
    exact = root / "queries" / "exact"
    exact.mkdir()
    for i in (5, 123):  # exact MNIST training digits: 28x28 files are taken as framed
        Image.fromarray(train_x[i].numpy()).save(exact / f"train_{i}.png")
    ckpt = tiny_siamese_run / "checkpoints" / "last.ckpt"
    w = {"root": root, "ckpt": ckpt, "queries": queries, "test_y": test_y, "train_y": train_y}
    for name, gallery in (("folder", [f"gallery={root / 'gallery'}"]), ("mnist", ["gallery_size=5000"])):
        w[name] = root / f"{name}.index"
        result = run_cli(
            "siamese_lit.index",
            [
                f"ckpt_path={ckpt}",
                f"index_path={w[name]}",
                *gallery,
                "device=cpu",
                f"hydra.run.dir={root / name}",
            ],
        )
        assert result.returncode == 0, result.stderr[-3000:]
        w[f"{name}_stdout"] = result.stdout
    return w


def _search(world: dict[str, Any], name: str, args: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    out = world["root"] / f"{name}.json"
    result = run_cli(
        "siamese_lit.search",
        [*args, f"output={out}", "device=cpu", f"hydra.run.dir={world['root'] / ('run_' + name)}"],
    )
    return result, json.loads(out.read_text()) if out.is_file() else []


def test_folder_gallery_is_indexed_with_its_labels(world: dict[str, Any]) -> None:
    index = load_index(world["folder"])
    assert index.labels == [str(d) for d in range(10) for _ in range(PER_DIGIT)]
    assert all(Path(s).parent.name == label for s, label in zip(index.sources, index.labels, strict=True))
    assert f"indexed {10 * PER_DIGIT} images of 10 labels" in world["folder_stdout"]
    model, _ = load_model(world["ckpt"], "Siamese")
    assert index.threshold == pytest.approx(float(model.threshold))


def test_search_answers_as_the_api_does(world: dict[str, Any]) -> None:
    """The command's JSON is identify() on the same files' embeddings: label, distance, k neighbours."""
    result, rows = _search(
        world, "knn", [f"index_path={world['folder']}", str(world["root"] / "queries"), "k=3"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted(str(p) for p in (world["root"] / "queries").rglob("*.png"))
    assert [r["path"] for r in rows] == paths
    index = load_index(world["folder"])
    model, _ = load_model(world["ckpt"], "Siamese")
    digits = torch.stack([load_digit(p) for p in paths])
    matches = identify(index, embed_digits(model, digits, index.mean, index.std), k=3)
    for row, match in zip(rows, matches, strict=True):
        assert row["label"] == match.label and row["distance"] == pytest.approx(match.distance, abs=1e-5)
        assert [(n["label"], n["source"]) for n in row["neighbours"]] == [
            (a, c) for a, _, c in match.neighbours
        ]
        assert row["path"] in result.stdout
    # the 1-epoch model on 12 references per digit: most of 30 test digits right (chance: 3 of 30)
    truth = {str(p): p.stem.rsplit("_", 1)[1] for p in world["queries"]}
    right = sum(r["label"] == truth[r["path"]] for r in rows if r["path"] in truth)
    assert right >= 15, right


def test_an_mnist_digit_finds_itself_in_the_mnist_gallery(world: dict[str, Any]) -> None:
    result, rows = _search(
        world, "exact", [f"index_path={world['mnist']}", str(world["root"] / "queries" / "exact")]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in rows:
        i = int(Path(row["path"]).stem.split("_")[1])
        nearest = row["neighbours"][0]  # itself, up to float sums in other batch sizes
        assert nearest["source"] == f"mnist:train:{i}" and nearest["distance"] < 1e-5
        assert row["label"] == str(int(world["train_y"][i]))


def test_unknown_past_the_rejection_threshold(world: dict[str, Any]) -> None:
    """`unknown` is the rejection threshold's answer (reject_threshold= overrides the checkpoint's);
    the pair threshold no longer makes one."""
    query = str(world["queries"][0])
    result, rows = _search(world, "unknown", [f"index_path={world['folder']}", query, "reject_threshold=0"])
    assert result.returncode == 0 and rows[0]["label"] == "unknown" and rows[0]["score"] > 0
    references = len(SiameseModel.from_checkpoint(world["ckpt"]).module.rejection.references)
    assert (
        f"unknown: rejection score (mean distance to the 5 nearest of {references} reference digits) past "
        "0.0000 (reject_threshold=)" in result.stdout
    )
    result, rows = _search(world, "pair0", [f"index_path={world['folder']}", query, "threshold=0"])
    model = SiameseModel.from_checkpoint(world["ckpt"])
    score = float(model.reject_scores(model.embed(load_digit(query)[None]))[0])
    assert rows[0]["score"] == pytest.approx(score, abs=1e-5)
    assert (rows[0]["label"] == "unknown") == (score > model.rejection.value)


def test_the_articles_protocol(world: dict[str, Any]) -> None:
    args = [
        f"index_path={world['folder']}",
        *map(str, world["queries"][:10]),
        "protocol=article",
        "k=5",
        "seed=3",
    ]
    result, rows = _search(world, "article", args)
    assert result.returncode == 0, result.stderr[-3000:]
    index = load_index(world["folder"])
    model, _ = load_model(world["ckpt"], "Siamese")
    queries = embed_digits(
        model, torch.stack([load_digit(p) for p in world["queries"][:10]]), index.mean, index.std
    )
    matches = identify_by_references(index, queries, k=5, seed=3)
    siamese = SiameseModel.from_checkpoint(world["ckpt"])
    rejected = siamese.unknown(siamese.reject_scores(queries)).tolist()
    assert [r["label"] for r in rows] == [
        "unknown" if r else m.label for m, r in zip(matches, rejected, strict=True)
    ]
    for row in rows:  # k references of the answered label, their mean is the distance
        assert len(row["neighbours"]) == 5 and len({n["source"] for n in row["neighbours"]}) == 5
        mean = sum(n["distance"] for n in row["neighbours"]) / 5
        assert row["distance"] == pytest.approx(mean, rel=1e-5)


def test_an_index_of_another_checkpoint_is_refused(world: dict[str, Any], tmp_path: Path) -> None:
    saved = torch.load(world["ckpt"], map_location="cpu", weights_only=True)
    state = dict(saved["state_dict"])
    state["net.head.bias"] = state["net.head.bias"] + 0.01
    other = tmp_path / "other.ckpt"
    torch.save({**saved, "state_dict": state}, other)
    result, rows = _search(
        world, "other", [f"index_path={world['folder']}", str(world["queries"][0]), f"ckpt_path={other}"]
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "was built with another checkpoint" in errors[0] and rows == []
