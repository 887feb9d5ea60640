"""The in-memory MNIST data module and the pair sampler, on the real MNIST files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from siamese_lit.data import DISSIMILAR, SIMILAR, MNISTDataModule, PairDataModule, PairSampler
from siamese_lit.data.mnist import DATA_DIR_VARIABLE, MNIST_FILES
from siamese_lit.utils.errors import ConfigError, DataError
from tests.helpers.devices import DEVICES


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> MNISTDataModule:
    dm = MNISTDataModule(str(data_dir), download=False, batch_size=64, seed=1)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def pairs(data_dir: Path) -> PairDataModule:
    dm = PairDataModule(
        str(data_dir), download=False, batch_size=100, seed=1, eval_pairs=4000, gallery_size=500
    )
    dm.setup("fit")
    return dm


def test_split_sizes_dtypes_and_disjointness(mnist: MNISTDataModule) -> None:
    (xt, yt), (xv, yv), (xs, ys) = (mnist.splits[k] for k in ("train", "val", "test"))
    assert (len(yt), len(yv), len(ys)) == (55_000, 5_000, 10_000)
    assert xt.dtype == torch.uint8 and xt.shape[1:] == (28, 28) and yt.dtype == torch.int64
    # train and val are disjoint parts of the 60k training images: no image tensor appears in both
    train_rows = {bytes(r) for r in xt.flatten(1).numpy()}
    shared = sum(bytes(r) in train_rows for r in xv.flatten(1).numpy())
    assert shared <= 5  # MNIST holds a handful of exact duplicate images
    assert set(ys.unique().tolist()) == set(range(10))


def test_split_is_seeded(data_dir: Path, mnist: MNISTDataModule) -> None:
    same = MNISTDataModule(str(data_dir), download=False, split_seed=0)
    other = MNISTDataModule(str(data_dir), download=False, split_seed=1)
    for dm in (same, other):
        dm.setup()
    assert torch.equal(same.splits["val"][1], mnist.splits["val"][1])
    assert not torch.equal(other.splits["val"][1], mnist.splits["val"][1])


def test_batches_are_normalised_on_transfer(mnist: MNISTDataModule) -> None:
    x, y = next(iter(mnist.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (64, 28, 28) and y.shape == (64,)
    xn, yn = mnist.on_after_batch_transfer((x, y), 0)
    assert xn.dtype == torch.float32 and torch.equal(yn, y)
    expected = (x.float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(xn, expected)
    assert xn.min() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_training_order_depends_on_seed_and_epoch(data_dir: Path, mnist: MNISTDataModule) -> None:
    first = next(iter(mnist.train_dataloader()))[1]
    again = MNISTDataModule(str(data_dir), download=False, batch_size=64, seed=1)
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader()))[1], first)
    loader = mnist.train_dataloader()
    loader.context = lambda: (1, 0, 1)  # epoch 1
    assert not torch.equal(next(iter(loader))[1], first)


def test_eval_loader_covers_the_split_once_in_order(mnist: MNISTDataModule) -> None:
    loader = mnist.test_dataloader()
    indices = torch.cat([batch[2] for batch in loader])
    assert torch.equal(indices, torch.arange(10_000))
    assert len(loader) == 10


def test_ranks_take_disjoint_shares(mnist: MNISTDataModule) -> None:
    loader = mnist.train_dataloader()
    seen = []
    for rank in range(2):
        loader.context = lambda rank=rank: (0, rank, 2)
        seen.append(torch.cat([y for _, y in loader]))
        assert len(loader) == -(-27_500 // 64)
    # both ranks together see the epoch's permutation once: same label counts as the split
    assert torch.equal(torch.bincount(torch.cat(seen)), torch.bincount(mnist.splits["train"][1]))


def test_missing_data_message_names_files_folder_and_variable(tmp_path: Path) -> None:
    dm = MNISTDataModule(str(tmp_path), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert all(name in msg for name in MNIST_FILES)
    assert str(tmp_path / "MNIST" / "raw") in msg and DATA_DIR_VARIABLE in msg
    assert "\n" not in msg


def test_augmentation_changes_training_batches_only(data_dir: Path) -> None:
    dm = MNISTDataModule(
        str(data_dir), download=False, augment={"_target_": "siamese_lit.data.augment.affine"}
    )
    dm.setup()
    x = dm.splits["train"][0][:8]
    plain = dm.normalize(x)

    class _T:  # stands in for the Trainer's training flag
        training = True

    dm.trainer = _T()  # type: ignore[assignment]
    torch.manual_seed(0)  # the affine parameters come from the global generator (seed_everything)
    augmented = dm.on_after_batch_transfer((x,), 0)[0]
    dm.trainer = None
    assert augmented.shape == plain.shape and not torch.allclose(augmented, plain)
    # the background stays background, and each digit stays close to where it was
    assert augmented.min() == pytest.approx(float(plain.min()), abs=1e-4)
    similarity = torch.nn.functional.cosine_similarity(
        (augmented - plain.min()).flatten(1), (plain - plain.min()).flatten(1)
    )
    assert similarity.mean() > 0.5 and similarity.min() > 0.1


ROBUST = {"_target_": "siamese_lit.data.augment.robust"}


def _views_batch(data_dir: Path, batch_size: int, **kwargs: Any) -> tuple[PairDataModule, Tensor, tuple]:
    """A data module of two-view batches, its first training batch (uint8 images, labels) and that batch as
    training gets it: (first views, second views, labels), seeded."""
    dm = PairDataModule(
        str(data_dir), download=False, batches="views", augment=ROBUST, batch_size=batch_size, **kwargs
    )
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))

    class _T:  # stands in for the Trainer's training flag
        training = True

    dm.trainer = _T()  # type: ignore[assignment]
    torch.manual_seed(0)
    views = dm.on_after_batch_transfer((x, y), 0)
    dm.trainer = None
    return dm, x, (y, *views)


def test_view_batches_are_two_different_views_of_the_same_images(data_dir: Path) -> None:
    dm, x, (y, first, second, labels) = _views_batch(data_dir, 16)
    assert x.dtype == torch.uint8 and x.shape == (16, 28, 28)
    assert torch.equal(labels, y) and first.shape == second.shape == (16, 28, 28)
    assert not torch.allclose(first, second)  # two independent draws
    # a view stays, on average, closer to its own image than to the other images of the batch
    d = torch.cdist(first.flatten(1), dm.normalize(x).flatten(1))
    assert d.diagonal().mean() < d[~torch.eye(16, dtype=torch.bool)].mean()


def test_new_classes_relabel_both_views_alike(data_dir: Path) -> None:
    dm, x, (y, first, second, labels) = _views_batch(data_dir, 256, new_classes=["rot90"])
    turned = labels >= 10
    assert torch.equal(labels % 10, y) and 0.3 < turned.float().mean() < 0.7
    for view in (first, second):  # both views of a turned digit are turned, of the others not
        d_turned = (view - dm.normalize(x.rot90(1, (-2, -1)))).flatten(1).norm(dim=1)
        d_plain = (view - dm.normalize(x)).flatten(1).norm(dim=1)
        assert ((d_turned < d_plain) == turned).float().mean() > 0.8  # 0.5 if the views ignored it


def test_unknown_symmetry_for_new_classes_is_a_config_error(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.new_classes: unknown \['flip'\]; valid: hflip"):
        PairDataModule(str(data_dir), download=False, batches="views", augment=ROBUST, new_classes=["flip"])
    with pytest.raises(ConfigError, match="data.new_classes makes new classes of two-view batches"):
        PairDataModule(str(data_dir), download=False, batches="pairs", new_classes=["rot90"])


def test_view_batches_need_an_augmentation(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="two-view batches \\(a views objective\\) need an augmentation"):
        PairDataModule(str(data_dir), download=False, batches="views")


# ---- pairs ---------------------------------------------------------------------------------------


def test_pairs_are_balanced_and_correctly_labelled(pairs: PairDataModule) -> None:
    labels = pairs.splits["train"][1]
    a, b, y = pairs.sampler.pairs(20_000, 0.5, torch.Generator().manual_seed(0))
    assert (y == SIMILAR).sum() == 10_000 and (y == DISSIMILAR).sum() == 10_000
    assert torch.equal(labels[a] == labels[b], y == SIMILAR)
    assert not (a == b).any()  # a similar pair is two different images
    # every digit shows up as the anchor and the partner of dissimilar pairs
    assert torch.bincount(labels[b[y == DISSIMILAR]], minlength=10).min() > 500


def test_similar_fraction_is_configurable(pairs: PairDataModule) -> None:
    _, _, y = pairs.sampler.pairs(10_000, 0.2, torch.Generator().manual_seed(0))
    assert (y == SIMILAR).float().mean() == pytest.approx(0.2)


def test_fresh_pairs_each_epoch_and_fixed_eval_pairs(data_dir: Path, pairs: PairDataModule) -> None:
    loader = pairs.train_dataloader()
    first = next(iter(loader))
    again = next(iter(loader))
    assert torch.equal(first[0], again[0])  # same epoch, same pairs
    loader.context = lambda: (1, 0, 1)
    assert not torch.equal(next(iter(loader))[0], first[0])
    other = PairDataModule(str(data_dir), download=False, seed=7, eval_pairs=4000, gallery_size=500)
    other.setup()
    for split in ("val", "test"):  # a different run seed is scored on the same pairs
        assert all(
            torch.equal(u, v)
            for u, v in zip(other.eval_set(split).pairs, pairs.eval_set(split).pairs, strict=True)
        )


def test_pair_batches_and_test_pairs_from_test_images(pairs: PairDataModule) -> None:
    x1, x2, y = next(iter(pairs.train_dataloader()))
    assert x1.shape == x2.shape == (100, 28, 28) and y.shape == (100,)
    a, b, y = pairs.eval_set("test").pairs
    assert int(torch.maximum(a, b).max()) < len(pairs.splits["test"][1]) == 10_000
    labels = pairs.splits["test"][1]
    assert torch.equal(labels[a] == labels[b], y == SIMILAR)
    # training pairs index the training split only: no test image can be in them
    ta, tb, _ = pairs.sampler.pairs(5000, 0.5, torch.Generator().manual_seed(3))
    assert int(torch.maximum(ta, tb).max()) < len(pairs.splits["train"][1])


def test_ranks_share_an_epoch_of_pairs_without_duplicates(pairs: PairDataModule) -> None:
    pairs.pairs_per_epoch = 1000  # 5 batches of 100 per rank: nothing dropped
    loader = pairs.train_dataloader()
    pairs.pairs_per_epoch = None
    a, b, _ = loader.rows(0)
    images = pairs.splits["train"][0]
    expected = sorted(bytes(r) for r in torch.cat([images[a], images[b]], 2).flatten(1).numpy())
    seen = []
    for rank in range(2):
        loader.context = lambda rank=rank: (0, rank, 2)
        assert len(loader) == 5
        seen += [bytes(r) for x1, x2, _ in loader for r in torch.cat([x1, x2], 2).flatten(1).numpy()]
    assert sorted(seen) == expected  # each pair of the epoch exactly once over the two ranks


@pytest.mark.parametrize("device", DEVICES)
def test_classes_filter(data_dir: Path, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the data lives on the training device: the galleries of test_classes are picked there too
    monkeypatch.setattr(PairDataModule, "device", property(lambda self: torch.device(device)))
    dm = PairDataModule(
        str(data_dir), download=False, classes=[0, 1, 2, 3, 4], test_classes=[5, 6, 7, 8, 9], eval_pairs=2000
    )
    dm.setup()
    assert dm.splits["test_gallery"][1].device.type == device
    assert set(dm.splits["train"][1].unique().tolist()) == {0, 1, 2, 3, 4}
    assert set(dm.splits["val"][1].unique().tolist()) == {0, 1, 2, 3, 4}
    assert set(dm.splits["test"][1].unique().tolist()) == {5, 6, 7, 8, 9}
    assert set(dm.splits["test_gallery"][1].unique().tolist()) == {5, 6, 7, 8, 9}
    a, b, _ = dm.sampler.pairs(5000, 0.5, torch.Generator().manual_seed(0))
    assert set(dm.splits["train"][1][torch.cat([a, b])].unique().tolist()) == {0, 1, 2, 3, 4}


def test_triplets_are_valid(pairs: PairDataModule) -> None:
    labels = pairs.splits["train"][1]
    a, p, n = pairs.sampler.triplets(10_000, torch.Generator().manual_seed(0))
    assert torch.equal(labels[a], labels[p]) and not (a == p).any()
    assert (labels[a] != labels[n]).all()


def test_triplet_batches_carry_the_anchor_label_and_fixed_loss_rows(data_dir: Path) -> None:
    dm = PairDataModule(str(data_dir), download=False, batches="triplets", batch_size=50, eval_pairs=500)
    dm.setup()
    anchor, positive, negative, label = next(iter(dm.train_dataloader()))
    assert anchor.shape == positive.shape == negative.shape == (50, 28, 28) and label.shape == (50,)
    a, p, n, y = dm.eval_set("val").loss_rows
    labels = dm.splits["val"][1]
    assert torch.equal(labels[a], y) and torch.equal(labels[p], y) and (labels[n] != y).all()
    assert dm.eval_set("val").pairs[0].shape == (500,)  # the verification pairs, whatever the batches


def test_sampling_an_epoch_is_faster_than_a_third_of_it_drawn_pair_by_pair(pairs: PairDataModule) -> None:
    """An epoch of 60,000 pairs is drawn vectorised: in less time than a loop drawing 20,000 pairs one
    at a time takes on the same machine (each timing the best of three)."""
    sampler = PairSampler(pairs.splits["train"][1])
    generator = torch.Generator().manual_seed(0)

    def best_of_three(draw) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            draw()
            times.append(time.perf_counter() - start)
        return min(times)

    def pair_by_pair() -> None:
        for _ in range(20_000):
            torch.randint(0, 60_000, (2,), generator=generator)

    epoch = best_of_three(lambda: sampler.pairs(60_000, 0.5, generator))
    assert epoch < best_of_three(pair_by_pair), epoch


def test_an_open_set_tests_all_digits_against_a_gallery_of_the_known_ones(data_dir: Path) -> None:
    known = [2, 4, 5, 9, 8, 3]
    dm = PairDataModule(
        str(data_dir),
        download=False,
        classes=known,
        test_classes=list(range(10)),
        open_set=True,
        gallery_size=500,
    )
    dm.setup("fit")
    assert set(dm.splits["train"][1].unique().tolist()) == set(known)
    assert set(dm.splits["val_gallery"][1].unique().tolist()) == set(known)
    assert set(dm.splits["test_gallery"][1].unique().tolist()) == set(known)
    assert set(dm.splits["test"][1].unique().tolist()) == set(range(10))


def test_reference_size_sizes_the_validation_gallery_only(data_dir: Path) -> None:
    """data.reference_size: the validation's gallery (the rejection's references) takes that many
    training digits, all of them when it is more, none of them a validation image; the test gallery
    keeps gallery_size; below 1 is a config error."""
    dm = PairDataModule(
        str(data_dir), download=False, eval_pairs=1000, gallery_size=500, reference_size=70_000
    )
    dm.setup("fit")
    (gx, gy), (tx, _), (ax, ay) = dm.splits["val_gallery"], dm.splits["test_gallery"], dm.splits["train_all"]
    assert len(gy) == len(ay) == 55_000 and torch.equal(gx, ax)
    assert len(tx) == 500
    val = {bytes(img.flatten().tolist()) for img in dm.splits["val"][0][:200]}
    assert not val & {bytes(img.flatten().tolist()) for img in gx}
    fewer = PairDataModule(
        str(data_dir), download=False, eval_pairs=1000, gallery_size=500, reference_size=800
    )
    fewer.setup("fit")
    assert len(fewer.splits["val_gallery"][1]) == 800 and len(fewer.splits["test_gallery"][1]) == 500
    with pytest.raises(ConfigError, match="data.reference_size"):
        PairDataModule(str(data_dir), download=False, reference_size=0)


def test_glyph_classes_join_the_training_batches_only(data_dir: Path, tmp_path: Path) -> None:
    """data.glyph_classes: the DejaVu glyphs, stroke and polyline glyphs become classes 10.. of the two-view
    training batches (a run cut by train_size takes them in the same proportion); the validation
    images, the galleries and the test set stay digits; other batch kinds refuse it."""
    from siamese_lit.data.nondigits import TRAINING_CHARACTERS, GlyphClasses, font_files, training_fonts
    from tests.helpers.runs import require

    if not training_fonts(font_files()):
        require("fonts", "no DejaVu font files under /usr/share/fonts (make fonts installs them)")
    augment = {"_target_": "siamese_lit.data.augment.robust"}
    common = {"download": False, "gallery_size": 500, "augment": augment, "cache_dir": str(tmp_path)}
    dm = PairDataModule(
        str(data_dir), batches="views", glyph_classes=True, stroke_classes=5, polyline_classes=3, **common
    )
    dm.setup("fit")
    x, y = dm.splits["train"]
    glyphs = y >= 10
    assert int((~glyphs).sum()) == 55_000 and int(glyphs.sum()) > len(TRAINING_CHARACTERS)
    drawn = y >= 10 + len(TRAINING_CHARACTERS)  # then the stroke and the polyline glyphs, 4 of each
    assert torch.bincount(y[drawn] - 10 - len(TRAINING_CHARACTERS)).tolist() == [4] * (5 + 3)
    assert x.dtype == torch.uint8 and len(x) == len(y)
    for split in ("val", "val_gallery", "test", "test_gallery"):
        assert int(dm.splits[split][1].max()) <= 9, split
    # the rejection's outliers: a gallery of the training non-digits, a third validation loader
    outliers, outlier_labels = dm.splits["val_outliers"]
    assert (
        len(outlier_labels) == 500 and int(outlier_labels.min()) >= 10 and len(outlier_labels.unique()) > 100
    )
    assert len(dm.val_dataloader()) == 3 and len(dm.test_dataloader()) == 2
    assert all(p.name.startswith("glyph_classes_") for p in tmp_path.iterdir())  # cached as tensors
    cut = PairDataModule(
        str(data_dir), batches="views", glyph_classes=True, stroke_classes=5, train_size=2000, **common
    )
    cut.setup("fit")
    total = len(GlyphClasses.load(tmp_path, 5).labels)
    assert int((cut.splits["train"][1] >= 10).sum()) == round(total * 2000 / 55_000)
    with pytest.raises(ConfigError, match="glyph_classes adds classes to two-view batches"):
        PairDataModule(str(data_dir), batches="pairs", glyph_classes=True, **common)
    # with data.new_classes, each symmetry of a glyph is a class of its own too, apart from every other
    dm, x, (y, first, _, labels) = _views_batch(
        data_dir, 2048, new_classes=["rot90"], glyph_classes=True, stroke_classes=5, cache_dir=str(tmp_path)
    )
    stride = int(dm.splits["train"][1].max()) + 1
    assert dm.label_stride == stride > 10 + len(TRAINING_CHARACTERS)
    turned = labels >= stride
    assert torch.equal(labels % stride, y) and set((labels // stride).tolist()) == {0, 1}
    assert bool((turned & (y >= 10)).any()) and bool((~turned & (y >= 10)).any())  # glyphs turned or not
    d_turned = (first - dm.normalize(x.rot90(1, (-2, -1)))).flatten(1).norm(dim=1)
    d_plain = (first - dm.normalize(x)).flatten(1).norm(dim=1)
    assert ((d_turned < d_plain) == turned)[y >= 10].float().mean() > 0.8  # the label says what was drawn
