"""The gallery index API (siamese_lit.inference.index) on real MNIST digits and real model builds:
round trip through the file, the k-NN vote against the project's own knn_predict, "unknown", the
checkpoint fingerprint, and files that are broken or hostile."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import save_file

from siamese_lit.data.mnist import load_mnist
from siamese_lit.evaluation.classification import knn_predict
from siamese_lit.inference.index import (
    GalleryIndex,
    GalleryIndexError,
    build_index,
    checkpoint_fingerprint,
    embed_digits,
    identify,
    load_index,
    save_index,
)
from siamese_lit.inference.index_file import FORMAT
from siamese_lit.inference.references import draw_references
from siamese_lit.utils.errors import ConfigError

MEAN, STD = 0.1307, 0.3081


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    """The headline experiment's LitSiamese, small, with a calibrated threshold set by hand."""
    from tests.helpers.runs import compose_cfg

    torch.manual_seed(0)
    cfg = compose_cfg(
        ["+experiment=siamese", "model.net.hidden_size=32", "model.net.num_layers=1"],
        tmp_path_factory.mktemp("cfg"),
    )
    m = instantiate(cfg.model).eval()
    m.threshold.fill_(0.5)
    return m


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train_x, train_y = load_mnist(data_dir, train=True)
    test_x, test_y = load_mnist(data_dir, train=False)
    return train_x[:3000], train_y[:3000], test_x[:300], test_y[:300]


@pytest.fixture(scope="module")
def index(model, mnist) -> GalleryIndex:
    x, y, _, _ = mnist
    fingerprint = checkpoint_fingerprint(model.state_dict())
    sources = [f"mnist:train:{i}" for i in range(len(x))]
    return build_index(
        model, x, [str(int(v)) for v in y], sources, fingerprint=fingerprint, mean=MEAN, std=STD
    )


def test_embeddings_are_the_models_on_normalised_images(model, mnist) -> None:
    x = mnist[0][:50]
    with torch.no_grad():
        expected = model((x.float() / 255 - MEAN) / STD)
    assert torch.allclose(embed_digits(model, x, MEAN, STD, batch_size=7), expected, atol=1e-6)


def test_round_trip_keeps_everything(index: GalleryIndex, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gallery.index"
    save_index(index, path)
    loaded = load_index(path, fingerprint=index.fingerprint)
    assert torch.equal(loaded.embeddings, index.embeddings)
    assert loaded.labels == index.labels and loaded.sources == index.sources
    assert (loaded.threshold, loaded.normalize, loaded.fingerprint) == (0.5, False, index.fingerprint)
    assert loaded.reject_threshold == math.inf  # none: stored as null
    assert [p.name for p in path.parent.iterdir()] == ["gallery.index"]  # no temporary left
    rejecting = dataclasses.replace(index, reject_threshold=0.25)
    save_index(rejecting, tmp_path / "rejecting.index")
    assert load_index(tmp_path / "rejecting.index").reject_threshold == 0.25


def test_vote_matches_the_projects_knn_and_reports_exact_neighbours(
    index: GalleryIndex, model, mnist
) -> None:
    _, y, test_x, _ = mnist
    queries = embed_digits(model, test_x, MEAN, STD)
    matches = identify(index, queries, k=5, threshold=float("inf"))
    expected = knn_predict(queries, index.embeddings, y, 5, model.distance)
    assert [m.label for m in matches] == [str(int(v)) for v in expected]
    for m, q in zip(matches[:20], queries[:20], strict=True):
        d = [n[1] for n in m.neighbours]
        assert len(d) == 5 and d == sorted(d)
        true = torch.cdist(q[None], index.embeddings)[0].sort().values[:5]
        assert torch.allclose(torch.tensor(d), true, atol=1e-4)
        assert m.distance == min(dist for label, dist, _ in m.neighbours if label == m.label)
    # a gallery digit as query: its own item first, at distance 0
    own = identify(index, index.embeddings[[17]], k=3)[0]
    # 0 up to the pairwise distance's 1e-6 guard on each coordinate (the distance the objectives use)
    assert own.neighbours[0][2] == "mnist:train:17" and own.neighbours[0][1] < 1e-5
    assert own.label == own.neighbours[0][0] or own.neighbours[1][0] == own.neighbours[2][0]


def test_unknown_past_the_threshold_and_never_without_one(index: GalleryIndex, model, mnist) -> None:
    queries = embed_digits(model, mnist[2][:40], MEAN, STD)
    nearest = [m.neighbours[0][1] for m in identify(index, queries, k=1, threshold=float("inf"))]
    cut = sorted(nearest)[20]
    matches = identify(index, queries, k=5, threshold=cut)
    assert [m.label == "unknown" for m in matches] == [d > cut for d in nearest]
    assert all(m.distance == d for m, d in zip(matches, nearest, strict=True) if m.label == "unknown")
    no_threshold = dataclasses.replace(index, threshold=float("nan"))
    assert all(m.label != "unknown" for m in identify(no_threshold, queries * 100, k=5))


def test_fingerprint_is_of_the_weights(model) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert checkpoint_fingerprint(state) == checkpoint_fingerprint(model.state_dict())
    assert checkpoint_fingerprint({**state, "epoch_note": "not a tensor"}) == checkpoint_fingerprint(state)
    name = next(iter(state))
    nudged = state[name].clone()
    nudged.view(-1)[0] = torch.nextafter(nudged.view(-1)[0], torch.tensor(1e9))
    assert checkpoint_fingerprint({**state, name: nudged}) != checkpoint_fingerprint(state)


def test_index_of_another_checkpoint_is_refused(index: GalleryIndex, tmp_path: Path) -> None:
    save_index(index, tmp_path / "g.index")
    with pytest.raises(GalleryIndexError, match=r"was built with another checkpoint") as err:
        load_index(tmp_path / "g.index", fingerprint="0" * 64)
    assert "\n" not in str(err.value)


def _with_meta(tmp_path: Path, index: GalleryIndex, name: str, **changes) -> Path:
    meta = {
        "labels": index.labels,
        "sources": index.sources,
        "threshold": 0.5,
        "distance": "euclidean",
        "fingerprint": index.fingerprint,
        "mean": MEAN,
        "std": STD,
        "ckpt_path": "",
    }
    meta.update(changes.pop("meta", {}))
    tensors = changes.pop("tensors", {"embeddings": index.embeddings})
    text = changes.pop("text", json.dumps(meta))
    path = tmp_path / name
    save_file(tensors, path, metadata={"format": changes.pop("format", FORMAT), "index": text})
    return path


def test_broken_and_hostile_files_give_one_line(index: GalleryIndex, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = {
        "missing": (tmp_path / "nowhere.index", "does not exist"),
        "empty": (tmp_path / "empty.index", "not a siamese_lit index"),
        "pickle": (tmp_path / "pickle.index", "not a siamese_lit index"),
        "huge header": (tmp_path / "huge.index", "not a siamese_lit index"),
        "other format": (_with_meta(tmp_path, index, "f.index", format="x"), "not a siamese_lit index"),
        "label count": (_with_meta(tmp_path, index, "n.index", meta={"labels": index.labels[1:]}), "labels"),
        "fp16": (
            _with_meta(tmp_path, index, "h.index", tensors={"embeddings": index.embeddings.half()}),
            "F16",
        ),
        "label types": (
            _with_meta(tmp_path, index, "t.index", meta={"labels": [1] * len(index.labels)}),
            "labels",
        ),
        "NaN in JSON": (
            _with_meta(tmp_path, index, "nan.index", text='{"threshold": NaN}'),
            "not a readable",
        ),
        "std 0": (_with_meta(tmp_path, index, "s.index", meta={"std": 0}), "'std' must be > 0"),
        "NaN rows": (
            _with_meta(tmp_path, index, "r.index", tensors={"embeddings": index.embeddings * torch.nan}),
            "NaN or infinite",
        ),
        "distance": (
            _with_meta(tmp_path, index, "d.index", meta={"distance": "manhattan"}),
            "unknown distance",
        ),
    }
    bad["empty"][0].write_bytes(b"")
    bad["pickle"][0].write_bytes(pickle.dumps(Payload()))
    bad["huge header"][0].write_bytes(struct.pack("<Q", 2**62) + b"{}")
    save_index(index, tmp_path / "good.index")
    truncated = (tmp_path / "good.index").read_bytes()
    (tmp_path / "cut.index").write_bytes(truncated[: len(truncated) - 100])
    bad["truncated"] = (tmp_path / "cut.index", "not a readable siamese_lit index")
    for case, (path, expect) in bad.items():
        with pytest.raises(GalleryIndexError) as err:
            load_index(path)
        assert expect in str(err.value) and "\n" not in str(err.value), (case, str(err.value))
    assert not marker.exists()


def test_a_failed_save_leaves_the_old_file(index: GalleryIndex, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "g.index"
    save_index(index, path)
    before = path.read_bytes()

    def crash(*args) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        save_index(index, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.index"]


def test_a_gallery_too_large_for_one_file_is_refused_before_writing(
    index: GalleryIndex, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("siamese_lit.inference.index_file.MAX_HEADER_BYTES", 100_000)
    with pytest.raises(GalleryIndexError, match=r"3000 items take \d+ MB, more than an index file holds"):
        save_index(index, tmp_path / "big.index")
    assert list(tmp_path.iterdir()) == []


def test_article_protocol_draws_distinct_references_of_each_label(index: GalleryIndex) -> None:
    refs = draw_references(index, queries=5, k=4, g=torch.Generator().manual_seed(0))
    assert refs.shape == (5, 10, 4)
    for c, label in enumerate(index.classes):
        assert all(index.labels[i] == label for i in refs[:, c].flatten().tolist())
        assert all(len(set(row.tolist())) == 4 for row in refs[:, c])
    rarest = min(index.labels.count(c) for c in index.classes)
    with pytest.raises(ConfigError, match=rf"k={rarest + 1} references per label: must be in 1\.\.{rarest} "):
        draw_references(index, queries=1, k=rarest + 1, g=torch.Generator())
