"""siamese_lit: LSTM classifiers and Siamese networks that read MNIST digits row by row."""

from pathlib import Path

from omegaconf import OmegaConf

from siamese_lit.utils.precision import auto_precision

#: The repository root of an editable install: where `data/` and `outputs/` live by default.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# `${project_root:}` in conf/ — the template's rootutils trick without the path manipulation.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
# `${auto_precision:${trainer.accelerator}}` in conf/trainer/default.yaml (siamese_lit/utils/precision.py)
if not OmegaConf.has_resolver("auto_precision"):
    OmegaConf.register_new_resolver("auto_precision", auto_precision)

__all__ = ["PROJECT_ROOT"]
