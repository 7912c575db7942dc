"""Figures for the book, and the tidy tables they are drawn from.

* Renderer: :func:`setup_plotly` (every notebook calls it first).
* Tables (pandas, one row per observation): :func:`epoch_frame`,
  :func:`edge_frame`, :func:`cost_frame`, :func:`final_frame`,
  :func:`config_frame`.
* Figures: :func:`selection_figure`, :func:`alpha_heatmap`, :func:`cell_figure`,
  :func:`cost_figure`, :func:`edge_figure`, :func:`width_depth_figure`,
  :func:`edge_selection_figure`. Animated ones use plotly frames and a slider,
  which work in the static HTML book.
* The pattern notebooks' final check: :func:`pattern_check`.

``runs`` is a list of :class:`~nas_core.history.History` (one per seed) or a
dict {group label: list} to compare settings in one figure.

Since plotly 6, a figure shown in a Jupyter kernel defaults to the
``plotly_mimetype`` renderer alone: its output is a single
``application/vnd.plotly.v1+json`` bundle, which Jupyter Book 1 (myst-nb)
cannot render, so the static book shows nothing (a build warning "skipping
unknown output mime type" is the only trace).  :func:`setup_plotly` switches
to a renderer that writes ``text/html``.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import NotebookRenderer
from plotly.subplots import make_subplots

from .ops import NONE, OPS, PARAMETRIC
from .space import Topology, cell_types, random_width_depth


class BookRenderer(NotebookRenderer):
    """plotly's ``notebook_connected`` renderer, without MathJax.

    Each figure becomes a ``<div>`` and a script that draws it with plotly.js
    from the plotly CDN (a few kB per figure; ``notebook`` would inline the
    4.8 MB library into every page).  ``notebook_connected`` also adds a
    ``<script>`` loading MathJax 3 to every figure, while the book's pages load
    MathJax 3 already: the second copy throws "Cannot set property Package"
    on load.  Figures use the page's MathJax instead.
    """

    def __init__(self, config=None, auto_play=False, post_script=None, animation_opts=None):
        super().__init__(
            connected=True,
            config=config,
            auto_play=auto_play,
            post_script=post_script,
            animation_opts=animation_opts,
        )

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(
            fig_dict,
            config=self.config,
            auto_play=self.auto_play,
            include_plotlyjs="cdn",
            include_mathjax=False,
            post_script=self.post_script,
            full_html=False,
            animation_opts=self.animation_opts,
            default_width="100%",
            default_height=525,
            validate=False,
        )
        return {"text/html": html}


pio.renderers["book"] = BookRenderer()

#: The renderer the notebooks use: ``text/html`` only, so one copy of each
#: figure is stored and myst-nb warns about no output it drops (a plotly
#: mimetype warning then means a notebook forgot :func:`setup_plotly`).
BOOK_RENDERER = "book"


def setup_plotly(renderer: str = BOOK_RENDERER) -> str:
    """Make ``fig.show()`` (and a figure as a cell's last value) render in the book,
    on the book's white template (also for figures a notebook draws itself).

    Call it once near the top of a notebook; returns the renderer now in use.
    """
    pio.renderers.default = renderer
    pio.templates.default = _LAYOUT["template"]
    return renderer


# ---------------------------------------------------------------------------
# Tidy tables: one row per observation, built from run histories.
#
# Every function below takes ``runs``: a list of History (one per seed), or a
# dict {group label: list of History} to compare settings (e.g. bi-level vs
# single-level) in one table or figure.
# ---------------------------------------------------------------------------

#: Short op names for labels.
OP_LABEL = {
    "none": "none", "max_pool_3x3": "max 3×3", "avg_pool_3x3": "avg 3×3", "skip_connect": "skip",
    "sep_conv_3x3": "sep 3×3", "sep_conv_5x5": "sep 5×5", "dil_conv_3x3": "dil 3×3", "dil_conv_5x5": "dil 5×5",
}
#: One colour per op (``none`` grey), shared by every figure.
OP_COLOR = {
    "none": "#b0b0b0", "max_pool_3x3": "#8c564b", "avg_pool_3x3": "#e377c2", "skip_connect": "#17becf",
    "sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#2ca02c", "dil_conv_3x3": "#ff7f0e", "dil_conv_5x5": "#d62728",
}
GROUP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
EDGE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
SPLIT_DASH = {"train": "solid", "heldout": "dash", "probe_train": "dot", "probe_heldout": "dashdot"}
SPLIT_LABEL = {"train": "train", "heldout": "held-out", "probe_train": "probe, train",
               "probe_heldout": "probe, held-out"}
_LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=60, r=20, t=70, b=50))


def _groups(runs) -> dict:
    if isinstance(runs, dict):
        return {str(k): list(v) for k, v in runs.items()}
    runs = list(runs)
    label = runs[0].config.algorithm.upper() if runs else "runs"
    return {label: runs}


def edge_label(topology: Topology, e: int) -> str:
    """'e0: x0→n0'."""
    return topology.edge_name(e).replace("->", "→")


def edge_kind(topology: Topology, e: int) -> str:
    return "input" if e in topology.input_edges else "deep"


@functools.lru_cache(maxsize=None)
def _random_wd(n_selected: int, steps: int, multiplier: int) -> tuple[float, float]:
    return random_width_depth(n_selected, Topology(steps, multiplier))


def _cell_types(config) -> list[str]:
    return cell_types(config.network, config.cells)


def epoch_frame(runs, cell_type: str = "normal"):
    """One row per (group, seed, epoch): selected edges, mean p(none), width and
    depth of the derived cell and of random cells with as many edges, accuracy."""
    import pandas as pd

    rows = []
    for group, hs in _groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                n = r["n_selected"][cell_type]
                rw, rd = _random_wd(n, top.steps, top.multiplier)
                rows.append(dict(
                    group=group, seed=h.config.seed, epoch=r["epoch"], n_selected=n, fraction=n / top.n_edges,
                    p_none=float(np.mean(r["p_none"][cell_type])), width=r["width"][cell_type],
                    depth=r["depth"][cell_type], random_width=rw, random_depth=rd,
                    train_acc=r["train_acc"], heldout_acc=r["heldout_acc"],
                    train_loss=r["train_loss"], heldout_loss=r["heldout_loss"]))
    return pd.DataFrame(rows)


def edge_frame(runs, cell_type: str = "normal"):
    """One row per (group, seed, epoch, edge): the argmax op with ``none``
    counted, whether the edge is selected, p(none) and the best other op."""
    import pandas as pd

    rows = []
    for group, hs in _groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                p = np.asarray(r["probs"][cell_type], dtype=float)
                for e in range(top.n_edges):
                    best = int(np.argmax(np.where(np.arange(len(OPS)) == NONE, -np.inf, p[e])))
                    op = r["derived"][cell_type][e]
                    rows.append(dict(group=group, seed=h.config.seed, epoch=r["epoch"], edge=e,
                                     edge_name=edge_label(top, e), kind=edge_kind(top, e), op=op,
                                     selected=op != "none", p_none=p[e, NONE], best_op=OPS[best], p_best=p[e, best]))
    return pd.DataFrame(rows)


def _edge_costs(record: dict, split: str, config, how: str, cell_type: str, cell) -> np.ndarray | None:
    """Cost per edge (and op, for how='op') from one record, summed over the
    cells of ``cell_type`` (the cost alpha sees) or of one cell (its index
    among them). NaN where nothing was measured (DSNAS runs only sampled ops)."""
    stats = (record.get("cost") or {}).get(split)
    if not stats:
        return None
    mean = np.array(stats["mean"], dtype=float)  # cells x edges x ops, None -> nan
    idx = [i for i, t in enumerate(_cell_types(config)) if t == cell_type]
    mean = mean[idx] if cell is None else mean[[idx[cell]]]
    if how == "op":
        per = mean
    elif how == "parametric":
        cols = [OPS.index(o) for o in PARAMETRIC]
        sub = mean[:, :, cols]
        with np.errstate(all="ignore"):
            per = np.where(np.isnan(sub).all(-1), np.nan, np.nanmean(np.where(np.isnan(sub), 0, sub), -1)
                           * sub.shape[-1] / np.maximum((~np.isnan(sub)).sum(-1), 1))
    elif how == "weighted":
        p = np.asarray(record["probs"][cell_type], dtype=float)[None]
        known = ~np.isnan(mean)
        with np.errstate(all="ignore"):
            per = np.where(known, p * mean, 0).sum(-1) / np.where(known, p, 0).sum(-1)
    else:
        raise ValueError(f"how must be 'parametric', 'weighted' or 'op', got {how!r}")
    allnan = np.isnan(per).all(0)
    return np.where(allnan, np.nan, np.nansum(per, 0))


def cost_frame(runs, how: str = "parametric", cell_type: str = "normal", cell: int | None = None):
    """One row per (group, seed, epoch, split, edge): the edge's cost.

    ``how``: 'parametric' = mean cost of the parametric ops (sep/dil convs);
    'weighted' = Σₖ pₖ Cₖ (Z-weighted, Z = p in expectation). Costs are summed
    over the cells sharing α unless ``cell`` picks one (index within the type).
    Splits: whatever the run recorded (train; held-out under bi-level; probes).
    """
    import pandas as pd

    rows = []
    for group, hs in _groups(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                for split in SPLIT_DASH:
                    c = _edge_costs(r, split, h.config, how, cell_type, cell)
                    if c is None:
                        continue
                    for e in range(top.n_edges):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=r["epoch"], split=split, edge=e,
                                         edge_name=edge_label(top, e), kind=edge_kind(top, e), cost=c[e]))
    return pd.DataFrame(rows)


def final_frame(runs, cell_type: str = "normal"):
    """One row per run, for display: the derived cell at the run's last epoch
    (``none`` counted), its number of edges and of deep edges, its width and
    depth, and the mean width and depth of random cells with as many edges. A
    ``group`` column appears when ``runs`` is a dict of groups."""
    import pandas as pd

    groups = _groups(runs)
    rows = []
    for group, hs in groups.items():
        for h in hs:
            top, r = h.config.topology, h.last
            sel = r["selected_edges"][cell_type]
            rw, rd = _random_wd(len(sel), top.steps, top.multiplier)
            row = {"group": group} if len(groups) > 1 else {}
            rows.append(dict(
                row, seed=h.config.seed, edges=len(sel), deep=sum(e in top.deep_edges for e in sel),
                width=r["width"][cell_type], depth=r["depth"][cell_type],
                **{"random width": round(rw, 2), "random depth": round(rd, 2)},
                cell=" · ".join(f"e{e} {OP_LABEL[r['derived'][cell_type][e]]}" for e in sel) or "(empty)"))
    return pd.DataFrame(rows).set_index(["group", "seed"] if len(groups) > 1 else "seed")


def config_frame(config):
    """The fields of a config that differ from ``SearchConfig``'s defaults
    (the seed aside), with the defaults: what a preset sets."""
    import pandas as pd

    from .config import SearchConfig

    default = SearchConfig().to_dict()
    rows = [dict(field=k, value=str(v), default=str(default[k])) for k, v in config.to_dict().items()
            if k != "seed" and v != default[k]]
    return pd.DataFrame(rows).set_index("field")


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def _title(main: str, *notes: str) -> dict:
    """A short title with smaller note lines under it (the book's column is
    about 600 px wide, and plotly does not wrap titles)."""
    text = main + "".join(f"<br><sup>{n}</sup>" for n in notes if n)
    return dict(text=text, x=0.01, xanchor="left")


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _mean_band(fig, df, x, y, *, name, color, band="minmax", dash="solid", row=None, col=None,
               showlegend=True, legendgroup=None):
    """A mean line over seeds with a band (min–max, ±sd, or none)."""
    g = df.groupby(x)[y]
    mean = g.mean()
    xs = list(mean.index)
    legendgroup = legendgroup or name
    pos = dict(row=row, col=col) if row else {}
    if band and g.count().max() > 1:
        lo, hi = (g.min(), g.max()) if band == "minmax" else (mean - g.std(), mean + g.std())
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(hi) + list(lo)[::-1], fill="toself",
                                 fillcolor=_rgba(color, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=legendgroup), **pos)
    fig.add_trace(go.Scatter(x=xs, y=list(mean), mode="lines", name=name, legendgroup=legendgroup,
                             showlegend=showlegend, line=dict(color=color, width=2.5, dash=dash),
                             hovertemplate=f"{name}<br>epoch %{{x}}<br>mean %{{y:.3f}}<extra></extra>"), **pos)


def _band_note(runs, band) -> str:
    n = {len(v) for v in _groups(runs).values()}
    seeds = "/".join(str(k) for k in sorted(n))
    if max(n) == 1:
        return "1 seed"
    if band:
        return f"mean over {seeds} seeds; band: {'min–max' if band == 'minmax' else '±1 sd'}"
    return f"mean over {seeds} seeds"


def selection_figure(runs, cell_type: str = "normal", band: str | None = "minmax", title: str | None = None):
    """Fraction of selected edges (argmax ≠ none) and mean p(none) per epoch,
    mean and band over seeds, one colour per group."""
    df = epoch_frame(runs, cell_type)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("edges with argmax ≠ none", "mean p(none) over edges"))
    for i, (group, g) in enumerate(df.groupby("group", sort=False)):
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        for col, y in ((1, "fraction"), (2, "p_none")):
            _mean_band(fig, g, "epoch", y, name=group, color=color, band=band, row=1, col=col, showlegend=col == 1)
    n_ops = len(OPS)
    fig.add_hline(y=1 / n_ops, line=dict(color="grey", dash="dot", width=1), row=1, col=2,
                  annotation_text=f"uniform p = 1/{n_ops}", annotation_position="bottom right")
    fig.update_yaxes(title_text="fraction of edges", range=[-0.03, 1.03], row=1, col=1)
    fig.update_yaxes(title_text="mean p(none)", row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(**_LAYOUT, height=470, legend=dict(orientation="h", y=-0.22),
                      title=_title(title or "Selected edges and p(none) over the search",
                                   f"{cell_type} cell, none counted; {_band_note(runs, band)}"))
    fig.update_layout(margin=dict(t=100))
    return fig


def _frame_epochs(n: int, max_frames: int) -> list[int]:
    """Record indices to animate: all, or evenly spaced including first and last."""
    if n <= max_frames:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()))


def _slider(names: list[str], active: int, prefix: str = "epoch ") -> tuple[list, list]:
    """Plotly slider and play/pause buttons over frames ``names``; works in static HTML."""
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    slider = dict(active=active, x=0.08, len=0.92, y=0, yanchor="top", pad=dict(t=30, b=10),
                  currentvalue=dict(prefix=prefix, xanchor="right", font=dict(size=14)), font=dict(size=10),
                  steps=[dict(method="animate", label=n, args=[[n], step_args]) for n in names])
    play = {"frame": {"duration": 400, "redraw": True}, "fromcurrent": False, "transition": {"duration": 0},
            "mode": "immediate"}
    buttons = dict(type="buttons", direction="left", x=0.0, y=0, xanchor="left", yanchor="top",
                   pad=dict(t=40, r=10), showactive=False,
                   buttons=[dict(label="▶", method="animate", args=[None, play]),
                            dict(label="❚❚", method="animate", args=[[None], step_args])])
    return [slider], [buttons]


def alpha_heatmap(h, cell_type: str = "normal", value: str = "p", max_frames: int = 26, title: str | None = None):
    """p (or α) as an edges × ops heatmap, one frame per epoch with a slider;
    ◆ marks each edge's argmax with ``none`` counted."""
    if value not in ("p", "alpha"):
        raise ValueError(f"value must be 'p' or 'alpha', got {value!r}")
    top = h.config.topology
    key = "probs" if value == "p" else "alpha"
    arr = np.array([r[key][cell_type] for r in h.records], dtype=float)  # epochs x edges x ops
    ys = [edge_label(top, e) for e in range(top.n_edges)]
    xs = [OP_LABEL[o] for o in OPS]
    if value == "p":
        scale = dict(colorscale="Blues", zmin=0, zmax=float(arr.max()))
    else:
        m = float(np.abs(arr).max()) or 1.0
        scale = dict(colorscale="RdBu", zmid=0, zmin=-m, zmax=m, reversescale=True)
    label = "p" if value == "p" else "α"

    def traces(t):
        p = np.asarray(h.records[t]["probs"][cell_type], dtype=float)
        text = [[("◆ " if k == int(p[e].argmax()) else "") + f"{arr[t, e, k]:.2f}" for k in range(len(xs))]
                for e in range(len(ys))]
        return [go.Heatmap(z=arr[t], x=xs, y=ys, text=text, texttemplate="%{text}", textfont=dict(size=12),
                           colorbar=dict(title=label),
                           hovertemplate=f"%{{y}}<br>%{{x}}<br>{label} = %{{z:.3f}}<extra></extra>", **scale)]

    idx = _frame_epochs(len(arr), max_frames)
    names = [str(h.records[t]["epoch"]) for t in idx]
    fig = go.Figure(data=traces(idx[-1]),
                    frames=[go.Frame(name=n, data=traces(t)) for n, t in zip(names, idx)])
    sliders, menus = _slider(names, active=len(idx) - 1)
    fig.update_layout(**_LAYOUT, height=230 + 40 * len(ys), sliders=sliders, updatemenus=menus,
                      title=_title(title or f"{label} per edge and op, epoch by epoch",
                                   f"{h.config.algorithm.upper()}, seed {h.config.seed}; ◆ marks each edge's argmax "
                                   f"(none counted)"),
                      xaxis=dict(side="top", tickfont=dict(size=12)), yaxis=dict(autorange="reversed"))
    fig.update_layout(margin=dict(l=80, r=10, t=110, b=40))
    return fig


def _cell_layout(top: Topology) -> dict[int, tuple[float, float]]:
    """Node positions: inputs left (x0 above, x1 below), intermediate nodes on a
    line, the output (concatenation) on the right."""
    pos = {0: (0.0, 1.2), 1: (0.0, -1.2)}
    for j in range(top.steps):
        pos[j + 2] = (float(j + 1), 0.0)
    pos[-1] = (float(top.steps + 1), 0.0)
    return pos


def _curve(p0, p2, bend: float, label_t: float = 0.5, n: int = 25):
    """Points of a quadratic Bézier from p0 to p2 bent sideways by ``bend``, and
    the point at ``label_t`` (where the edge's label goes)."""
    (x0, y0), (x2, y2) = p0, p2
    mx, my = (x0 + x2) / 2, (y0 + y2) / 2
    dx, dy = x2 - x0, y2 - y0
    length = math.hypot(dx, dy) or 1.0
    cx, cy = mx - dy / length * bend, my + dx / length * bend

    def at(t):
        return ((1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t ** 2 * x2,
                (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t ** 2 * y2)

    xs, ys = at(np.linspace(0, 1, n))
    return xs, ys, at(label_t)


def _cell_graph(top: Topology):
    """The cell as a networkx DAG: states 0, 1 (inputs), 2.. (intermediate), -1 (output)."""
    import networkx as nx

    g = nx.DiGraph()
    for e, (i, j) in enumerate(top.edges):
        g.add_edge(i, j, edge=e)
    for j in top.output_nodes:
        g.add_edge(j, -1, edge=None)
    return g


def _node_name(s: int) -> str:
    return "output" if s == -1 else (f"x{s}" if s < 2 else f"n{s - 2}")


def cell_figure(h, cell_type: str = "normal", max_frames: int = 26, epoch: int | None = None,
                title: str | None = None):
    """The cell as a DAG, one line per edge: width ∝ p of its best non-none op,
    coloured and labelled by its argmax op with ``none`` counted (grey dashed:
    none wins, the edge is not selected). Animated over epochs (slider, static
    HTML); ``epoch`` draws that one epoch only."""
    top = h.config.topology
    g = _cell_graph(top)
    pos = _cell_layout(top)
    geo = {}
    for i, j in g.edges():
        span = pos[j][0] - pos[i][0]
        bend = 0.0
        if i >= 2 and span > 1:          # deep edges skipping nodes arc above the line
            bend = 0.4 * (span - 1)
        if j == -1 and span > 1:         # concatenation edges skipping nodes arc below
            bend = -0.5 * (span - 1) - 0.2
        # labels of the edges leaving an input alternate between two heights, so that they do not collide
        label_t = (0.3 if j % 2 == 0 else 0.5) if i < 2 else 0.5
        geo[(i, j)] = _curve(pos[i], pos[j], bend, label_t)

    def edges_at(r):
        """Edge traces and their label annotations for one record."""
        p = np.asarray(r["probs"][cell_type], dtype=float)
        traces, notes = [], []
        for e, (i, j) in enumerate(top.edges):
            op = r["derived"][cell_type][e]
            best = int(np.argmax(np.where(np.arange(len(OPS)) == NONE, -np.inf, p[e])))
            xs, ys, mid = geo[(i, j)]
            on = op != "none"
            color = OP_COLOR[op] if on else "#c0c0c0"
            traces.append(go.Scatter(
                x=xs, y=ys, mode="lines", showlegend=False,
                line=dict(width=1.5 + 14.0 * p[e, best], color=color, dash="solid" if on else "dash"),
                hovertemplate=(f"{edge_label(top, e)}<br>argmax: {op} (p = {p[e, OPS.index(op)]:.2f})<br>"
                               f"best non-none: {OPS[best]} (p = {p[e, best]:.2f})<br>p(none) = {p[e, NONE]:.2f}"
                               "<extra></extra>")))
            # in large cells an unselected edge is labelled by its number only (hover for the rest)
            text = f"e{e}: {OP_LABEL[op]} {p[e, OPS.index(op)]:.2f}" if on or top.n_edges <= 6 else f"e{e}"
            notes.append(dict(x=mid[0], y=mid[1], showarrow=False, text=text,
                              font=dict(size=12, color="#222222" if on else "#777777"), bgcolor="rgba(255,255,255,0.9)",
                              bordercolor=color, borderwidth=1.5, borderpad=2))
        return traces, notes

    static = []
    for i, j in g.edges():
        if j == -1:
            xs, ys, _ = geo[(i, j)]
            static.append(go.Scatter(x=xs, y=ys, mode="lines", line=dict(width=1.2, color="#999999", dash="dot"),
                                     hoverinfo="skip", showlegend=False))
    nodes = list(pos)
    static.append(go.Scatter(
        x=[pos[s][0] for s in nodes], y=[pos[s][1] for s in nodes], mode="markers+text",
        text=[_node_name(s) for s in nodes], textposition="middle center", textfont=dict(size=13, color="white"),
        marker=dict(size=[54 if s == -1 else 38 for s in nodes], line=dict(width=0),
                    color=["#555555" if s < 2 else ("#222222" if s == -1 else "#6a51a3") for s in nodes]),
        hoverinfo="text", hovertext=[_node_name(s) for s in nodes], showlegend=False))
    def title_for(r):
        n = r["n_selected"][cell_type]
        return _title(title or f"Derived cell, epoch {r['epoch']}: {n} of {top.n_edges} edges",
                      f"{h.config.algorithm.upper()}, seed {h.config.seed}; labels: argmax op and its p (none counted)",
                      "grey dashed: none wins; line width ∝ p of the best other op; dotted: into the output")

    layout = dict(**_LAYOUT, height=480, showlegend=False,
                  xaxis=dict(visible=False, range=[-0.4, top.steps + 1.4]),
                  yaxis=dict(visible=False, range=[-1.55, 1.45]))
    if epoch is not None:
        r = next((r for r in h.records if r["epoch"] == epoch), None)
        if r is None:
            raise ValueError(f"epoch {epoch} not in this run (1..{len(h.records)})")
        traces, notes = edges_at(r)
        fig = go.Figure(data=traces + static)
        fig.update_layout(**layout, title=title_for(r), annotations=notes)
        fig.update_layout(margin=dict(l=10, r=10, t=100, b=10))
        return fig
    idx = _frame_epochs(len(h.records), max_frames)
    names = [str(h.records[t]["epoch"]) for t in idx]
    frames = []
    for n, t in zip(names, idx):
        traces, notes = edges_at(h.records[t])
        frames.append(go.Frame(name=n, data=traces, traces=list(range(top.n_edges)),
                               layout=dict(title=title_for(h.records[t]), annotations=notes)))
    traces, notes = edges_at(h.records[idx[-1]])
    fig = go.Figure(data=traces + static, frames=frames)
    sliders, menus = _slider(names, active=len(idx) - 1)
    fig.update_layout(**layout, title=title_for(h.records[idx[-1]]), annotations=notes, sliders=sliders,
                      updatemenus=menus)
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=100, b=40))
    return fig


def cost_figure(runs, how: str = "parametric", cell_type: str = "normal", cell: int | None = None,
                edges=None, smooth: int = 1, title: str | None = None, clip: float | None = 0.98):
    """Cost per edge over epochs, mean over seeds: train solid, held-out dashed
    (probes dotted), one colour per edge, one panel per group. Cost 0 is the
    cost of ``none``: an op below 0 lowers the loss and is reinforced.

    ``smooth``: running mean over that many epochs (DSNAS measures only the
    sampled ops, so its per-epoch means are noisy). ``clip`` limits the y axis
    to that quantile of the costs at either end (the first epochs can be much
    larger); None shows everything.
    """
    df = cost_frame(runs, how, cell_type, cell)
    groups = list(_groups(runs))
    if df.empty:
        raise ValueError("no costs recorded in these runs (record_costs=False?)")
    if edges is not None:
        df = df[df.edge.isin(list(edges))]
    fig = make_subplots(rows=1, cols=len(groups), shared_yaxes=True, subplot_titles=groups if len(groups) > 1 else None,
                        horizontal_spacing=0.04)
    # legend: one entry per edge (its colour) and one per split (its dash)
    for e, d in df.groupby("edge"):
        name = f"{d.edge_name.iloc[0]} ({d.kind.iloc[0]})"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, legendgroup=f"e{e}",
                                 line=dict(color=EDGE_COLORS[e % len(EDGE_COLORS)], width=3)), row=1, col=1)
    for split in [s for s in SPLIT_DASH if s in set(df.split)]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{SPLIT_LABEL[split]} split",
                                 line=dict(color="#555555", width=2, dash=SPLIT_DASH[split])), row=1, col=1)
    for c, group in enumerate(groups, 1):
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
        fig.add_hline(y=0, line=dict(color="black", width=1), row=1, col=c)
    what = {"parametric": "mean cost of the parametric ops", "weighted": "p-weighted cost Σₖ pₖ·Cₖ",
            "op": "cost"}[how]
    where = "summed over cells" if cell is None else f"cell {cell}"
    fig.update_yaxes(title_text="cost", row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    if clip is not None:
        v = df.groupby(["group", "split", "edge", "epoch"]).cost.mean().dropna()
        if len(v):
            lo, hi = min(float(np.quantile(v, 1 - clip)), 0.0), max(float(np.quantile(v, clip)), 0.0)
            pad = 0.1 * (hi - lo) or 1.0
            fig.update_yaxes(range=[lo - pad, hi + pad])
    note = _band_note(runs, None) + (f"; running mean over {smooth} epochs" if smooth > 1 else "")
    fig.update_layout(**_LAYOUT, height=560, legend=dict(orientation="h", y=-0.16, yanchor="top", font=dict(size=12)),
                      title=_title(title or "Edge costs C = ∂L/∂Z over the search", f"{what}, {where}; {note}",
                                   "below 0 an op beats none, whose cost is always 0"))
    fig.update_layout(margin=dict(t=135 if len(groups) > 1 else 95))
    return fig


def edge_figure(h, edge: int, cell_type: str = "normal", epoch: int | None = None):
    """One edge over the search: p of every op (left) and every op's train cost,
    summed over cells (right); a vertical line marks ``epoch``."""
    top = h.config.topology
    if not 0 <= edge < top.n_edges:
        raise ValueError(f"edge {edge} out of range; this cell has edges 0..{top.n_edges - 1}")
    epochs = [r["epoch"] for r in h.records]
    p = np.array([r["probs"][cell_type][edge] for r in h.records])
    costs = [_edge_costs(r, "train", h.config, "op", cell_type, None) for r in h.records]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("p = softmax(α)", "train cost per op, Σ over cells"))
    for k, op in enumerate(OPS):
        style = dict(color=OP_COLOR[op], width=3 if op == "none" else 2, dash="dash" if op == "none" else "solid")
        fig.add_trace(go.Scatter(x=epochs, y=p[:, k], name=OP_LABEL[op], legendgroup=op, line=style), row=1, col=1)
        if all(c is not None for c in costs):
            fig.add_trace(go.Scatter(x=epochs, y=[c[edge, k] for c in costs], name=OP_LABEL[op], legendgroup=op,
                                     showlegend=False, line=style, mode="lines+markers", marker=dict(size=3)),
                          row=1, col=2)
    if epoch is not None:
        for c in (1, 2):
            fig.add_vline(x=epoch, line=dict(color="grey", dash="dot"), row=1, col=c)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="p", row=1, col=1)
    fig.update_yaxes(title_text="cost", row=1, col=2)
    fig.update_layout(**_LAYOUT, height=440, legend=dict(orientation="h", y=-0.22),
                      title=_title(f"Edge {edge_label(top, edge)}",
                                   f"{h.config.algorithm.upper()}, seed {h.config.seed}"))
    fig.update_layout(margin=dict(t=95))
    return fig


def width_depth_figure(runs, cell_type: str = "normal", band: str | None = "minmax", title: str | None = None):
    """Width and depth of the derived cell per epoch (mean and band over seeds)
    against random cells with the same number of edges (dotted)."""
    df = epoch_frame(runs, cell_type)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("width", "depth"))
    for i, (group, g) in enumerate(df.groupby("group", sort=False)):
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        for col, y in ((1, "width"), (2, "depth")):
            _mean_band(fig, g, "epoch", y, name=f"{group}: derived", color=color, band=band, row=1, col=col,
                       showlegend=col == 1)
            _mean_band(fig, g, "epoch", f"random_{y}", name=f"{group}: random, as many edges",
                       color=color, band=None, dash="dot", row=1, col=col, showlegend=col == 1)
    fig.update_yaxes(title_text="nodes fed by an input", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="connections, input → output", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(**_LAYOUT, height=480, legend=dict(orientation="h", y=-0.22),
                      title=_title(title or "Width and depth of the derived cells",
                                   f"{_band_note(runs, band)}; dotted: random cells with as many edges"))
    fig.update_layout(margin=dict(t=100))
    return fig


def edge_selection_figure(runs, cell_type: str = "normal", title: str | None = None):
    """Which edges survive: per edge and epoch, the fraction of seeds whose
    derived cell selects it; input edges first, deep edges last."""
    df = edge_frame(runs, cell_type)
    groups = list(_groups(runs))
    fig = make_subplots(rows=len(groups), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=groups if len(groups) > 1 else None)
    for r, group in enumerate(groups, 1):
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
    fig.update_xaxes(title_text="epoch", row=len(groups), col=1)
    n = "/".join(str(k) for k in sorted({len(v) for v in _groups(runs).values()}))
    fig.update_layout(**_LAYOUT, height=150 + len(groups) * (60 + 34 * df.edge.nunique()),
                      title=_title(title or "Which edges are selected",
                                   f"share of the {n} seeds whose derived cell (none counted) selects the edge"))
    fig.update_layout(margin=dict(l=130, r=10, t=95, b=50))
    return fig


# ---------------------------------------------------------------------------
# The pattern notebooks' final check: one statistic per run, the expected
# outcome read from nas_core.presets.EXPECTED.
# ---------------------------------------------------------------------------

@dataclass
class PatternCheck:
    """The statistic of each run (``table``, one row per seed, column ``holds``)
    and how many seeds must hold. ``paper`` is the paper's own statistic for
    the same runs when a weaker one is asserted (reported, not asserted)."""

    pattern: str        # the notebook's pattern: growing, width, bilevel
    statistic: str      # the nas_core.patterns function applied to each run
    profile: str
    min_fraction: float
    table: object       # pandas DataFrame
    paper: object = None

    @property
    def holding(self) -> int:
        return int(self.table["holds"].sum())

    @property
    def needed(self) -> int:
        return max(1, math.ceil(self.min_fraction * len(self.table) - 1e-9))

    @property
    def passed(self) -> bool:
        return self.holding >= self.needed

    @property
    def message(self) -> str:
        return (f"{self.pattern}: patterns.{self.statistic} holds on {self.holding} of {len(self.table)} seeds; "
                f"expected at least {self.needed} (min_fraction {self.min_fraction} at profile {self.profile!r}, "
                f"from nas_core.presets.EXPECTED)")

    def report(self):
        """Print what is asserted and the per-seed tables."""
        import textwrap

        from IPython.display import display

        from . import patterns

        print(textwrap.fill(f"Asserted: nas_core.patterns.{self.statistic} holds on at least {self.needed} of "
                            f"{len(self.table)} seeds (profile {self.profile!r}). It holds on {self.holding}.", 78))
        print("\n" + inspect.getdoc(getattr(patterns, self.statistic)) + "\n")
        display(_for_reading(self.table))
        if self.paper is not None:
            n = int(self.paper["holds"].sum())
            print(textwrap.fill(f"Reported, not asserted at this profile: the paper's statistic, "
                                f"nas_core.patterns.{self.pattern}, holds on {n} of {len(self.paper)} seeds.", 78))
            display(_for_reading(self.paper))


def _for_reading(table):
    """A statistic's per-seed table as shown in the book: indexed by seed, with
    headers that wrap (spaces for underscores) so that it fits the text column."""
    return table.set_index("seed").rename(columns=lambda name: name.replace("_", " "))


def expected(pattern: str, profile: str = "cpu") -> tuple[str, float]:
    """(statistic, min_fraction) that ``pattern``'s notebook asserts at ``profile``,
    from ``nas_core.presets.EXPECTED``; without an entry, the paper's statistic
    on at least 4 of 5 seeds."""
    from . import presets

    entry = getattr(presets, "EXPECTED", {}).get(pattern, {})
    return entry.get(profile, pattern), float(entry.get("min_fraction", 0.8))


def _statistic_table(stat: str, runs, controls):
    import pandas as pd

    from . import patterns

    fn = getattr(patterns, stat, None)
    if fn is None:
        raise ValueError(f"nas_core.patterns has no statistic {stat!r}")
    paired = sum(p.default is inspect.Parameter.empty for p in inspect.signature(fn).parameters.values()) == 2
    rows = []
    if paired:
        if controls is None or len(controls) != len(runs):
            raise ValueError(f"patterns.{stat} compares each run with its control: pass controls, one per run")
        for h, c in zip(runs, controls):
            if h.config.seed != c.config.seed:
                raise ValueError(f"run and control differ in seed ({h.config.seed} vs {c.config.seed})")
            rows.append({"seed": h.config.seed, **fn(h, c)})
    else:
        rows = [{"seed": h.config.seed, **fn(h)} for h in runs]
    table = pd.DataFrame(rows).round(3)
    return table[[c for c in table.columns if c != "holds"] + ["holds"]]


def pattern_check(pattern: str, runs, profile: str = "cpu", controls=None, statistic: str | None = None,
                  min_fraction: float | None = None) -> PatternCheck:
    """Apply the statistic that ``nas_core.presets.EXPECTED[pattern][profile]``
    names (or ``statistic``) to every run, paired with the control run of the
    same seed when the statistic compares two runs (``pruning``)."""
    from . import patterns

    stat, frac = expected(pattern, profile)
    stat = statistic or stat
    frac = frac if min_fraction is None else min_fraction
    table = _statistic_table(stat, runs, controls)
    paper = _statistic_table(pattern, runs, None) if stat != pattern and pattern in patterns.PATTERNS else None
    return PatternCheck(pattern, stat, profile, frac, table, paper)
