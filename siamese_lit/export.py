"""`python -m siamese_lit.export ckpt_path=PATH format=onnx output=FILE.onnx`: the encoder out of Python.

Writes the checkpoint's encoder as an ONNX graph (siamese_lit.inference.onnx_export): input `pixels`
float32 (batch, 28, 28) in [0, 1], output `embedding` (batch, D), the model's own embeddings (input
normalisation and the cosine distance's unit norm included). Before the file is written, the graph
runs in onnxruntime on MNIST test images and must match PyTorch within `tolerance`.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.cli.outputs import check_output, writing
from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference.cli import load_siamese
from siamese_lit.objectives.distance import Centering
from siamese_lit.utils.errors import check

FORMATS = ("onnx",)


def export(cfg: DictConfig) -> float:
    """Write the encoder of `cfg.ckpt_path` to `cfg.output`; returns the checked max abs difference."""
    check(cfg.format in FORMATS, f"format must be one of {list(FORMATS)}, got {cfg.format!r}.")
    check(cfg.check_images >= 0, f"check_images must be >= 0, got {cfg.check_images}.")
    check(cfg.tolerance >= 0, f"tolerance must be >= 0, got {cfg.tolerance}.")
    check(cfg.opset is None or 18 <= cfg.opset <= 23, f"opset must be in 18..23 or null, got {cfg.opset}.")
    output = check_output(cfg, "output", cfg.overwrite)
    model = load_siamese(cfg, device="cpu")
    mean, std = model.normalization.mean, model.normalization.std
    pixels = load_mnist(cfg.data.data_dir, train=False)[0][: cfg.check_images].float() / 255
    from siamese_lit.inference.onnx_export import export_onnx  # onnx and onnxruntime load only here

    threshold = model.calibrated_threshold
    metadata = {
        "mean": repr(mean),
        "std": repr(std),
        "distance": "cosine" if model.distance.normalize else "euclidean",
        "threshold": repr(threshold) if math.isfinite(threshold) else "none",
        "reject_threshold": repr(model.rejection.value) if math.isfinite(model.rejection.value) else "none",
        "fingerprint": model.fingerprint,
        "embedding_dim": str(model.embedding_dim),
    }
    with writing(output):
        diff = export_onnx(
            model.module,
            output,
            mean=mean,
            std=std,
            check_pixels=pixels,
            metadata=metadata,
            tolerance=cfg.tolerance,
            opset=cfg.opset,
        )
    checked = (
        f"max abs difference from PyTorch {diff:.2e} on {len(pixels)} MNIST test images"
        if len(pixels)
        else "not checked"
    )
    print(
        f"wrote {output}: pixels float32 (batch, 28, 28) in [0, 1] -> "
        f"embedding (batch, {model.embedding_dim})"
    )
    centring = ", centring" if isinstance(model.module.centering, Centering) else ""
    distance = metadata["distance"]
    print(f"normalisation (x - {mean}) / {std}{centring} and the {distance} distance inside; {checked}")
    return diff


def main() -> None:
    run_command(export, "export")


if __name__ == "__main__":
    main()
