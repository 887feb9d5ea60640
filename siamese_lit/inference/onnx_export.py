"""The encoder of a Siamese model as an ONNX graph: pixels in, the model's embeddings out.

The graph's input `pixels` is float32 (batch, 28, 28), MNIST-style digits (white on black, framed as
siamese_lit.data.images makes them) with values in [0, 1] (uint8 / 255). The graph itself applies
the training normalisation ((x - mean) / std, the checkpoint's) and, under the cosine distance, the
unit-norm projection, so its output `embedding` (batch, D) is exactly what `LitSiamese` gives and
the Euclidean distance between two outputs is the model's distance. The batch size is dynamic, 0
included (an empty batch gives an empty (0, D)), and a digit with a NaN or infinite pixel gets an
all-NaN embedding, in PyTorch and in onnxruntime alike (whose LSTM would otherwise clamp NaN to a
finite answer).
A model with a calibrated rejection (siamese_lit.evaluation.openset.Rejection) has a second output,
`reject_score` (batch,): each digit's mean distance to its 5 nearest reference training digits,
divided (a model trained beside non-digits) by its mean distance to the 5 nearest of the training
non-digits it holds as outliers, both held in the graph; past the metadata's `reject_threshold` the
digit is `unknown`.
mean, std, the calibrated thresholds, the distance and the checkpoint's fingerprint are stored in
the model's metadata_props.

Written with torch.onnx (the dynamo exporter), checked with onnx's checker and run with onnxruntime
on check images before the file is written whole (siamese_lit.utils.files.write_atomic): a graph
whose embeddings differ from PyTorch's by more than the tolerance is never written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from siamese_lit.data.normalization import Normalization
from siamese_lit.evaluation.openset import NEAR, REJECT_K
from siamese_lit.utils.errors import SiameseLitError
from siamese_lit.utils.files import write_atomic

INPUT, OUTPUT, SCORE = "pixels", "embedding", "reject_score"
#: the largest batch the exported graph is declared for (any size up to it runs)
MAX_BATCH = 1 << 20


class ExportError(SiameseLitError):
    """The exporter failed, or its graph does not give PyTorch's embeddings."""


class PixelEncoder(nn.Module):
    """Pixels in [0, 1] (B, 28, 28) -> the model's embeddings (B, D): normalisation, encoder, centring,
    distance.

    The batch goes through the encoder with one blank digit appended and removed after, so that the
    encoder never sees a batch of 0 (onnxruntime's kernels abort the process on one); each digit is
    independent of the others in eval mode, so the answers are unchanged. A digit with a non-finite
    pixel is NaN explicitly, not whatever a kernel makes of NaN."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.distance = model.net, model.distance
        self.centering = getattr(model, "centering", nn.Identity())
        self.normalization = Normalization(float(mean), float(std))
        rejection = getattr(model, "rejection", None)
        calibrated = rejection is not None and rejection.calibrated
        references = rejection.references.detach().clone() if calibrated else None
        outliers = rejection.outliers.detach().clone() if calibrated and len(rejection.outliers) else None
        self.register_buffer("references", references)
        self.register_buffer("outliers", outliers)

    @property
    def outputs(self) -> list[str]:
        return [OUTPUT] if self.references is None else [OUTPUT, SCORE]

    def forward(self, pixels: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        padded = torch.cat([pixels, pixels.new_zeros(1, *pixels.shape[1:])])
        embeddings = self.net(self.normalization(padded)).float()
        embeddings = self.distance.prepare(self.centering(embeddings))[:-1]
        finite = torch.isfinite(pixels).flatten(1).all(dim=1, keepdim=True)
        embeddings = torch.where(finite, embeddings, torch.full_like(embeddings, float("nan")))
        if self.references is None:
            return embeddings
        return embeddings, self.reject_score(embeddings)

    def reject_score(self, embeddings: Tensor) -> Tensor:
        """Rejection's score (siamese_lit.evaluation.openset.rejection_scores): the mean Euclidean
        distance to the REJECT_K nearest references, over that to the REJECT_K nearest outliers when
        the model holds some, in the product form ONNX runs as one matrix product."""
        score = self._mean_nearest(embeddings, self.references)
        if self.outliers is None:
            return score
        return score / self._mean_nearest(embeddings, self.outliers).clamp_min(NEAR)

    @staticmethod
    def _mean_nearest(embeddings: Tensor, rows: Tensor) -> Tensor:
        squared = (
            (embeddings * embeddings).sum(1, keepdim=True)
            + (rows * rows).sum(1)[None]
            - 2 * embeddings @ rows.T
        )
        k = min(REJECT_K, rows.shape[0])
        return squared.clamp_min(0).sqrt().topk(k, dim=1, largest=False).values.mean(1)


def session(model: str | Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session of the file (or of the serialised graph); threads: intra-op
    threads (None = onnxruntime's choice)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def max_difference(encoder: PixelEncoder, onnx_model: str | Path | bytes, pixels: Tensor) -> float:
    """The largest absolute difference between onnxruntime's and PyTorch's outputs (embeddings, and
    rejection scores when the graph has them) of `pixels`."""
    with torch.no_grad():
        expected = encoder(pixels)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session(onnx_model).run(encoder.outputs, {INPUT: pixels.numpy().astype(np.float32)})
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))


def to_onnx(encoder: PixelEncoder, opset: int | None = None) -> onnx.ModelProto:
    """The encoder traced by torch.onnx's dynamo exporter, with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    kwargs = {} if opset is None else {"opset_version": opset}
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            logging.disable(logging.INFO)  # the exporter's passes log each step at INFO
            program = torch.onnx.export(
                encoder.eval(),
                (torch.rand(2, 28, 28),),
                input_names=[INPUT],
                output_names=encoder.outputs,
                dynamic_shapes=({0: batch},),
                dynamo=True,
                verbose=False,
                **kwargs,
            )
    except Exception as exc:
        last = next((line for line in reversed(str(exc).splitlines()) if line.strip()), type(exc).__name__)
        raise ExportError(f"torch.onnx could not export this encoder: {type(exc).__name__}: {last}") from exc
    finally:
        logging.disable(logging.NOTSET)
    return program.model_proto


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    mean: float,
    std: float,
    check_pixels: Tensor,
    metadata: dict[str, str],
    tolerance: float = 1e-4,
    opset: int | None = None,
) -> float:
    """Write the encoder of `model` (anything with its `net` and `distance`: a SiameseModel's
    `module` or a LitSiamese; moved to the CPU) to `path` as ONNX, whole, after
    checking it on `check_pixels` ((N, 28, 28) in [0, 1]); returns the max abs difference found."""
    encoder = PixelEncoder(model.cpu().eval(), mean, std)
    proto = to_onnx(encoder, opset)
    onnx.helper.set_model_props(proto, {**metadata, "input": "pixels float32 (batch, 28, 28) in [0, 1]"})
    onnx.checker.check_model(proto)
    graph = proto.SerializeToString()
    diff = max_difference(encoder, graph, check_pixels) if len(check_pixels) else 0.0
    if not diff <= tolerance:
        raise ExportError(
            f"the ONNX graph's embeddings differ from PyTorch's by {diff:.2e} (> tolerance "
            f"{tolerance:g}) on {len(check_pixels)} check images: not written."
        )
    write_atomic(Path(path), graph)
    return diff
