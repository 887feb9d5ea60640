"""Every experiment composes and runs; real short trainings learn; the CLI writes its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from siamese_lit.data.nondigits import font_files, training_fonts
from siamese_lit.models.loading import load_model
from siamese_lit.train import train
from tests.helpers.runs import EXPERIMENTS, SMALL_NET, TINY, TINY_SIAMESE, require, run_cli

EXPECTED_EXPERIMENTS = {
    "classifier",
    "rnn_classifier",
    "bilstm_classifier",
    "siamese",
    "siamese_triplet",
    "siamese_cnn",
    "siamese_mlp2d",
    "siamese_unseen",
    "siamese_robust",
    "siamese_openset",
}


def test_all_experiments_present() -> None:
    assert set(EXPERIMENTS) >= EXPECTED_EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_and_writes_the_metric_it_optimizes(
    experiment: str, make_cfg, tmp_path: Path
) -> None:
    """Each experiment trains two steps, validates, checkpoints and tests; what its `optimized_metric`
    names (what sweepers optimise and summary.md sorts on) is in its metrics.json."""
    limits = [f"++trainer.limit_{stage}_batches=2" for stage in ("train", "val", "test")]
    cfg = make_cfg([f"+experiment={experiment}", *TINY_SIAMESE[:5], *limits, "callbacks.model_summary=null"])
    assert cfg.task_name == experiment
    if cfg.data.get("glyph_classes") and not training_fonts(font_files()):
        require(
            "fonts", f"{experiment} trains on glyph classes of the DejaVu fonts (make fonts installs them)"
        )
    assert cfg.optimized_metric == f"{cfg.callbacks.model_checkpoint.monitor}_best"
    metrics = train(cfg)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert cfg.optimized_metric in written and torch.isfinite(torch.tensor(written[cfg.optimized_metric]))
    # the views objectives train on two augmented views: evaluation has no loss, only the figures
    key = "test/auroc" if cfg.data.get("batches") == "views" else "test/loss"
    assert key in metrics and written[key] == pytest.approx(metrics[key])
    if cfg.data.get("open_set"):  # unknown test digits: the open-set figures
        assert {"test/openset_auroc", "test/openset_fpr95", "test/closed_acc"} <= set(written)


def test_article_models_are_what_the_experiments_build(make_cfg) -> None:
    lstm = instantiate(make_cfg(["+experiment=classifier"]).model).net.rnn
    assert (type(lstm).__name__, lstm.hidden_size, lstm.num_layers, lstm.bidirectional) == (
        "LSTM",
        128,
        3,
        False,
    )
    rnn = instantiate(make_cfg(["+experiment=rnn_classifier"]).model).net.rnn
    assert (type(rnn).__name__, rnn.hidden_size, rnn.num_layers) == ("RNN", 128, 1)
    bi = instantiate(make_cfg(["+experiment=bilstm_classifier"]).model).net
    assert (bi.rnn.hidden_size, bi.rnn.bidirectional, bi.head.in_features) == (64, True, 128)
    siamese = instantiate(make_cfg(["+experiment=siamese"]).model)
    assert siamese.net.rnn.num_layers == 3 and siamese.net.out_dim == 10 and siamese.objective.margin == 2.0


def test_short_classifier_run_learns(make_cfg, tmp_path: Path) -> None:
    """One epoch on 5000 images with the article's 3x128 LSTM."""
    cfg = make_cfg(["+experiment=classifier", *TINY, "data.train_size=5000", "data.batch_size=50"])
    metrics = train(cfg)
    assert metrics["test/acc"] >= 0.70, metrics  # chance is 0.10; measured 0.79
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(p.startswith("epoch_") for p in ckpts)
    # the checkpoint alone rebuilds the model (the net's config is in its hyper-parameters)
    model = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt", "classifier")[0]
    assert model.net.rnn.num_layers == 3


def test_short_siamese_run_beats_chance(tiny_siamese_run: Path) -> None:
    metrics = json.loads((tiny_siamese_run / "metrics.json").read_text())
    for key in ("test/auroc", "test/eer", "test/pair_acc", "test/knn_acc", "val/auroc", "test/d_similar"):
        assert key in metrics, key
    # chance is 0.5; this tiny run measured ~0.8
    assert metrics["val/auroc"] > 0.7 and metrics["test/auroc"] > 0.7, metrics
    assert metrics["test/eer"] < 0.35 and metrics["test/d_similar"] < metrics["test/d_dissimilar"]
    model = load_model(tiny_siamese_run / "checkpoints" / "last.ckpt", "Siamese")[0]
    # the threshold chosen on validation travels with the checkpoint and is applied on test
    assert float(model.threshold) == pytest.approx(metrics["test/threshold"])


def test_views_run_learns_unseen_digits(make_cfg, tmp_path: Path) -> None:
    """SupCon + NT-Xent on two robust views of digits 0-4; scored on digits 5-9 never seen, with the
    metric-learning figures."""
    cfg = make_cfg(
        [
            "+experiment=siamese_robust",
            "data.classes=[0,1,2,3,4]",
            "data.test_classes=[5,6,7,8,9]",
            *TINY_SIAMESE,
            *SMALL_NET,
            "model.net.hidden_size=64",
            "data.batch_size=64",
            "model.optimizer.lr=0.01",
            "model.embedding_dim=32",
        ]
    )
    metrics = train(cfg)
    for key in ("test/auroc", "test/oneshot_acc", "test/p_at_1", "test/r_precision", "test/map_at_r"):
        assert key in metrics, key
    # chance: auroc 0.5, 5-way one-shot 0.2, P@1 about 0.2
    assert (
        metrics["test/auroc"] > 0.55 and metrics["test/oneshot_acc"] > 0.28 and metrics["test/p_at_1"] > 0.45
    )
    assert metrics["test/map_at_r"] <= metrics["test/r_precision"] <= 1
    model = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt", "Siamese")[0]
    emb = model.embed(torch.zeros(3, 28, 28))
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=1), torch.ones(3))  # unit norm


def test_same_seed_same_metrics(make_cfg, tmp_path: Path) -> None:
    runs = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        cfg = make_cfg(
            ["+experiment=classifier", *TINY, *SMALL_NET, "data.train_size=1000", f"seed={seed}"],
            output_dir=tmp_path / name,
        )
        train(cfg)
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert runs[0] == runs[1]
    assert runs[0]["test/loss"] != runs[2]["test/loss"]


def test_cli_run_writes_metrics_checkpoints_and_events(tmp_path: Path, data_dir: Path) -> None:
    result = run_cli(
        "siamese_lit.train",
        ["+experiment=classifier", *TINY, *SMALL_NET, "data.train_size=1000", f"paths.log_dir={tmp_path}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "classifier" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/acc", "test/loss", "val/acc"} <= set(metrics)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / ".hydra" / "config.yaml").is_file()


def test_list_and_dict_options_survive_the_checkpoint(make_cfg) -> None:
    """Options given as lists/dicts (classes, the augmentation policy) reach the checkpoint as plain
    containers, so the best checkpoint loads with torch.load(weights_only=True) for the test after fit."""
    cfg = make_cfg(
        [
            "+experiment=siamese_unseen",
            *TINY_SIAMESE,
            *SMALL_NET,
            "data.train_size=500",
            "data/augment=robust",
            "data.glyph_classes=false",  # the options at stake are lists and dicts, not the glyphs
        ]
    )
    metrics = train(cfg)
    best = f"{cfg.callbacks.model_checkpoint.monitor}_best"  # the best checkpoint was loaded and tested
    assert "test/oneshot_acc" in metrics and best in metrics


def test_cli_siamese_run_prints_its_test_figures_once(tmp_path: Path, data_dir: Path) -> None:
    """The gallery is a second test loader: Lightning's table would show every figure twice."""
    result = run_cli(
        "siamese_lit.train",
        [
            "+experiment=siamese",
            *TINY_SIAMESE,
            *SMALL_NET,
            "data.train_size=1000",
            f"paths.log_dir={tmp_path}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DataLoader" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ test/")]  # the table's rows
    assert sum("test/auroc " in r for r in rows) == 1 and sum("test/knn_acc " in r for r in rows) == 1
