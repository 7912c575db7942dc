"""What a run does when its numbers go wrong, and the fault-injection hooks of the tests.

* :class:`DivergenceError`: a loss, alpha or the weights' gradient norm stopped
  being finite; the search stops at that step and keeps its last finished epoch
  (:func:`nonfinite_path` says where a record stopped being finite).
* Fault injection for the tests: ``NAS_FAULT=POINT@EPOCH`` makes a run's writers
  (:mod:`nas_core.runs.io`, :mod:`nas_core.runs.history`) stop the process
  (``os._exit``) at that point, e.g. half-way through a file.

Strict JSON, digests and atomic writes are in :mod:`nas_core.runs.io`. This
module imports nothing of the package (:mod:`nas_core.search` raises its error).
"""
from __future__ import annotations

import math
import os


class DivergenceError(RuntimeError):
    """The search diverged (a non-finite loss, alpha or gradient norm)."""


def nonfinite_path(obj, path: str = "") -> str | None:
    """Where the first non-finite float of a nested structure is, as ``a.b[2]``."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "the value")
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for where, v in items:
        found = nonfinite_path(v, where)
        if found:
            return found
    return None


# ---- fault injection (tests) --------------------------------------------------------

FAULT_ENV = "NAS_FAULT"


def injected(point: str, epoch: int) -> bool:
    """Whether ``NAS_FAULT`` asks the writer to stop at ``point`` of ``epoch``."""
    return os.environ.get(FAULT_ENV) == f"{point}@{epoch}"


def die():
    """Stop the process at once, as ``kill -9`` would (no cleanup, no flush)."""
    os._exit(137)
