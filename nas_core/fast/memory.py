"""Freed memory kept for reuse by the C allocator (glibc), so that a CPU search
does not pay the kernel to hand out zeroed pages again at every step.

glibc serves a block above its mmap threshold (at most 32 MB, and every block
above it, however big) with a fresh mapping and unmaps it when it is freed;
the next step's tensor of the same size then faults in every page again. At 32x32
inputs, where a DARTS step's tensors are several MB each, that was a quarter of
the step's time in the kernel (4 million page faults in three steps). With
mappings off and the heap never trimmed, freed blocks are reused; the process's
peak memory is what it was, and it keeps it until it exits (measured, a 32x32
DARTS step: 25% faster, peak RSS 7% higher).

A CPU search calls :func:`keep_freed_memory` (nas_core.search.state).
``NAS_CORE_KEEP_MEMORY=0`` leaves the allocator as it was; other C libraries
(musl, macOS) are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util

from . import flags

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_kept: bool | None = None  # None: not tried yet in this process


def keep_freed_memory() -> bool:
    """Tell glibc's malloc, once per process, to serve every block from its heap and
    never give the heap back. Returns whether it is so (False: turned off by
    NAS_CORE_KEEP_MEMORY=0, or not glibc)."""
    global _kept
    if _kept is None:
        _kept = False
        if flags.on(flags.KEEP_MEMORY):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # not glibc
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _kept = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _kept
