"""TensorBoard inspection: the event files of tiny real runs, read back as TensorBoard reads them."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from siamese_lit.callbacks import (
    ClassifierFigures,
    DistanceHistograms,
    EmbeddingProjector,
    ModelSummaryText,
    SiameseFigures,
    tensorboard_writer,
)
from siamese_lit.callbacks.figures import project_2d
from siamese_lit.runs.instantiate import instantiate_callbacks

SIAMESE_IMAGES = {f"{s}/{f}" for s in ("val", "test") for f in ("pairs", "roc", "embedding_2d")}
CLASSIFIER_IMAGES = {f"{s}/{f}" for s in ("val", "test") for f in ("confusion_matrix", "misclassified")}


def events(run: Path) -> EventAccumulator:
    """Everything in the run's TensorBoard dir (all event files), nothing sampled away."""
    guidance = {"images": 0, "histograms": 0, "scalars": 0, "tensors": 0}
    return EventAccumulator(str(run / "tensorboard"), size_guidance=guidance).Reload()


def hparams_session(acc: EventAccumulator) -> tuple[set[str], dict]:
    """(metric tags declared for the HPARAMS tab, the session's hyper-parameter values)."""
    content = acc.PluginTagToContent("hparams")
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {m.name.tag for m in exp.metric_infos}, dict(start.session_start_info.hparams)


def decoded(acc: EventAccumulator, tag: str) -> Image.Image:
    image = Image.open(io.BytesIO(acc.Images(tag)[-1].encoded_image_string))
    image.load()
    return image


def check_final_hparams(run: Path, acc: EventAccumulator, metric: str) -> None:
    """The HPARAMS tab holds the config and the final metrics, equal to metrics.json."""
    metrics = json.loads((run / "metrics.json").read_text())
    declared, hparams = hparams_session(acc)
    assert f"final/{metric}" in declared
    saved = OmegaConf.load(run / "tensorboard" / "hparams.yaml")  # the config as the logger saved it
    assert hparams["model/optimizer/lr"].number_value == pytest.approx(saved.model.optimizer.lr)
    assert hparams["model/net/hidden_size"].number_value == saved.model.net.hidden_size == 64
    assert acc.Scalars(f"final/{metric}")[-1].value == pytest.approx(metrics[metric], rel=1e-5)
    assert declared == {f"final/{k}" for k, v in metrics.items() if v is not None and math.isfinite(v)}


def test_siamese_run_writes_scalars_images_histograms_hparams(tiny_siamese_run: Path) -> None:
    acc = events(tiny_siamese_run)
    tags = acc.Tags()
    assert {"train/loss_epoch", "val/loss", "val/auroc", "val/eer", "test/loss", "test/auroc"} <= set(
        tags["scalars"]
    )
    assert set(tags["images"]) == SIAMESE_IMAGES
    for tag in SIAMESE_IMAGES:
        image = decoded(acc, tag)
        assert image.width >= 300 and image.height >= 300, tag
        assert len(image.getcolors(1 << 20)) > 50, f"{tag} is (nearly) blank"
    # similar and dissimilar distances of all the fixed pairs (data.eval_pairs=1000), one histogram each
    for stage in ("val", "test"):
        sim, dis = (acc.Histograms(f"{stage}/distance_{k}")[-1] for k in ("similar", "dissimilar"))
        assert sim.histogram_value.num + dis.histogram_value.num == 1000
        assert sim.histogram_value.num > 300 and dis.histogram_value.num > 300
        assert sim.histogram_value.min >= 0
    saved = OmegaConf.load(tiny_siamese_run / "tensorboard" / "hparams.yaml")
    steps = saved.data.train_size // saved.data.batch_size  # the one epoch's optimizer steps (drop_last)
    assert [h.step for h in acc.Histograms("val/distance_similar")] == [steps]
    # a trained encoder puts similar pairs closer, as the logged d_similar/d_dissimilar say
    val_sim, val_dis = (
        acc.Histograms(f"val/distance_{k}")[-1].histogram_value for k in ("similar", "dissimilar")
    )
    assert val_sim.sum / val_sim.num == pytest.approx(acc.Scalars("val/d_similar")[-1].value, rel=1e-4)
    assert val_sim.sum / val_sim.num < val_dis.sum / val_dis.num
    text = acc.Tensors("model/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "Trainable params" in text and "SequenceEncoder" in text and "LSTM(28, 64" in text
    check_final_hparams(tiny_siamese_run, acc, "test/auroc")


def test_siamese_run_writes_projector_files(tiny_siamese_run: Path) -> None:
    tb = tiny_siamese_run / "tensorboard"
    config = (tb / "projector_config.pbtxt").read_text()
    paths = {
        key: tb / line.split('"')[1]
        for line in config.splitlines()
        for key in ("metadata_path", "image_path", "tensor_path")
        if key in line
    }
    assert set(paths) == {"metadata_path", "image_path", "tensor_path"}
    labels = paths["metadata_path"].read_text().split()
    # default num_points 2000, capped by the 1000 test images of the tiny run
    assert len(labels) == 1000 and set(labels) <= {str(d) for d in range(10)} and len(set(labels)) == 10
    rows = paths["tensor_path"].read_text().splitlines()
    assert len(rows) == 1000 and len(rows[0].split("\t")) == 10  # embedding_dim 10
    sprite = Image.open(paths["image_path"])
    assert sprite.size == (32 * 28, 32 * 28)  # ceil(sqrt(1000)) thumbnails of 28 px a side
    assert "single_image_dim: 28" in config


def test_classifier_run_writes_its_figures_and_no_siamese_ones(tiny_classifier_run: Path) -> None:
    acc = events(tiny_classifier_run)
    tags = acc.Tags()
    assert {"train/acc", "val/acc", "val/loss", "test/acc", "test/loss"} <= set(tags["scalars"])
    assert set(tags["images"]) == CLASSIFIER_IMAGES
    for tag in CLASSIFIER_IMAGES:
        assert len(decoded(acc, tag).getcolors(1 << 20)) > 50, f"{tag} is (nearly) blank"
    assert tags["histograms"] == []  # the Siamese callbacks stay silent
    assert not (tiny_classifier_run / "tensorboard" / "projector_config.pbtxt").exists()
    assert "LitClassifier" in acc.Tensors("model/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    check_final_hparams(tiny_classifier_run, acc, "test/acc")


TB_CALLBACKS = {
    "tb_model_text": ModelSummaryText,
    "tb_classifier_figures": ClassifierFigures,
    "tb_siamese_figures": SiameseFigures,
    "tb_distance_histograms": DistanceHistograms,
    "tb_embedding_projector": EmbeddingProjector,
}


@pytest.mark.parametrize("off", sorted(TB_CALLBACKS))
def test_each_callback_can_be_switched_off(make_cfg, off: str) -> None:
    on = {type(c) for c in instantiate_callbacks(make_cfg(["+experiment=siamese"]).callbacks)}
    assert set(TB_CALLBACKS.values()) <= on
    left = {
        type(c)
        for c in instantiate_callbacks(make_cfg(["+experiment=siamese", f"callbacks.{off}=null"]).callbacks)
    }
    assert left == on - {TB_CALLBACKS[off]}


def test_projector_size_is_configurable(make_cfg) -> None:
    cfg = make_cfg(["+experiment=siamese_mlp2d", "callbacks.tb_embedding_projector.num_points=500"])
    (projector,) = [c for c in instantiate_callbacks(cfg.callbacks) if isinstance(c, EmbeddingProjector)]
    assert projector.num_points == 500


def test_no_tensorboard_logger_means_no_writer(tmp_path: Path) -> None:
    trainer = L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", devices=1, enable_progress_bar=False)
    assert tensorboard_writer(trainer) is None


def test_scatter_shows_a_2d_embedding_as_is_and_projects_others_on_principal_components() -> None:
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(500, 2, generator=g)
    points, axes = project_2d(flat)
    assert torch.equal(points, flat) and axes[0] == "embedding dimension 1"
    # 10-D data spread mostly along two known directions: PCA finds them, in order of variance
    basis = torch.linalg.qr(torch.randn(10, 10, generator=g))[0]
    wide = torch.randn(500, 10, generator=g) * torch.tensor([5.0, 2.0] + [0.1] * 8)
    points, axes = project_2d(wide @ basis.T + 3.0)
    assert points.shape == (500, 2)
    assert points[:, 0].std() > 2 * points[:, 1].std() > 2.0
    assert axes[0].startswith("principal component 1") and "% of variance" in axes[1]
