"""`python -m siamese_lit.index ckpt_path=PATH index_path=FILE [gallery=mnist|<folder>]`: a gallery index.

Embeds the gallery once with the checkpoint's model (MNIST's 60k training images by default, or the
images of `<folder>/<label>/`) and writes the index file `siamese_lit.search` answers queries with:
embeddings, labels, sources, the calibrated threshold, the distance, the input normalisation and
the checkpoint's fingerprint (siamese_lit.inference.index). An image that cannot be read is named
and left out; the others are indexed, and the command then ends with one `error:` line (exit 2).
"""

from __future__ import annotations

import math
import sys
from typing import Any

from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.cli.outputs import check_output, writing
from siamese_lit.data.images import ImageError
from siamese_lit.inference.cli import load_siamese
from siamese_lit.inference.gallery import describe_failed, folder_gallery, mnist_gallery
from siamese_lit.inference.index import save_index
from siamese_lit.utils.errors import check


def make_index(cfg: DictConfig) -> dict[str, Any]:
    """Build and write the index of `cfg`; returns what was indexed (also printed)."""
    check(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}.")
    check(
        cfg.reject_threshold is None or cfg.reject_threshold >= 0,
        f"reject_threshold must be >= 0, got {cfg.reject_threshold}.",
    )
    check(
        cfg.gallery_size is None or cfg.gallery_size >= 1,
        f"gallery_size must be >= 1, got {cfg.gallery_size}.",
    )
    out = check_output(cfg, "index_path", cfg.overwrite)
    gallery = str(cfg.gallery)
    if gallery == "mnist":
        items = mnist_gallery(cfg.data.data_dir, cfg.gallery_size)
    else:
        check(cfg.gallery_size is None, "gallery_size is for gallery=mnist: a folder is indexed whole.")
        items = folder_gallery(gallery)
    if not items.labels:
        raise ImageError(
            f"gallery={gallery}: none of its {len(items.failed)} images could be read: "
            + describe_failed(items.failed)
        )
    model = load_siamese(cfg, device=cfg.device)
    index = model.build_index(items.digits, items.labels, items.sources, batch_size=cfg.batch_size)
    with writing(out):
        save_index(index, out)
    counts = {c: index.labels.count(c) for c in index.classes}
    threshold = f"{index.threshold:.4f}" if index.threshold == index.threshold else "none (not calibrated)"
    size = out.stat().st_size / 2**20
    print(f"indexed {len(index.labels)} images of {len(counts)} labels into {out} ({size:.1f} MiB)")
    print("per label: " + ", ".join(f"{c}: {n}" for c, n in counts.items()))
    distance = "cosine" if index.normalize else "Euclidean"
    print(f"embedding size {index.embeddings.shape[1]}, {distance} distance, threshold {threshold}")
    if math.isfinite(model.rejection.value):
        unknown = int(model.unknown(model.reject_scores(index.embeddings)).sum())
        print(
            f"rejection threshold {model.rejection}: {unknown} of the {len(index.labels)} gallery images are "
            "past it (a search would answer them unknown)"
        )
    for _, reason in items.failed:
        print(f"left out: {reason}", file=sys.stderr, flush=True)
    if items.failed:
        raise ImageError(
            f"{len(items.failed)} gallery images could not be read and were left out of {out} "
            f"(the other {len(index.labels)} are indexed): {describe_failed(items.failed)}."
        )
    return {"index_path": str(out), "items": len(index.labels), "labels": counts}


def main() -> None:
    run_command(make_index, "index")


if __name__ == "__main__":
    main()
