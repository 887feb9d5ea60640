"""The benchmark's building blocks, in its seconds-long tiny mode: every figure present and positive.

The figures themselves are measured by `make bench` / `make bench-quick`, never in timed tests.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from bench import suite as bench

RATIOS = ("pipeline_efficiency", "speedup_vs_seed", "speedup_vs_seed_b50", "pair_speedup", "eval_speedup")


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        bench.main(["--tiny", "--out", str(out)])
    return json.loads(stdout.getvalue()), out


def test_every_figure_and_ratio_is_present_and_positive(tiny_bench) -> None:
    result, _ = tiny_bench
    assert result["mode"] == "tiny"
    for model in ("classifier", "siamese"):
        r = result[model]
        for key in ("train_img_per_s", "compute_limit_img_per_s", "pipeline_efficiency"):
            for tag in ("", "_b50"):
                assert r[f"{key}{tag}"] > 0, (model, key, tag)
        assert r["batch_size"] >= 2
    for key in (*RATIOS[1:], "seed_loop_img_per_s", "pair_build_s", "seed_pair_build_s", "eval_s"):
        assert result[key] > 0, key
    assert result["seed_eval_s_estimate"] > 0 and result["peak_rss_mib_training"] > 100
    # the ratios are what their inputs say
    assert result["pair_speedup"] == pytest.approx(result["seed_pair_build_s"] / result["pair_build_s"])
    assert result["eval_speedup"] == pytest.approx(result["seed_eval_s_estimate"] / result["eval_s"])
    c = result["classifier"]
    assert result["speedup_vs_seed"] == pytest.approx(c["train_img_per_s"] / result["seed_loop_img_per_s"])
    assert "time_to_target" not in result  # full bench only


def test_json_and_markdown_written(tiny_bench) -> None:
    result, out = tiny_bench
    (json_file,) = out.glob("bench-tiny-*.json")
    assert json.loads(json_file.read_text())["pair_speedup"] == pytest.approx(result["pair_speedup"])
    markdown = json_file.with_suffix(".md").read_text()
    assert "| classifier.pipeline_efficiency |" in markdown and "| eval_speedup |" in markdown
