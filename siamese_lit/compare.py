"""`python -m siamese_lit.compare ckpt_path=PATH a.png b.png`: are two image files the same digit?

Prints the distance between the two images' embeddings and the verdict (same digit when the distance
is at most the threshold, chosen by siamese_lit.inference.SiameseModel's one policy). The images may
be of any size or mode (siamese_lit.data.images brings them to 28x28 MNIST form; `inputs.png` in the
output dir shows what the model saw). The two paths may also be given in Hydra form,
`images=[a.png,b.png]`.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image

from siamese_lit.checkpoints.specs import check_values
from siamese_lit.cli.paths import positional_paths
from siamese_lit.cli.settings import check_seeds
from siamese_lit.data.images import load_digit
from siamese_lit.inference.cli import load_siamese
from siamese_lit.utils.errors import check, exit_on_user_error, run_hydra
from siamese_lit.utils.files import write_atomic


def hydra_args(argv: list[str]) -> list[str]:
    """The command line with its positional image paths turned into the override images=[...]."""
    return positional_paths(argv, "images")


def compare(cfg: DictConfig) -> dict[str, Any]:
    """Distance and verdict for the two images of `cfg.images`; also printed."""
    check_values(cfg, {"threshold": (float, type(None)), "device": (str,)})
    check(cfg.threshold is None or cfg.threshold >= 0, f"threshold must be >= 0, got {cfg.threshold}.")
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
    return {"distance": result.distance, "threshold": result.threshold.value, "same": result.same}


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def _main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        compare(cfg)


def main() -> None:
    with exit_on_user_error():
        sys.argv[1:] = hydra_args(sys.argv[1:])
    run_hydra(_main)  # Hydra's own errors (unparsable override, unknown key) as one line too


if __name__ == "__main__":
    main()
