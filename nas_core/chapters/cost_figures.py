"""The cost view's figures, for the chapters on the unified view (the
scale-invariance scenarios of :func:`nas_core.chapters.unified_view.scale_scenarios`)
and on the mechanisms (the tables of :mod:`nas_core.chapters.mechanisms` and
:func:`nas_core.plots.frames.cost_frame`)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..ops import OPS, SHORT
from ..plots.frames import edge_curves
from ..plots.style import (CELL_COLORS, EDGE_COLORS, LAST_CELL_COLOR, LAYOUT, SPLIT_LABEL, figure_title,
                           zero_line)


def sweep_figure(frame):
    """Initial output cost and fraction of sampled ops with positive cost
    against the initial logit scale: one dot per seed, the mean joined."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("output cost = loss − entropy", "sampled ops with cost > 0"))
    for col, y in ((1, "output_cost"), (2, "positive")):
        fig.add_trace(go.Scatter(x=frame.logit_scale, y=frame[y], mode="markers", name="one seed",
                                 marker=dict(color="#1f77b4", size=7, opacity=0.5), showlegend=col == 1,
                                 customdata=frame.seed, hovertemplate="scale %{x}<br>seed %{customdata}<br>%{y:.3f}"
                                                                      "<extra></extra>"), row=1, col=col)
        m = frame.groupby("logit_scale")[y].mean()
        fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name="mean over seeds",
                                 line=dict(color="#1f77b4", width=2.5), showlegend=col == 1), row=1, col=col)
    zero_line(fig, row=1, col=1)
    fig.add_hline(y=0.5, line=dict(color="grey", width=1, dash="dot"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="initial logit scale")
    fig.update_yaxes(title_text="output cost", row=1, col=1)
    fig.update_yaxes(title_text="fraction", range=[0, 1], row=1, col=2)
    n_seeds = frame.seed.nunique()
    fig.update_layout(**LAYOUT, height=420, legend=dict(orientation="h", y=-0.25),
                      title=figure_title("At initialisation: the logit scale sets the cost",
                                  f"{n_seeds} seeds; uniformly sampled ops, costs summed over cells"))
    fig.update_layout(margin=dict(t=90))
    return fig


def heatmap_grid(panels: dict, topology, main: str = "Cost per op and edge", note: str = ""):
    """Ops x edges heatmaps in a grid: ``panels`` maps (row label, column label)
    to an edges x ops matrix. A diverging colour scale centred at 0 per row
    (red: above 0, the op loses to none; blue: below 0), saturating at the
    row's 98th percentile of |cost|."""
    rows = list(dict.fromkeys(r for r, _ in panels))
    cols = list(dict.fromkeys(c for _, c in panels))
    fig = make_subplots(rows=len(rows), cols=len(cols), shared_xaxes=True, shared_yaxes=True,
                        column_titles=cols, horizontal_spacing=0.025, vertical_spacing=0.08)
    xs = [f"e{e}" + ("*" if e in topology.deep_edges else "") for e in range(topology.n_edges)]
    ys = [SHORT[o] for o in OPS]
    for ri, r in enumerate(rows, 1):
        vals = np.concatenate([np.ravel(m) for (rr, _), m in panels.items() if rr == r])
        zmax = float(np.nanquantile(np.abs(vals), 0.98)) or 1.0
        for ci, c in enumerate(cols, 1):
            if (r, c) not in panels:
                continue
            m = np.asarray(panels[(r, c)], dtype=float).T  # ops x edges
            text = [["" if np.isnan(v) else f"{v:.2f}".replace("-0.00", "0.00") for v in row] for row in m]
            yaxis = fig.get_subplot(ri, ci).yaxis.domain
            fig.add_trace(go.Heatmap(z=m, x=xs, y=ys, text=text, texttemplate="%{text}", textfont=dict(size=10),
                                     colorscale="RdBu", reversescale=True, zmid=0, zmin=-zmax, zmax=zmax,
                                     showscale=ci == 1,
                                     colorbar=dict(len=yaxis[1] - yaxis[0], y=(yaxis[0] + yaxis[1]) / 2,
                                                   yanchor="middle", thickness=12, x=1.01, tickfont=dict(size=10)),
                                     hovertemplate=f"{r}, {c}<br>%{{x}}, %{{y}}: %{{z:.3f}}<extra></extra>"),
                          row=ri, col=ci)
        fig.update_yaxes(title_text=r, row=ri, col=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=11))
    fig.update_xaxes(tickfont=dict(size=11), side="bottom")
    fig.update_layout(**LAYOUT, height=130 + 260 * len(rows),
                      title=figure_title(main, note, "summed over cells; * the deep edge; red above 0 (loses to none), "
                                              "blue below; one colour scale per row"))
    fig.update_layout(margin=dict(l=70, r=60, t=115, b=40))
    fig.update_annotations(font_size=12)
    return fig


def edge_cost_figure(frame, panels: str = "group", smooth: int = 1, main: str = "Edge costs over epochs",
                     note: str = "", edges=None):
    """Cost per edge over epochs (mean over seeds), one colour per edge, one
    panel per value of ``panels`` (a column of ``frame``: group or split)."""
    df = frame if edges is None else frame[frame.edge.isin(list(edges))]
    names = list(dict.fromkeys(df[panels]))
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[SPLIT_LABEL.get(n, n) for n in names] if len(names) > 1 else None)
    for i, name in enumerate(names, 1):
        d = df[df[panels] == name]
        curves = edge_curves(d, smooth)
        for e, de in d.groupby("edge"):
            m = curves[e]
            deep = de.kind.iloc[0] == "deep"
            label = f"{de.edge_name.iloc[0]} ({de.kind.iloc[0]})"
            fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name=label, legendgroup=f"e{e}",
                                     showlegend=i == 1,
                                     line=dict(color=EDGE_COLORS[e % len(EDGE_COLORS)], width=3 if deep else 2,
                                               dash="dash" if deep else "solid"),
                                     hovertemplate=f"{label}<br>epoch %{{x}}<br>cost %{{y:.3f}}<extra></extra>"),
                          row=1, col=i)
        zero_line(fig, row=1, col=i)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cost", row=1, col=1)
    sm = f"running mean over {smooth} epochs" if smooth > 1 else ""
    fig.update_layout(**LAYOUT, height=460, legend=dict(orientation="h", y=-0.2),
                      title=figure_title(main, ", ".join(x for x in (note, sm) if x), "0 is the cost of none; "
                                  "below 0 an op beats none"))
    fig.update_layout(margin=dict(t=140 if len(names) > 1 else 110))
    return fig


def cell_sum_figure(frame, split: str = "train"):
    """Each cell's Z-weighted cost per epoch (mean over seeds) and the output
    cost of the same steps (black dashed)."""
    d = frame[frame.split == split]
    fig = go.Figure()
    n = d.cell.max() + 1
    for c, dc in d.groupby("cell"):
        m = dc.groupby("epoch").z_weighted_cost.mean()
        fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines+markers", marker=dict(size=4),
                                 name=f"cell {c}" + (" (last)" if c == n - 1 else ""),
                                 line=dict(color=LAST_CELL_COLOR if c == n - 1 else CELL_COLORS[c % len(CELL_COLORS)],
                                           width=2.5 if c == n - 1 else 1.5)))
    oc = d[d["last"]].groupby("epoch").output_cost.mean()
    fig.add_trace(go.Scatter(x=list(oc.index), y=list(oc), mode="lines", name="output cost",
                             line=dict(color="black", dash="dash", width=2)))
    zero_line(fig, color="grey")
    fig.update_layout(**LAYOUT, height=420, legend=dict(orientation="h", y=-0.22), xaxis_title="epoch",
                      yaxis_title="Σ Z·C per step",
                      title=figure_title("Z-weighted cost of each cell over epochs",
                                  f"{SPLIT_LABEL.get(split, split)}; mean over the epoch's steps"))
    fig.update_layout(margin=dict(t=90))
    return fig


def output_figure(frame, group: str | None = None):
    """Output cost (top) and loss / entropy (bottom) of correctly and wrongly
    classified samples per epoch, train and held-out side by side."""
    d = frame if group is None else frame[frame.group == group]
    splits = list(dict.fromkeys(d.split))
    fig = make_subplots(rows=2, cols=len(splits), shared_xaxes=True, shared_yaxes="rows", vertical_spacing=0.1,
                        horizontal_spacing=0.05, column_titles=[SPLIT_LABEL.get(s, s) for s in splits])
    fig.update_yaxes(title_text="loss − entropy", row=1, col=1)
    fig.update_yaxes(title_text="loss, entropy", row=2, col=1)
    color = {"correct": "#1f77b4", "wrong": "#d62728"}
    for g in ("correct", "wrong"):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{g} samples",
                                 line=dict(color=color[g], width=3)), row=1, col=1)
    for label, dash in (("loss", "solid"), ("entropy", "dot")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{label} (lower panels)",
                                 line=dict(color="#555555", width=2, dash=dash)), row=1, col=1)
    for j, split in enumerate(splits, 1):
        for g in ("correct", "wrong"):
            dg = d[(d.split == split) & (d.samples == g)].groupby("epoch")
            for row, y, dash in ((1, "output_cost", "solid"), (2, "loss", "solid"), (2, "entropy", "dot")):
                m = dg[y].mean()
                fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name=f"{g}: {y}",
                                         showlegend=False, line=dict(color=color[g], dash=dash, width=2),
                                         hovertemplate=f"{g} samples, {y}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>"),
                              row=row, col=j)
        zero_line(fig, row=1, col=j)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(**LAYOUT, height=600, legend=dict(orientation="h", y=-0.1),
                      title=figure_title("Output cost of correct and wrong samples",
                                  "per sample: loss − entropy = E_p f − f_y; mean over the split's samples"))
    fig.update_layout(margin=dict(t=110))
    return fig


def scale_scenario_figure(frame):
    """Bars of each cell's Z-weighted cost, one panel per scenario of
    :func:`nas_core.chapters.unified_view.scale_scenarios`, with the output cost <dL/df, f>
    as a dashed line."""
    scenarios = list(dict.fromkeys(frame.scenario))
    ncols = 2 if len(scenarios) > 1 else 1
    nrows = -(-len(scenarios) // ncols)
    # "exact: tiny BN eps, ..." -> two lines, to fit half the column
    names = [sc.replace(": ", ":<br>", 1) for sc in scenarios]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=names, vertical_spacing=0.2, horizontal_spacing=0.14)
    for i, sc in enumerate(scenarios):
        r, c = i // ncols + 1, i % ncols + 1
        d = frame[frame.scenario == sc]
        fig.add_trace(go.Bar(x=[f"cell {k}" for k in d.cell], y=d.z_weighted_cost,
                             marker_color=[LAST_CELL_COLOR if last else "#1f77b4" for last in d["last"]],
                             text=[f"{v:+.2g}" for v in d.z_weighted_cost], textposition="outside", cliponaxis=False,
                             textfont=dict(size=11), showlegend=False,
                             hovertemplate="%{x}<br>Σ Z·C = %{y:.3g}<extra></extra>"), row=r, col=c)
        oc = float(d.output_cost.iloc[0])
        fig.add_hline(y=oc, line=dict(color="black", dash="dash", width=1.5), row=r, col=c)
        lo, hi = min(0.0, d.z_weighted_cost.min(), oc), max(0.0, d.z_weighted_cost.max(), oc)
        pad = 0.25 * (hi - lo)
        fig.update_yaxes(range=[lo - pad, hi + pad], row=r, col=c)
    fig.update_yaxes(title_text="Σ Z·C", col=1)
    fig.update_layout(**LAYOUT, height=300 * nrows + 130,
                      title=figure_title("Z-weighted cost of each cell", "DARTS' Z = softmax(α), one batch, float64",
                                  "dashed: the output cost ⟨∂L/∂f, f⟩; red: the last cell"))
    fig.update_layout(margin=dict(t=180))
    fig.update_annotations(font_size=12)
    return fig
