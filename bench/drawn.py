"""Drawn-digit accuracy: digits drawn with the mouse on the demo page, in a real Chromium.

    python -m bench.drawn CKPT [--per-digit 12] [--per-nondigit 4] [--strength 1.0] [--seed 0] [--json OUT]
        [-- demo overrides, e.g. index_path=... gallery_size=...]

Serves `python -m siamese_lit.demo ckpt_path=CKPT` (its gallery: MNIST's 60k training images by
default) and draws each digit 0-9 `--per-digit` times (bench.strokes: a template under a
random jitter) on the two canvases, two drawings per Compare. Reports the k-NN accuracy of the
predicted digit (`unknown` counts as wrong), the share of `unknown`, the confusions, and the
verdict's accuracy on the pairs (about half of them the same digit); then draws each non-digit of
bench.strokes.NON_DIGIT_TEMPLATES (letters, shapes) `--per-nondigit` times and reports the share
answered `unknown` (the rejection threshold's work), by kind. Mouse strokes are
another domain than MNIST's pen scans: this measures the page end to end, it gates nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench import browser
from bench.strokes import NON_DIGIT_TEMPLATES, drawing
from siamese_lit.runs.provenance import provenance


def pairs(per_digit: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(digit A, digit B) for each Compare: every digit `per_digit` times in all; half of the pairs
    the same digit on purpose, the others digits paired at random (mostly different), shuffled."""
    same = [(d, d) for d in range(10) for _ in range(per_digit // 4)]
    rest = [d for d in range(10) for _ in range(per_digit - 2 * (per_digit // 4))]
    rng.shuffle(rest)
    rest = rest[: len(rest) - len(rest) % 2]
    out = same + list(zip(rest[::2], rest[1::2], strict=True))
    rng.shuffle(out)
    return out


def run(
    ckpt: str, per_digit: int, per_nondigit: int, strength: float, seed: int, overrides: list[str]
) -> dict:
    made_at = provenance()
    chromium = browser.find_chromium()
    if chromium is None:
        raise SystemExit("error: no Chromium found (make browser, or set SIAMESE_LIT_CHROMIUM)")
    rng = np.random.default_rng(seed)
    rounds = pairs(per_digit, rng)
    truth, predicted, verdicts = [], [], []
    nondigits: list[tuple[str, str | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"ckpt_path={ckpt}", *overrides, f"hydra.run.dir={tmp}/run"]
        start = time.perf_counter()
        with browser.demo_server(args, Path(tmp) / "server.log") as url:
            print(f"server up in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
            with browser.open_page(url, chromium) as page:
                for i, (a, b) in enumerate(rounds):
                    if i:
                        browser.clear(page)
                    browser.draw(page, "a", drawing(a, rng, strength))
                    browser.draw(page, "b", drawing(b, rng, strength))
                    shown = browser.compare(page)
                    truth += [str(a), str(b)]
                    predicted += [browser.predicted(shown["a"]), browser.predicted(shown["b"])]
                    verdicts.append((a == b, browser.verdict_word(shown["verdict"]) == "same"))
                    print(f"{i + 1}/{len(rounds)}: {a} {b} -> {predicted[-2:]}", file=sys.stderr, flush=True)
                shapes = [s for s in NON_DIGIT_TEMPLATES for _ in range(per_nondigit)]
                for a, b in zip(shapes[::2], shapes[1::2], strict=True):
                    browser.clear(page)
                    browser.draw(page, "a", drawing(a, rng, strength))
                    browser.draw(page, "b", drawing(b, rng, strength))
                    shown = browser.compare(page)
                    nondigits += [(a, browser.predicted(shown["a"])), (b, browser.predicted(shown["b"]))]
                    print(
                        f"non-digits: {a} {b} -> {[p for _, p in nondigits[-2:]]}",
                        file=sys.stderr,
                        flush=True,
                    )
    correct = [t == p for t, p in zip(truth, predicted, strict=True)]
    confusions = Counter(f"{t}->{p}" for t, p in zip(truth, predicted, strict=True) if t != p)
    same_pairs = [ok for same, ok in verdicts if same]
    diff_pairs = [not ok for same, ok in verdicts if not same]
    return {
        "provenance": made_at,
        "checkpoint": ckpt,
        "demo_overrides": overrides,
        "drawings": len(truth),
        "strength": strength,
        "seed": seed,
        "knn_accuracy": float(np.mean(correct)),
        "unknown_share": predicted.count("unknown") / len(predicted),
        "per_digit_accuracy": {
            str(d): float(np.mean([c for t, c in zip(truth, correct, strict=True) if t == str(d)]))
            for d in range(10)
        },
        "confusions": dict(confusions.most_common()),
        "pairs": len(verdicts),
        "verdict_accuracy": float(np.mean(same_pairs + diff_pairs)),
        "verdict_accuracy_same_pairs": float(np.mean(same_pairs)),
        "verdict_accuracy_different_pairs": float(np.mean(diff_pairs)),
        "nondigit_drawings": len(nondigits),
        "nondigit_unknown_share": float(np.mean([p == "unknown" for _, p in nondigits]))
        if nondigits
        else None,
        "nondigit_unknown_by_kind": {
            kind: float(np.mean([p == "unknown" for k, p in nondigits if k == kind]))
            for kind in dict.fromkeys(k for k, _ in nondigits)
        },
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a Siamese checkpoint (+experiment=siamese_robust)")
    parser.add_argument("--per-digit", type=int, default=12, help="drawings of each digit (>= 10)")
    parser.add_argument("--per-nondigit", type=int, default=4, help="drawings of each non-digit")
    parser.add_argument("--strength", type=float, default=1.0, help="jitter strength (0: the templates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("overrides", nargs="*", help="demo settings, e.g. gallery_size=10000")
    args = parser.parse_intermixed_args(argv)
    if args.per_digit < 4:
        parser.error("--per-digit must be >= 4 (a quarter of them drawn in same-digit pairs)")
    if args.per_nondigit < 0:
        parser.error("--per-nondigit must be >= 0")
    result = run(args.ckpt, args.per_digit, args.per_nondigit, args.strength, args.seed, args.overrides)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
