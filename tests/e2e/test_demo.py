"""The demo without a browser: bad configs as real subprocesses (one `error:` line, exit code 2,
before any page is served), and what the page computes for blank, drawn and uploaded digits."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from bench.strokes import NON_DIGIT_TEMPLATES, TEMPLATES
from siamese_lit.data.mnist import load_mnist
from siamese_lit.demo.engine import Recognizer, drawing_to_gray, gallery_images, read_input
from siamese_lit.inference import SiameseModel
from siamese_lit.inference.gallery import mnist_gallery
from siamese_lit.inference.index import save_index
from tests.helpers.table import Case, Run, assert_refused, case, run_cases

RUNS_CODE = r"refers to [\w.]+, which a siamese_lit checkpoint never does: refused unread"

#: Bad settings of `python -m siamese_lit.demo`, with <name>s of the world
CASES = [
    case("no-ckpt", "demo", "device=cpu", r"ckpt_path is required"),
    case("missing-ckpt", "demo", "ckpt_path=<nowhere> device=cpu", r"does not exist"),
    case("pickle-ckpt", "demo", "ckpt_path=<pickle> device=cpu", RUNS_CODE),
    case("classifier-ckpt", "demo", "ckpt_path=<classifier> device=cpu", r"is a classifier checkpoint"),
    case("port-abc", "demo", "ckpt_path=<siamese> port=abc device=cpu", r"port must be int, got 'abc'"),
    case(
        "port-in-use",
        "demo",
        "ckpt_path=<siamese> port=<busy_port> device=cpu",
        r"port=\d+ on 127\.0\.0\.1 is not free",
    ),
    case(
        "host-all-interfaces",
        "demo",
        "ckpt_path=<siamese> host=0.0.0.0 device=cpu",
        r"serves this machine only",
    ),
    case(
        "gallery-size-0",
        "demo",
        "ckpt_path=<siamese> gallery_size=0 device=cpu",
        r"gallery_size must be in 1\.\.60000",
    ),
    case("neighbours-0", "demo", "ckpt_path=<siamese> neighbours=0 device=cpu", r"neighbours must be >= 1"),
    case(
        "threshold-negative", "demo", "ckpt_path=<siamese> threshold=-1 device=cpu", r"threshold must be >= 0"
    ),
    case(
        "missing-index",
        "demo",
        "ckpt_path=<siamese> index_path=<nowhere> device=cpu",
        r"index_path=.* does not exist",
    ),
    case(
        "not-an-index",
        "demo",
        "ckpt_path=<siamese> index_path=<text> device=cpu",
        r"is not a siamese_lit index",
    ),
    case(
        "index-of-another-ckpt",
        "demo",
        "ckpt_path=<other> index_path=<index> device=cpu",
        r"was built with another checkpoint",
    ),
]


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_siamese_run: Path,
    tiny_classifier_run: Path,
    data_dir: Path,
    busy_port: int,
) -> dict[str, str]:
    """The files the cases name: the tiny runs' checkpoints, a pickle payload, another Siamese
    checkpoint (other weights), an index of 200 MNIST digits built with the first."""
    root = tmp_path_factory.mktemp("demo_world")
    siamese = tiny_siamese_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(siamese, map_location="cpu", weights_only=True)
    torch.save({**ckpt, "payload": Image.new}, root / "pickle.ckpt")  # any global: refused unread
    other = {k: v * 1.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save({**ckpt, "state_dict": other}, root / "other.ckpt")
    items = mnist_gallery(data_dir, 200)
    index = SiameseModel.from_checkpoint(siamese).build_index(items.digits, items.labels, items.sources)
    save_index(index, root / "index.safetensors")
    (root / "text.txt").write_text("not an index\n")
    return {
        "siamese": str(siamese),
        "classifier": str(tiny_classifier_run / "checkpoints" / "last.ckpt"),
        "pickle": str(root / "pickle.ckpt"),
        "other": str(root / "other.ckpt"),
        "index": str(root / "index.safetensors"),
        "text": str(root / "text.txt"),
        "nowhere": str(root / "nowhere"),
        "busy_port": str(busy_port),
    }


@pytest.fixture(scope="module")
def results(world: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case as `python -m siamese_lit.demo`, a few at a time."""
    return run_cases(CASES, world, tmp_path_factory.mktemp("demo_runs"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_is_one_error_line_and_exit_2(case: Case, results: dict[str, Run]) -> None:
    assert_refused(case, results[case.id].result)
    assert "serving on" not in results[case.id].result.stdout


def _rgba(strokes: list[list[tuple[float, float]]] | None, size: int = 280) -> np.ndarray:
    """A canvas as the browser sends it: transparent, with black strokes drawn on it."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for stroke in strokes or []:
        draw.line([(x * size, y * size) for x, y in stroke], fill=(0, 0, 0, 255), width=18, joint="curve")
    return np.asarray(img)


def test_a_transparent_canvas_with_black_strokes_is_a_white_digit_on_black() -> None:
    gray = drawing_to_gray({"composite": _rgba(TEMPLATES[1])})
    assert gray.dtype == torch.uint8 and gray[0, 0] == 255 and gray.min() == 0  # strokes on white
    digit = read_input({"composite": _rgba(TEMPLATES[1])}, None, "A")
    assert digit.shape == (28, 28) and digit[0, 0] == 0 and digit.max() == 255  # MNIST polarity


@pytest.mark.parametrize("value", [None, {"composite": None}, {"composite": _rgba(None)}])
def test_a_blank_canvas_is_a_message(value: object) -> None:
    with pytest.raises(Exception, match="A is blank: draw a digit or upload an image"):
        read_input(value, None, "A")


@pytest.fixture(scope="module")
def recognizer(
    tiny_siamese_run: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Recognizer:
    model = SiameseModel.from_checkpoint(tiny_siamese_run / "checkpoints" / "last.ckpt")
    items = mnist_gallery(data_dir, 1000)
    index = model.build_index(items.digits, items.labels, items.sources)
    return Recognizer(model, index, gallery_images(data_dir, index.sources))


def test_a_drawing_is_unknown_exactly_when_past_the_rejection_threshold(recognizer: Recognizer) -> None:
    """Letters and shapes drawn as a mouse does (bench.strokes.NON_DIGIT_TEMPLATES) and a digit: each
    side's rejection score is the model's, and `unknown` is the rejection threshold's answer."""
    rejection = recognizer.model.rejection.value
    assert math.isfinite(rejection)  # the checkpoint's, calibrated in training
    for name, strokes in NON_DIGIT_TEMPLATES.items():
        answer = recognizer.answer(
            ({"composite": _rgba(strokes)}, None), ({"composite": _rgba(TEMPLATES[3])}, None)
        )
        for side in answer.sides:
            expected = float(recognizer.model.reject_scores(recognizer.model.embed(side.digit[None]))[0])
            assert side.score == pytest.approx(expected, abs=1e-5), name
            assert (side.label == "unknown") == (side.score > rejection), name
        verdict = answer.verdict()  # the pair verdict is still the pair threshold's
        assert ("same digit" in verdict) == (answer.distance <= answer.threshold)


def test_one_blank_side_gets_its_message_and_the_other_its_answer(recognizer: Recognizer) -> None:
    answer = recognizer.answer(({"composite": _rgba(None)}, None), ({"composite": _rgba(TEMPLATES[0])}, None))
    blank, drawn = answer.sides
    assert blank.digit is None and "Drawing A is blank" in blank.message
    assert answer.distance is None and answer.verdict().startswith("**No verdict**")
    assert drawn.label is not None and len(drawn.neighbours) == 5
    assert all(img.shape == (28, 28) and img.dtype == np.uint8 for img, _ in drawn.neighbours)


def test_an_uploaded_mnist_file_wins_over_the_drawing_and_matches_itself(
    recognizer: Recognizer, data_dir: Path, tmp_path: Path
) -> None:
    images, labels = load_mnist(data_dir, train=True)
    path = tmp_path / "train0.png"
    Image.fromarray(images[0].numpy(), mode="L").save(path)  # in the gallery: its own nearest item
    answer = recognizer.answer(({"composite": _rgba(TEMPLATES[1])}, str(path)), (None, str(path)))
    a, b = answer.sides
    assert torch.equal(a.digit, images[0]) and a.neighbours[0][1].startswith(f"{int(labels[0])} · 0.000")
    assert answer.same and answer.distance == pytest.approx(0, abs=1e-5)
    assert "Verdict: same digit" in answer.verdict()
