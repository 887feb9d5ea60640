"""siamese_lit.evaluate and siamese_lit.compare on the tiny real runs of conftest.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.retrieval import RetrievalMAP, RetrievalPrecision

from siamese_lit.cli.paths import positional_paths
from siamese_lit.compare import compare
from siamese_lit.data.images import ImageError, load_digit
from siamese_lit.data.mnist import load_mnist
from siamese_lit.evaluate import evaluate
from siamese_lit.evaluation import protocol as P
from siamese_lit.models.loading import load_model
from siamese_lit.utils.errors import CheckpointError
from siamese_lit.utils.precision import forward_context
from tests.helpers.runs import compose_cfg, run_cli

TEST_SIZE = 1000
DATA = [
    f"data.test_size={TEST_SIZE}",
    "data.val_size=1000",
    "data.gallery_size=1000",
    "data.eval_pairs=1000",
]


def ckpt(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def evaluation(tiny_siamese_run: Path, tiny_classifier_run: Path, tmp_path_factory) -> tuple[Path, dict]:
    """One real evaluation (calibrated again on validation, with a classifier to correct)."""
    out = tmp_path_factory.mktemp("eval") / "run"
    overrides = [
        f"ckpt_path={ckpt(tiny_siamese_run)}",
        f"classifier_ckpt_path={ckpt(tiny_classifier_run)}",
        "calibration=val",
        "device=cpu",
        "retrieval.queries=[0,5,9999]",  # 9999 is past the 1000 test images: left out
        "retrieval.neighbours=6",
        f"paths.cache_dir={out.parent / 'cache'}",
        *DATA,
    ]
    return out, evaluate(compose_cfg(overrides, out, config_name="eval"))


def test_protocol_fractions_sum_to_one_and_move_with_the_threshold(evaluation) -> None:
    _, report = evaluation
    assert report["test_images"] == TEST_SIZE
    runs = sorted(report["protocol"]["thresholds"].values(), key=lambda r: r["threshold"])
    assert report["protocol"]["thresholds"]["calibrated"]["threshold"] == report["calibration"]["threshold"]
    for r in runs:
        assert all(0 <= r[k] <= 1 for k in ("correct", "unknown", "wrong"))
        assert r["correct"] + r["unknown"] + r["wrong"] == pytest.approx(1)
        answered = 1 - r["unknown"]
        assert r["correct"] == pytest.approx(r["answered_accuracy"] * answered)
    # a higher threshold answers a superset of images, with the same answers
    low, high = runs[0], runs[-1]
    assert high["unknown"] <= low["unknown"] and high["correct"] >= low["correct"]
    # the rejection threshold's answers: the closest digit, or unknown when the score is past it
    rejection = report["protocol"]["rejection"]
    assert rejection["threshold"] == pytest.approx(report["rejection"]["threshold"])
    assert rejection["unknown"] == pytest.approx(1 - report["rejection"]["digits_accepted"], abs=1e-6)
    assert report["calibration"]["source"] == "val" and 0.5 < report["calibration"]["auroc"] <= 1


def test_references_are_k_distinct_images_of_each_digit_never_the_query(data_dir: Path) -> None:
    _, labels = load_mnist(data_dir, train=False)
    labels = labels[:2000]
    refs = P.sample_references(labels, 7, torch.Generator().manual_seed(0))
    assert refs.shape == (2000, 10, 7)
    assert (labels[refs] == torch.arange(10)[None, :, None]).all()
    assert (refs != torch.arange(2000)[:, None, None]).all()
    ordered = refs.sort(-1).values
    assert (ordered[..., 1:] != ordered[..., :-1]).all()  # distinct within each (query, digit)
    with pytest.raises(ValueError, match="protocol.k"):
        P.sample_references(labels, int(torch.bincount(labels).min()), torch.Generator())


def test_gallery_accuracies_agree_with_their_confusion_matrices(evaluation, data_dir: Path) -> None:
    _, report = evaluation
    gallery = report["gallery"]
    assert gallery["size"] == 1000
    for method in ("prototype", "knn"):
        r = gallery[method]
        confusion = torch.tensor(r["confusion"])
        assert confusion.sum() == TEST_SIZE
        assert r["accuracy"] == pytest.approx(float(confusion.diagonal().sum()) / TEST_SIZE)
        per_digit = confusion.diagonal() / confusion.sum(1)
        assert list(r["per_digit"].values()) == pytest.approx(per_digit.tolist())
        assert 0.3 < r["accuracy"] <= 1  # far above chance even for the tiny model


def test_correction_counts_agree_with_the_accuracies(evaluation, tiny_classifier_run: Path) -> None:
    _, report = evaluation
    c = report["correction"]
    trained = json.loads((tiny_classifier_run / "metrics.json").read_text())
    # the same 1000 test images (split_seed) as the classifier's own test at the end of training
    assert c["classifier_accuracy"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert c["classifier_errors"] == round(TEST_SIZE * (1 - c["classifier_accuracy"]))
    assert c["fixed"] - c["broken"] == round(TEST_SIZE * (c["combined_accuracy"] - c["classifier_accuracy"]))
    assert c["fixed"] + c["broken"] <= c["overruled"] and c["fixed"] <= c["classifier_errors"]
    assert len(c["fixed_indices"]) == c["fixed"] and len(c["broken_indices"]) == c["broken"]
    assert not set(c["fixed_indices"]) & set(c["broken_indices"])
    # the threshold is the best on validation, where never overruling is one of the choices
    v = c["validation"]
    assert v["combined_accuracy"] >= v["classifier_accuracy"] and v["fixed"] >= v["broken"]
    assert c["article_cases"] == {}  # a 1000-image subset: MNIST's indices do not apply


def test_retrieval_figures_match_torchmetrics(evaluation, tiny_siamese_run: Path, tmp_path: Path) -> None:
    _, report = evaluation
    figures = report["retrieval"]["figures"]
    assert set(figures) == {"p_at_1", "p_at_10", "p_at_100", "map", "r_precision", "map_at_r"}
    # torchmetrics on the same embeddings, every test image querying the 999 others
    dm = instantiate(compose_cfg(DATA, tmp_path, config_name="eval").data)
    dm.setup()
    x, y = dm.splits["test"]
    # embedded as evaluate embeds them (bf16-mixed where the CPU has AMX): near-ties among the
    # 10 nearest must rank the same in both, or P@10 differs by a query or two
    with forward_context(torch.device(report["device"]), report["precision"]):
        emb = load_model(ckpt(tiny_siamese_run), "Siamese")[0].embed(dm.normalize(x))
    d = torch.cdist(emb, emb)
    q, doc = torch.nonzero(~torch.eye(len(y), dtype=torch.bool), as_tuple=True)
    preds, target = 1 / (1 + d[q, doc]), y[q] == y[doc]
    assert figures["map"] == pytest.approx(float(RetrievalMAP()(preds, target, indexes=q)), abs=1e-4)
    precision = RetrievalPrecision(top_k=10)(preds, target, indexes=q)
    assert figures["p_at_10"] == pytest.approx(float(precision), abs=1e-4)


def test_verification_section_scores_the_test_digits(evaluation) -> None:
    out, report = evaluation
    v = report["verification"]
    assert v["test_pairs"] == 1000 and 0.5 < v["auroc"] <= 1 and 0 <= v["eer"] < 0.5
    assert v["threshold"] == pytest.approx(report["calibration"]["threshold"])  # applied, not re-chosen
    assert 0.1 < v["oneshot_acc"] <= 1
    assert "Verification on 1000 fixed test pairs" in (out / "report.md").read_text()


def test_robustness_section_every_corruption_and_the_means(evaluation) -> None:
    from siamese_lit.evaluation.corruptions import CORRUPTIONS

    out, report = evaluation
    r = report["robustness"]
    assert list(r["corruptions"]) == ["clean", *CORRUPTIONS]
    assert r["corruptions"]["clean"]["knn_acc"] == pytest.approx(report["gallery"]["knn"]["accuracy"])
    for row in r["corruptions"].values():
        assert set(row) == {"knn_acc", "prototype_acc", "classifier_acc"}
    trained = [n for n in CORRUPTIONS if CORRUPTIONS[n].trained]
    held_out = [n for n in CORRUPTIONS if not CORRUPTIONS[n].trained]
    assert trained and held_out
    for group, names in (("all", list(CORRUPTIONS)), ("trained", trained), ("held_out", held_out)):
        mean = sum(r["corruptions"][n]["knn_acc"] for n in names) / len(names)
        assert r["means"][group]["knn_acc"] == pytest.approx(mean)
    worst = r["worst"]["knn_acc"]
    assert worst["value"] == min(r["corruptions"][n]["knn_acc"] for n in CORRUPTIONS)
    # the 8x8 digits lose most of what a 1-epoch tiny model reads
    assert r["corruptions"]["lowres_8"]["knn_acc"] < r["corruptions"]["clean"]["knn_acc"]
    assert "Robustness" in (out / "report.md").read_text()
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    (grid,) = acc.Images("robustness/corruptions")
    rows = -(-(1 + len(CORRUPTIONS)) // 6)  # 6 tiles a row, 28 px + 2 px padding
    assert (grid.height, grid.width) == (2 + 30 * rows, 2 + 30 * 6)


def test_rejection_section_the_checkpoints_threshold_on_test_digits_and_non_digits(
    evaluation, tiny_siamese_run: Path, data_dir: Path
) -> None:
    """The share of test digits the checkpoint's rejection threshold accepts, recomputed from the
    checkpoint; the non-digits of the fonts not trained on and the drawn shapes, all scored."""
    from siamese_lit.data.nondigits import NonDigits, evaluation_fonts, font_files
    from siamese_lit.inference import SiameseModel

    out, report = evaluation
    r = report["rejection"]
    model = SiameseModel.from_checkpoint(ckpt(tiny_siamese_run))
    assert r["calibrated"] and r["threshold"] == pytest.approx(model.rejection.value)
    digits = load_mnist(data_dir, train=False)[0]
    cfg = compose_cfg([f"ckpt_path={ckpt(tiny_siamese_run)}", *DATA], out.parent / "x", config_name="eval")
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("test")
    scores = model.reject_scores(model.embed(dm.splits["test"][0]))
    assert len(scores) == TEST_SIZE < len(digits)
    assert r["digits_accepted"] == pytest.approx(float((scores <= r["threshold"]).float().mean()), abs=2e-3)
    fonts = evaluation_fonts(font_files())
    nondigits = NonDigits.load(out.parent / "cache", fonts)  # the one evaluate cached
    n = r["nondigits"]
    assert (n["fonts"], n["count"]) == (len(fonts), len(nondigits.kinds))
    assert n["shapes"]["count"] == sum(k != "glyph" for k in nondigits.kinds)
    nd_scores = model.reject_scores(model.embed(nondigits.images))
    assert n["rejected"] == pytest.approx(float((nd_scores > r["threshold"]).float().mean()), abs=2e-3)
    assert 0.5 < n["auroc"] <= 1  # even a 1-epoch model tells most non-digits from digits
    assert '"Unknown": the rejection threshold' in (out / "report.md").read_text()


def test_report_files_and_tensorboard_grid(evaluation) -> None:
    out, report = evaluation
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    md = (out / "report.md").read_text()
    for heading in ("article's protocol", "gallery of 1000", "Correction of the classifier", "Retrieval"):
        assert heading in md
    assert report["retrieval"]["queries"] == [0, 5] and report["retrieval"]["neighbours"] == 6
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    (image,) = acc.Images("retrieval/nearest")
    # a row per query: the query and its 6 neighbours, 28-pixel tiles with 2-pixel padding
    assert (image.height, image.width) == (2 + 2 * 30, 2 + 7 * 30)
    assert acc.Scalars("protocol/thresholds/article/correct")[0].value == pytest.approx(
        report["protocol"]["thresholds"]["article"]["correct"]
    )
    # every figure of the gallery, verification and retrieval sections is scored once ("scores")
    assert set(report["timing_s"]) >= {
        "embed",
        "scores",
        "protocol",
        "correction",
        "retrieval",
        "robustness",
        "total",
    }


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """Real MNIST test images as files: two 7s and a 0 as 28x28 PNGs, and the first 7 as a large,
    inverted (dark on light) RGB JPEG."""
    x, y = load_mnist(data_dir, train=False)
    sevens, zeros = torch.nonzero(y == 7).squeeze(1), torch.nonzero(y == 0).squeeze(1)
    d = tmp_path_factory.mktemp("digits")
    files = {
        "seven": d / "seven.png",
        "seven_b": d / "seven b.png",
        "zero": d / "zero.png",
        "big": d / "big.jpg",
    }
    for name, i in (("seven", sevens[0]), ("seven_b", sevens[1]), ("zero", zeros[0])):
        Image.fromarray(x[i].numpy()).save(files[name])
    big = Image.fromarray(255 - x[sevens[0]].numpy()).resize((1120, 1120), Image.BICUBIC).convert("RGB")
    big.save(files["big"], quality=90)
    return files


def test_image_files_become_mnist_digits(digit_files, data_dir: Path) -> None:
    x, y = load_mnist(data_dir, train=False)
    seven = x[torch.nonzero(y == 7)[0, 0]]
    assert torch.equal(load_digit(digit_files["seven"]), seven)  # a 28x28 PNG round-trips exactly
    big = load_digit(digit_files["big"]).float()
    assert big.shape == (28, 28) and big[0].max() == 0 and big.max() == 255  # white on black, framed
    # the same digit after resizing, inversion and JPEG is far closer to itself than to a 0
    zero = load_digit(digit_files["zero"]).float()
    assert (big - seven.float()).norm() < 0.6 * (big - zero).norm()


def test_compare_distance_and_verdict(digit_files, tiny_siamese_run: Path, tmp_path: Path, capsys) -> None:
    model = load_model(ckpt(tiny_siamese_run), "Siamese")[0]
    threshold = float(model.threshold)

    def run(a: str, b: str) -> dict:
        cfg = compose_cfg([f"ckpt_path={ckpt(tiny_siamese_run)}", "device=cpu"], tmp_path / a, "compare")
        cfg.images = [str(digit_files[a]), str(digit_files[b])]
        return compare(cfg)

    same, different, resized = run("seven", "seven_b"), run("seven", "zero"), run("seven", "big")
    for r in (same, different, resized):
        assert r["threshold"] == pytest.approx(threshold) and r["same"] == (r["distance"] <= threshold)
    x = torch.stack([load_digit(digit_files[k]) for k in ("seven", "zero")])
    emb = model.embed((x.float() / 255 - 0.1307) / 0.3081)
    assert different["distance"] == pytest.approx(float(F.pairwise_distance(emb[:1], emb[1:])), rel=1e-4)
    assert resized["same"] and resized["distance"] < different["distance"]
    out = capsys.readouterr().out
    assert "verdict: same digit" in out
    assert (tmp_path / "seven" / "inputs.png").is_file()
    # each image against the rejection threshold: a digit, or unknown (like no training digit)
    scores = model.rejection.scores(emb, model.distance)
    rejection = float(model.rejection.threshold)
    assert different["unknown"] == (scores > rejection).tolist()
    assert (
        f"image b: rejection score {float(scores[1]):.4f}: " in out
        and f"rejection threshold: {rejection:.4f}" in out
    )


def test_compare_cli_takes_positional_paths(digit_files, tiny_siamese_run: Path, tmp_path: Path) -> None:
    args = [f"ckpt_path={ckpt(tiny_siamese_run)}", str(digit_files["seven"]), str(digit_files["seven_b"])]
    ok = run_cli("siamese_lit.compare", [*args, f"hydra.run.dir={tmp_path / 'ok'}"])
    assert ok.returncode == 0, ok.stderr
    assert "distance: " in ok.stdout and "verdict: " in ok.stdout
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    err = run_cli("siamese_lit.compare", [*args[:2], str(bad), f"hydra.run.dir={tmp_path / 'bad'}"])
    assert err.returncode == 2
    assert err.stderr.strip().splitlines() == [
        f"error: {bad} is not a readable image (UnidentifiedImageError)."
    ]


def test_hydra_args_turn_positional_paths_into_the_images_override() -> None:
    assert positional_paths(["ckpt_path=m.ckpt", "a b.png", "--cfg", "job", "c'd.png"], "images") == [
        "ckpt_path=m.ckpt",
        "--cfg",
        "job",
        "images=['a b.png','c\\'d.png']",
    ]
    with pytest.raises(ValueError, match="not both"):
        positional_paths(["a.png", "b.png", "images=[c.png]"], "images")


def test_bad_images_and_checkpoints_are_one_line_errors(tmp_path: Path, tiny_siamese_run: Path) -> None:
    (tmp_path / "empty.png").touch()
    Image.new("L", (40, 30), 200).save(tmp_path / "blank.png")
    for name, message in (
        ("missing.png", "no such image"),
        ("empty.png", "is empty"),
        ("blank.png", "is blank"),
    ):
        with pytest.raises(ImageError, match=message):
            load_digit(tmp_path / name)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt(tiny_siamese_run).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(truncated, "Siamese")[0]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt", "Siamese")[0]


def test_evaluate_cli_refuses_a_classifier_checkpoint(tiny_classifier_run: Path, tmp_path: Path) -> None:
    result = run_cli(
        "siamese_lit.evaluate", [f"ckpt_path={ckpt(tiny_classifier_run)}", f"hydra.run.dir={tmp_path}"]
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ckpt_path=") and "is a classifier checkpoint; a Siamese checkpoint" in line


@pytest.mark.parametrize("key", ["images", "queries"])
def test_positional_paths_read_back_as_themselves_never_interpolated(key: str) -> None:
    """compare's and search's positional paths become one Hydra override; Hydra's grammar and then
    OmegaConf's resolution give back exactly the paths (a file named `${oc.env:HOME}.png` too)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from siamese_lit.cli.paths import positional_paths

    paths = ["a b.png", "c'd.png", "${oc.env:HOME}.png", "x\\${y}", "back\\", "co,m[ma].png", '"q".png']
    (override,) = positional_paths(paths, key)
    value = OverridesParser.create().parse_override(override).value()
    assert OmegaConf.to_container(OmegaConf.create({key: value}), resolve=True)[key] == paths


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
