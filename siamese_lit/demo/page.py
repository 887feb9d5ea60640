"""The Gradio page: two canvases (or uploads), a Compare button, the verdict, and for each drawing
the 28x28 crop the model reads, its predicted digit and its nearest gallery digits.

Element ids (`#verdict`, `#canvas-a`, `#prediction-b`, ...) are what the browser tests and the
drawn-digit benchmark read; the texts hold `Verdict: same digit` / `Verdict: different digits` and
`Predicted: <label>`.
"""

from __future__ import annotations

import math
import os
import time

# before gradio is imported: no analytics, no version check, no hub look-ups
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from siamese_lit.demo.engine import Recognizer, SideResult  # noqa: E402
from siamese_lit.demo.loopback import LoopbackOnly  # noqa: E402

#: Canvas size in pixels; the drawing is cropped to its ink and scaled to 20x20 either way.
CANVAS = 280
#: Brush width in canvas pixels: about MNIST's stroke width once a digit is scaled to 20 pixels.
BRUSH = 18
#: The 28x28 crop is shown enlarged by this factor, pixel for pixel.
ZOOM = 6
#: The largest upload the server stores (Gradio refuses larger ones while they arrive).
MAX_UPLOAD = "5mb"
#: Gradio decodes a drawing itself (whatever image the request holds, not only the canvas): PIL
#: refuses images of more than twice this many pixels, so that a small file cannot decode to
#: gigabytes. Uploads are read by siamese_lit.data.images, which bounds their decoded bytes.
MAX_IMAGE_PIXELS = 12_000_000

#: System fonts only: the default theme would fetch its fonts from a web font service.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)

#: On load, select each canvas's brush, so that a visitor can draw at once (Gradio starts with no tool).
SELECT_BRUSH = """() => {
  const pick = (tries) => {
    const buttons = document.querySelectorAll("[id^='canvas-'] button[aria-label='Brush']");
    buttons.forEach((b) => b.click());
    if (buttons.length < 2 && tries > 0) setTimeout(() => pick(tries - 1), 200);
  };
  pick(50);
}"""

INTRO = """# Same digit?
Draw a digit in each box (or upload an image of one) and press **Compare**. The model reads each
drawing as a 28×28 MNIST digit (shown below), embeds it, and answers with the distance between the
two and the verdict at its threshold; each drawing's predicted digit is the vote of its nearest
gallery digits, or `unknown` when it is unlike any digit the model was trained on."""


def _zoom(digit: np.ndarray) -> np.ndarray:
    return np.kron(digit, np.ones((ZOOM, ZOOM), dtype=np.uint8))


def _prediction(side: SideResult, threshold: float, rejection: float) -> str:
    if side.digit is None:
        return side.message or ""
    if side.label == "unknown" and math.isfinite(rejection):
        return (
            f"**Predicted: unknown** (unlike any training digit: rejection score {side.score:.4f}, past "
            f"the rejection threshold {rejection:.4f})"
        )
    if side.label == "unknown":
        return (
            f"**Predicted: unknown** (the nearest gallery digit is at {side.nearest:.4f}, "
            f"past the threshold {threshold:.4f})"
        )
    return f"**Predicted: {side.label}** (nearest gallery digit at {side.nearest:.4f})"


def _side_outputs(side: SideResult, threshold: float, rejection: float) -> list[Any]:
    crop = None if side.digit is None else _zoom(side.digit.numpy())
    gallery = [(img, caption) for img, caption in side.neighbours if img is not None]
    return [crop, _prediction(side, threshold, rejection), gallery]


def build_page(recognizer: Recognizer, about: str) -> gr.Blocks:
    """The page for `recognizer`; `about` (the checkpoint, gallery and threshold) is shown under the intro."""

    def answer(a_draw: Any, a_file: Any, b_draw: Any, b_file: Any) -> list[Any]:
        result = recognizer.answer((a_draw, a_file), (b_draw, b_file))
        outputs = [result.verdict()]
        for side in result.sides:
            outputs += _side_outputs(side, result.threshold, result.rejection)
        return outputs

    brush = gr.Brush(default_size=BRUSH, colors=["#000000"], default_color="#000000", color_mode="fixed")
    with gr.Blocks(title="siamese_lit: same digit?", analytics_enabled=False, fill_width=True) as page:
        gr.Markdown(INTRO)
        gr.Markdown(about, elem_id="about")
        inputs = []
        with gr.Row():
            for side in "ab":
                with gr.Column():
                    inputs.append(
                        gr.Sketchpad(
                            label=f"Drawing {side.upper()}",
                            elem_id=f"canvas-{side}",
                            type="numpy",
                            image_mode="RGBA",
                            canvas_size=(CANVAS, CANVAS),
                            fixed_canvas=True,
                            brush=brush,
                            layers=False,
                            transforms=(),
                        )
                    )
                    inputs.append(
                        gr.Image(
                            label=f"… or upload an image for {side.upper()}",
                            elem_id=f"upload-{side}",
                            type="filepath",
                            image_mode=None,  # the path as it came: Gradio does not decode it first
                            sources=["upload"],
                            height=140,
                        )
                    )
        submit = gr.Button("Compare", variant="primary", elem_id="submit")
        outputs = [gr.Markdown(elem_id="verdict")]
        with gr.Row():
            for side in "ab":
                with gr.Column():
                    outputs.append(
                        gr.Image(
                            label=f"{side.upper()} as the model sees it (28×28)",
                            elem_id=f"crop-{side}",
                            interactive=False,
                            height=28 * ZOOM,
                            format="png",
                        )
                    )
                    outputs.append(gr.Markdown(elem_id=f"prediction-{side}"))
                    outputs.append(
                        gr.Gallery(
                            label=f"nearest gallery digits of {side.upper()} (label · distance)",
                            elem_id=f"neighbours-{side}",
                            columns=5,
                            rows=1,
                            height=130,
                            object_fit="contain",
                            format="png",
                            allow_preview=False,
                        )
                    )
        # no progress overlay: the outputs' text changes once, when the answer arrives (browser.compare)
        submit.click(answer, inputs=inputs, outputs=outputs, api_visibility="private", show_progress="hidden")
    return page


def launch(page: gr.Blocks, host: str, port: int) -> None:
    """Serve `page` on host:port until interrupted: no share link, no analytics, the API page off;
    requests only by this address (demo.loopback), uploads of at most MAX_UPLOAD."""
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    page.queue(default_concurrency_limit=1)
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        theme=THEME,
        footer_links=[],
        ssr_mode=False,
        mcp_server=False,
        prevent_thread_lock=True,
        quiet=True,
        js=SELECT_BRUSH,
        max_file_size=MAX_UPLOAD,
        app_kwargs={"middleware": [Middleware(LoopbackOnly, port=port)]},
    )
    print(f"serving on http://{host}:{port} (Ctrl+C to stop)", flush=True)
    try:  # not page.block_thread(): it swallows Ctrl-C, and the command would end with 0
        while True:
            time.sleep(0.5)
    finally:
        page.close()
