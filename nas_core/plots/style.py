"""The book's figure style, each constant once: the renderer, the palette, op
and split labels, the layout, titles and the mean-and-band line.

Since plotly 6, a figure shown in a Jupyter kernel defaults to the
``plotly_mimetype`` renderer alone: its output is a single
``application/vnd.plotly.v1+json`` bundle, which Jupyter Book 1 (myst-nb)
cannot render, so the static book shows nothing (a build warning "skipping
unknown output mime type" is the only trace). :func:`setup_plotly` switches to
a renderer that writes ``text/html``.
"""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import NotebookRenderer

from ..ops import LABEL
from ..space import Topology


class BookRenderer(NotebookRenderer):
    """plotly's ``notebook_connected`` renderer, without MathJax.

    Each figure becomes a ``<div>`` and a script that draws it with plotly.js
    from the plotly CDN (a few kB per figure; ``notebook`` would inline the
    4.8 MB library into every page). ``notebook_connected`` also adds a
    ``<script>`` loading MathJax 3 to every figure, while the book's pages load
    MathJax 3 already: the second copy throws "Cannot set property Package"
    on load. Figures use the page's MathJax instead.
    """

    def __init__(self, config=None, auto_play=False, post_script=None, animation_opts=None):
        super().__init__(connected=True, config=config, auto_play=auto_play, post_script=post_script,
                         animation_opts=animation_opts)

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(fig_dict, config=self.config, auto_play=self.auto_play, include_plotlyjs="cdn",
                           include_mathjax=False, post_script=self.post_script, full_html=False,
                           animation_opts=self.animation_opts, default_width="100%", default_height=525,
                           validate=False)
        return {"text/html": html}


pio.renderers["book"] = BookRenderer()

#: The renderer the notebooks use: ``text/html`` only, so one copy of each
#: figure is stored and myst-nb warns about no output it drops (a plotly
#: mimetype warning then means a notebook forgot :func:`setup_plotly`).
BOOK_RENDERER = "book"

#: Every figure's layout: the white template, 13 px text, margins for a title.
LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=60, r=20, t=70, b=50))


def setup_plotly(renderer: str = BOOK_RENDERER) -> str:
    """Make ``fig.show()`` (and a figure as a cell's last value) render in the book,
    on the book's white template (also for figures a notebook draws itself).

    Call it once near the top of a notebook; returns the renderer now in use.
    """
    pio.renderers.default = renderer
    pio.templates.default = LAYOUT["template"]
    return renderer


#: Op names for legends and labels (the table is :data:`nas_core.ops.NAMES`).
OP_LABEL = LABEL
#: One colour per op (``none`` grey), shared by every figure.
OP_COLOR = {
    "none": "#b0b0b0", "max_pool_3x3": "#8c564b", "avg_pool_3x3": "#e377c2", "skip_connect": "#17becf",
    "sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#2ca02c", "dil_conv_3x3": "#ff7f0e", "dil_conv_5x5": "#d62728",
}
#: One colour per group of runs (a setting, a rung), in order.
GROUP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
#: One colour per edge (edge e gets EDGE_COLORS[e % 14]).
EDGE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
#: Blues for the cells of a network, shallow to deep (the last cell is drawn in LAST_CELL_COLOR).
CELL_COLORS = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b", "#041a3a", "#020d1d")
LAST_CELL_COLOR = "#d62728"
#: Line dash of each cost split.
SPLIT_DASH = {"train": "solid", "heldout": "dash", "probe_train": "dot", "probe_heldout": "dashdot"}
#: Name of each cost split in legends and panel titles.
SPLIT_LABEL = {"train": "train", "heldout": "held-out", "probe_train": "train (probe)",
               "probe_heldout": "held-out (probe)"}


def edge_kind(topology: Topology, e: int) -> str:
    """'input' (from a cell input) or 'deep' (between intermediate nodes)."""
    return "input" if e in topology.input_edges else "deep"


def edge_label(topology: Topology, e: int, kind: bool = False) -> str:
    """'e4: n0→n1', with ``kind`` 'e4: n0→n1 (deep)'."""
    label = topology.edge_name(e).replace("->", "→")
    return f"{label} ({edge_kind(topology, e)})" if kind else label


def figure_title(main: str, *notes: str) -> dict:
    """A short title with smaller note lines under it (the book's column is
    about 600 px wide, and plotly does not wrap titles)."""
    return dict(text=main + "".join(f"<br><sup>{n}</sup>" for n in notes if n), x=0.01, xanchor="left")


def rgba(hex_color: str, alpha: float) -> str:
    """'#1f77b4' at opacity ``alpha`` as an rgba() string."""
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def mean_band(fig, df, x, y, *, name, color, band="minmax", dash="solid", row=None, col=None,
              showlegend=True, legendgroup=None):
    """Add a mean line of ``y`` against ``x`` over seeds to ``fig``, with a band
    (``minmax``, ``sd`` for ±1 sd, or None for none); returns None."""
    g = df.groupby(x)[y]
    mean = g.mean()
    xs = list(mean.index)
    legendgroup = legendgroup or name
    pos = dict(row=row, col=col) if row else {}
    if band and g.count().max() > 1:
        lo, hi = (g.min(), g.max()) if band == "minmax" else (mean - g.std(), mean + g.std())
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(hi) + list(lo)[::-1], fill="toself",
                                 fillcolor=rgba(color, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=legendgroup), **pos)
    fig.add_trace(go.Scatter(x=xs, y=list(mean), mode="lines", name=name, legendgroup=legendgroup,
                             showlegend=showlegend, line=dict(color=color, width=2.5, dash=dash),
                             hovertemplate=f"{name}<br>epoch %{{x}}<br>mean %{{y:.3f}}<extra></extra>"), **pos)


def zero_line(fig, row=None, col=None, color: str = "black"):
    """A thin horizontal line at 0 (cost 0 is the cost of ``none``)."""
    pos = dict(row=row, col=col) if row else {}
    fig.add_hline(y=0, line=dict(color=color, width=1), **pos)
