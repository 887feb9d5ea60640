"""The evaluation's outputs: report.json (every figure), report.md (tables), TensorBoard logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid

from siamese_lit.utils.files import write_atomic, write_json
from siamese_lit.utils.tables import markdown_table


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def to_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the figures of report.json as a readable summary with tables."""
    cal, proto, gal = report["calibration"], report["protocol"], report["gallery"]
    md = [
        "# Evaluation of the Siamese model",
        "",
        f"Checkpoint `{report['checkpoint']}`, {report['test_images']} test images, "
        f"device {report['device']}, seed {report['seed']}; commit {report['provenance']['commit']}, "
        f"{report['provenance']['date']}.",
        "",
        "## Threshold calibrated on validation pairs",
        "",
        _calibration_md(cal),
        "",
        f"## The article's protocol (k = {proto['k']} references of each digit per image, from the test set)",
        "",
        *markdown_table(
            ["threshold", "value", "correct", "unknown", "wrong", "accuracy when answering"],
            [
                [
                    name,
                    f"{r['threshold']:.4f}",
                    _pct(r["correct"]),
                    _pct(r["unknown"]),
                    _pct(r["wrong"]),
                    _pct(r["answered_accuracy"]),
                ]
                for name, r in proto["thresholds"].items()
            ],
        ),
        "",
        f"## Classification against a gallery of {gal['size']} training images",
        "",
        *markdown_table(
            ["method", "accuracy", *gal["knn"]["per_digit"].keys()],
            [
                [
                    "prototype (class mean)",
                    _pct(gal["prototype"]["accuracy"]),
                    *(_pct(a) for a in gal["prototype"]["per_digit"].values()),
                ],
                [
                    f"{gal['knn_k']}-NN",
                    _pct(gal["knn"]["accuracy"]),
                    *(_pct(a) for a in gal["knn"]["per_digit"].values()),
                ],
            ],
        ),
        "",
        f"Confusion matrix of the {gal['knn_k']}-NN answers (rows: true digit, columns: answer):",
        "",
        *markdown_table(
            ["", *gal["knn"]["per_digit"].keys()],
            [
                [d, *row]
                for d, row in zip(gal["knn"]["per_digit"].keys(), gal["knn"]["confusion"], strict=True)
            ],
        ),
    ]
    md += _verification_md(report["verification"])
    if "correction" in report:
        md += _correction_md(report["correction"])
    ret = report["retrieval"]
    md += [
        "",
        "## Retrieval (every test image queries the others; relevant = same digit)",
        "",
        *markdown_table(list(ret["figures"].keys()), [[f"{v:.4f}" for v in ret["figures"].values()]]),
        "",
        f"Image grids of the {ret['neighbours']} nearest images of test images {ret['queries']} are in "
        "TensorBoard (IMAGES tab, `retrieval/nearest`; a red tint marks a neighbour of another digit).",
    ]
    if "robustness" in report:
        md += _robustness_md(report["robustness"])
    md += [
        "",
        "## Time (s)",
        "",
        *markdown_table(list(report["timing_s"].keys()), [[f"{v:.2f}" for v in report["timing_s"].values()]]),
    ]
    return "\n".join(md) + "\n"


def _calibration_md(cal: Mapping[str, Any]) -> str:
    if cal["source"] == "checkpoint":
        return (
            f"**{cal['threshold']:.4f}**: the distance with the best pair accuracy on the fixed validation "
            "pairs, chosen by LitSiamese at its last validation and read from the checkpoint "
            "(`calibration=val` chooses it again here)."
        )
    return (
        f"**{cal['threshold']:.4f}**: the distance with the best pair accuracy on {cal['pairs']} fixed "
        f"validation pairs (pair accuracy {_pct(cal['pair_acc'])}, AUROC {cal['auroc']:.4f}, "
        f"EER {_pct(cal['eer'])})."
    )


def _verification_md(v: Mapping[str, Any]) -> list[str]:
    figures = ["auroc", "eer", "pair_acc", "oneshot_acc", "p_at_1", "r_precision", "map_at_r"]
    shown = [f for f in figures if f in v]
    return [
        "",
        f"## Verification on {v['test_pairs']} fixed test pairs, one-shot over the test digits",
        "",
        "pair_acc at the calibrated threshold; oneshot_acc: N-way one-shot (one reference per digit, "
        "seeded episodes); p_at_1, r_precision, map_at_r: every test image querying the others "
        "(Musgrave et al. 2020).",
        "",
        *markdown_table(shown, [[f"{v[f]:.4f}" for f in shown]]),
    ]


def _robustness_md(r: Mapping[str, Any]) -> list[str]:
    figures = list(r["corruptions"]["clean"])
    rows = [
        [
            name,
            "–" if name == "clean" else ("trained" if r["kinds"][name]["trained"] else "held out"),
            *(_pct(row[f]) for f in figures),
        ]
        for name, row in r["corruptions"].items()
    ]
    rows += [
        [f"**mean, {group.replace('_', ' ')}**", "", *(_pct(m[f]) for f in figures)]
        for group, m in r["means"].items()
    ]
    rows += [["**worst**", "", *(f"{_pct(w['value'])} ({w['corruption']})" for w in r["worst"].values())]]
    return [
        "",
        f"## Robustness: the test images under each corruption (seed {r['seed']})",
        "",
        "Classified against the clean gallery. `trained`: the `robust` training augmentation applies that "
        "kind of damage too; `held out`: it never does. One digit under every corruption is in "
        "TensorBoard (IMAGES tab, `robustness/corruptions`).",
        "",
        *markdown_table(["corruption", "kind", *figures], rows),
    ]


def _correction_md(c: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Correction of the classifier",
        "",
        f"Classifier `{c['checkpoint']}`. A prediction is overruled by the Siamese answer when the image's "
        f"mean distance to the references of the predicted digit is above {c['threshold']:.4f} "
        f"({c['threshold_source']}).",
        "",
        *markdown_table(
            [
                "classifier accuracy",
                "combined accuracy",
                "classifier errors",
                "overruled",
                "errors fixed",
                "correct answers broken",
            ],
            [
                [
                    _pct(c["classifier_accuracy"]),
                    _pct(c["combined_accuracy"]),
                    c["classifier_errors"],
                    c["overruled"],
                    c["fixed"],
                    c["broken"],
                ]
            ],
        ),
        "",
        f"Test indices fixed: {c['fixed_indices']}; broken: {c['broken_indices']}.",
    ]
    if c["validation"]:
        v = c["validation"]
        lines += [
            "",
            f"On the validation images, at that threshold: classifier {_pct(v['classifier_accuracy'])}, "
            f"combined {_pct(v['combined_accuracy'])} ({v['fixed']} fixed, {v['broken']} broken).",
        ]
    if c["article_cases"]:
        lines += [
            "",
            "The article's examples:",
            "",
            *markdown_table(
                ["test index", "digit", "classifier", "Siamese", "combined", "classifier error", "fixed"],
                [
                    [
                        i,
                        r["label"],
                        r["classifier"],
                        r["siamese"],
                        r["combined"],
                        r["classifier_error"],
                        r["fixed"],
                    ]
                    for i, r in c["article_cases"].items()
                ],
            ),
        ]
    return lines


def numbers(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(path, value) of every number in a nested report (bools, lists and strings left out)."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from numbers(value, name + "/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def retrieval_grid(images: Tensor, labels: Tensor, queries: Tensor, found: Tensor) -> Tensor:
    """One row per query: the query, then its nearest images; neighbours of another digit tinted red."""
    idx = torch.cat([queries[:, None], found], 1)  # (Q, 1 + n)
    tiles = images[idx.flatten()].float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)  # (Q*(1+n), 3, 28, 28)
    wrong = (labels[idx] != labels[queries][:, None]).flatten()
    tiles[wrong, 1:] *= 0.35
    return make_grid(tiles, nrow=idx.shape[1], padding=2, pad_value=0.5)


def write_report(output_dir: Path, report: Mapping[str, Any], images: Mapping[str, Tensor]) -> None:
    """report.json, report.md and the TensorBoard logs: scalars, the image grids (by tag), report.md."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "report.json", report, sort_keys=False)
    markdown = to_markdown(report)
    write_atomic(output_dir / "report.md", markdown)
    logger = TensorBoardLogger(
        save_dir=str(output_dir / "tensorboard"), name=None, version="", default_hp_metric=False
    )
    logger.log_metrics(dict(numbers({k: v for k, v in report.items() if k != "timing_s"})), step=0)
    for tag, image in images.items():
        logger.experiment.add_image(tag, image.cpu(), 0)
    logger.experiment.add_text("report", markdown, 0)
    logger.finalize("success")
