"""Driving the demo page in a real Chromium with Playwright: the browser tests and the drawn-digit
benchmark draw with the mouse, press Compare and read the page as a user would.

Playwright cannot download its own browsers here; it drives the system's Chromium (Debian's
`chromium` package, `make browser`), found by find_chromium, with the flags a closed network needs.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from siamese_lit import PROJECT_ROOT

#: Where a Chromium may be, after $SIAMESE_LIT_CHROMIUM.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Headless on a machine with no network but the local one: no GPU, sandbox, sync or background calls.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: A stroke: points (x, y) in the unit square, (0, 0) top left; a drawing is a list of strokes.
Stroke = Sequence[tuple[float, float]]


def find_chromium() -> str | None:
    """The path of a Chromium to drive, or None: $SIAMESE_LIT_CHROMIUM, else the first on PATH."""
    env = os.environ.get("SIAMESE_LIT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(args: list[str], log: Path, timeout: float = 300) -> Iterator[str]:
    """`python -m siamese_lit.demo <args>` on a free port as a subprocess; yields its URL once it
    answers, stops it afterwards. RuntimeError with the end of its log if it exits or never answers."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "siamese_lit.demo", *args, f"port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else f"did not answer in {timeout:.0f} s"
                raise RuntimeError(f"the demo server {why}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def open_page(url: str, executable: str) -> Iterator[Any]:
    """A Playwright page on `url` in a fresh headless Chromium (a new profile, deleted afterwards)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1500})
            load(page, url)
            yield page
        finally:
            browser.close()


def load(page: Any, url: str) -> None:
    """(Re)load the page and wait for both canvases."""
    page.goto(url)
    for side in "ab":
        page.wait_for_selector(f"#canvas-{side} canvas", timeout=60_000)


def _resample(points: list[tuple[float, float]], spacing: float) -> list[tuple[float, float]]:
    """The polyline with a point about every `spacing` pixels: close points are dropped except at
    a corner (a turn of over 30 degrees), long segments are split."""
    out = [points[0]]
    for i, (x, y) in enumerate(points[1:], start=1):
        px, py = out[-1]
        gap = math.hypot(x - px, y - py)
        last = i == len(points) - 1
        if gap < spacing and not last and not _corner(points[i - 1], (x, y), points[i + 1]):
            continue
        n = max(1, round(gap / spacing))
        out += [(px + (x - px) * k / n, py + (y - py) * k / n) for k in range(1, n + 1)]
    return out


def _corner(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    turn = math.atan2(c[1] - b[1], c[0] - b[0]) - math.atan2(b[1] - a[1], b[0] - a[0])
    return abs((turn + math.pi) % (2 * math.pi) - math.pi) > math.radians(30)


def draw(page: Any, side: str, strokes: Sequence[Stroke], spacing: float = 12.0) -> None:
    """Draw `strokes` with the mouse on canvas `side` ("a" or "b"), in the middle 80% of its box:
    press, a move every `spacing` screen pixels along each stroke (the brush joins them), release."""
    box = page.locator(f"#canvas-{side} canvas").first.bounding_box()
    side_px = 0.8 * min(box["width"], box["height"])
    x0 = box["x"] + (box["width"] - side_px) / 2
    y0 = box["y"] + (box["height"] - side_px) / 2
    for stroke in strokes:
        points = _resample([(x0 + x * side_px, y0 + y * side_px) for x, y in stroke], spacing)
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


def clear(page: Any) -> None:
    """Clear both canvases with their own Clear button (quicker than reloading the page), then pick
    the brush again (Gradio drops the tool on clearing)."""
    for side in "ab":
        page.locator(f"#canvas-{side} button[aria-label='Clear canvas']").click()
        page.locator(f"#canvas-{side} button[aria-label='Brush']").click()


#: The text of a Markdown output, without the status tracker (its timer) beside it.
TEXT = "#{} [data-testid=markdown]"


def _shown(page: Any) -> dict[str, str]:
    return {
        key: page.locator(TEXT.format(id)).inner_text()
        for key, id in (("verdict", "verdict"), ("a", "prediction-a"), ("b", "prediction-b"))
    }


def compare(page: Any, timeout: float = 120_000) -> dict[str, str]:
    """Press Compare; the verdict and both predictions as the page shows them once they change
    (an answer that repeats the last one word for word, to the 4th decimal, is not waited for)."""
    before = _shown(page)
    page.locator("#submit").click()
    page.wait_for_function(
        """(before) => {
            const text = (id) => document.querySelector(`#${id} [data-testid=markdown]`)?.innerText || "";
            const now = [text("verdict"), text("prediction-a"), text("prediction-b")];
            return /Verdict|No verdict/.test(now[0]) && now.join("|") !== before;
        }""",
        arg="|".join(before.values()),
        timeout=timeout,
    )
    return _shown(page)


def verdict_word(text: str) -> str | None:
    """The verdict's word, `same` or `different`; None when the page gave no verdict."""
    m = re.search(r"Verdict: (same|different)", text)
    return m[1] if m else None


def predicted(text: str) -> str | None:
    """The predicted label ("0".."9" or "unknown") from a prediction line; None when there is none."""
    m = re.search(r"Predicted: (\S+)", text)
    return m[1] if m else None
