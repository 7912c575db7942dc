"""The book's figures and the tidy tables they are drawn from.

* :mod:`~nas_core.plots.style`: the renderer (:func:`setup_plotly`, every
  notebook calls it first), palette, labels and layout.
* :mod:`~nas_core.plots.frames`: tidy tables (pandas, one row per observation).
* :mod:`~nas_core.plots.figures`: figures over runs and seeds.
* :mod:`~nas_core.plots.cells`: views of one run's cell (animated over epochs).

The chapters use this package's namespace (``plots.cell_figure(h)``); the
names below are the public ones of those modules.
"""
from .cells import alpha_heatmap, cell_figure, edge_figure, op_probability_figure
from .figures import cost_figure, edge_selection_figure, selection_figure, width_depth_figure
from .frames import config_frame, cost_frame, edge_frame, epoch_frame, final_frame
from .style import edge_label, setup_plotly

__all__ = ["alpha_heatmap", "cell_figure", "edge_figure", "op_probability_figure", "cost_figure",
           "edge_selection_figure", "selection_figure", "width_depth_figure", "config_frame", "cost_frame",
           "edge_frame", "epoch_frame", "final_frame", "edge_label", "setup_plotly"]
