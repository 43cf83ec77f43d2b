"""CPU allocator tuning: large batches without page-fault storms (Linux, glibc).

glibc hands out blocks above its mmap threshold (at most 32 MiB by default) as fresh pages from
the kernel and gives them back on free, so every forward and backward pass of a large batch
faults its activations in again, page by page. On this project's 2-core machine that makes a
prefix forward+backward of 64 images at 128 px about 3x slower per image than with the blocks
kept in the heap (``benchmarks/bench_render.py allocator``). PyTorch leaves the allocator alone;
captum-fv's command line tunes it for its own process, and a Python session opts in with one call.

>>> import captum_fv as fv
>>> applied = fv.tune_cpu_allocator()  # once, before heavy CPU work; True where it applied
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_applied = False


def tune_cpu_allocator(threshold: int = 1 << 30) -> bool:
    """Serve blocks up to ``threshold`` bytes from the heap and keep up to that much freed memory
    there, instead of mapping and unmapping pages for each large tensor.

    Process-wide and only a matter of speed (results are unchanged); the price is a process that
    keeps up to ``threshold`` of freed memory for reuse. Returns True when applied; False on
    non-glibc systems or when the environment already configures malloc (``MALLOC_*`` variables,
    ``LD_PRELOAD`` of another allocator), which is then left as the user set it.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("LD_PRELOAD") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    value = min(int(threshold), 2**31 - 1)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))
    return _applied
