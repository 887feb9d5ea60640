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


def _section(
    title: str, *lines: str, header: list[Any] | None = None, rows: list[list[Any]] = ()
) -> list[str]:
    """A report.md section: a heading, paragraphs, and a table when `header` is given."""
    table = ["", *markdown_table(header, rows)] if header is not None else []
    return ["", f"## {title}", *(f"\n{line}" for line in lines if line), *table]


def to_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the figures of report.json as a readable summary with tables."""
    cal, proto, gal, ver = (
        report["calibration"],
        report["protocol"],
        report["gallery"],
        report["verification"],
    )
    prov, ret, digits = report["provenance"], report["retrieval"], list(gal["knn"]["per_digit"])
    checked = "" if cal["source"] == "checkpoint" else f" among {cal['pairs']} (AUROC {cal['auroc']:.4f})"
    md = [
        "# Evaluation of the Siamese model",
        "",
        f"Checkpoint `{report['checkpoint']}`, {report['test_images']} "
        f"test images, device {report['device']}, seed {report['seed']}; "
        f"commit {prov['commit']}, {prov['date']}.",
    ]
    md += _section(
        "Threshold calibrated on validation pairs",
        f"**{cal['threshold']:.4f}**: the distance with the best pair accuracy on the fixed validation "
        f"pairs{checked}"
        + (
            ", chosen by LitSiamese and read from the checkpoint (`calibration=val` chooses it again)."
            if not checked
            else "."
        ),
    )
    answered = dict(proto["thresholds"])
    if "rejection" in proto:  # unknown past the rejection threshold (its score), not a mean distance
        answered["rejection (score)"] = proto["rejection"]
    md += _section(
        f"The article's protocol (k = {proto['k']} references of each digit per image, from the test set)",
        header=["threshold", "value", "correct", "unknown", "wrong", "accuracy when answering"],
        rows=[
            [
                name,
                f"{r['threshold']:.4f}",
                *(_pct(r[k]) for k in ("correct", "unknown", "wrong", "answered_accuracy")),
            ]
            for name, r in answered.items()
        ],
    )
    md += _section(
        f"Classification against a gallery of {gal['size']} training images",
        header=["method", "accuracy", *digits],
        rows=[
            [name, _pct(gal[key]["accuracy"]), *(_pct(a) for a in gal[key]["per_digit"].values())]
            for name, key in (("prototype (class mean)", "prototype"), (f"{gal['knn_k']}-NN", "knn"))
        ],
    )
    md += ["", f"Confusion matrix of the {gal['knn_k']}-NN answers (rows: true digit, columns: answer):", ""]
    md += markdown_table(
        ["", *digits], [[d, *row] for d, row in zip(digits, gal["knn"]["confusion"], strict=True)]
    )
    shown = [f for f in ("auroc", "eer", "pair_acc", "oneshot_acc") if f in ver]
    md += _section(
        f"Verification on {ver['test_pairs']} fixed test pairs, one-shot over the test digits",
        "pair_acc at the calibrated threshold; oneshot_acc: N-way one-shot (one reference per digit, "
        "seeded episodes).",
        header=shown,
        rows=[[f"{ver[f]:.4f}" for f in shown]],
    )
    if "correction" in report:
        md += _correction_md(report["correction"])
    md += _section(
        "Retrieval (every test image queries the others; relevant = same digit)",
        f"Grids of the {ret['neighbours']} nearest images of test images {ret['queries']}: TensorBoard, "
        "IMAGES, `retrieval/nearest` (a red tint marks a neighbour of another digit). MAP@R and "
        "R-precision: Musgrave et al. 2020.",
        header=list(ret["figures"]),
        rows=[[f"{v:.4f}" for v in ret["figures"].values()]],
    )
    if "rejection" in report:
        md += _rejection_md(report["rejection"])
    if "robustness" in report:
        md += _robustness_md(report["robustness"])
    timing = report["timing_s"]
    md += _section("Time (s)", header=list(timing), rows=[[f"{v:.2f}" for v in timing.values()]])
    return "\n".join(md) + "\n"


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
        [f"**mean, {g.replace('_', ' ')}**", "", *(_pct(m[f]) for f in figures)]
        for g, m in r["means"].items()
    ]
    rows += [["**worst**", "", *(f"{_pct(w['value'])} ({w['corruption']})" for w in r["worst"].values())]]
    return _section(
        f"Robustness: the test images under each corruption (seed {r['seed']})",
        "Classified against the clean gallery. `trained`: the `robust` training augmentation applies that "
        "kind of damage too; `held out`: it never does. One digit under every corruption: TensorBoard, "
        "`robustness/corruptions`.",
        header=["corruption", "kind", *figures],
        rows=rows,
    )


def _rejection_md(r: Mapping[str, Any]) -> list[str]:
    title = '"Unknown": the rejection threshold'
    if not r["calibrated"]:
        return _section(title, "The checkpoint holds no calibrated rejection (saved before it existed).")
    rows = [["known test digits", "", "", _pct(r["digits_accepted"]), ""]]
    if "unknown_digits" in r:
        u = r["unknown_digits"]
        rows.append([f"unknown test digits ({u['count']})", f"{u['auroc']:.4f}", _pct(u["rejected"]), "", ""])
    if "nondigits" in r:
        n = r["nondigits"]
        parts = "; ".join(f"{k} {_pct(n[k]['rejected'])}" for k in ("glyphs", "shapes") if k in n)
        rows.append(
            [
                f"non-digits ({n['count']}, {n['fonts']} fonts)",
                f"{n['auroc']:.4f}",
                _pct(n["rejected"]),
                "",
                parts,
            ]
        )
    return _section(
        title,
        f"A digit is `unknown` when its rejection score ({r['rule']}) is above "
        f"**{r['threshold']:.4f}**, the score that accepts "
        f"{_pct(r['accepted_share'])} of the validation digits. AUROC: the score telling those images from "
        "the known test digits. Non-digits: letters and symbols of the machine's fonts and drawn shapes "
        "(siamese_lit.data.nondigits).",
        header=["images", "AUROC", "rejected", "accepted", "rejected by kind"],
        rows=rows,
    )


def _correction_md(c: Mapping[str, Any]) -> list[str]:
    v, cases = c["validation"], c["article_cases"]
    md = _section(
        "Correction of the classifier",
        f"Classifier `{c['checkpoint']}`. A prediction is overruled by the Siamese answer when the image's "
        f"mean distance to the references of the predicted digit is above {c['threshold']:.4f} "
        f"({c['threshold_source']}).",
        header=[
            "classifier accuracy",
            "combined accuracy",
            "classifier errors",
            "overruled",
            "errors fixed",
            "correct answers broken",
        ],
        rows=[
            [
                _pct(c["classifier_accuracy"]),
                _pct(c["combined_accuracy"]),
                *(c[k] for k in ("classifier_errors", "overruled", "fixed", "broken")),
            ]
        ],
    )
    md += ["", f"Test indices fixed: {c['fixed_indices']}; broken: {c['broken_indices']}."]
    if v:
        md += [
            "",
            f"On the validation images, at that threshold: classifier {_pct(v['classifier_accuracy'])}, "
            f"combined {_pct(v['combined_accuracy'])} ({v['fixed']} fixed, {v['broken']} broken).",
        ]
    if cases:
        header = ["test index", "digit", "classifier", "Siamese", "combined", "classifier error", "fixed"]
        keys = ("label", "classifier", "siamese", "combined", "classifier_error", "fixed")
        md += [
            "",
            "The article's examples:",
            "",
            *markdown_table(header, [[i, *(r[k] for k in keys)] for i, r in cases.items()]),
        ]
    return md


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
