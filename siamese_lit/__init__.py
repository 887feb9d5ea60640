"""siamese_lit: LSTM classifiers and Siamese networks that read MNIST digits row by row."""

# ruff: noqa: E402 (the Ctrl-C hook goes in before every other import)
from siamese_lit.cli import ctrl_c

ctrl_c.install_when_run_as_command()  # first: a Ctrl-C while the rest imports is one line too

import os
from pathlib import Path

from omegaconf import OmegaConf

from siamese_lit.cli import schemas
from siamese_lit.cluster import resources as slurm_resources

#: The repository root of an editable install: where `data/` and `outputs/` live by default.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def batches_of(target: str | None) -> str | None:
    """`${batches_of:${model.objective._target_}}` in conf/data/pairs.yaml: the training batches the
    objective class `target` takes (siamese_lit.objectives.base), or None without an objective."""
    if target is None:
        return None
    from siamese_lit.checkpoints.specs import check_target
    from siamese_lit.objectives import Objective
    from siamese_lit.utils.errors import check

    cls = check_target(target, "model.objective")
    check(
        issubclass(cls, Objective),
        f"model.objective._target_={target} is not an objective (siamese_lit.objectives).",
    )
    return cls.batches


def auto_precision(accelerator: str = "auto") -> str:
    """`${auto_precision:${trainer.accelerator}}` in conf/trainer/default.yaml: torch is imported only
    when a config is resolved, so a command (or `import siamese_lit`) does not wait for it first."""
    from siamese_lit.utils.precision import auto_precision as precision_for

    return precision_for(accelerator)


# `${project_root:}` in conf/ — the template's rootutils trick without the path manipulation.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
# `${auto_precision:${trainer.accelerator}}` in conf/trainer/default.yaml (siamese_lit/utils/precision.py)
if not OmegaConf.has_resolver("auto_precision"):
    OmegaConf.register_new_resolver("auto_precision", auto_precision)
if not OmegaConf.has_resolver("batches_of"):
    OmegaConf.register_new_resolver("batches_of", batches_of)
# `${env_or_default:NAME,default}` in conf/paths/default.yaml: like oc.env, but an empty variable counts
# as unset (oc.env would give "", and MNIST would be fetched into ./MNIST/raw of the working dir)
if not OmegaConf.has_resolver("env_or_default"):
    OmegaConf.register_new_resolver("env_or_default", lambda name, default: os.environ.get(name) or default)

# `${slurm_tasks:...}`, `${slurm_gpus:...}` in conf/hydra/launcher/slurm.yaml
slurm_resources.register()
# each command's typed settings (conf/<command>.yaml names <command>_schema first)
schemas.register()

__all__ = ["PROJECT_ROOT", "batches_of"]
