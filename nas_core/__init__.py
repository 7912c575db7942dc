"""nas_core: a cost-instrumented differentiable NAS core.

Every training step records each op's cost dL/dZ on every edge (the gradient
of the loss w.r.t. the op's weight, which the backward pass computes anyway);
every epoch records alpha, the derived cell with ``none`` counted and its
wiring. See the book for the unified view these costs give of DARTS, SNAS and
DSNAS.
"""
__version__ = "0.1.0"  # the one place it is set (pyproject.toml reads it); see CHANGELOG.md

from .config import Intervention, SearchConfig
from .faults import DivergenceError
from .ops import OPS
from .runs import History, RunError, load, run, run_all
from .space import Topology

__all__ = ["Intervention", "SearchConfig", "History", "RunError", "DivergenceError", "load", "run", "run_all",
           "OPS", "Topology"]
