"""`python -m siamese_lit.compare ckpt_path=PATH a.png b.png`: are two image files the same digit?

Prints the distance between the two images' embeddings and the verdict (same digit when the distance
is at most the threshold, chosen by siamese_lit.inference.SiameseModel's one policy), and whether
each image is `unknown` (past the checkpoint's rejection threshold: unlike any digit it was trained
on; siamese_lit.evaluation.openset.Rejection). The images may
be of any size or mode (siamese_lit.data.images brings them to 28x28 MNIST form; `inputs.png` in the
output dir shows what the model saw). The two paths may also be given in Hydra form,
`images=[a.png,b.png]`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image

from siamese_lit.cli.command import run_command
from siamese_lit.cli.settings import check_seeds
from siamese_lit.data.images import load_digit
from siamese_lit.inference.cli import load_siamese
from siamese_lit.utils.errors import check
from siamese_lit.utils.files import write_atomic


def compare(cfg: DictConfig) -> dict[str, Any]:
    """Distance and verdict for the two images of `cfg.images`; also printed."""
    for key in ("threshold", "reject_threshold"):
        check(cfg[key] is None or cfg[key] >= 0, f"{key} must be >= 0, got {cfg[key]}.")
    check_seeds(cfg, ("seed",))
    images = list(cfg.get("images") or [])
    check(len(images) == 2, f"compare takes two image files (a.png b.png), got {len(images)}: {images}.")
    digits = [load_digit(p) for p in images]  # bad files fail before the model loads
    model = load_siamese(cfg, device=cfg.device)
    result = model.compare(*digits)
    out_dir = Path(cfg.paths.output_dir)
    save_digits(digits, out_dir / "inputs.png")
    print(f"distance: {result.distance:.4f}")
    print(f"threshold: {result.threshold}")
    print(f"verdict: {result.verdict}")
    if math.isfinite(model.rejection.value):
        print(f"rejection threshold: {model.rejection}")
        for name, score, unknown in zip("ab", result.scores, result.unknown, strict=True):
            answer = "unknown (unlike any training digit)" if unknown else "a digit"
            print(f"image {name}: rejection score {score:.4f}: {answer}")
    return {
        "distance": result.distance,
        "threshold": result.threshold.value,
        "same": result.same,
        "unknown": list(result.unknown),
    }


def save_digits(digits: list[torch.Tensor], path: Path, padding: int = 2) -> None:
    """The uint8 (28, 28) digits side by side on grey, `padding` pixels apart, as a PNG (the grid
    torchvision's save_image draws, without loading torchvision)."""
    h, w = digits[0].shape
    grid = torch.full((h + 2 * padding, len(digits) * (w + padding) + padding), 128, dtype=torch.uint8)
    for i, digit in enumerate(digits):
        left = padding + i * (w + padding)
        grid[padding : padding + h, left : left + w] = digit
    png = io.BytesIO()
    Image.fromarray(grid.numpy(), mode="L").save(png, format="PNG")
    write_atomic(path, png.getvalue())


def main() -> None:
    run_command(compare, "compare", positional="images")


if __name__ == "__main__":
    main()
