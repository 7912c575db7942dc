"""Figures for the book.

Since plotly 6, a figure shown in a Jupyter kernel defaults to the
``plotly_mimetype`` renderer alone: its output is a single
``application/vnd.plotly.v1+json`` bundle, which Jupyter Book 1 (myst-nb)
cannot render, so the static book shows nothing (a build warning "skipping
unknown output mime type" is the only trace).  :func:`setup_plotly` switches
to a renderer that writes ``text/html``.
"""

from __future__ import annotations

import plotly.io as pio
from plotly.io.base_renderers import NotebookRenderer


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
    """Make ``fig.show()`` (and a figure as a cell's last value) render in the book.

    Call it once near the top of a notebook; returns the renderer now in use.
    """
    pio.renderers.default = renderer
    return renderer
