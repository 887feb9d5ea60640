"""SiameseModel (siamese_lit.inference.model): the commands that use a trained model start without
Lightning, and the object built with plain torch answers as the LitSiamese of the same checkpoint."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import load_mnist
from siamese_lit.data.normalization import Normalization
from siamese_lit.inference import (
    SiameseModel,
    checkpoint_fingerprint,
    choose_threshold,
    embed_digits,
    identify,
)
from siamese_lit.inference.model import CLASSIFIER_ARGUMENTS, FALLBACK_THRESHOLD, SIAMESE_ARGUMENTS
from siamese_lit.utils.errors import CheckpointError, ConfigError
from tests.helpers.runs import CENTRED, TINY_SIAMESE, compose_cfg

LIGHTNING_FREE = ["siamese_lit.compare", "siamese_lit.index", "siamese_lit.search", "siamese_lit.export"]
LIGHTNING_FREE += ["siamese_lit.demo.engine"]


@pytest.mark.parametrize("module", LIGHTNING_FREE)
def test_the_commands_that_use_a_trained_model_import_no_lightning(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "print([m for m in ('lightning', 'pytorch_lightning') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()}"


@pytest.mark.parametrize(
    ("cls", "arguments"), [("LitSiamese", SIAMESE_ARGUMENTS), ("LitClassifier", CLASSIFIER_ARGUMENTS)]
)
def test_the_checkpoint_kinds_are_the_lightning_modules_arguments(cls: str, arguments: tuple) -> None:
    import siamese_lit.models as models

    params = inspect.signature(getattr(models, cls).__init__).parameters
    required = {n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty}
    assert (required, set(params) - {"self"} - required) == arguments


def test_one_threshold_policy_given_then_calibrated_then_the_fallback() -> None:
    assert choose_threshold(0.5, 0.7).value == 0.5 and choose_threshold(0.5, 0.7).source == "threshold="
    assert choose_threshold(None, 0.7).value == 0.7 and "calibrated" in choose_threshold(None, 0.7).source
    fallback = choose_threshold(None, math.nan)
    assert fallback.value == FALLBACK_THRESHOLD and "no calibrated threshold" in str(fallback)


def test_the_normalisation_is_the_data_modules(data_dir: Path) -> None:
    from siamese_lit.data import MNISTDataModule

    images = load_mnist(data_dir, train=False)[0][:8]
    dm = MNISTDataModule(str(data_dir), mean=0.2, std=0.4)
    assert torch.equal(dm.normalize(images), Normalization(0.2, 0.4)(images))
    assert torch.equal(Normalization(0.2, 0.4)(images.float() / 255), dm.normalize(images))


@pytest.fixture(scope="module")
def checkpoint(tiny_siamese_run: Path) -> Path:
    return tiny_siamese_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist(data_dir, train=False)
    return x[:300], y[:300]


def test_embed_compare_identify_agree_with_the_lightning_model(
    checkpoint: Path, digits, data_dir: Path
) -> None:
    from siamese_lit.models.loading import load_model

    lit, saved = load_model(checkpoint, "Siamese")
    model = SiameseModel.from_checkpoint(checkpoint)
    x, _ = digits
    normalization = Normalization(saved["mean"], saved["std"])
    assert model.normalization == normalization
    expected = lit.embed(normalization(x))
    assert torch.allclose(model.embed(x, batch_size=64), expected, atol=1e-6)
    assert model.fingerprint == checkpoint_fingerprint(lit.state_dict())
    assert model.threshold.value == pytest.approx(float(lit.threshold))
    assert "calibrated" in model.threshold.source

    result = model.compare(x[0], x[1])
    distance = float(lit.distance.pairwise(expected[:1], expected[1:2]))
    assert result.distance == pytest.approx(distance, abs=1e-5)
    assert result.same == (result.distance <= float(lit.threshold))

    gallery_x, gallery_y = load_mnist(data_dir, train=True)
    index = model.build_index(gallery_x[:500], [str(int(v)) for v in gallery_y[:500]], ["s"] * 500)
    matches = model.identify(x[:50], index, k=3)
    lit_matches = identify(index, embed_digits(lit, x[:50], saved["mean"], saved["std"]), k=3)
    assert [m.label for m in matches] == [m.label for m in lit_matches]
    assert [m.distance for m in matches] == pytest.approx([m.distance for m in lit_matches], abs=1e-5)
    article = model.identify(x[:20], index, k=4, protocol="article", seed=1)
    assert article == model.identify(x[:20], index, k=4, protocol="article", seed=1)  # seeded
    assert all(len(m.neighbours) == 4 for m in article)


def _edited(checkpoint: Path, tmp_path: Path, drop: tuple[str, ...] = (), **state: torch.Tensor) -> Path:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    path = tmp_path / "edited.ckpt"
    kept = {k: v for k, v in saved["state_dict"].items() if k not in drop}
    torch.save({**saved, "state_dict": {**kept, **state}}, path)
    return path


#: What a checkpoint saved before rejection existed lacks.
REJECTION = ("rejection.references", "rejection.threshold")


def test_without_a_calibrated_threshold_search_and_compare_use_the_fallback(
    checkpoint: Path, digits, data_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint saved before rejection existed, never validated: `unknown` is the article's."""
    old = _edited(checkpoint, tmp_path, REJECTION, threshold=torch.tensor(math.nan))
    model = SiameseModel.from_checkpoint(old)
    assert model.threshold.value == FALLBACK_THRESHOLD and math.isnan(model.calibrated_threshold)
    assert model.rejection.value == math.inf and "nothing is unknown" in model.rejection.source
    saved = torch.load(old, map_location="cpu", weights_only=True)["state_dict"]
    assert model.fingerprint == checkpoint_fingerprint(
        {k: v for k, v in saved.items() if "objective" not in k}
    )
    x, y = digits
    index = model.build_index(x[:100], [str(int(v)) for v in y[:100]], ["s"] * 100)
    far = model.embed(x[100:110]) * 1000  # beyond any threshold of 1.0 from every gallery item
    assert all(m.label == "unknown" for m in model.identify(far, index))
    assert model.identify(x[:5], index)[0].label != "unknown"  # in the gallery: distance 0
    assert not model.compare(far[0], far[1] * 0).same
    assert math.isnan(model.identify(x[:1], index)[0].score)  # nothing to score against
    with pytest.raises(ConfigError, match="reject_threshold is set but .* holds no rejection references"):
        SiameseModel.from_checkpoint(old, reject_threshold=0.5)


def test_the_rejection_calibrated_in_training_says_unknown_everywhere(
    checkpoint: Path, digits, data_dir: Path
) -> None:
    """The checkpoint's references and threshold (chosen on its validation digits) decide `unknown`
    for identify (both protocols) and compare; the pair threshold no longer does."""
    from siamese_lit.evaluation.openset import ACCEPTED, MAX_REFERENCES, REJECT_K
    from siamese_lit.models.loading import load_model

    lit, _ = load_model(checkpoint, "Siamese")
    model = SiameseModel.from_checkpoint(checkpoint)
    references, threshold = lit.rejection.references, float(lit.rejection.threshold)
    assert len(references) > REJECT_K and math.isfinite(threshold)
    assert model.rejection.value == pytest.approx(threshold) and f"{ACCEPTED:.1%}" in model.rejection.source
    x, y = digits
    emb = model.embed(x)
    brute = torch.cdist(emb, references).topk(REJECT_K, largest=False).values.mean(1)
    scores = model.reject_scores(emb)
    assert torch.allclose(scores, brute, atol=1e-4)
    assert float((scores <= threshold).float().mean()) > 0.9  # test digits: mostly accepted
    index = model.build_index(x[:100], [str(int(v)) for v in y[:100]], ["s"] * 100)
    assert index.reject_threshold == pytest.approx(threshold)
    queries = torch.cat([emb[:20], emb[:5] * 50])  # then five far from every training digit
    for protocol in ("knn", "article"):
        matches = model.identify(queries, index, k=2, protocol=protocol, seed=0)
        unknown = [m.label == "unknown" for m in matches]
        assert unknown == (scores[:20] > threshold).tolist() + [True] * 5
        assert [m.score for m in matches[:20]] == pytest.approx(scores[:20].tolist(), abs=1e-4)
    assert model.compare(emb[0], emb[0] * 50).unknown == (bool(scores[0] > threshold), True)
    everything = SiameseModel.from_checkpoint(checkpoint, reject_threshold=0.0)
    assert all(m.label == "unknown" for m in everything.identify(emb[:10], index))
    too_many = {"rejection.references": torch.zeros(MAX_REFERENCES + 1, 1)}  # sized before loading
    with pytest.raises(CheckpointError, match="reference embeddings, more than"):
        lit.rejection.fit_state(too_many, "rejection.", "ckpt_path=edited.ckpt")


@pytest.fixture(scope="module")
def centred_checkpoint(tiny_centred_run: Path) -> Path:
    return tiny_centred_run / "checkpoints" / "last.ckpt"


def test_a_centred_model_measures_its_embeddings_less_its_training_digits_mean(
    centred_checkpoint: Path, digits, tmp_path: Path
) -> None:
    """The centre is the mean of the encoder's own embeddings of the validation gallery (training
    digits), fitted at the validation that saved the checkpoint; eval mode and every command measure
    the embeddings less it, training does not."""
    from hydra.utils import instantiate

    from siamese_lit.models.loading import load_model

    lit, saved = load_model(centred_checkpoint, "Siamese")
    datamodule = instantiate(compose_cfg(["+experiment=siamese", *TINY_SIAMESE, *CENTRED], tmp_path).data)
    datamodule.setup("fit")
    gallery = datamodule.splits["val_gallery"][0]
    normalization = Normalization(saved["mean"], saved["std"])
    with torch.no_grad():
        gallery_mean = lit.net(normalization(gallery)).float().mean(0)
        centre = lit.centering.mean
        # bf16-mixed validation (AMX) against this float32 pass: equal to bf16's precision
        assert torch.allclose(centre, gallery_mean, atol=0.02 * float(gallery_mean.norm()))
        assert float(centre.norm()) > 0.1 * float(lit.net(normalization(digits[0])).norm(dim=1).mean())
        x = normalization(digits[0])
        raw = lit.net(x).float()
        centred = torch.nn.functional.normalize(raw - centre, dim=1)
        model = SiameseModel.from_checkpoint(centred_checkpoint)
        assert torch.allclose(model.embed(digits[0]), centred, atol=1e-5)
        assert torch.allclose(lit(x), centred, atol=1e-5)
        assert (centred - torch.nn.functional.normalize(raw, dim=1)).abs().max() > 0.05  # it moves them
        assert torch.allclose(lit.train()(x), torch.nn.functional.normalize(raw, dim=1), atol=1e-5)
    # the rejection references were measured centred: the test digits are mostly accepted
    assert float((model.reject_scores(model.embed(digits[0])) <= model.rejection.value).float().mean()) > 0.9


@pytest.mark.parametrize(
    ("hyper", "drop", "message"),
    [
        ({"center_embeddings": "yes"}, (), r"model.center_embeddings is 'yes', not true or false"),
        ({}, ("centering.mean",), r"do not fit the model .*\(missing centering.mean\)"),
        ({"center_embeddings": False}, (), r"do not fit the model .*\(unexpected centering.mean\)"),
    ],
    ids=["not-a-bool", "no-centre", "a-centre-not-asked-for"],
)
def test_an_edited_centring_is_refused(
    centred_checkpoint: Path, tmp_path: Path, hyper: dict, drop: tuple[str, ...], message: str
) -> None:
    saved = torch.load(centred_checkpoint, map_location="cpu", weights_only=True)
    state = {k: v for k, v in saved["state_dict"].items() if k not in drop}
    path = tmp_path / "edited.ckpt"
    torch.save(
        {**saved, "state_dict": state, "hyper_parameters": {**saved["hyper_parameters"], **hyper}}, path
    )
    with pytest.raises(CheckpointError, match=message):
        SiameseModel.from_checkpoint(path)
