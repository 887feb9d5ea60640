"""The demo page in a real browser: Playwright drives Debian's Chromium against a real
`python -m siamese_lit.demo` subprocess serving a checkpoint trained here (siamese_robust, cut to a
few thousand images), on a gallery of real MNIST training images. The mouse draws on the canvases
as a user does; the test reads the verdict and predictions from the page.

No Chromium (`make browser` installs it): skipped with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.strokes import PLAIN_ONE, TEMPLATES
from siamese_lit.data.mnist import load_mnist
from tests.helpers.runs import compose_cfg, require

pytestmark = pytest.mark.browser

#: siamese_robust, cut so that it trains in seconds on two cores and still reads drawings.
ROBUST = [
    "+experiment=siamese_robust",
    "data.train_size=6000",
    "data.val_size=1000",
    "data.test_size=1000",
    "data.eval_batch_size=500",
    "data.eval_pairs=1000",
    "data.gallery_size=1000",
    "data.reference_size=1000",
    "model.oneshot_episodes=10",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "logger=csv",
]
#: Where the test also writes its screenshot when set (docs/demo.png for the README).
SCREENSHOT_ENV = "SIAMESE_LIT_DEMO_SCREENSHOT"


@pytest.fixture(scope="module")
def chromium() -> tuple[Any, str]:
    """The browser module and the Chromium path; skipped (failed under CI) when either is missing,
    before anything is trained."""
    try:
        import playwright.sync_api  # noqa: F401  (the demo extra)
    except ImportError as exc:
        require("playwright", f"{exc}: make install")
    from bench import browser

    chromium = browser.find_chromium()
    if chromium is None:
        require("Chromium", "none found on PATH nor in $SIAMESE_LIT_CHROMIUM: make browser")
    return browser, chromium


@pytest.fixture(scope="session")
def robust_ckpt(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """last.ckpt of a real siamese_robust run on 6000 training images, 1 epoch."""
    from siamese_lit.train import train

    out = tmp_path_factory.mktemp("robust")
    train(compose_cfg(ROBUST, out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def demo(
    chromium: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory, robust_ckpt: Path
) -> Iterator[tuple[Any, Any, str]]:
    """(browser module, Playwright page, URL) of the demo served as a subprocess on a free port."""
    browser, executable = chromium
    out = tmp_path_factory.mktemp("demo")
    args = [f"ckpt_path={robust_ckpt}", "gallery_size=10000", "device=cpu", f"hydra.run.dir={out / 'run'}"]
    with browser.demo_server(args, out / "server.log") as url, browser.open_page(url, executable) as page:
        yield browser, page, url


def test_drawn_one_is_the_same_as_another_drawn_one_and_not_a_drawn_zero(
    demo: tuple[Any, Any, str], tmp_path: Path
) -> None:
    browser, page, url = demo
    browser.load(page, url)
    browser.draw(page, "a", TEMPLATES[1])
    browser.draw(page, "b", PLAIN_ONE)
    shown = browser.compare(page)
    assert browser.verdict_word(shown["verdict"]) == "same", shown
    assert browser.predicted(shown["a"]) == "1" and browser.predicted(shown["b"]) == "1", shown
    for side in "ab":  # the 28x28 crop and the 5 nearest gallery digits are on the page
        assert page.locator(f"#crop-{side} img").count() == 1
        assert page.locator(f"#neighbours-{side} img").count() == 5

    browser.load(page, url)
    browser.draw(page, "a", TEMPLATES[1])
    browser.draw(page, "b", TEMPLATES[0])
    shown = browser.compare(page)
    assert browser.verdict_word(shown["verdict"]) == "different", shown
    assert browser.predicted(shown["a"]) == "1" and browser.predicted(shown["b"]) == "0", shown
    page.screenshot(path=tmp_path / "demo.png", full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(tmp_path / "demo.png", os.environ[SCREENSHOT_ENV])


def test_blank_canvases_get_a_message_not_an_error(demo: tuple[Any, Any, str]) -> None:
    browser, page, url = demo
    browser.load(page, url)
    shown = browser.compare(page)
    assert shown["verdict"].startswith("No verdict"), shown
    assert "Drawing A is blank" in shown["a"] and "Drawing B is blank" in shown["b"], shown

    browser.load(page, url)  # one side drawn: it still gets its prediction
    browser.draw(page, "a", TEMPLATES[7])
    shown = browser.compare(page)
    assert shown["verdict"].startswith("No verdict") and "Drawing B is blank" in shown["verdict"], shown
    assert browser.predicted(shown["a"]) == "7", shown


def test_an_uploaded_mnist_image_is_read_and_identified(
    demo: tuple[Any, Any, str], data_dir: Path, tmp_path: Path
) -> None:
    browser, page, url = demo
    images, labels = load_mnist(data_dir, train=False)
    i = int((labels == 3).nonzero()[0])  # the first 3 of the test set (not in the gallery)
    path = tmp_path / "three.png"
    Image.fromarray(images[i].numpy(), mode="L").resize((280, 280)).save(path)
    browser.load(page, url)
    page.locator("#upload-a input[type=file]").set_input_files(str(path))
    page.locator("#upload-a img").wait_for(timeout=30_000)  # the upload is in before Compare
    browser.draw(page, "b", TEMPLATES[3])
    shown = browser.compare(page)
    assert browser.predicted(shown["a"]) == "3" and browser.predicted(shown["b"]) == "3", shown
    assert browser.verdict_word(shown["verdict"]) == "same", shown
