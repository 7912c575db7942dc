"""Tidy tables drawn from run histories: one row per observation.

Every function takes ``runs``: a :class:`~nas_core.runs.History`, a list of
them (one per seed, labelled by their algorithm), or a dict {group label:
History or list} to compare settings (e.g. bi-level vs single-level) in one
table or figure. Records are read through :mod:`nas_core.record`.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from .. import record
from ..config import SearchConfig
from ..ops import NONE, OPS
from ..space import Topology, random_width_depth
from .style import OP_LABEL, edge_kind, edge_label


def groups(runs) -> dict[str, list]:
    """{label: [History, ...]} from a History, a list (labelled by its
    algorithm) or a dict of Histories or lists."""
    if isinstance(runs, dict):
        return {str(k): [v] if hasattr(v, "records") else list(v) for k, v in runs.items()}
    runs = [runs] if hasattr(runs, "records") else list(runs)
    return {runs[0].config.algorithm.upper() if runs else "runs": runs}


@functools.lru_cache(maxsize=None)
def random_wd(n_selected: int, steps: int, multiplier: int) -> tuple[float, float]:
    """Mean width and depth of random cells with ``n_selected`` edges (cached)."""
    return random_width_depth(n_selected, Topology(steps, multiplier))


def epoch_frame(runs, cell_type: str = "normal") -> pd.DataFrame:
    """One row per (group, seed, epoch): selected edges, mean p(none), width and
    depth of the derived cell and of random cells with as many edges, accuracy."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                n = record.wiring(r, "n_selected", cell_type)
                rw, rd = random_wd(n, top.steps, top.multiplier)
                rows.append(dict(
                    group=group, seed=h.config.seed, epoch=record.epoch(r), n_selected=n, fraction=n / top.n_edges,
                    p_none=float(np.mean(record.p_none(r, cell_type))), width=record.wiring(r, "width", cell_type),
                    depth=record.wiring(r, "depth", cell_type), random_width=rw, random_depth=rd,
                    train_acc=record.accuracy(r, "train"), heldout_acc=record.accuracy(r, "heldout"),
                    train_loss=record.loss(r, "train"), heldout_loss=record.loss(r, "heldout")))
    return pd.DataFrame(rows)


def edge_frame(runs, cell_type: str = "normal") -> pd.DataFrame:
    """One row per (group, seed, epoch, edge): the argmax op with ``none``
    counted, whether the edge is selected, p(none) and the best other op."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                p, best, ops = record.probs(r, cell_type), record.best_other(r, cell_type), record.derived(r, cell_type)
                for e in range(top.n_edges):
                    rows.append(dict(group=group, seed=h.config.seed, epoch=record.epoch(r), edge=e,
                                     edge_name=edge_label(top, e), kind=edge_kind(top, e), op=ops[e],
                                     selected=ops[e] != "none", p_none=p[e, NONE], best_op=OPS[best[e]],
                                     p_best=p[e, best[e]]))
    return pd.DataFrame(rows)


def cost_frame(runs, how: str = "parametric", cell_type: str = "normal", cell: int | None = None,
               splits=None) -> pd.DataFrame:
    """One row per (group, seed, epoch, split, edge): the edge's cost
    (:func:`nas_core.record.edge_cost`, ``how`` one of
    :data:`nas_core.record.EDGE_COSTS`), summed over the cells sharing alpha
    unless ``cell`` picks one (its index within the type). ``splits``: those
    the runs recorded (default: all of them)."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                for split in splits or record.SPLITS:
                    c = record.edge_costs(r, split, h.config, how, cell_type, cell)
                    if c is None:
                        continue
                    for e in range(top.n_edges):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=record.epoch(r), split=split, edge=e,
                                         edge_name=edge_label(top, e), kind=edge_kind(top, e), cost=c[e]))
    return pd.DataFrame(rows, columns=["group", "seed", "epoch", "split", "edge", "edge_name", "kind", "cost"])


def edge_curves(frame: pd.DataFrame, smooth: int = 1) -> pd.DataFrame:
    """A :func:`cost_frame` of one group as curves: the cost per epoch (rows) and
    edge (columns), mean over seeds, as a centred running mean over ``smooth``
    epochs: what the cost figures draw, and what their text reads."""
    curves = frame.groupby(["epoch", "edge"]).cost.mean().unstack("edge")
    return curves.rolling(smooth, min_periods=1, center=True).mean() if smooth > 1 else curves


def final_frame(runs, cell_type: str = "normal") -> pd.DataFrame:
    """One row per run, for display: the derived cell at the run's last epoch
    (``none`` counted), its number of edges and of deep edges, its width and
    depth, and the mean width and depth of random cells with as many edges. A
    ``group`` column appears when ``runs`` is a dict of groups."""
    by_group = groups(runs)
    rows = []
    for group, hs in by_group.items():
        for h in hs:
            top, r = h.config.topology, h.last
            sel = record.wiring(r, "selected_edges", cell_type)
            ops = record.derived(r, cell_type)
            rw, rd = random_wd(len(sel), top.steps, top.multiplier)
            row = {"group": group} if len(by_group) > 1 else {}
            rows.append(dict(
                row, seed=h.config.seed, edges=len(sel), deep=sum(e in top.deep_edges for e in sel),
                width=record.wiring(r, "width", cell_type), depth=record.wiring(r, "depth", cell_type),
                **{"random width": round(rw, 2), "random depth": round(rd, 2)},
                cell=" · ".join(f"e{e} {OP_LABEL[ops[e]]}" for e in sel) or "(empty)"))
    return pd.DataFrame(rows).set_index(["group", "seed"] if len(by_group) > 1 else "seed")


def config_frame(config) -> pd.DataFrame:
    """The fields of a config that differ from ``SearchConfig``'s defaults
    (the seed aside), with the defaults: what a preset sets."""
    default = SearchConfig().to_dict()
    rows = [dict(field=k, value=str(v), default=str(default[k])) for k, v in config.to_dict().items()
            if k != "seed" and v != default[k]]
    return pd.DataFrame(rows).set_index("field")
