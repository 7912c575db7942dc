"""The three wiring patterns as statistics of a run's history, defined once.

Each function returns a JSON-able dict with the numbers it looked at and
``holds``. The thresholds are fixed here, before any calibration, and are not
tuned to make a run pass.
"""
from __future__ import annotations

import math

import numpy as np

from .history import History
from .space import random_width_depth

GROWING_EARLY_MAX = 0.25   # at most a quarter of the edges selected at some point early on
GROWING_FINAL_MIN = 0.6    # and most edges selected at the end
WIDTH_INPUT_MIN = 0.75     # at least 3/4 of the input edges selected ...
BILEVEL_CONTROL_MIN = 0.75  # the single-level control keeps at least 3/4 of its edges


def _fractions(h: History, cell_type: str) -> np.ndarray:
    return np.array(h.series("n_selected", cell_type), dtype=float) / h.config.topology.n_edges


def growing(h: History, cell_type: str = "normal") -> dict:
    """Growing, not pruning: the child network starts (nearly) empty and gains
    edges. Holds when, with ``none`` counted, the fraction of selected edges
    falls to <= 0.25 within the first third of the epochs, ends >= 0.6, and the
    mean p(none) over edges peaks after the first epoch and then falls by at
    least 0.05 (p(none) guards against argmax noise while p is near uniform)."""
    frac = _fractions(h, cell_type)
    early = frac[: max(1, math.ceil(len(frac) / 3))]
    p_none = np.array([np.mean(p) for p in h.series("p_none", cell_type)])
    peak = int(p_none.argmax())
    out = {
        "early_min_fraction": float(early.min()),
        "final_fraction": float(frac[-1]),
        "p_none_first": float(p_none[0]),
        "p_none_peak": float(p_none[peak]),
        "p_none_peak_epoch": peak + 1,
        "p_none_final": float(p_none[-1]),
    }
    out["holds"] = bool(
        early.min() <= GROWING_EARLY_MAX
        and frac[-1] >= GROWING_FINAL_MIN
        and peak > 0
        and p_none[-1] <= p_none[peak] - 0.05
    )
    return out


def width(h: History, cell_type: str = "normal") -> dict:
    """Width over depth: at the end no edge between intermediate nodes is
    selected while at least 3/4 of the edges from the input nodes are. Also
    reports the derived cell's width and depth against random cells with the
    same number of edges (Shu et al.'s measures; see ``space.width_depth``)."""
    top = h.config.topology
    last = h.last
    sel = set(last["selected_edges"][cell_type])
    inputs = sum(e in sel for e in top.input_edges) / len(top.input_edges)
    deep = sum(e in sel for e in top.deep_edges)
    rw, rd = random_width_depth(len(sel), top) if sel else (0.0, 0.0)
    return {
        "input_edges_fraction": inputs,
        "deep_edges_selected": deep,
        "width": last["width"][cell_type],
        "depth": last["depth"][cell_type],
        "random_width": rw,
        "random_depth": rd,
        "holds": bool(deep == 0 and inputs >= WIDTH_INPUT_MIN),
    }


def bilevel(h: History, cell_type: str = "normal") -> dict:
    """No edge under bi-level optimisation. For a bi-level run it holds when no
    edge is selected at the end (``none`` wins everywhere). A single-level run
    is the control: it holds when it keeps >= 3/4 of its edges, so that the
    empty cell is due to the held-out split, not the data or settings."""
    frac = _fractions(h, cell_type)
    role = "bilevel" if h.config.level == "bi" else "control"
    holds = frac[-1] == 0 if role == "bilevel" else frac[-1] >= BILEVEL_CONTROL_MIN
    return {"role": role, "final_selected": int(h.last["n_selected"][cell_type]), "final_fraction": float(frac[-1]),
            "min_fraction": float(frac.min()), "holds": bool(holds)}


PATTERNS = {"growing": growing, "width": width, "bilevel": bilevel}


def statistics(h: History, cell_type: str = "normal") -> dict:
    """Every pattern's statistic for one run."""
    if not h.records:
        raise ValueError(f"{h.path}: the run has no finished epoch yet")
    return {name: fn(h, cell_type) for name, fn in PATTERNS.items()}
