"""`python -m siamese_lit.search index_path=FILE <images or folders> [output=FILE.json]`: which digit is this?

Each query image is brought to MNIST form (siamese_lit.data.images), embedded with the checkpoint the
index was built with (or `ckpt_path=`, refused when its weights are not the index's) and answered
against the gallery: by a vote of its k nearest items (`protocol=knn`), or by the LSTM article's
mean distance to k references of each label (`protocol=article`); `unknown` when the query is unlike
every training digit: its rejection score past the rejection threshold (`reject_threshold=`, else the
checkpoint's; a checkpoint without one says `unknown` past the pair threshold, as before). Prints
a table; with `output=`, writes the answers as a JSON list, whole. An image that cannot be read is
named; the others are answered, then one `error:` line (exit 2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.cli.outputs import check_output, writing
from siamese_lit.cli.settings import check_seeds
from siamese_lit.data.images import ImageError
from siamese_lit.inference.cli import load_siamese, string_list
from siamese_lit.inference.gallery import describe_failed, query_files, read_digits
from siamese_lit.inference.index import GalleryIndex, Match, load_index
from siamese_lit.inference.model import PROTOCOLS, SiameseModel
from siamese_lit.utils.errors import CheckpointError, ConfigError, check
from siamese_lit.utils.files import finite, write_atomic

#: neighbours shown per query in the terminal table (all k are in the JSON)
SHOWN = 3


def _model(cfg: DictConfig, index: GalleryIndex) -> SiameseModel:
    """The checkpoint to embed queries with: `ckpt_path`, else the index's; refused unless its weights
    are the ones the index was built with. It normalises as the index was embedded."""
    path = cfg.ckpt_path or index.ckpt_path
    if not path:
        raise CheckpointError(
            f"index_path={cfg.index_path} names no checkpoint: pass ckpt_path=<its checkpoint>."
        )
    if not cfg.ckpt_path and not Path(path).is_file():
        raise CheckpointError(
            f"index_path={cfg.index_path} was built with {path}, which is not there any more: pass "
            "ckpt_path=<that checkpoint> (its weights must be the same)."
        )
    model = load_siamese(cfg, path, cfg.device, mean=index.mean, std=index.std)
    load_index(cfg.index_path, model.fingerprint)  # one line when another's
    return model


def _row(path: str, match: Match | None, error: str | None = None) -> dict[str, Any]:
    if match is None:
        empty = {"label": None, "distance": None, "score": None, "neighbours": []}
        return {"path": path, **empty, "error": error}
    neighbours = [{"label": label, "distance": d, "source": s} for label, d, s in match.neighbours]
    return {
        "path": path,
        "label": match.label,
        "distance": match.distance,
        "score": match.score,
        "neighbours": neighbours,
        "error": None,
    }


def _unknown_rule(model: SiameseModel) -> str:
    if math.isfinite(model.rejection.value):
        return f"unknown: rejection score ({model.module.rejection.rule}) past {model.rejection}"
    return f"unknown: nearest item past the pair threshold {model.threshold} (no rejection in the checkpoint)"


def _table(rows: list[dict[str, Any]]) -> str:
    width = min(max(len(r["path"]) for r in rows), 60)
    head = f"{'query':<{width}}  {'label':>7}  {'distance':>8}  {'score':>7}"
    lines = [f"{head}  nearest (label distance source)"]
    for r in rows:
        if r["error"] is not None:
            lines.append(f"{r['path']:<{width}}  {'-':>7}  {'-':>8}  {'-':>7}  not read: {r['error']}")
            continue
        near = "; ".join(f"{n['label']} {n['distance']:.3f} {n['source']}" for n in r["neighbours"][:SHOWN])
        answer = f"{r['path']:<{width}}  {r['label']:>7}  {r['distance']:>8.4f}  {r['score']:>7.4f}"
        lines.append(f"{answer}  {near}")
    return "\n".join(lines)


def search(cfg: DictConfig) -> list[dict[str, Any]]:
    """The answer of every query of `cfg` (also printed, and written to `cfg.output`)."""
    check(cfg.protocol in PROTOCOLS, f"protocol must be one of {list(PROTOCOLS)}, got {cfg.protocol!r}.")
    k = PROTOCOLS[cfg.protocol] if cfg.k is None else cfg.k
    check(k >= 1, f"k must be >= 1, got {k}.")
    for key in ("threshold", "reject_threshold"):
        check(cfg[key] is None or cfg[key] >= 0, f"{key} must be >= 0, got {cfg[key]}.")
    check(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}.")
    check_seeds(cfg, ("seed",))  # the article protocol's draws: numpy's range, not an OverflowError
    output = check_output(cfg, "output", cfg.overwrite, required=False)
    if not cfg.index_path:
        raise ConfigError(
            "index_path is required: pass index_path=<file made by python -m siamese_lit.index>."
        )
    paths = string_list(cfg, "queries")
    check(
        bool(paths),
        "no query images: give image files or folders "
        "(python -m siamese_lit.search index_path=... a.png dir/).",
    )
    index = load_index(cfg.index_path)
    files, failed = query_files(paths)
    digits = read_digits(files)
    failed += digits.failed
    if not digits.sources:
        raise ImageError(f"none of the query images could be read: {describe_failed(failed)}.")
    model = _model(cfg, index)
    embeddings = model.embed(digits.digits, cfg.batch_size)
    matches = model.identify(embeddings, index, k, cfg.protocol, cfg.seed)
    rows = [_row(p, m) for p, m in zip(digits.sources, matches, strict=True)]
    rows += [_row(p, None, reason) for p, reason in failed]
    print(f"{cfg.protocol}, k={k}, gallery of {len(index.labels)} ({cfg.index_path})")
    print(_unknown_rule(model))
    print(_table(rows), flush=True)
    if output is not None:
        with writing(output):
            write_atomic(output, json.dumps(finite(rows), indent=2, allow_nan=False) + "\n")
        print(f"answers written to {output}")
    if failed:
        raise ImageError(
            f"{len(failed)} of the query images could not be read (the other {len(matches)} are answered): "
            f"{describe_failed(failed)}."
        )
    return rows


def main() -> None:
    run_command(search, "search", positional="queries")


if __name__ == "__main__":
    main()
