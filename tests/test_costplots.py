"""The mechanisms chapter's cost tables (nas_core.costplots)."""
from __future__ import annotations

import numpy as np

from nas_core import SearchConfig
from nas_core.costplots import edge_op_costs
from nas_core.space import cell_types


def record_with(costs):
    """An epoch record whose train costs are ``costs`` (cells x edges x ops)."""
    c = np.asarray(costs, dtype=float)
    return {"cost": {"train": {"mean": c.tolist(), "var": np.zeros_like(c).tolist(),
                               "count": np.ones(c.shape, dtype=int).tolist()}}}


def test_cell_types_one_rule():
    assert cell_types("all_normal", 4) == ["normal"] * 4
    assert cell_types("standard", 8) == ["normal", "normal", "reduce", "normal", "normal", "reduce",
                                         "normal", "normal"]


def test_edge_cost_sums_only_the_cells_that_share_alpha():
    """In the standard network the reduction cells have their own alpha: summing
    their costs into the normal cells' (as the code did before) was wrong."""
    config = SearchConfig(data="synthetic", network="standard", cells=3)   # normal, reduce, reduce
    types = cell_types(config.network, config.cells)
    costs = np.zeros((3, 5, 8))
    for i, t in enumerate(types):
        costs[i] = 1.0 if t == "normal" else 100.0
    m = edge_op_costs(record_with(costs), "train", config)
    assert np.allclose(m, types.count("normal") * 1.0)
    r = edge_op_costs(record_with(costs), "train", config, "reduce")
    assert np.allclose(r, types.count("reduce") * 100.0)
    flat = SearchConfig(data="synthetic", cells=3)
    assert np.allclose(edge_op_costs(record_with(np.ones((3, 5, 8))), "train", flat), 3.0)
