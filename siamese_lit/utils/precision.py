"""`trainer.precision: ${auto_precision:${trainer.accelerator}}`: bfloat16 where it is faster.

On a CPU with AMX tiles (Intel Sapphire Rapids and later) the LSTM trains several times faster under
bfloat16 autocast, with the same accuracy. Elsewhere
float32 stays the default: a CPU without AMX gains little or loses, and bfloat16 LSTMs need a recent
cuDNN (9.13+) on a GPU, so GPU users opt in themselves (`trainer.precision=bf16-mixed` or `16-mixed`).
"""

from __future__ import annotations

import torch

FAST, EXACT = "bf16-mixed", "32-true"


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in AMX tiles (torch's own probe)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def auto_precision(accelerator: str = "auto") -> str:
    """The Trainer precision for `accelerator` (Lightning's names: auto, cpu, gpu, cuda, mps)."""
    if accelerator == "auto":
        on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    else:
        on_cpu = accelerator == "cpu"
    return FAST if on_cpu and cpu_has_amx() else EXACT


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting (None: no autocast)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def forward_context(device: torch.device, precision: str) -> torch.autocast:
    """The autocast Lightning's `precision` applies to forward passes, for inference outside it."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
