"""`python -m siamese_lit.evaluate ckpt_path=PATH [classifier_ckpt_path=PATH] [overrides]`.

The Siamese model as classifier (the article's protocol, prototypes, k-NN), corrector of a
classifier and search engine, on the whole test set; its verification and metric-learning figures
on the test digits (unseen ones with `data.test_classes`); and the robustness suite, every figure
again on the test digits under each corruption. Each needed image is embedded once and scored by
the same functions as the model's own test (siamese_lit.evaluation.scoring). Writes report.json,
report.md and TensorBoard logs into its output dir (outputs/eval/runs/<timestamp>).
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from siamese_lit.checkpoints.reader import check_embedding_scale, check_finite_outputs, with_saved_data
from siamese_lit.cli.command import run_command
from siamese_lit.cli.settings import check_evaluate, check_knn_k
from siamese_lit.data.nondigits import NonDigits, evaluation_fonts, font_files
from siamese_lit.data.pairs import PairDataModule
from siamese_lit.evaluation import correction as C
from siamese_lit.evaluation import protocol as P
from siamese_lit.evaluation.classification import classification
from siamese_lit.evaluation.corruptions import corruption_grid
from siamese_lit.evaluation.openset import ACCEPTED, unknown_auroc
from siamese_lit.evaluation.report import retrieval_grid, write_report
from siamese_lit.evaluation.retrieval import neighbours
from siamese_lit.evaluation.robustness import corruption_names, robustness
from siamese_lit.evaluation.scoring import score_embeddings
from siamese_lit.models.loading import load_model
from siamese_lit.runs.provenance import provenance
from siamese_lit.runs.run_dir import claim_output_dir
from siamese_lit.utils.allocator import keep_freed_memory
from siamese_lit.utils.devices import resolve_device
from siamese_lit.utils.errors import ConfigError, check
from siamese_lit.utils.log import log
from siamese_lit.utils.precision import forward_context
from siamese_lit.utils.seeding import seeded

#: the verification section's figures (of score_embeddings)
VERIFICATION = ("auroc", "eer", "pair_acc", "threshold", "d_similar", "d_dissimilar", "oneshot_acc")
RETRIEVAL = ("map", "r_precision", "map_at_r")


class Timer(dict):
    """Seconds spent in each named step."""

    def step(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self[name] = self.get(name, 0.0) + now - start
        return now


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run every section of the evaluation; returns the report (also written to the output dir)."""
    output_dir = Path(cfg.paths.output_dir)
    made_at = provenance()
    claim_output_dir(output_dir, markers=("report.json", "metrics.json", "checkpoints"))
    check_evaluate(cfg)  # sizes >= 1, seeds numpy takes, a precision Lightning knows
    corruptions = corruption_names(cfg.robustness.corruptions) if cfg.robustness.enabled else []
    timer, t = Timer(), time.perf_counter()
    device = resolve_device(cfg.device)
    siamese, saved = load_model(cfg.ckpt_path, "Siamese", device)
    classifier = None
    if cfg.get("classifier_ckpt_path"):
        path = cfg.classifier_ckpt_path
        classifier, _ = load_model(path, "classifier", device, what="classifier_ckpt_path")
    dm = instantiate(with_saved_data(cfg.data, saved, "ckpt_path"))  # scored the way it was trained
    if not isinstance(dm, PairDataModule):
        raise ConfigError(
            "evaluate needs the pair data module (data=pairs): it provides the validation pairs."
        )
    dm.prepare_data()
    dm.setup("test")
    distance = siamese.distance
    check_knn_k(cfg.gallery_knn_k, len(dm.splits["test_gallery"][1]))  # the gallery as filtered by class
    t = timer.step("load", t)

    @functools.cache
    def embedded(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The images of `split` embedded, once."""
        x, y = dm.splits[split]
        with forward_context(device, cfg.precision):
            emb = siamese.embed(dm.normalize(x.to(device)), cfg.batch_size)
        return check_embedding_scale(emb, "embeddings", cfg.ckpt_path), y.to(device)

    (emb, y_test), gallery = embedded("test"), embedded("test_gallery")
    t = timer.step("embed", t)
    calibration = _calibration(cfg, dm, siamese, embedded)
    t = timer.step("calibration", t)
    scores = score_embeddings(
        emb,
        y_test,
        distance=distance,
        pairs=dm.eval_set("test").pairs,
        threshold=calibration["threshold"],
        gallery=gallery,
        knn_k=cfg.gallery_knn_k,
        oneshot_episodes=cfg.oneshot_episodes,
        retrieval_at=list(cfg.retrieval.precision_at),
        seed=cfg.seed,
    )
    t = timer.step("scores", t)

    classes = y_test.unique()
    refs = P.sample_references(y_test, cfg.protocol.k, seeded(cfg.seed))
    mean_distance = P.reference_distances(emb, refs, distance)
    thresholds = {"article": float(cfg.protocol.threshold), "calibrated": calibration["threshold"]}
    protocol = {
        "k": cfg.protocol.k,
        "thresholds": {
            name: {"threshold": thr, **P.answer_fractions(P.answer(mean_distance, classes, thr), y_test)}
            for name, thr in thresholds.items()
        },
    }
    reject_scores = siamese.rejection.scores(emb, distance).cpu()  # NaN when never calibrated
    if siamese.rejection.calibrated:  # the closest digit, or unknown past the rejection threshold
        rejected = (reject_scores > siamese.rejection.threshold.cpu()).to(mean_distance.device)
        answers = P.answer(mean_distance, classes, math.inf).masked_fill(rejected, -1)
        threshold = float(siamese.rejection.threshold)
        protocol["rejection"] = {"threshold": threshold, **P.answer_fractions(answers, y_test)}
    t = timer.step("protocol", t)
    figures = scores.metrics
    report: dict[str, Any] = {
        "checkpoint": str(cfg.ckpt_path),
        "provenance": made_at,
        "device": str(device),
        "precision": str(cfg.precision),
        "test_images": len(y_test),
        "seed": cfg.seed,
        "calibration": calibration,
        "protocol": protocol,
        "gallery": {
            "size": len(gallery[1]),
            "knn_k": cfg.gallery_knn_k,
            **{name: classification(pred, y_test, classes) for name, pred in scores.predictions.items()},
        },
        "verification": {
            "test_pairs": len(dm.eval_set("test").pairs[2]),
            **{k: figures[k] for k in VERIFICATION if k in figures},
        },
    }
    if classifier is not None:
        test = (y_test, mean_distance, classes)
        report["correction"] = _correction(cfg, dm, classifier, embedded, test, distance)
        t = timer.step("correction", t)

    queries = torch.tensor(
        [q for q in cfg.retrieval.queries if 0 <= q < len(y_test)], dtype=torch.long, device=device
    )
    found = neighbours(emb, queries, cfg.retrieval.neighbours, distance)
    report["retrieval"] = {
        "figures": {k: v for k, v in figures.items() if k.startswith("p_at_") or k in RETRIEVAL},
        "queries": queries.tolist(),
        "neighbours": found.shape[1],
    }
    images = {"retrieval/nearest": retrieval_grid(dm.splits["test"][0].to(device), y_test, queries, found)}
    t = timer.step("retrieval", t)
    if cfg.robustness.enabled:
        clean = {k: figures[k] for k in ("knn_acc", "prototype_acc")}
        if classifier is not None:  # its accuracy on the clean test images, from the correction section
            clean["classifier_acc"] = report["correction"]["classifier_accuracy"]
        report["robustness"] = _robustness(cfg, dm, siamese, classifier, corruptions, gallery, clean)
        images["robustness/corruptions"] = corruption_grid(dm.splits["test"][0][0].cpu(), cfg.robustness.seed)
        t = timer.step("robustness", t)
    report["rejection"] = _rejection(cfg, dm, siamese, reject_scores, y_test, gallery[1], device)
    t = timer.step("rejection", t)
    timer["total"] = sum(timer.values())
    report["timing_s"] = dict(timer)
    write_report(output_dir, report, images)
    log.info("Report written to %s (%.1f s)", output_dir / "report.md", timer["total"])
    return report


def _calibration(cfg: DictConfig, dm: PairDataModule, siamese: Any, embedded: Any) -> dict[str, Any]:
    """The threshold with the best accuracy on the fixed validation pairs (data.eval_pairs of them).

    LitSiamese chooses it at each validation and saves it in the checkpoint (`threshold` buffer), so by
    default it is read from there; `calibration=val` (or a checkpoint never validated) embeds the
    validation images of this data config and chooses it again.
    """
    saved = float(siamese.threshold)
    check(
        cfg.calibration in ("checkpoint", "val"),
        f"calibration must be checkpoint or val, got {cfg.calibration!r}.",
    )
    if cfg.calibration == "checkpoint" and saved == saved:  # not NaN
        return {"source": "checkpoint", "threshold": saved}
    emb, y = embedded("val")
    pairs = dm.eval_set("val").pairs
    scores = score_embeddings(emb, y, distance=siamese.distance, pairs=pairs)
    return {"source": "val", "pairs": len(pairs[2]), **scores.metrics}


def _correction(
    cfg: DictConfig,
    dm: PairDataModule,
    classifier: Any,
    embedded: Any,
    test: tuple[torch.Tensor, ...],
    distance: Any,
) -> dict[str, Any]:
    """The classifier's answers checked by the Siamese model (siamese_lit.evaluation.correction).

    The check threshold is chosen on the validation images (their own references, drawn as the
    test's), as the one that maximises the combined accuracy there; correction.threshold overrides it.
    """
    y_test, mean_distance, classes = test

    def answers(split: str, mean_d: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        x, y = dm.splits[split]
        with forward_context(y_test.device, cfg.precision):
            logits = classifier.predict_logits(dm.normalize(x.to(y_test.device)), cfg.batch_size).float()
        check_finite_outputs(logits, "logits", cfg.classifier_ckpt_path)
        if mean_d is None:
            emb, y = embedded(split)
            refs = P.sample_references(y, cfg.protocol.k, seeded(cfg.seed))
            mean_d = P.reference_distances(emb, refs, distance)
        return logits, y.to(y_test.device), mean_d

    threshold, source, validation = cfg.correction.threshold, "correction.threshold", {}
    if threshold is None:
        val = answers("val")
        threshold = C.correction_threshold(*val, classes)
        source = "chosen on the validation images: the best combined accuracy there"
        figures, *_ = C.correction(*val, classes, threshold)
        validation = {k: figures[k] for k in ("classifier_accuracy", "combined_accuracy", "fixed", "broken")}
    logits, _, _ = answers("test", mean_distance)
    figures, pred, siamese, combined = C.correction(logits, y_test, mean_distance, classes, float(threshold))
    # the test indices are MNIST's only when the whole test set is evaluated
    whole = dm.hparams.test_size is None and dm.test_classes == list(range(10))
    cases = C.article_cases(y_test, pred, siamese, combined) if whole else {}
    return {
        "checkpoint": str(cfg.classifier_ckpt_path),
        "threshold_source": source,
        **figures,
        "validation": validation,
        "article_cases": cases,
    }


def _robustness(
    cfg: DictConfig,
    dm: PairDataModule,
    siamese: Any,
    classifier: Any,
    corruptions: list[str],
    gallery: tuple[torch.Tensor, torch.Tensor],
    clean: dict[str, float],
) -> dict[str, Any]:
    """The robustness suite (siamese_lit.evaluation.robustness) on the test images, against the clean
    gallery; the classifier's accuracy too when one is given. `clean`: the clean test images' figures
    the report already has."""
    x, y = dm.splits["test"]
    device = gallery[0].device

    def run(model_forward: Any) -> Any:
        def forward(images: torch.Tensor) -> torch.Tensor:
            with forward_context(device, cfg.precision):
                out = model_forward(dm.normalize(images.to(device)), cfg.batch_size).float()
            if model_forward == siamese.embed:  # corrupted images checked as the clean ones
                return check_embedding_scale(out, "embeddings", cfg.ckpt_path)
            return check_finite_outputs(out, "logits", cfg.classifier_ckpt_path)

        return forward

    return robustness(
        x.to(device),
        y.to(device),
        run(siamese.embed),
        gallery,
        clean,
        distance=siamese.distance,
        knn_k=cfg.gallery_knn_k,
        names=corruptions,
        seed=cfg.robustness.seed,
        classify=run(classifier.predict_logits) if classifier is not None else None,
    )


def _rejection(
    cfg: DictConfig,
    dm: PairDataModule,
    siamese: Any,
    scores: torch.Tensor,
    y_test: torch.Tensor,
    gallery_labels: torch.Tensor,
    device: torch.device,
) -> dict[str, Any]:
    """The rejection threshold of the checkpoint on the known test digits (the share accepted), on
    test digits of classes the model never trained on (open set: the share rejected), and on the
    generated non-digits (AUROC against the known test digits, the share rejected, by kind), from the
    test digits' rejection `scores`."""
    rejection = siamese.rejection
    if not rejection.calibrated:
        return {"calibrated": False}
    threshold = float(rejection.threshold)
    known = torch.isin(y_test, gallery_labels).cpu()
    out: dict[str, Any] = {
        "calibrated": True,
        "threshold": threshold,
        "accepted_share": ACCEPTED,
        "references": len(rejection.references),
        "rule": rejection.rule,
        "digits_accepted": float((scores[known] <= threshold).float().mean()),
    }
    if not bool(known.all()):
        out["unknown_digits"] = {
            "count": int((~known).sum()),
            "rejected": float((scores[~known] > threshold).float().mean()),
            "auroc": unknown_auroc(scores[known], scores[~known]),
        }
    if cfg.rejection.nondigits:
        fonts = evaluation_fonts(font_files())  # none of them trained on (data.glyph_classes)
        nondigits = NonDigits.load(cfg.rejection.cache_dir, fonts)
        with forward_context(device, cfg.precision):
            nd_emb = siamese.embed(dm.normalize(nondigits.images.to(device)), cfg.batch_size)
        nd_scores = rejection.scores(
            check_embedding_scale(nd_emb, "embeddings", cfg.ckpt_path), siamese.distance
        )
        nd_scores = nd_scores.cpu()
        kinds = torch.tensor([k == "glyph" for k in nondigits.kinds])
        by_kind = {"glyphs": kinds, "shapes": ~kinds}
        out["nondigits"] = {
            "fonts": len(fonts),
            "count": len(nd_scores),
            "auroc": unknown_auroc(scores[known], nd_scores),
            "rejected": float((nd_scores > threshold).float().mean()),
            **{
                name: {"count": int(m.sum()), "rejected": float((nd_scores[m] > threshold).float().mean())}
                for name, m in by_kind.items()
                if m.any()
            },
        }
    return out


def evaluate_command(cfg: DictConfig) -> None:
    """The task of `python -m siamese_lit.evaluate`."""
    keep_freed_memory()
    log.debug("Config:\n%s", OmegaConf.to_yaml(cfg))
    evaluate(cfg)


def main() -> None:
    run_command(evaluate_command, "eval")


if __name__ == "__main__":
    main()
