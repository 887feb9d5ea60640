"""What a SLURM job asks for, from the Trainer's settings (conf/hydra/launcher/slurm.yaml).

`${slurm_tasks:${trainer.devices}}`: one task per device, as Lightning's SLURM environment needs;
`auto` (or -1, or a list of device ids) counts as one task per node unless a number is given.
`${slurm_gpus:${trainer.accelerator},${trainer.devices}}`: one GPU per task, none for a CPU run
(a partition without GPUs refuses any --gpus-per-node request, even for CPU training).
Pure Python, so that the package imports no torch to register them.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

CPU_ACCELERATORS = {"cpu"}


def slurm_tasks(devices: Any) -> int:
    """Tasks per node for `trainer.devices`: the number when it is one, else 1."""
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    if isinstance(devices, str) and devices.strip().isdigit() and int(devices) >= 1:
        return int(devices)
    return 1


def slurm_gpus(accelerator: Any, devices: Any) -> int | None:
    """GPUs per node: none (null, so sbatch gets no --gpus-per-node) for a CPU run, else one per task."""
    if str(accelerator).lower() in CPU_ACCELERATORS:
        return None
    return slurm_tasks(devices)


def register() -> None:
    for name, fn in (("slurm_tasks", slurm_tasks), ("slurm_gpus", slurm_gpus)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
