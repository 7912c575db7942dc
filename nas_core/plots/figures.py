"""Figures over runs (one line or panel per group of seeds): selected edges and
p(none), width and depth, which edges are selected, edge costs. Drawn from the
tidy tables of :mod:`nas_core.plots.frames`; ``runs`` as there."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..ops import OPS
from ..record import EDGE_COSTS
from .frames import cost_frame, edge_frame, epoch_frame, groups
from .style import EDGE_COLORS, GROUP_COLORS, LAYOUT, SPLIT_DASH, SPLIT_LABEL, figure_title, mean_band, zero_line


def band_note(runs, band) -> str:
    """'mean over 5 seeds; band: min–max' (or '1 seed')."""
    n = {len(v) for v in groups(runs).values()}
    seeds = "/".join(str(k) for k in sorted(n))
    if max(n) == 1:
        return "1 seed"
    if band:
        return f"mean over {seeds} seeds; band: {'min–max' if band == 'minmax' else '±1 sd'}"
    return f"mean over {seeds} seeds"


def _group_panels(df, panels: dict, lines, band):
    """One panel per {column: panel title}; per group (one colour each) and
    per (column prefix, name suffix, banded?, dash) in ``lines`` a mean line."""
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1, subplot_titles=tuple(panels.values()))
    for i, (group, g) in enumerate(df.groupby("group", sort=False)):
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        for col, y in enumerate(panels, 1):
            for prefix, suffix, banded, dash in lines:
                mean_band(fig, g, "epoch", prefix + y, name=group + suffix, color=color, band=band if banded else None,
                          dash=dash, row=1, col=col, showlegend=col == 1)
    fig.update_xaxes(title_text="epoch")
    return fig


def selection_figure(runs, cell_type: str = "normal", band: str | None = "minmax", title: str | None = None):
    """Fraction of selected edges (argmax ≠ none) and mean p(none) per epoch,
    mean and band over seeds, one colour per group."""
    fig = _group_panels(epoch_frame(runs, cell_type),
                        {"fraction": "edges with argmax ≠ none", "p_none": "mean p(none) over edges"},
                        [("", "", True, "solid")], band)
    n_ops = len(OPS)
    fig.add_hline(y=1 / n_ops, line=dict(color="grey", dash="dot", width=1), row=1, col=2,
                  annotation_text=f"uniform p = 1/{n_ops}", annotation_position="bottom right")
    fig.update_yaxes(title_text="fraction of edges", range=[-0.03, 1.03], row=1, col=1)
    fig.update_yaxes(title_text="mean p(none)", row=1, col=2)
    fig.update_layout(**LAYOUT, height=470, legend=dict(orientation="h", y=-0.22),
                      title=figure_title(title or "Selected edges and p(none) over the search",
                                  f"{cell_type} cell, none counted; {band_note(runs, band)}"))
    fig.update_layout(margin=dict(t=100))
    return fig


def width_depth_figure(runs, cell_type: str = "normal", band: str | None = "minmax", title: str | None = None):
    """Width and depth of the derived cell per epoch (mean and band over seeds)
    against random cells with the same number of edges (dotted)."""
    fig = _group_panels(epoch_frame(runs, cell_type), {"width": "width", "depth": "depth"},
                        [("", ": derived", True, "solid"), ("random_", ": random, as many edges", False, "dot")], band)
    fig.update_yaxes(title_text="nodes fed by an input", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="connections, input → output", rangemode="tozero", row=1, col=2)
    fig.update_layout(**LAYOUT, height=480, legend=dict(orientation="h", y=-0.22),
                      title=figure_title(title or "Width and depth of the derived cells",
                                  f"{band_note(runs, band)}; dotted: random cells with as many edges"))
    fig.update_layout(margin=dict(t=100))
    return fig


def edge_selection_figure(runs, cell_type: str = "normal", title: str | None = None):
    """Which edges survive: per edge and epoch, the fraction of seeds whose
    derived cell selects it; input edges first, deep edges last."""
    df = edge_frame(runs, cell_type)
    names = list(groups(runs))
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=names if len(names) > 1 else None)
    for r, group in enumerate(names, 1):
        d = df[df.group == group]
        table = d.pivot_table(index=["kind", "edge", "edge_name"], columns="epoch", values="selected", aggfunc="mean")
        table = table.sort_index(level=["kind", "edge"],
                                 key=lambda s: s.map({"input": 0, "deep": 1}) if s.name == "kind" else s)
        ys = [f"{name} {kind}" for kind, _, name in table.index]
        fig.add_trace(go.Heatmap(z=table.values.astype(float), x=list(table.columns), y=ys, zmin=0, zmax=1,
                                 colorscale="Blues", colorbar=dict(title="share of<br>seeds", len=0.8),
                                 showscale=r == 1, xgap=0, ygap=2,
                                 hovertemplate="%{y}<br>epoch %{x}<br>selected in %{z:.0%} of seeds<extra></extra>"),
                      row=r, col=1)
        fig.update_yaxes(autorange="reversed", row=r, col=1)
    fig.update_xaxes(title_text="epoch", row=len(names), col=1)
    n = "/".join(str(k) for k in sorted({len(v) for v in groups(runs).values()}))
    fig.update_layout(**LAYOUT, height=150 + len(names) * (60 + 34 * df.edge.nunique()),
                      title=figure_title(title or "Which edges are selected",
                                  f"share of the {n} seeds whose derived cell (none counted) selects the edge"))
    fig.update_layout(margin=dict(l=130, r=10, t=95, b=50))
    return fig


def cost_figure(runs, how: str = "parametric", cell_type: str = "normal", cell: int | None = None,
                edges=None, smooth: int = 1, title: str | None = None, clip: float | None = 0.98):
    """Cost per edge over epochs, mean over seeds: train solid, held-out dashed
    (probes dotted), one colour per edge, one panel per group. Cost 0 is the
    cost of ``none``: an op below 0 lowers the loss and is reinforced.

    ``how``: one of :data:`nas_core.record.EDGE_COSTS`. ``smooth``: running
    mean over that many epochs (DSNAS measures only the sampled ops, so its
    per-epoch means are noisy). ``clip`` limits the y axis to that quantile of
    the costs at either end (the first epochs can be much larger); None shows
    everything.
    """
    df = cost_frame(runs, how, cell_type, cell)
    names = list(groups(runs))
    if df.empty:
        raise ValueError("no costs recorded in these runs (record_costs=False?)")
    if edges is not None:
        df = df[df.edge.isin(list(edges))]
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, subplot_titles=names if len(names) > 1 else None,
                        horizontal_spacing=0.04)
    # legend: one entry per edge (its colour) and one per split (its dash)
    for e, d in df.groupby("edge"):
        name = f"{d.edge_name.iloc[0]} ({d.kind.iloc[0]})"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, legendgroup=f"e{e}",
                                 line=dict(color=EDGE_COLORS[e % len(EDGE_COLORS)], width=3)), row=1, col=1)
    for split in [s for s in SPLIT_DASH if s in set(df.split)]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{SPLIT_LABEL[split]} split",
                                 line=dict(color="#555555", width=2, dash=SPLIT_DASH[split])), row=1, col=1)
    for c, group in enumerate(names, 1):
        gdf = df[df.group == group]
        for (split, e), d in gdf.groupby(["split", "edge"], sort=True):
            name = f"{d.edge_name.iloc[0]}, {SPLIT_LABEL[split]}"
            m = d.groupby("epoch").cost.mean()
            if smooth > 1:
                m = m.rolling(smooth, min_periods=1, center=True).mean()
            fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name=name, legendgroup=f"e{e}",
                                     showlegend=False,
                                     line=dict(color=EDGE_COLORS[e % len(EDGE_COLORS)], dash=SPLIT_DASH[split],
                                               width=2),
                                     hovertemplate=f"{name}<br>epoch %{{x}}<br>cost %{{y:.4f}}<extra></extra>"),
                          row=1, col=c)
        zero_line(fig, row=1, col=c)
    where = "summed over cells" if cell is None else f"cell {cell}"
    fig.update_yaxes(title_text="cost", row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    if clip is not None:
        v = df.groupby(["group", "split", "edge", "epoch"]).cost.mean().dropna()
        if len(v):
            lo, hi = min(float(np.quantile(v, 1 - clip)), 0.0), max(float(np.quantile(v, clip)), 0.0)
            pad = 0.1 * (hi - lo) or 1.0
            fig.update_yaxes(range=[lo - pad, hi + pad])
    note = band_note(runs, None) + (f"; running mean over {smooth} epochs" if smooth > 1 else "")
    fig.update_layout(**LAYOUT, height=560, legend=dict(orientation="h", y=-0.16, yanchor="top", font=dict(size=12)),
                      title=figure_title(title or "Edge costs C = ∂L/∂Z over the search",
                                  f"{EDGE_COSTS[how]}, {where}; {note}",
                                  "below 0 an op beats none, whose cost is always 0"))
    fig.update_layout(margin=dict(t=135 if len(names) > 1 else 95))
    return fig
