"""The inference benchmark (bench.inference) runs on a real checkpoint and reports
consistent figures; the figures themselves are measured, not asserted."""

from __future__ import annotations

from pathlib import Path

from bench.inference import measure, to_markdown


def test_inference_bench_reports_every_figure(tiny_siamese_run: Path, data_dir: Path) -> None:
    r = measure(tiny_siamese_run / "checkpoints" / "last.ckpt", data_dir, quick=True, gallery_size=3000)
    assert (r["gallery"], r["embedding_dim"]) == (3000, 10)
    assert (
        r["index_embeddings_mib"] == 3000 * 10 * 4 / 2**20 < r["index_mib"]
    )  # + the JSON of labels, sources
    for key in ("index_build_img_per_s", "search_qps_batched", "search_qps_single", "search_qps_end_to_end"):
        assert r[key] > 0, key
    assert 0.5 < r["knn_accuracy_on_test"] <= 1  # a trained model, not chance (0.1)
    for batch in ("batch_1", "batch_64"):
        v = r["encoder_img_per_s"][batch]
        assert v["pytorch"] > 0 and v["onnxruntime_over_pytorch"] == v["onnxruntime"] / v["pytorch"]
    assert "exact search, one query at a time" in to_markdown(r)
