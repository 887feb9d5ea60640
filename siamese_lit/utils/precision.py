"""`trainer.precision: ${auto_precision:${trainer.accelerator}}`: bfloat16 where it is faster.

On a CPU with AMX tiles (Intel Sapphire Rapids and later) the LSTM trains several times faster under
bfloat16 autocast, with the same accuracy. Elsewhere
float32 stays the default: a CPU without AMX gains little or loses, and bfloat16 LSTMs need a recent
cuDNN (9.13+) on a GPU, so GPU users opt in themselves (`trainer.precision=bf16-mixed` or `16-mixed`).

A CPU without bfloat16 instructions has no oneDNN kernel for an LSTM under bfloat16 autocast: the
forward pass raises. `cpu_runs_bf16_lstm` tries it once; where it fails, bfloat16 autocast on the CPU
is refused with one line (`check_runs_here`) instead of that traceback. SIAMESE_LIT_NO_BF16=1 makes
the probe answer no on any CPU, to run the tests as such a CPU would.
"""

from __future__ import annotations

import functools
import os

import torch

from siamese_lit.utils.errors import ConfigError

FAST, EXACT = "bf16-mixed", "32-true"
#: Set to 1: behave as a CPU without bfloat16 kernels (the probe answers no).
NO_BF16_VARIABLE = "SIAMESE_LIT_NO_BF16"


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in AMX tiles (torch's own probe)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


@functools.cache
def cpu_runs_bf16_lstm() -> bool:
    """Whether a small LSTM runs forward on this CPU under bfloat16 autocast (tried once; no where
    SIAMESE_LIT_NO_BF16 is set to anything but 0)."""
    if _forced_off():
        return False
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 4))
    except RuntimeError:
        return False
    return True


def runs_on_cpu(accelerator: str = "auto") -> bool:
    """Whether Lightning's `accelerator` (auto, cpu, gpu, cuda, mps) means this machine's CPU."""
    if accelerator == "auto":
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return accelerator == "cpu"


def auto_precision(accelerator: str = "auto") -> str:
    """The Trainer precision for `accelerator` (Lightning's names: auto, cpu, gpu, cuda, mps)."""
    return FAST if runs_on_cpu(accelerator) and cpu_has_amx() and cpu_runs_bf16_lstm() else EXACT


def check_runs_here(precision: object, accelerator: str, key: str) -> None:
    """ConfigError where `precision` (Lightning's bf16-mixed, bf16-true, bf16) asks for bfloat16 on a
    CPU that cannot run an LSTM in it."""
    if not str(precision).startswith("bf16") or not runs_on_cpu(accelerator):
        return
    if not cpu_runs_bf16_lstm():
        why = (
            f"{NO_BF16_VARIABLE} is set, so this CPU is taken to have no bfloat16 kernel for the LSTM"
            if _forced_off()
            else "this CPU has no bfloat16 kernel for the LSTM (its forward pass fails in bfloat16)"
        )
        raise ConfigError(f"{key}={precision}: {why}: use {key}={EXACT}.")


def _forced_off() -> bool:
    return os.environ.get(NO_BF16_VARIABLE, "").strip() not in ("", "0")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting (None: no autocast)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def forward_context(device: torch.device, precision: str) -> torch.autocast:
    """The autocast Lightning's `precision` applies to forward passes, for inference outside it."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
