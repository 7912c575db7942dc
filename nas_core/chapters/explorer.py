"""An ipywidgets explorer for a live kernel: run a short search, then look at
any epoch and edge of it.

Nothing is computed when this module is imported or when the explorer is
created: a search runs only when the reader presses *Run*. In the static book
the explorer renders as its controls alone (widget callbacks need a kernel).
Searches go through :func:`nas_core.run`, so a setting run before (by the
reader, the book or the tests) is loaded from the run cache, not recomputed.
"""
from __future__ import annotations

import ipywidgets as W
from IPython.display import display

from .. import plots, presets, record
from ..config import ALGORITHMS
from ..runs import run
from ..space import CELLS


class Explorer(W.VBox):
    """Controls for a short search (algorithm, level, cell, seed, epochs; every
    other setting from the CPU preset ``preset``, on digits), then for what to
    draw of it (view, edge, epoch)."""

    def __init__(self, preset: str = "growing", max_epochs: int = 20, cache_dir=None):
        self.base = presets.preset(preset, "cpu")
        self.cache_dir = cache_dir
        self.history = None
        style = dict(description_width="70px")
        box = W.Layout(width="190px")
        self.algorithm = W.Dropdown(options=ALGORITHMS, value=self.base.algorithm, description="algorithm",
                                    style=style, layout=box)
        self.level = W.Dropdown(options=[("single-level", "single"), ("bi-level", "bi")],
                                value=self.base.level, description="level", style=style, layout=box)
        self.cell = W.Dropdown(options=list(CELLS), value=self.base.cell if self.base.cell in CELLS else "minimal",
                               description="cell", style=style, layout=box)
        self.seed = W.BoundedIntText(value=0, min=0, max=10_000, description="seed", style=style, layout=box)
        self.epochs = W.IntSlider(value=min(10, max_epochs), min=1, max=max_epochs, description="epochs",
                                  style=style, continuous_update=False, layout=W.Layout(width="260px"))
        self.run_button = W.Button(description="Run search", button_style="primary", icon="play",
                                   layout=W.Layout(width="120px"))
        self.status = W.HTML(f"<i>Other settings from the preset {preset!r} (digits, {self.base.cells} cells, "
                             f"C={self.base.channels}). Nothing runs until you press Run search; on a CPU a short "
                             f"search takes seconds to minutes (DARTS and the full cell are the slow ones).</i>")
        self.view = W.Dropdown(options=[("derived cell", "cell"), ("one edge: p and costs", "edge"),
                                        ("costs of all edges", "costs")], value="cell", description="show",
                               style=style, layout=box)
        self.epoch = W.IntSlider(value=1, min=1, max=1, description="epoch", style=style, continuous_update=False,
                                 disabled=True, layout=W.Layout(width="260px"))
        self.edge = W.Dropdown(options=self._edge_options(), value=0, description="edge", style=style, layout=box)
        self.out = W.Output()
        self.run_button.on_click(lambda _: self.run())
        self._quiet = False
        self.cell.observe(lambda _: self._set_edges(), names="value")
        for w in (self.view, self.epoch, self.edge):
            w.observe(lambda _: self.redraw(), names="value")
        wrap = W.Layout(flex_flow="row wrap")
        super().__init__([
            W.HBox([self.algorithm, self.level, self.cell], layout=wrap),
            W.HBox([self.seed, self.epochs, self.run_button], layout=wrap), self.status,
            W.HBox([self.view, self.edge, self.epoch], layout=wrap), self.out,
        ])

    def _edge_options(self, cell=None):
        top = self.base.replace(cell=cell or self.cell.value).topology
        return [(plots.edge_label(top, e), e) for e in range(top.n_edges)]

    def _set_edges(self, cell=None):
        """Edges of the drawn run's cell (of the chosen cell before any run)."""
        cell = cell or (self.history.config.cell if self.history else self.cell.value)
        options = self._edge_options(cell)
        if list(self.edge.options) != options:
            self.edge.options = options
            self.edge.value = 0

    def config(self):
        """The config the controls describe (raises the config's ValueError if invalid)."""
        return self.base.replace(algorithm=self.algorithm.value, level=self.level.value, cell=self.cell.value,
                                 seed=self.seed.value, epochs=self.epochs.value)

    def run(self):
        """Run (or load from the cache) the search the controls describe, then draw it."""
        try:
            config = self.config()
        except ValueError as err:
            self.status.value = f"<b style='color:#b00'>{err}</b>"
            return
        self.status.value = f"<i>running {config.algorithm}, {config.level}-level, {config.cell} cell, " \
                            f"seed {config.seed}, {config.epochs} epochs ...</i>"
        self.out.clear_output()
        with self.out:
            self.history = run(config, cache_dir=self.cache_dir)
        h = self.history
        n = record.wiring(h.last, "n_selected", "normal")
        self.status.value = (f"{h.path.name}: {len(h)} epochs, {n} of {config.topology.n_edges} edges selected "
                             f"at the end, train accuracy {h.last['train_acc']:.2f}")
        self._quiet = True  # one redraw, not one per changed control
        self.epoch.max, self.epoch.value, self.epoch.disabled = len(h), len(h), False
        self._set_edges(h.config.cell)
        self._quiet = False
        self.redraw()

    def figure(self):
        """The figure for the current controls (None before a run)."""
        h = self.history
        if h is None:
            return None
        if self.view.value == "cell":
            return plots.cell_figure(h, epoch=self.epoch.value)
        if self.view.value == "edge":
            return plots.edge_figure(h, self.edge.value, epoch=self.epoch.value)
        fig = plots.cost_figure([h], smooth=1)
        fig.add_vline(x=self.epoch.value, line=dict(color="grey", dash="dot"))
        return fig

    def redraw(self):
        if self._quiet or self.history is None:
            return
        self.out.clear_output(wait=True)
        with self.out:
            try:
                display(self.figure())
            except ValueError as err:  # e.g. a run that recorded no costs
                print(err)


def explorer(preset: str = "growing", max_epochs: int = 20, cache_dir=None) -> Explorer:
    """The explorer widget, starting from a CPU preset's settings (digits).
    Nothing runs until *Run search* is pressed."""
    return Explorer(preset, max_epochs=max_epochs, cache_dir=cache_dir)
