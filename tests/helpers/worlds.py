"""Building blocks of the tables' worlds: checkpoints made hostile from real ones, a pickle payload
that leaves a marker if it ever runs, a folder nobody may write into, and hand-made sweep dirs."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf


class Payload:
    """Unpickled, it would create the file `marker` (what a real attack does much worse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


def with_hparams(ckpt: dict, path: Path, **hparams: Any) -> Path:
    """`ckpt` saved to `path` with `hparams` replacing its hyper-parameters of those names."""
    torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], **hparams}}, path)
    return path


def with_weights(ckpt: dict, path: Path, **tensors: torch.Tensor) -> Path:
    """`ckpt` saved to `path` with `tensors` replacing its weights of those names."""
    torch.save({**ckpt, "state_dict": {**ckpt["state_dict"], **tensors}}, path)
    return path


def read_only_dir(base: Path) -> Path:
    """A dir nobody may write into: root writes through file modes, so for root a read-only mount."""
    if os.geteuid() == 0:
        return Path("/sys/siamese_lit_test")
    path = base / "read_only"
    path.mkdir()
    path.chmod(0o555)
    return path


def sweep_dir(root: Path, jobs: dict[str, dict[str, Any]], **settings: Any) -> Path:
    """A multirun dir with `jobs` (name -> overrides, metrics; raw texts override the files), whose
    jobs' config also holds `settings` (e.g. task_name)."""
    root.mkdir(parents=True)
    config = {"optimized_metric": "val/auroc_best", "callbacks": {"model_checkpoint": {"mode": "max"}}}
    config |= settings
    for name, job in jobs.items():
        hydra = root / name / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(OmegaConf.to_yaml(config))
        overrides = job.get("overrides_text") or OmegaConf.to_yaml(OmegaConf.create(job["overrides"]))
        (hydra / "overrides.yaml").write_text(overrides)
        if "metrics" in job or "metrics_text" in job:
            (root / name / "metrics.json").write_text(job.get("metrics_text") or json.dumps(job["metrics"]))
    return root
