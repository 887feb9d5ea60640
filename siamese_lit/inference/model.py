"""SiameseModel: a trained Siamese checkpoint as one object to use, built with plain torch.

In the spirit of pytorch-metric-learning's `InferenceModel` and torchvision's weights that carry
their transforms, it holds everything a trained model is used with: the encoder, the input
normalisation it was trained with (siamese_lit.data.normalization), its centring (when trained
with `center_embeddings`) and Distance, the pair threshold and the checkpoint's fingerprint; it
offers `embed`, `compare` and `identify` against a gallery index. compare, index, search, export
and the demo page all go through it.

It is built from the checkpoint's hyper-parameters (`net`, `distance`, `center_embeddings`) without
Lightning, behind the checks of siamese_lit.checkpoints (a weights-only read of a bounded archive
and structure, no `${...}`, the allow-list, roles and implied parameters, weights of the built
shapes, finite values). The training-only parts (objective, optimizer, schedule) are checked there
but not built.

One threshold policy for every command and the page (`choose_threshold`): the threshold given
(`threshold=`) > the one calibrated on validation pairs in training (saved in the checkpoint) >
FALLBACK_THRESHOLD. The answer says which it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from siamese_lit.checkpoints.reader import (
    check_finite,
    check_finite_outputs,
    check_weights,
    read_checkpoint,
    saved_data_settings,
    why,
)
from siamese_lit.checkpoints.specs import build
from siamese_lit.data.normalization import MNIST_MEAN, MNIST_STD, Normalization
from siamese_lit.evaluation.openset import ACCEPTED, Rejection
from siamese_lit.inference.index import build_index, checkpoint_fingerprint, embed_digits
from siamese_lit.inference.knn import identify
from siamese_lit.inference.records import GalleryIndex, GalleryIndexError, Match
from siamese_lit.inference.references import identify_by_references
from siamese_lit.models.roles import MODEL_ROLES
from siamese_lit.objectives.distance import Distance, centering
from siamese_lit.utils.errors import CheckpointError, ConfigError, find_user_error

#: The threshold when neither the user nor the checkpoint gives one: the LSTM article's.
FALLBACK_THRESHOLD = 1.0
#: How `identify` answers: a vote of the k nearest gallery items, or the article's mean distance to
#: k references of each label; and their default k.
PROTOCOLS = {"knn": 5, "article": 10}

#: The constructor arguments of the two kinds of LightningModule, as a checkpoint's hyper-parameters
#: hold them (required, optional); tests/unit/test_inference_model.py checks them against the classes.
SIAMESE_ARGUMENTS = (
    {"net", "objective", "optimizer"},
    {
        "scheduler",
        "distance",
        "embedding_dim",
        "knn_k",
        "oneshot_episodes",
        "test_retrieval",
        "center_embeddings",
    },
)
CLASSIFIER_ARGUMENTS = ({"net", "optimizer"}, {"scheduler", "num_classes"})
SIAMESE_EXPERIMENT = "+experiment=siamese (or another siamese_* experiment)"


@dataclass(frozen=True)
class Threshold:
    """The distance at most which two digits are the same (and past which a query is `unknown`)."""

    value: float
    source: str  # where it comes from, as the commands print it

    def __str__(self) -> str:
        return f"{self.value:.4f} ({self.source})"


def choose_threshold(given: float | None, calibrated: float) -> Threshold:
    """The one threshold policy: `given` when set; else `calibrated` (the checkpoint's, chosen on
    validation pairs; NaN when it was never validated); else FALLBACK_THRESHOLD."""
    if given is not None:
        return Threshold(float(given), "threshold=")
    if math.isfinite(calibrated):
        return Threshold(float(calibrated), "calibrated on validation pairs, from the checkpoint")
    return Threshold(FALLBACK_THRESHOLD, "the article's; the checkpoint has no calibrated threshold")


def choose_rejection(given: float | None, rejection: Rejection) -> Threshold:
    """The rejection threshold's policy: `given` when set; else the checkpoint's, calibrated on
    validation digits; else none (inf: nothing is rejected)."""
    if given is not None:
        return Threshold(float(given), "reject_threshold=")
    if rejection.calibrated:
        source = f"accepts {ACCEPTED:.1%} of validation digits, from the checkpoint"
        return Threshold(float(rejection.threshold), source)
    return Threshold(math.inf, "none: the checkpoint has no calibrated rejection, nothing is unknown")


@dataclass(frozen=True)
class Comparison:
    """Two digits' distance and the verdict at `threshold`; each digit's rejection score (`scores`,
    NaN without a calibrated rejection) and whether it is past the rejection threshold (`unknown`)."""

    distance: float
    same: bool
    threshold: Threshold
    scores: tuple[float, float] = (math.nan, math.nan)
    unknown: tuple[bool, bool] = (False, False)

    @property
    def verdict(self) -> str:
        return "same digit" if self.same else "different digits"


class EmbeddingNet(nn.Module):
    """The encoder, its centring and its distance, as LitSiamese holds them (`net`, `centering`,
    `threshold`, `rejection`: the same state dict names, so the same fingerprint): normalised images
    -> the model's embeddings, in float32, as the distance measures them (centred when the model
    was trained with `center_embeddings`, unit vectors under the cosine distance)."""

    def __init__(self, net: nn.Module, distance: Distance, center_embeddings: bool = False) -> None:
        super().__init__()
        self.net, self.distance = net, distance
        dim = int(getattr(net, "out_dim", 0) or 0)
        self.centering = centering(dim, center_embeddings)
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.rejection = Rejection(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.distance.prepare(self.centering(self.net(x).float()))


def _kind(hparams: dict[str, Any]) -> str | None:
    for name, (required, optional) in (("Siamese", SIAMESE_ARGUMENTS), ("classifier", CLASSIFIER_ARGUMENTS)):
        if required <= hparams.keys() <= required | optional:
            return name
    return None


class SiameseModel:
    """A trained Siamese model: `embed` digits, `compare` two, `identify` queries against an index.

    Digits are uint8 (N, 28, 28) MNIST-style images (siamese_lit.data.images makes them from files);
    embeddings come back float32 on the CPU.
    """

    def __init__(
        self,
        module: EmbeddingNet,
        normalization: Normalization,
        threshold: Threshold,
        fingerprint: str,
        path: str = "",
        reject_threshold: float | None = None,
    ) -> None:
        self.module, self.normalization, self.threshold = module.eval(), normalization, threshold
        self.fingerprint, self.path = fingerprint, path
        self.rejection = choose_rejection(reject_threshold, module.rejection)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None,
        device: torch.device | str = "cpu",
        *,
        threshold: float | None = None,
        reject_threshold: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        what: str = "ckpt_path",
    ) -> SiameseModel:
        """The model of a Siamese checkpoint on `device`; `mean`, `std` (default: the checkpoint's, else
        MNIST's), `threshold` (default: choose_threshold's) and `reject_threshold` (default:
        choose_rejection's) override what it saved. CheckpointError, one line, for anything but a
        readable Siamese checkpoint of siamese_lit."""
        ckpt = read_checkpoint(path, what, roles=MODEL_ROLES)  # every check of siamese_lit.checkpoints
        where = f"{what}={path}"
        hparams = ckpt["hyper_parameters"]
        kind = _kind(hparams)
        if kind != "Siamese":
            is_a = f"a {kind} checkpoint" if kind else "not a checkpoint of a siamese_lit model"
            raise CheckpointError(
                f"{where} is {is_a}; a Siamese checkpoint is expected (trained with {SIAMESE_EXPERIMENT})."
            )
        module = _build(hparams, where)
        state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("objective.")}  # training's
        fingerprint = checkpoint_fingerprint(state)  # of what the file holds
        module.rejection.fit_state(state, "rejection.", where)
        check_weights(module, state, where)
        module.load_state_dict(state)
        check_finite(module, where, ("threshold", "rejection.threshold"))  # NaN: never validated
        saved = saved_data_settings(ckpt)
        normalization = Normalization(
            float(saved.get("mean", MNIST_MEAN) if mean is None else mean),
            float(saved.get("std", MNIST_STD) if std is None else std),
        )
        if not math.isfinite(normalization.mean):
            raise ConfigError(f"data.mean must be a finite number, got {normalization.mean}.")
        if not 0 < normalization.std < math.inf:
            raise ConfigError(f"data.std must be > 0, got {normalization.std}.")
        for key, value in (("threshold", threshold), ("reject_threshold", reject_threshold)):
            if value is not None and not value >= 0:
                raise ConfigError(f"{key} must be >= 0, got {value}.")
        if reject_threshold is not None and not len(module.rejection.references):
            raise ConfigError(
                f"reject_threshold is set but {where} holds no rejection references (saved before "
                "rejection existed, or never validated): retrain it, or leave reject_threshold unset."
            )
        return cls(
            module.to(device),
            normalization,
            choose_threshold(threshold, float(module.threshold)),
            fingerprint,
            str(path),
            reject_threshold,
        )

    # ---- what it holds ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.module.threshold.device

    @property
    def distance(self) -> Distance:
        return self.module.distance

    @property
    def calibrated_threshold(self) -> float:
        """The threshold chosen on validation pairs in training (NaN: never validated)."""
        return float(self.module.threshold)

    @property
    def embedding_dim(self) -> int:
        return int(self.module.net.out_dim)

    # ---- using it --------------------------------------------------------------------------------

    def embed(self, digits: Tensor, batch_size: int = 2048) -> Tensor:
        """uint8 (N, 28, 28) digits -> (N, D) float32 embeddings on the CPU; CheckpointError when they,
        or the distances between them, are not finite."""
        n = self.normalization
        return embed_digits(self.module, digits, n.mean, n.std, batch_size)

    def reject_scores(self, embeddings: Tensor) -> Tensor:
        """(N,) the rejection score of each embedding from `embed` (`module.rejection.rule` says what
        it is); NaN without a calibrated rejection."""
        return self.module.rejection.scores(embeddings.to(self.device), self.distance).cpu()

    def unknown(self, scores: Tensor) -> Tensor:
        """(N,) bool: rejection scores past the rejection threshold (never for a NaN score)."""
        return scores > self.rejection.value

    def compare(self, a: Tensor, b: Tensor) -> Comparison:
        """The distance between two uint8 (28, 28) digits (or their (D,) embeddings from `embed`), the
        verdict at the threshold, and whether each is unknown (past the rejection threshold)."""
        pair = torch.stack([a, b])
        embeddings = self.embed(pair) if pair.dtype == torch.uint8 else pair
        distance = self.distance.pairwise(embeddings[:1], embeddings[1:])
        value = float(check_finite_outputs(distance, "distances", self.path or "this checkpoint"))
        scores = self.reject_scores(embeddings)
        unknown = self.unknown(scores)
        return Comparison(
            value,
            value <= self.threshold.value,
            self.threshold,
            (float(scores[0]), float(scores[1])),
            (bool(unknown[0]), bool(unknown[1])),
        )

    def build_index(
        self, digits: Tensor, labels: list[str], sources: list[str], batch_size: int = 2048
    ) -> GalleryIndex:
        """A gallery index of labelled digits embedded now (siamese_lit.inference.index)."""
        n = self.normalization
        return build_index(
            self.module,
            digits,
            labels,
            sources,
            fingerprint=self.fingerprint,
            mean=n.mean,
            std=n.std,
            ckpt_path=str(Path(self.path).resolve()) if self.path else "",
            batch_size=batch_size,
            reject_threshold=self.rejection.value,
        )

    def check_index(self, index: GalleryIndex, where: str = "the index") -> None:
        """GalleryIndexError unless `index` was embedded by these weights (its fingerprint)."""
        if index.fingerprint != self.fingerprint:
            raise GalleryIndexError(
                f"{where} was built with another checkpoint ({index.ckpt_path or '?'}, fingerprint "
                f"{index.fingerprint[:12]}), not this one ({self.fingerprint[:12]}): rebuild it with "
                "python -m siamese_lit.index and this ckpt_path."
            )

    def identify(
        self,
        queries: Tensor,
        index: GalleryIndex,
        k: int | None = None,
        protocol: str = "knn",
        seed: int = 0,
    ) -> list[Match]:
        """Each query's label against `index` (built by these weights): by a vote of its k nearest
        items (`knn`), or by the article's mean distance to k references of each label (`article`,
        seeded); `unknown` when its rejection score is past the rejection threshold. A checkpoint
        without a calibrated rejection says `unknown` the article's way: past the pair threshold.
        `queries`: uint8 digits (N, 28, 28), or their embeddings (N, D) from `embed`."""
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}.")
        self.check_index(index)
        k = PROTOCOLS[protocol] if k is None else k
        embeddings = self.embed(queries) if queries.dtype == torch.uint8 else queries
        cut = math.inf if math.isfinite(self.rejection.value) else self.threshold.value
        if protocol == "article":
            matches = identify_by_references(index, embeddings, k, cut, seed=seed)
        else:
            matches = identify(index, embeddings, k, cut)
        scores = self.reject_scores(embeddings)
        unknown = self.unknown(scores).tolist()
        return [  # a rejected query keeps the distance of the answer it would have had
            replace(m, label="unknown" if out else m.label, score=s)
            for m, s, out in zip(matches, scores.tolist(), unknown, strict=True)
        ]


def _build(hparams: dict[str, Any], where: str) -> EmbeddingNet:
    """The encoder and distance of checked hyper-parameters (read_checkpoint checked them)."""
    prefix = f"{where}: hyper-parameters"
    try:
        net = build(hparams["net"], f"{prefix}.net", allowed_only=True)
        spec = hparams.get("distance")
        distance = Distance() if spec is None else build(spec, f"{prefix}.distance", allowed_only=True)
    except Exception as exc:
        if find_user_error(exc) is not None:
            raise
        raise CheckpointError(f"{where}: cannot rebuild the Siamese model: {why(exc)}") from exc
    if not isinstance(net, nn.Module) or not isinstance(distance, Distance):
        raise CheckpointError(f"{where}: its net is not a network or its distance not a Distance.")
    dim = hparams.get("embedding_dim")
    if dim is not None and getattr(net, "out_dim", dim) != dim:
        raise CheckpointError(
            f"{where}: model.embedding_dim={dim} but the encoder outputs {net.out_dim} (an edited "
            "checkpoint)."
        )
    center = hparams.get("center_embeddings", False)
    if not isinstance(center, bool):
        raise CheckpointError(
            f"{where}: model.center_embeddings is {center!r}, not true or false (an edited checkpoint)."
        )
    return EmbeddingNet(net, distance, center)
