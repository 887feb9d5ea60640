"""The encoder exported to ONNX gives PyTorch's embeddings in onnxruntime, on real MNIST test images:
the LSTM, CNN and MLP encoders of the experiment configs, batch sizes 1 and 64, the cosine model's
unit norm included; and the export command end to end on a real checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hydra.utils import instantiate

from siamese_lit.data.mnist import load_mnist
from siamese_lit.inference import SiameseModel
from siamese_lit.inference.index import checkpoint_fingerprint
from siamese_lit.inference.onnx_export import INPUT, OUTPUT, SCORE, ExportError, export_onnx, session
from siamese_lit.models.loading import load_model
from tests.helpers.runs import compose_cfg, run_cli

MEAN, STD = 0.1307, 0.3081
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def pixels(data_dir: Path) -> torch.Tensor:
    """200 real MNIST test digits as the graph takes them: float (N, 28, 28) in [0, 1]."""
    return load_mnist(data_dir, train=False)[0][:200].float() / 255


def _onnx(pixels: torch.Tensor, path: Path) -> np.ndarray:
    return session(path).run([OUTPUT], {INPUT: pixels.numpy()})[0]


@pytest.mark.parametrize(
    "overrides",
    [
        ["+experiment=siamese"],  # the headline LSTM 3x128
        ["+experiment=siamese", "model/net=cnn"],
        ["+experiment=siamese", "model/net=mlp"],
        ["+experiment=siamese_robust"],  # 64-d unit-norm embeddings (cosine distance)
    ],
    ids=["lstm", "cnn", "mlp", "lstm-cosine"],
)
def test_onnxruntime_matches_pytorch(overrides: list[str], pixels: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = instantiate(compose_cfg(overrides, tmp_path / "cfg").model).eval()
    path = tmp_path / "encoder.onnx"
    found = export_onnx(model, path, mean=MEAN, std=STD, check_pixels=pixels[:8], metadata={"x": "y"})
    assert found <= TOLERANCE
    for batch in (pixels[:1], pixels[1:65]):  # batch 1 and 64, other images than the export's check
        with torch.no_grad():
            expected = model((batch - MEAN) / STD).numpy()  # LitSiamese.forward on normalised images
        got = _onnx(batch, path)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOLERANCE
        # the embeddings differ from image to image: not a constant graph
        assert np.abs(got - got.mean(0)).max() > 1e-3 or len(got) == 1
    if model.distance.normalize:
        assert np.allclose(np.linalg.norm(_onnx(pixels[:64], path), axis=1), 1, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props["x"] == "y" and "[0, 1]" in props["input"]
    graph_input = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in graph_input][1:] == [28, 28]
    assert not graph_input[0].dim_value  # the batch dimension is symbolic


def test_the_graphs_reject_score_is_the_rejections_with_outliers(
    pixels: torch.Tensor, tmp_path: Path
) -> None:
    """A model trained beside non-digits holds outliers: the graph's reject_score is Rejection's
    (the digits' mean distance over the outliers'), on other images than the references'."""
    torch.manual_seed(0)
    model = instantiate(compose_cfg(["+experiment=siamese_robust"], tmp_path / "cfg").model).eval()
    with torch.no_grad():
        embed = lambda x: model((x - MEAN) / STD)  # noqa: E731
        model.rejection.calibrate(
            embed(pixels[:40]), embed(pixels[40:100]), model.distance, embed(1 - pixels[:50])
        )
    path = tmp_path / "encoder.onnx"
    export_onnx(model, path, mean=MEAN, std=STD, check_pixels=pixels[:8], metadata={})
    batch = pixels[100:164]
    with torch.no_grad():
        expected = model.rejection.scores(embed(batch), model.distance).numpy()
    scores = session(path).run([SCORE], {INPUT: batch.numpy()})[0]
    assert np.abs(scores - expected).max() <= TOLERANCE
    without = torch.cdist(embed(batch), model.rejection.references).topk(5, largest=False).values.mean(1)
    assert np.abs(scores - without.detach().numpy()).max() > 0.1  # the outliers changed the score


def test_the_graph_measures_a_centred_models_embeddings_less_its_centre(
    pixels: torch.Tensor, tmp_path: Path
) -> None:
    """siamese_unseen centres its embeddings (model.center_embeddings): the graph takes the centre off
    before normalising, as SiameseModel.embed does."""
    torch.manual_seed(0)
    model = instantiate(compose_cfg(["+experiment=siamese_unseen"], tmp_path / "cfg").model).eval()
    model.centering.mean.copy_(torch.randn_like(model.centering.mean))  # as a fitted one
    path = tmp_path / "encoder.onnx"
    export_onnx(model, path, mean=MEAN, std=STD, check_pixels=pixels[:8], metadata={})
    batch = pixels[8:72]
    with torch.no_grad():
        raw = model.net((batch - MEAN) / STD).float()
    expected = torch.nn.functional.normalize(raw - model.centering.mean, dim=1).numpy()
    got = _onnx(batch, path)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert np.abs(got - torch.nn.functional.normalize(raw, dim=1).numpy()).max() > 0.1  # not uncentred


def test_a_graph_past_the_tolerance_is_not_written(pixels: torch.Tensor, tmp_path: Path) -> None:
    """The MLP's 1024-wide sums run in another order in onnxruntime: a difference of about 1e-6,
    within the tolerance but not within 1e-12, so the check refuses it and keeps the old file."""
    torch.manual_seed(0)
    model = instantiate(compose_cfg(["+experiment=siamese", "model/net=mlp"], tmp_path / "cfg").model).eval()
    path = tmp_path / "encoder.onnx"
    path.write_text("the user's previous export\n")
    with pytest.raises(
        ExportError, match=r"differ from PyTorch's by \S+ \(> tolerance 1e-12\) on 64 .* not written"
    ):
        export_onnx(model, path, mean=MEAN, std=STD, check_pixels=pixels[:64], metadata={}, tolerance=1e-12)
    assert path.read_text() == "the user's previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.onnx"]  # no temporary left


def _export_command(ckpt: Path, tmp_path: Path) -> tuple[Path, str]:
    """`python -m siamese_lit.export` of `ckpt` to ONNX in `tmp_path`, which must succeed: the graph
    and what the command printed."""
    out = tmp_path / "encoder.onnx"
    result = run_cli(
        "siamese_lit.export",
        [f"ckpt_path={ckpt}", "format=onnx", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_export_command_on_a_real_checkpoint(
    tiny_siamese_run: Path, pixels: torch.Tensor, tmp_path: Path
) -> None:
    ckpt = tiny_siamese_run / "checkpoints" / "last.ckpt"
    out, stdout = _export_command(ckpt, tmp_path)
    assert "pixels float32 (batch, 28, 28) in [0, 1]" in stdout
    assert "0.3081 and the euclidean distance inside" in stdout  # no centring
    model, _ = load_model(ckpt, "Siamese")
    for batch in (pixels[100:101], pixels[100:164]):
        with torch.no_grad():
            expected = model((batch - MEAN) / STD).numpy()  # the checkpoint's data.mean/std are MNIST's
        assert np.abs(_onnx(batch, out) - expected).max() <= TOLERANCE
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["fingerprint"] == checkpoint_fingerprint(model.state_dict())
    assert float(props["threshold"]) == pytest.approx(float(model.threshold))
    assert (float(props["mean"]), float(props["std"]), props["distance"]) == (MEAN, STD, "euclidean")
    # the rejection: the graph's reject_score is SiameseModel's, past the metadata's reject_threshold
    assert float(props["reject_threshold"]) == pytest.approx(float(model.rejection.threshold))
    siamese = SiameseModel.from_checkpoint(ckpt)
    digits = (pixels[100:164] * 255).round().to(torch.uint8)
    expected = siamese.reject_scores(siamese.embed(digits)).numpy()
    scores = session(out).run([SCORE], {INPUT: pixels[100:164].numpy()})[0]
    assert scores.shape == (64,) and np.abs(scores - expected).max() <= TOLERANCE


def test_export_command_on_a_centred_checkpoint(
    tiny_centred_run: Path, pixels: torch.Tensor, tmp_path: Path
) -> None:
    """The graph of a model trained with model.center_embeddings answers as its SiameseModel."""
    ckpt = tiny_centred_run / "checkpoints" / "last.ckpt"
    out, stdout = _export_command(ckpt, tmp_path)
    assert "0.3081, centring and the cosine distance inside" in stdout
    digits = (pixels[100:164] * 255).round().to(torch.uint8)
    expected = SiameseModel.from_checkpoint(ckpt).embed(digits).numpy()
    assert np.abs(_onnx(digits.float() / 255, out) - expected).max() <= TOLERANCE
