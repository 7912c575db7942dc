"""Views of one run's cell over its search: p (or alpha) as a heatmap, the
derived cell as a graph, one edge's p and costs. Animated views have one
plotly frame per epoch and a slider, which work in the static HTML book."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import record
from ..ops import NONE, OPS
from ..space import Topology
from .style import LAYOUT, OP_COLOR, OP_LABEL, edge_label, figure_title


def frame_epochs(n: int, max_frames: int) -> list[int]:
    """Record indices to animate: all, or evenly spaced including first and last."""
    if n <= max_frames:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()))


def slider(names: list[str], active: int, prefix: str = "epoch ") -> tuple[list, list]:
    """Plotly slider and play/pause buttons over frames ``names``; works in static HTML."""
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    bar = dict(active=active, x=0.08, len=0.92, y=0, yanchor="top", pad=dict(t=30, b=10),
               currentvalue=dict(prefix=prefix, xanchor="right", font=dict(size=14)), font=dict(size=10),
               steps=[dict(method="animate", label=n, args=[[n], step_args]) for n in names])
    play = {"frame": {"duration": 400, "redraw": True}, "fromcurrent": False, "transition": {"duration": 0},
            "mode": "immediate"}
    buttons = dict(type="buttons", direction="left", x=0.0, y=0, xanchor="left", yanchor="top",
                   pad=dict(t=40, r=10), showactive=False,
                   buttons=[dict(label="▶", method="animate", args=[None, play]),
                            dict(label="❚❚", method="animate", args=[[None], step_args])])
    return [bar], [buttons]


def alpha_heatmap(h, cell_type: str = "normal", value: str = "p", max_frames: int = 26, title: str | None = None):
    """p (or α) as an edges × ops heatmap, one frame per epoch with a slider;
    ◆ marks each edge's argmax with ``none`` counted."""
    if value not in ("p", "alpha"):
        raise ValueError(f"value must be 'p' or 'alpha', got {value!r}")
    top = h.config.topology
    read = record.probs if value == "p" else record.alpha
    arr = np.array([read(r, cell_type) for r in h.records])  # epochs x edges x ops
    ys = [edge_label(top, e) for e in range(top.n_edges)]
    xs = [OP_LABEL[o] for o in OPS]
    if value == "p":
        scale = dict(colorscale="Blues", zmin=0, zmax=float(arr.max()))
    else:
        m = float(np.abs(arr).max()) or 1.0
        scale = dict(colorscale="RdBu", zmid=0, zmin=-m, zmax=m, reversescale=True)
    label = "p" if value == "p" else "α"

    def traces(t):
        best = record.probs(h.records[t], cell_type).argmax(-1)
        text = [[("◆ " if k == best[e] else "") + f"{arr[t, e, k]:.2f}" for k in range(len(xs))]
                for e in range(len(ys))]
        return [go.Heatmap(z=arr[t], x=xs, y=ys, text=text, texttemplate="%{text}", textfont=dict(size=12),
                           colorbar=dict(title=label),
                           hovertemplate=f"%{{y}}<br>%{{x}}<br>{label} = %{{z:.3f}}<extra></extra>", **scale)]

    idx = frame_epochs(len(arr), max_frames)
    names = [str(record.epoch(h.records[t])) for t in idx]
    fig = go.Figure(data=traces(idx[-1]),
                    frames=[go.Frame(name=n, data=traces(t)) for n, t in zip(names, idx)])
    sliders, menus = slider(names, active=len(idx) - 1)
    fig.update_layout(**LAYOUT, height=230 + 40 * len(ys), sliders=sliders, updatemenus=menus,
                      title=figure_title(title or f"{label} per edge and op, epoch by epoch",
                                         f"{h.config.algorithm.upper()}, seed {h.config.seed}; ◆ marks each edge's "
                                         f"argmax (none counted)"),
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


def cell_graph(top: Topology) -> nx.DiGraph:
    """The cell as a DAG: states 0, 1 (inputs), 2.. (intermediate), -1 (output);
    each edge's ``edge`` attribute is its index (None into the output)."""
    g = nx.DiGraph()
    for e, (i, j) in enumerate(top.edges):
        g.add_edge(i, j, edge=e)
    for j in top.output_nodes:
        g.add_edge(j, -1, edge=None)
    return g


def _node_name(s: int) -> str:
    return "output" if s == -1 else (f"x{s}" if s < 2 else f"n{s - 2}")


def _edge_geometry(top: Topology, g: nx.DiGraph, pos: dict) -> dict:
    """Per graph edge: its curve's points and the point of its label."""
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
    return geo


def _static_traces(g: nx.DiGraph, pos: dict, geo: dict) -> list:
    """The edges into the output (dotted) and the nodes."""
    static = [go.Scatter(x=geo[(i, j)][0], y=geo[(i, j)][1], mode="lines", hoverinfo="skip", showlegend=False,
                         line=dict(width=1.2, color="#999999", dash="dot")) for i, j in g.edges() if j == -1]
    nodes = list(pos)
    static.append(go.Scatter(
        x=[pos[s][0] for s in nodes], y=[pos[s][1] for s in nodes], mode="markers+text",
        text=[_node_name(s) for s in nodes], textposition="middle center", textfont=dict(size=13, color="white"),
        marker=dict(size=[54 if s == -1 else 38 for s in nodes], line=dict(width=0),
                    color=["#555555" if s < 2 else ("#222222" if s == -1 else "#6a51a3") for s in nodes]),
        hoverinfo="text", hovertext=[_node_name(s) for s in nodes], showlegend=False))
    return static


def cell_figure(h, cell_type: str = "normal", max_frames: int = 26, epoch: int | None = None,
                title: str | None = None):
    """The cell as a DAG, one line per edge: width ∝ p of its best non-none op,
    coloured and labelled by its argmax op with ``none`` counted (grey dashed:
    none wins, the edge is not selected). Animated over epochs (slider, static
    HTML); ``epoch`` draws that one epoch only."""
    top = h.config.topology
    g = cell_graph(top)
    pos = _cell_layout(top)
    geo = _edge_geometry(top, g, pos)

    def edges_at(r):
        """Edge traces and their label annotations for one record."""
        p, best, ops = record.probs(r, cell_type), record.best_other(r, cell_type), record.derived(r, cell_type)
        traces, notes = [], []
        for e, (i, j) in enumerate(top.edges):
            op, b = ops[e], best[e]
            xs, ys, mid = geo[(i, j)]
            on = op != "none"
            color = OP_COLOR[op] if on else "#c0c0c0"
            traces.append(go.Scatter(
                x=xs, y=ys, mode="lines", showlegend=False,
                line=dict(width=1.5 + 14.0 * p[e, b], color=color, dash="solid" if on else "dash"),
                hovertemplate=(f"{edge_label(top, e)}<br>argmax: {op} (p = {p[e, OPS.index(op)]:.2f})<br>"
                               f"best non-none: {OPS[b]} (p = {p[e, b]:.2f})<br>p(none) = {p[e, NONE]:.2f}"
                               "<extra></extra>")))
            # in large cells an unselected edge is labelled by its number only (hover for the rest)
            text = f"e{e}: {OP_LABEL[op]} {p[e, OPS.index(op)]:.2f}" if on or top.n_edges <= 6 else f"e{e}"
            notes.append(dict(x=mid[0], y=mid[1], showarrow=False, text=text,
                              font=dict(size=12, color="#222222" if on else "#777777"), bgcolor="rgba(255,255,255,0.9)",
                              bordercolor=color, borderwidth=1.5, borderpad=2))
        return traces, notes

    static = _static_traces(g, pos, geo)

    def title_for(r):
        n = record.wiring(r, "n_selected", cell_type)
        return figure_title(title or f"Derived cell, epoch {record.epoch(r)}: {n} of {top.n_edges} edges",
                            f"{h.config.algorithm.upper()}, seed {h.config.seed}; labels: argmax op and its p "
                            "(none counted)",
                            "grey dashed: none wins; line width ∝ p of the best other op; dotted: into the output")

    layout = dict(**LAYOUT, height=480, showlegend=False,
                  xaxis=dict(visible=False, range=[-0.4, top.steps + 1.4]),
                  yaxis=dict(visible=False, range=[-1.55, 1.45]))
    if epoch is not None:
        r = next((r for r in h.records if record.epoch(r) == epoch), None)
        if r is None:
            raise ValueError(f"epoch {epoch} not in this run (1..{len(h.records)})")
        traces, notes = edges_at(r)
        fig = go.Figure(data=traces + static)
        fig.update_layout(**layout, title=title_for(r), annotations=notes)
        fig.update_layout(margin=dict(l=10, r=10, t=100, b=10))
        return fig
    idx = frame_epochs(len(h.records), max_frames)
    names = [str(record.epoch(h.records[t])) for t in idx]
    frames = []
    for n, t in zip(names, idx):
        traces, notes = edges_at(h.records[t])
        frames.append(go.Frame(name=n, data=traces, traces=list(range(top.n_edges)),
                               layout=dict(title=title_for(h.records[t]), annotations=notes)))
    traces, notes = edges_at(h.records[idx[-1]])
    fig = go.Figure(data=traces + static, frames=frames)
    sliders, menus = slider(names, active=len(idx) - 1)
    fig.update_layout(**layout, title=title_for(h.records[idx[-1]]), annotations=notes, sliders=sliders,
                      updatemenus=menus)
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=100, b=40))
    return fig


def edge_figure(h, edge: int, cell_type: str = "normal", epoch: int | None = None):
    """One edge over the search: p of every op (left) and every op's train cost,
    summed over the cells sharing alpha (right); a vertical line marks ``epoch``."""
    top = h.config.topology
    if not 0 <= edge < top.n_edges:
        raise ValueError(f"edge {edge} out of range; this cell has edges 0..{top.n_edges - 1}")
    epochs = [record.epoch(r) for r in h.records]
    p = np.array([record.probs(r, cell_type)[edge] for r in h.records])
    costs = [record.summed_costs(r, "train", h.config, cell_type) for r in h.records]
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
    fig.update_layout(**LAYOUT, height=440, legend=dict(orientation="h", y=-0.22),
                      title=figure_title(f"Edge {edge_label(top, edge)}",
                                         f"{h.config.algorithm.upper()}, seed {h.config.seed}"))
    fig.update_layout(margin=dict(t=95))
    return fig


def op_probability_figure(h, cell_type: str = "normal", columns: int = 5):
    """p of every op on every edge over the search, one panel per edge (at most
    ``columns`` to a row), in the book's op colours (``none`` grey and dashed)."""
    top = h.config.topology
    rows = math.ceil(top.n_edges / columns)
    cols = min(columns, top.n_edges)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, vertical_spacing=0.5 / rows,
                        subplot_titles=[edge_label(top, e) for e in range(top.n_edges)])
    epochs = [record.epoch(r) for r in h.records]
    p = np.array([record.probs(r, cell_type) for r in h.records])   # epochs, edges, ops
    for e in range(top.n_edges):
        for k, op in enumerate(OPS):
            line = dict(color=OP_COLOR[op], width=3 if op == "none" else 1.5,
                        dash="dash" if op == "none" else "solid")
            fig.add_trace(go.Scatter(x=epochs, y=p[:, e, k], name=OP_LABEL[op], legendgroup=op, line=line,
                                     showlegend=e == 0, hovertemplate=f"{OP_LABEL[op]}<br>epoch %{{x}}<br>"
                                     f"p %{{y:.3f}}<extra>{edge_label(top, e)}</extra>"),
                          row=e // cols + 1, col=e % cols + 1)
    for r in range(1, rows + 1):
        fig.update_yaxes(title_text="p(op)", row=r, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(**LAYOUT, height=380 + 260 * (rows - 1), legend=dict(orientation="h", y=-0.25),
                      title=figure_title("p(op) per edge over epochs",
                                         f"{h.config.algorithm.upper()}, seed {h.config.seed}, {cell_type} cell; "
                                         f"grey dashed: none"))
    fig.update_layout(margin=dict(t=95))
    return fig
