"""`python -m bench [--quick]`: speed, measured side by side with the source articles' way.

Every figure is taken in this one process, so the ratios hold on a shared, noisy machine; absolute
times mean something only on a dedicated (GPU) machine. Prints one JSON object and writes it, with a
Markdown table, to outputs/bench/. `--inference CKPT`: only the figures of using that Siamese
checkpoint (gallery search, ONNX against PyTorch; bench.inference).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.articles import (
    ARTICLE_BATCH,
    seed_eval_s_estimate,
    seed_loop_img_per_s,
    seed_pair_build_s,
)
from bench.throughput import (
    compose_experiment,
    compute_limit_img_per_s,
    eval_s,
    pair_build_s,
    peak_rss_mib_of_training,
    pipeline_img_per_s,
    time_to_target,
)
from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import load_mnist
from siamese_lit.runs.provenance import provenance
from siamese_lit.utils.allocator import keep_freed_memory
from siamese_lit.utils.errors import exit_on_user_error
from siamese_lit.utils.files import write_atomic, write_json
from siamese_lit.utils.tables import flatten, markdown_table


@dataclass(frozen=True)
class Mode:
    """How much each measurement runs: `full` (make bench), `quick` (<= 2 min), `tiny` (tests)."""

    name: str
    steps: int  # timed training steps per throughput figure
    repeats: int  # throughput figures are the best of this many interleaved measurements
    seed_queries: int  # test images evaluated the article's way
    seed_pair_images: int | None  # images read by the article's pair construction (None: all 60k)
    data: tuple[str, ...] = ()  # data overrides of the throughput and evaluation runs
    pairs: tuple[str, ...] = ()  # and those only the pair data module has
    time_to_target: bool = False


MODES = {
    "full": Mode("full", steps=200, repeats=3, seed_queries=100, seed_pair_images=None, time_to_target=True),
    "quick": Mode("quick", steps=60, repeats=2, seed_queries=20, seed_pair_images=None),
    "tiny": Mode(
        "tiny",
        steps=2,
        repeats=1,
        seed_queries=2,
        seed_pair_images=2000,
        data=("data.train_size=2000", "data.test_size=1000"),
        pairs=("data.eval_pairs=500", "data.gallery_size=500"),
    ),
}


def run(mode: Mode, out_dir: Path) -> dict[str, Any]:
    """Every measurement, in this process, so that the ratios compare like with like."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data, pairs = list(mode.data), [*mode.data, *mode.pairs]
    classifier, siamese = compose_experiment("classifier", data), compose_experiment("siamese", pairs)
    data_dir = classifier.paths.data_dir
    scratch = out_dir / "scratch" / str(time.time_ns())
    result: dict[str, Any] = {
        "provenance": provenance(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "mode": mode.name,
        "threads": torch.get_num_threads(),
        "precision": str(classifier.trainer.precision),  # the seed loop stays in float32, as the article's
    }
    result["peak_rss_mib_training"] = peak_rss_mib_of_training(
        [
            "+experiment=siamese",
            "trainer.max_epochs=1",
            "data.train_size=3000",
            "data.eval_pairs=2000",
            "data.gallery_size=2000",
            "callbacks=none",
            "~logger",
            f"paths.log_dir={scratch}",
        ]
    )
    ckpt = scratch / "siamese.ckpt"
    for name, cfg in (("classifier", classifier), ("siamese", siamese)):
        own = int(cfg.data.batch_size)
        r: dict[str, Any] = {"batch_size": own}
        for tag, bs in (("", own), ("_b50", ARTICLE_BATCH)):
            train, limit = [], []
            for i in range(mode.repeats):  # interleaved, so that a burst of load hits both alike
                save = ckpt if name == "siamese" and not tag and i == 0 else None
                train.append(pipeline_img_per_s(cfg.copy(), bs, mode.steps, save_to=save))
                limit.append(compute_limit_img_per_s(cfg, bs, mode.steps, device))
            r[f"train_img_per_s{tag}"], r[f"compute_limit_img_per_s{tag}"] = max(train), max(limit)
            r[f"pipeline_efficiency{tag}"] = r[f"train_img_per_s{tag}"] / r[f"compute_limit_img_per_s{tag}"]
        result[name] = r
    seed = max(seed_loop_img_per_s(classifier, mode.steps * 2, device) for _ in range(mode.repeats))
    c = result["classifier"]
    result["seed_loop_img_per_s"] = seed
    result["speedup_vs_seed_b50"] = c["train_img_per_s_b50"] / seed
    result["speedup_vs_seed"] = c["train_img_per_s"] / seed
    result["pair_build_s"] = pair_build_s(load_mnist(data_dir, train=True)[1])
    result["seed_pair_build_s"] = seed_pair_build_s(data_dir, mode.seed_pair_images)
    result["pair_speedup"] = result["seed_pair_build_s"] / result["pair_build_s"]
    result["eval_s"] = eval_s(ckpt, scratch / "eval", pairs)
    result["seed_eval_s_estimate"] = seed_eval_s_estimate(ckpt, data_dir, queries=mode.seed_queries)
    result["eval_speedup"] = result["seed_eval_s_estimate"] / result["eval_s"]
    if mode.time_to_target:
        result["time_to_target"] = {
            "classifier": time_to_target("classifier", "val/acc", 0.99),
            "siamese": time_to_target("siamese", "val/auroc", 0.998),
        }
    return result


def to_markdown(result: dict[str, Any]) -> str:
    return "\n".join(markdown_table(["figure", "value"], flatten(result))) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no time-to-target (<= 2 min)")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run of every figure (tests)"
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "bench")
    parser.add_argument(
        "--inference",
        metavar="CKPT",
        help="only the inference figures of this Siamese checkpoint (search, ONNX)",
    )
    args = parser.parse_args(argv)
    if args.inference:
        from bench import inference

        return inference.main([args.inference, "--out", str(args.out), *(["--quick"] if args.quick else [])])
    mode = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    keep_freed_memory()  # as train does: the pipeline, its compute limit and the seed loop alike
    with exit_on_user_error(), contextlib.redirect_stdout(sys.stderr):  # stdout: the JSON object only
        result = run(mode, args.out)
    stem = args.out / f"bench-{mode.name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    write_json(stem.with_suffix(".json"), result)
    write_atomic(stem.with_suffix(".md"), to_markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
