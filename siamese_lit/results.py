"""`python -m siamese_lit.results SOURCE... [out=RESULTS.md]`: the results tables, from run outputs.

Each SOURCE is a multirun dir (seeds of an experiment: `train -m +experiment=NAME seed=0,1,2`), an
evaluate run dir (holding report.json) or a bench JSON file (outputs/bench/). The tables give each
figure as mean ± sample std over the runs of the same experiment, with the commit(s) and date(s)
the runs were made at and the command that made them; nothing in them is typed by hand. The seeds
of an experiment may come from several multirun dirs: jobs with the same overrides, the seed (or
open-set split) aside, are one row, unless a seed ran again at another commit (the experiment's
config may have changed in between): then each commit has its row.

The sources are read only through bounded readers (siamese_lit.reports.sources): a file that cannot
be read is named on one line of stderr with the reason, and the tables are made from the rest; the
command exits 2 when nothing usable remains.
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.cli.outputs import check_output, writing
from siamese_lit.reports.sources import KINDS, SweepSource, one_line, read_sources, shown
from siamese_lit.reports.sweep_dir import (
    REPLICATES,
    Job,
    mean_std,
    replicate_key,
    replicate_stats,
)
from siamese_lit.utils.errors import DataError, check
from siamese_lit.utils.files import write_atomic
from siamese_lit.utils.tables import flatten, markdown_table

T = TypeVar("T")

#: the open-set figures (siamese_lit.evaluation.openset), in the open-set table's order
OPENSET_FIGURES = ["test/openset_auroc", "test/openset_fpr95", "test/closed_acc"]
#: the test figures each kind of experiment is judged by
TRAIN_FIGURES = {
    "classifier": ["test/acc"],
    "siamese": [
        "test/auroc",
        "test/eer",
        "test/pair_acc",
        "test/knn_acc",
        "test/prototype_acc",
        "test/oneshot_acc",
        "test/p_at_1",
        "test/map_at_r",
        *OPENSET_FIGURES,  # open-set experiments only
    ],
}
#: the AUROCs published for the benchmark on MNIST, as (method, AUROC, where): the open-set table
#: sets the measured rows among them (docs/generalisation.md says which were checked, and against what)
PUBLISHED_OPENSET_AUROC = [
    ("softmax", 0.978, "Neal et al. 2018"),
    ("OpenMax", 0.981, "Neal et al. 2018"),
    ("G-OpenMax", 0.984, "Neal et al. 2018"),
    ("OSRCI", 0.988, "Neal et al. 2018"),
    ("C2AE", 0.989, "Oza & Patel 2019"),
    ("CROSR", 0.991, "Yoshihashi et al. 2019"),
    ("GFROSR", 0.993, "Perera et al. 2020"),
    ("ARPL+CS", 0.997, "Chen et al. 2021"),
]
#: (column, path in report.json) of the evaluate table
EVAL_FIGURES = [
    ("protocol correct (article's threshold)", "protocol/thresholds/article/correct"),
    ("k-NN", "gallery/knn/accuracy"),
    ("prototypes", "gallery/prototype/accuracy"),
    ("MAP@R", "retrieval/figures/map_at_r"),
    ("corruptions: mean k-NN", "robustness/means/all/knn_acc"),
    ("held-out mean k-NN", "robustness/means/held_out/knn_acc"),
    ("worst k-NN", "robustness/worst/knn_acc/value"),
    ("test digits accepted", "rejection/digits_accepted"),
    ("non-digits AUROC", "rejection/nondigits/auroc"),
    ("non-digits rejected", "rejection/nondigits/rejected"),
]


#: (heading, the command that writes such a JSON, a key only it has) of the JSON sources
JSON_KINDS = [
    ("Speed", "`python -m bench` (all figures of a column in one process).", "mode"),
    (
        "Using a model: gallery search and ONNX",
        "`python -m bench --inference <ckpt>` (one process; torch and onnxruntime on the same threads).",
        "search_qps_batched",
    ),
    (
        "Digits drawn on the page",
        "`python -m bench.drawn <ckpt> --per-digit 10 --json FILE`: mouse strokes in a real "
        "Chromium, k-NN against MNIST's 60k training images (k = 5).",
        "drawings",
    ),
]


def _select(tree: Any, path: str) -> float | None:
    for key in path.split("/"):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree if isinstance(tree, int | float) and not isinstance(tree, bool) else None


def _stats(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean_std(statistics.fmean(values), std, len(values)) if values else ""


def _where(provenances: list[dict[str, Any]]) -> str:
    """The commit(s), date(s), device(s) and load averages of the runs behind a row."""
    provenances = [p for p in provenances if p]
    if not provenances:
        return "commit not recorded (a run made before provenance was)"
    commits = sorted({p.get("commit", "unknown") for p in provenances})
    dates = sorted(p.get("date", "")[:10] for p in provenances)
    devices = sorted({p.get("device", "unknown device") for p in provenances})
    loads = sorted(p["load_average"] for p in provenances if isinstance(p.get("load_average"), int | float))
    load = f", load average {loads[0]:g}–{loads[-1]:g} at start" if loads else ""
    span = f"{dates[0]}{' to ' + dates[-1] if dates[-1] != dates[0] else ''}"
    return f"{', '.join(commits)} ({span}); {', '.join(devices)}{load}"


def _figures(source: SweepSource) -> list[str] | None:
    """The figures its kind of experiment is judged by; None (every test figure) when the jobs'
    config names no model class."""
    target = source.setting("model._target_", str)
    if target is None:
        return None
    return TRAIN_FIGURES["siamese" if "Siamese" in target else "classifier"]


def _replicate(overrides: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Which replicate a job is: its seed (or split) overrides."""
    return tuple((k, overrides[k]) for k in REPLICATES if k in overrides)


def _repeated(replicates: list[tuple[tuple[str, str], ...]]) -> list[str]:
    """The seeds (or splits) that occur more than once in `replicates`, as overrides (`seed=2`)."""
    return [
        " ".join(f"{k}={v}" for k, v in key) or "the config's seed"
        for key, n in Counter(replicates).items()
        if n > 1
    ]


def by_commit(members: list[T], replicate: Callable[[T], Any], commit: Callable[[T], str]) -> list[list[T]]:
    """The runs of one row, split by the commit they ran at when a seed (or split) ran more than once
    among them: the same overrides at another commit may be another experiment (its config changed
    in between), and a row must not average the two. One group when no seed repeats, so seeds swept
    at several commits still make one row."""
    if not _repeated([replicate(m) for m in members]):
        return [members]
    groups: dict[str, list[T]] = {}
    for member in members:
        groups.setdefault(commit(member), []).append(member)
    return list(groups.values())


def _commit(source: SweepSource, job: Job) -> str:
    return source.provenances.get(job.name, {}).get("commit", "unknown")


@dataclass
class TrainRow:
    """One experiment of the train table: its finished jobs and their figures."""

    experiment: str
    epochs: int | None
    overrides: str  # every override but the seed or split, as the table shows them
    jobs: list[Job]  # the jobs that finished
    stats: dict[str, tuple[float, float | None, int]]  # each figure's (mean, std, n) over them
    figures: list[str]  # the figures its kind of experiment is judged by, in order
    where: str  # commit(s), date(s), device(s)


def train_rows(sweeps: list[SweepSource], warn: Callable[[str], None]) -> list[TrainRow]:
    """One row per experiment (its name, epochs and overrides but the seed or split), over every job
    of the sources that ran it: seeds swept in one multirun or in several (`seed=0,1` then
    `seed=2`) make one row, split by commit where a seed ran again at another (`by_commit`). A seed
    or split that ran more than once at one commit is counted each time, and `warn` says so."""
    pooled: dict[tuple[Any, ...], list[tuple[SweepSource, Job]]] = {}
    for source in sweeps:
        experiment = source.setting("task_name", str) or shown(Path(source.path.name))
        epochs = source.setting("trainer.max_epochs", int)
        for job in source.sweep.jobs:
            if job.status != "unreadable":
                key = (experiment, epochs, replicate_key(job.overrides))
                pooled.setdefault(key, []).append((source, job))
    rows = []
    for (experiment, epochs, overrides), pool in pooled.items():
        ran = [(source, job) for source, job in pool if job.status == "ok"]
        shown_overrides = " ".join(f"{k}={v}" for k, v in overrides)
        for done in (
            by_commit(ran, lambda m: _replicate(m[1].overrides), lambda m: _commit(*m)) if ran else [[]]
        ):
            for replicate in _repeated([_replicate(job.overrides) for _, job in done]):
                row = " ".join(filter(None, [f"`{experiment}`", shown_overrides]))
                warn(f"{row}: {replicate} ran more than once, each run counted")
            jobs = [job for _, job in done]
            stats = replicate_stats(jobs)
            wanted = _figures(pool[0][0]) or sorted(m for m in stats if m.startswith("test/"))
            where = _where([source.provenances[job.name] for source, job in done])
            rows.append(TrainRow(experiment, epochs, shown_overrides, jobs, stats, wanted, where))
    return rows


def train_table(rows: list[TrainRow]) -> list[str]:
    """Each experiment's figures, mean ± std, and where they were measured."""
    body = []
    for row in rows:
        figures = [
            f"{m.removeprefix('test/')} {mean_std(*row.stats[m])}" for m in row.figures if m in row.stats
        ]
        body.append([f"`{row.experiment}`", row.epochs, "; ".join(figures), f"`{row.overrides}`", row.where])
    header = [
        "experiment",
        "epochs",
        "test figures, mean ± std over seeds or open-set splits (n)",
        "overrides",
        "commit (date); device",
    ]
    return markdown_table(header, body)


def _per_split(jobs: list[Job], metric: str) -> str:
    """`split0 0.9941, split1 0.9928, ...`: a figure of each job, in the order of its split."""
    values = sorted((j.overrides.get("open_split", "?"), j.metrics.get(metric)) for j in jobs)
    return ", ".join(f"{split} {value:.4f}" for split, value in values if value is not None)


def _open_set(row: TrainRow) -> bool:
    """Whether the row's runs are of the open-set benchmark (they wrote its AUROC)."""
    return OPENSET_FIGURES[0] in row.stats


def openset_table(rows: list[TrainRow]) -> list[str]:
    """The open-set experiments' rows (those with test/openset_auroc) beside the AUROCs the field
    published for the benchmark (PUBLISHED_OPENSET_AUROC), highest AUROC first."""
    body: list[tuple[float, list[Any]]] = []
    for row in filter(_open_set, rows):
        name = " ".join(filter(None, [f"`{row.experiment}`", row.overrides and f"`{row.overrides}`"]))
        figures = [mean_std(*row.stats[m]) if m in row.stats else "" for m in OPENSET_FIGURES[1:]]
        auroc = row.stats[OPENSET_FIGURES[0]]
        cells = [name, row.epochs, mean_std(*auroc), _per_split(row.jobs, OPENSET_FIGURES[0]), *figures]
        body.append((auroc[0], [*cells, f"measured: {row.where}"]))
    for method, auroc, where in PUBLISHED_OPENSET_AUROC:
        body.append((auroc, [method, "", f"{auroc:.3f}", "", "", "", f"published: {where}"]))
    header = [
        "method",
        "epochs",
        "AUROC, known against unknown test digits (mean ± std over splits, n)",
        "AUROC of each split",
        "FPR of unknowns at 95% TPR",
        "closed-set accuracy",
        "measured (commit, date; device) or published (where)",
    ]
    return markdown_table(header, [cells for _, cells in sorted(body, key=lambda b: -b[0])])


def eval_table(reports: list[dict[str, Any]]) -> list[str]:
    """One row per experiment whose checkpoints were evaluated (its name, the epochs and the training
    overrides but the seed or split, as the train table's rows): each figure, mean ± std over them;
    split by the commit the checkpoints were trained at when a seed was trained more than once
    (`by_commit`), each such row naming it."""
    by_experiment: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for report in reports:
        trained = report["trained"]
        by_experiment[
            (report["experiment"], trained.get("epochs"), replicate_key(trained["overrides"]))
        ].append(report)
    rows = []
    for (experiment, epochs, overrides), reported in by_experiment.items():
        groups = by_commit(reported, lambda r: _replicate(r["trained"]["overrides"]), _trained_at)
        shown_overrides = " ".join(one_line(f"{k}={v}") for k, v in overrides)
        for group in groups:
            cells = [
                _stats([v for r in group if (v := _select(r, path)) is not None]) for _, path in EVAL_FIGURES
            ]
            name = " ".join(filter(None, [f"`{experiment}`", shown_overrides and f"`{shown_overrides}`"]))
            name += f" trained at {_trained_at(group[0])}" if len(groups) > 1 else ""
            rows.append([name, epochs, *cells, _where([r.get("provenance", {}) for r in group])])
    return markdown_table(
        ["checkpoints of", "epochs", *(name for name, _ in EVAL_FIGURES), "commit (date); device"], rows
    )


def _trained_at(report: dict[str, Any]) -> str:
    return report["trained"]["provenance"].get("commit", "unknown")


def bench_table(results: list[dict[str, Any]]) -> list[str]:
    """Each bench run's figures, side by side."""
    flat = [dict(flatten(r)) for r in results]
    names = [k for k in dict.fromkeys(k for f in flat for k in f) if not k.startswith("provenance.")]
    header = ["figure", *(_where([r.get("provenance", {})]) for r in results)]
    return markdown_table(header, [[n, *(f.get(n) for f in flat)] for n in names])


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def results(sources: Sequence[Path], warn: Callable[[str], None] = _warn) -> str:
    """RESULTS.md: the tables of what `sources` hold. Each source or file that cannot be used is
    passed to `warn` (`skipped <path>: <reason>`) and left out; a seed that ran more than once is
    passed to `warn` too, and counted each time. DataError when nothing usable remains."""
    read = read_sources(list(sources), bench_keys=[key for _, _, key in JSON_KINDS])
    sweeps, benches = read.sweeps, read.benches
    rows = train_rows(sweeps, warn)
    reports, skipped = [], list(read.skipped)
    for report in read.reports:
        if any(_select(report, path) is not None for _, path in EVAL_FIGURES):
            reports.append(report)
        else:
            skipped.append(f"{Path(report['source']) / 'report.json'}: holds none of the evaluate figures")
    for line in skipped:
        warn(f"skipped {line}")
    if not (sweeps or reports or benches):
        raise DataError(f"nothing usable in {len(sources)} source(s) (see the lines above): give {KINDS}.")
    md = [
        "# Results",
        "",
        "Written by `python -m siamese_lit.results` from the run outputs named below; "
        "regenerate it, do not edit it.",
        "",
    ]
    if sweeps:
        md += [
            "## Experiments",
            "",
            "`python -m siamese_lit.train -m +experiment=NAME seed=0,1,2 logger=csv`, whole 10k test set.",
            "",
            *train_table(rows),
            "",
        ]
    if any(map(_open_set, rows)):
        md += [
            "## Open-set recognition: the field's MNIST benchmark",
            "",
            "Neal et al. (2018)'s protocol (siamese_lit.evaluation.openset): 6 known digits, 4 unknown, "
            "the 5 published splits (`open_split=split0,split1,split2,split3,split4`); a test digit's score "
            "is its mean distance to the 5 nearest of a gallery of known training digits "
            "(`data.gallery_size`, 10k). Rows with `data.glyph_classes=True` trained beside auxiliary "
            "classes (letters, symbols, stroke and polyline glyphs: none a digit), which the field "
            "reports apart from the like-for-like rows.",
            "",
            *openset_table(rows),
            "",
        ]
    if reports:
        md += [
            "## The Siamese model as classifier, search engine, and on corrupted digits",
            "",
            "`python -m siamese_lit.evaluate ckpt_path=<job>/checkpoints/epoch_XXX.ckpt` on each job's best "
            "checkpoint (the one its run tested); k-NN against 10k clean training images.",
            "",
            *eval_table(reports),
            "",
        ]
    for title, command, key in JSON_KINDS:
        chosen = [b for b in benches if key in b]
        if chosen:
            md += [f"## {title}", "", command, "", *bench_table(chosen), ""]
    md += ["Sources:", "", *(f"- `{shown(s)}`" for s in sources)]
    if skipped:
        md += ["", "Left out (could not be read):", "", *(f"- {line}" for line in skipped)]
    return "\n".join(md) + "\n"


def results_command(cfg: DictConfig) -> None:
    """The task of `python -m siamese_lit.results` (its settings: siamese_lit.cli.schemas.ResultsSettings):
    the tables written to `out` (atomically, checked writable first), or printed."""
    out = check_output(cfg, "out", overwrite=True, required=False)
    check(bool(cfg.sources), "no sources: give multirun dirs, evaluate run dirs or bench JSON files.")
    text = results([Path(s) for s in cfg.sources])
    if out is None:
        print(text, end="")
        return
    with writing(out):
        write_atomic(out, text)


def main(argv: Sequence[str] | None = None) -> None:
    run_command(results_command, "results", positional="sources", argv=argv)


if __name__ == "__main__":
    main()
