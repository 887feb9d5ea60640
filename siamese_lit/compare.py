"""`python -m siamese_lit.compare ckpt_path=PATH a.png b.png`: are two image files the same digit?

Prints the distance between the two images' embeddings and the verdict (same digit when the distance
is at most the threshold). The images may be of any size or mode (siamese_lit.data.images brings
them to 28x28 MNIST form; `inputs.png` in the output dir shows what the model saw). The two paths may
also be given in Hydra form, `images=[a.png,b.png]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchvision.utils import save_image

from siamese_lit.checkpoints.reader import check_embedding_scale, check_finite_outputs, with_saved_data
from siamese_lit.cli.command import run_command
from siamese_lit.cli.settings import check_seeds
from siamese_lit.data.images import load_digit
from siamese_lit.models.loading import load_model
from siamese_lit.utils.devices import resolve_device
from siamese_lit.utils.errors import check


def compare(cfg: DictConfig) -> dict[str, Any]:
    """Distance and verdict for the two images of `cfg.images`; also printed."""
    check(cfg.threshold is None or cfg.threshold >= 0, f"threshold must be >= 0, got {cfg.threshold}.")
    check_seeds(cfg, ("seed",))
    images = list(cfg.get("images") or [])
    check(len(images) == 2, f"compare takes two image files (a.png b.png), got {len(images)}: {images}.")
    digits = torch.stack([load_digit(p) for p in images])  # bad files fail before the model loads
    device = resolve_device(cfg.device)
    model, saved = load_model(cfg.ckpt_path, "Siamese", device)
    data = with_saved_data(cfg.data, saved, "ckpt_path")  # trained with these mean and std
    normalize = instantiate(data).normalize
    emb = check_embedding_scale(model.embed(normalize(digits.to(device))), "embeddings", cfg.ckpt_path)
    distance = model.distance.pairwise(emb[:1], emb[1:])  # the distance it was trained with
    distance = float(check_finite_outputs(distance, "distances", cfg.ckpt_path))
    threshold, source = _threshold(cfg, float(model.threshold))
    same = distance <= threshold
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(digits.float().div(255).unsqueeze(1), out_dir / "inputs.png", nrow=2, padding=2, pad_value=0.5)
    print(f"distance: {distance:.4f}")
    print(f"threshold: {threshold:.4f} ({source})")
    print(f"verdict: {'same digit' if same else 'different digits'}")
    return {"distance": distance, "threshold": threshold, "same": same}


def _threshold(cfg: DictConfig, saved: float) -> tuple[float, str]:
    """cfg.threshold when set; else the checkpoint's (chosen on validation pairs); else the article's 1.0."""
    if cfg.threshold is not None:
        return float(cfg.threshold), "threshold="
    if saved == saved:  # not NaN
        return saved, "calibrated on validation pairs, from the checkpoint"
    return 1.0, "the article's; the checkpoint has no calibrated threshold"


def main() -> None:
    run_command(compare, "compare", positional="images")


if __name__ == "__main__":
    main()
