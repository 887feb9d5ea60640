"""Keep glibc from handing each training step's buffers back to the kernel.

glibc serves allocations above a threshold with mmap and unmaps them on free. The threshold starts
at 128 KiB and only grows up to a freed block's size, so a step's activations and gradients (megabytes
each for the 3x128 LSTM at batch 128) can come back as fresh pages every step: page faults and
zeroing that can take as long as the bfloat16 step itself on a small CPU (`python -m
bench` shows the compute limit with it). Fixing the mmap threshold at glibc's maximum (32 MiB)
and raising the trim threshold keeps those blocks in the heap for reuse, as jemalloc or tcmalloc would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD = 512 * 2**20


def keep_freed_memory() -> bool:
    """Tune glibc malloc for this process (True), or leave it alone (False): on a system without
    glibc, or when MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are set, which then decide."""
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys():
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no libc to load, or one without mallopt (macOS)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
