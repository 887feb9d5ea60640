"""Speed of using a trained model: exact search of the MNIST gallery, the index's size, and the
encoder in onnxruntime against PyTorch, all measured in one process on a real checkpoint.

`python -m bench --inference CKPT [--quick]` (or `python -m bench.inference
CKPT`). Figures (JSON and a Markdown table in outputs/bench/):

- `index_build_img_per_s`, `index_mib`: embedding the 60k training images and the file's size.
- `search_qps_batched`, `search_qps_single`: queries per second of the exact k-NN search alone
  (embeddings given) against the whole gallery, queries in batches of 256 / one at a time.
- `search_qps_end_to_end`: uint8 digits in, answers out (embedding + search), batches of 256.
- `encoder_img_per_s`: PyTorch and onnxruntime on the same MNIST test images, batch 1 and 64, at
  the same thread count, interleaved and best of the repeats (a burst of load from other processes
  then lands on both sides alike).
- `load_average`: the machine's 1-minute load before and after, to judge how quiet it was.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference.gallery import mnist_gallery
from siamese_lit.inference.index import (
    build_index,
    checkpoint_fingerprint,
    embed_digits,
    identify,
    save_index,
)
from siamese_lit.inference.onnx_export import INPUT, OUTPUT, PixelEncoder, export_onnx, session
from siamese_lit.models.loading import load_model
from siamese_lit.runs.provenance import provenance
from siamese_lit.utils.files import write_atomic, write_json


def _best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Items per second of `fn` (which returns how many it did), best of `repeats`."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def _encoders(model: Any, mean: float, std: float, pixels: torch.Tensor, threads: int, repeats: int) -> dict:
    """Images per second of PyTorch and onnxruntime on `pixels`, batch 1 and 64, interleaved."""
    encoder = PixelEncoder(model, mean, std).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        export_onnx(model, path, mean=mean, std=std, check_pixels=pixels[:64], metadata={})
        ort_session = session(path, threads=threads)
        out: dict[str, dict[str, float]] = {}
        for batch in (1, 64):
            chunks = list(pixels[: max(64 * batch, 64)].split(batch))
            arrays = [c.numpy() for c in chunks]

            def torch_run(chunks: list[torch.Tensor] = chunks) -> int:
                with torch.inference_mode():
                    for c in chunks:
                        encoder(c)
                return sum(len(c) for c in chunks)

            def ort_run(arrays: list[np.ndarray] = arrays) -> int:
                for a in arrays:
                    ort_session.run([OUTPUT], {INPUT: a})
                return sum(len(a) for a in arrays)

            torch_run(), ort_run()  # warm-up
            rates = {"pytorch": 0.0, "onnxruntime": 0.0}
            for _ in range(repeats):  # interleaved: each repeat measures both
                rates["pytorch"] = max(rates["pytorch"], _best_rate(torch_run, 1))
                rates["onnxruntime"] = max(rates["onnxruntime"], _best_rate(ort_run, 1))
            out[f"batch_{batch}"] = {
                **rates,
                "onnxruntime_over_pytorch": rates["onnxruntime"] / rates["pytorch"],
            }
    return out


def measure(
    ckpt_path: str | Path, data_dir: str | Path, quick: bool = False, gallery_size: int | None = None
) -> dict[str, Any]:
    """Every figure of the module docstring, for the checkpoint at `ckpt_path`, on the CPU
    (`gallery_size`: the first N training images instead of all 60k, for tests)."""
    repeats = 2 if quick else 3
    load_before, made_at = os.getloadavg()[0], provenance()
    model, saved = load_model(ckpt_path, "Siamese", "cpu")
    mean, std = float(saved.get("mean", 0.1307)), float(saved.get("std", 0.3081))
    fingerprint = checkpoint_fingerprint(model.state_dict())
    gallery = mnist_gallery(data_dir, gallery_size)
    start = time.perf_counter()
    index = build_index(
        model, gallery.digits, gallery.labels, gallery.sources, fingerprint=fingerprint, mean=mean, std=std
    )
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        save_index(index, Path(tmp) / "mnist.index")
        size = (Path(tmp) / "mnist.index").stat().st_size
    test_x, test_y = load_mnist(data_dir, train=False)
    n_queries = 1000 if quick else 2000
    digits = test_x[:n_queries]
    queries = embed_digits(model, digits, mean, std)
    batched = _best_rate(lambda: len(identify(index, queries, k=5)), repeats)
    singles = queries[:100]
    single = _best_rate(lambda: sum(len(identify(index, q[None], k=5)) for q in singles), repeats)
    end_to_end = _best_rate(
        lambda: sum(len(identify(index, embed_digits(model, d, mean, std), k=5)) for d in digits.split(256)),
        repeats,
    )
    answers = identify(index, queries, k=5, threshold=float("inf"))
    accuracy = float(
        np.mean([m.label == str(int(y)) for m, y in zip(answers, test_y[:n_queries], strict=True)])
    )
    n, d = index.embeddings.shape
    threads = torch.get_num_threads()
    return {
        "provenance": made_at,
        "checkpoint": str(ckpt_path),
        "gallery": n,
        "embedding_dim": d,
        "threads": threads,
        "index_build_img_per_s": n / build_s,
        "index_mib": size / 2**20,
        "index_embeddings_mib": n * d * 4 / 2**20,
        "search_queries": n_queries,
        "search_qps_batched": batched,
        "search_qps_single": single,
        "search_qps_end_to_end": end_to_end,
        "gallery_floats_per_query": n * d,  # what exact search reads and multiplies for every query
        "knn_accuracy_on_test": accuracy,
        "encoder_img_per_s": _encoders(model, mean, std, test_x[:4096].float() / 255, threads, repeats),
        "load_average": [load_before, os.getloadavg()[0]],
        "cpu_count": os.cpu_count(),
    }


def to_markdown(r: dict[str, Any]) -> str:
    enc = r["encoder_img_per_s"]
    lines = [
        f"Checkpoint `{r['checkpoint']}`: {r['gallery']} gallery images, {r['embedding_dim']}-d embeddings, "
        f"{r['threads']} torch threads, load average {r['load_average'][0]:.1f} -> "
        f"{r['load_average'][1]:.1f} on {r['cpu_count']} CPUs.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| index build (embed 60k) | {r['index_build_img_per_s']:.0f} img/s |",
        f"| index file | {r['index_mib']:.1f} MiB ({r['index_embeddings_mib']:.1f} MiB of embeddings) |",
        f"| exact search, batches of 256 | {r['search_qps_batched']:.0f} queries/s |",
        f"| exact search, one query at a time | {r['search_qps_single']:.0f} queries/s |",
        f"| embed + search, batches of 256 | {r['search_qps_end_to_end']:.0f} queries/s |",
        f"| k-NN accuracy of the {r['search_queries']} test queries | {r['knn_accuracy_on_test']:.4f} |",
    ]
    for batch, v in enc.items():
        lines.append(
            f"| encoder {batch.replace('_', ' ')}: PyTorch / onnxruntime | {v['pytorch']:.0f} / "
            f"{v['onnxruntime']:.0f} img/s (x{v['onnxruntime_over_pytorch']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a Siamese checkpoint")
    parser.add_argument("--quick", action="store_true", help="fewer queries and repeats")
    parser.add_argument(
        "--data-dir", default=os.environ.get("SIAMESE_LIT_DATA_DIR", str(PROJECT_ROOT / "data"))
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "bench")
    args = parser.parse_args(argv)
    result = measure(args.ckpt, args.data_dir, args.quick)
    stem = args.out / f"bench-inference-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    write_json(stem.with_suffix(".json"), result)
    write_atomic(stem.with_suffix(".md"), to_markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
