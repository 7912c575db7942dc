"""The environment variables that turn parts of the CPU fast path off, read here
and nowhere else. Each is on unless set to 0, false, no, off or the empty string.

- ``NAS_CORE_FAST``: networks built by :func:`nas_core.fast.network` take the fast
  path (0: the plain supernet, :class:`nas_core.supernet.Network`);
- ``NAS_CORE_NATIVE``: the fast path runs its compiled C kernels where they apply
  (0: PyTorch's kernels, the same sums);
- ``NAS_CORE_KEEP_MEMORY``: a CPU search keeps freed memory for reuse
  (:mod:`nas_core.fast.memory`).

``NAS_CORE_NATIVE_DIR`` (not a flag) names where the compiled kernels are kept
(:func:`nas_core.fast.build.cache_dir`).
"""
from __future__ import annotations

import os

FAST = "NAS_CORE_FAST"
NATIVE = "NAS_CORE_NATIVE"
KEEP_MEMORY = "NAS_CORE_KEEP_MEMORY"
NATIVE_DIR = "NAS_CORE_NATIVE_DIR"

OFF = ("0", "false", "no", "off", "")


def on(name: str) -> bool:
    """Whether the flag ``name`` is on in the environment (unset: on)."""
    return os.environ.get(name, "1").strip().lower() not in OFF
