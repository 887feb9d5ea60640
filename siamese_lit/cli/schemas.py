"""The types of each command's settings: one dataclass per command, registered in Hydra's ConfigStore.

A command's yaml (conf/<command>.yaml) names `<command>_schema` first in its defaults list and
holds the values and their meaning; the dataclass says only what each key is, so Hydra itself
refuses an unknown key or a value of the wrong type (`threshold=abc`, `port=1.5`) before the task
starts, and the wrapper (siamese_lit.cli.command) reports it as one line. Ranges (a seed numpy
takes, a size >= 1) are the commands' own checks. `summarize` and `results` have no yaml: their
dataclass is their whole config. Registered when the package is imported, with the resolvers the
same configs use, so composing a config (a test, a notebook) finds them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class CompareSettings:
    task_name: str = MISSING
    ckpt_path: str | None = MISSING
    images: list[str] = MISSING
    threshold: float | None = MISSING
    reject_threshold: float | None = MISSING
    seed: int = MISSING
    device: str = MISSING
    data: Any = MISSING
    paths: Any = MISSING


@dataclass
class IndexSettings:
    task_name: str = MISSING
    seed: int = MISSING
    ckpt_path: str | None = MISSING
    index_path: str | None = MISSING
    overwrite: bool = MISSING
    gallery: str = MISSING
    gallery_size: int | None = MISSING
    reject_threshold: float | None = MISSING
    device: str = MISSING
    batch_size: int = MISSING
    data: Any = MISSING
    paths: Any = MISSING


@dataclass
class SearchSettings:
    task_name: str = MISSING
    index_path: str | None = MISSING
    queries: list[str] = MISSING
    ckpt_path: str | None = MISSING
    protocol: str = MISSING
    k: int | None = MISSING
    threshold: float | None = MISSING
    reject_threshold: float | None = MISSING
    seed: int = MISSING
    output: str | None = MISSING
    overwrite: bool = MISSING
    device: str = MISSING
    batch_size: int = MISSING
    paths: Any = MISSING


@dataclass
class ExportSettings:
    task_name: str = MISSING
    seed: int = MISSING
    ckpt_path: str | None = MISSING
    format: str = MISSING
    output: str | None = MISSING
    overwrite: bool = MISSING
    opset: int | None = MISSING
    check_images: int = MISSING
    tolerance: float = MISSING
    data: Any = MISSING
    paths: Any = MISSING


@dataclass
class DemoSettings:
    task_name: str = MISSING
    ckpt_path: str | None = MISSING
    index_path: str | None = MISSING
    gallery_size: int | None = MISSING
    neighbours: int = MISSING
    threshold: float | None = MISSING
    reject_threshold: float | None = MISSING
    host: str = MISSING
    port: int = MISSING
    seed: int = MISSING
    device: str = MISSING
    data: Any = MISSING
    paths: Any = MISSING


@dataclass
class ProtocolSettings:
    k: int = MISSING
    threshold: float = MISSING


@dataclass
class RejectionSettings:
    nondigits: bool = MISSING
    cache_dir: str = MISSING


@dataclass
class CorrectionSettings:
    threshold: float | None = MISSING


@dataclass
class RetrievalSettings:
    precision_at: list[int] = MISSING
    queries: list[int] = MISSING
    neighbours: int = MISSING


@dataclass
class RobustnessSettings:
    enabled: bool = MISSING
    corruptions: Any = MISSING  # null (all) or a list of names (siamese_lit.evaluation.robustness)
    seed: int = MISSING


@dataclass
class EvalSettings:
    task_name: str = MISSING
    ckpt_path: str | None = MISSING
    classifier_ckpt_path: str | None = MISSING
    seed: int = MISSING
    device: str = MISSING
    precision: Any = MISSING  # a name or a number: Lightning's list (siamese_lit.cli.settings)
    batch_size: int = MISSING
    calibration: str = MISSING
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    gallery_knn_k: int = MISSING
    correction: CorrectionSettings = field(default_factory=CorrectionSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    oneshot_episodes: int = MISSING
    robustness: RobustnessSettings = field(default_factory=RobustnessSettings)
    rejection: RejectionSettings = field(default_factory=RejectionSettings)
    data: Any = MISSING
    paths: Any = MISSING


#: Hydra's settings for the commands that read and write only what they are given: no run dir, no
#: .hydra/ folder, no log file, the logging left as it is.
IN_PLACE_HYDRA = {"run": {"dir": "."}, "output_subdir": None}
IN_PLACE_DEFAULTS = [
    "_self_",
    {"override hydra/job_logging": "none"},
    {"override hydra/hydra_logging": "none"},
]


@dataclass
class SummarizeSettings:
    """`python -m siamese_lit.summarize DIR...` (or dirs=[...]): the multirun dirs to summarize."""

    defaults: list[Any] = field(default_factory=lambda: list(IN_PLACE_DEFAULTS))
    dirs: list[str] = field(default_factory=list)
    hydra: Any = field(default_factory=lambda: dict(IN_PLACE_HYDRA))


@dataclass
class ResultsSettings:
    """`python -m siamese_lit.results SOURCE... [out=RESULTS.md]` (or sources=[...])."""

    defaults: list[Any] = field(default_factory=lambda: list(IN_PLACE_DEFAULTS))
    sources: list[str] = field(default_factory=list)
    out: str | None = None
    hydra: Any = field(default_factory=lambda: dict(IN_PLACE_HYDRA))


#: the configs that are a schema under a yaml (name: <config>_schema) or a whole config (its name)
SCHEMAS: dict[str, type] = {
    "compare_schema": CompareSettings,
    "index_schema": IndexSettings,
    "search_schema": SearchSettings,
    "export_schema": ExportSettings,
    "demo_schema": DemoSettings,
    "eval_schema": EvalSettings,
    "summarize": SummarizeSettings,
    "results": ResultsSettings,
}


def register() -> None:
    """Store every command's schema in Hydra's ConfigStore (again: the same node)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
