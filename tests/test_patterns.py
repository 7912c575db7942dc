"""The pattern statistics on hand-built histories, at and just past each
threshold: the paper's argmax statistics and their tie-aware versions."""
from __future__ import annotations

import numpy as np
import pytest

from nas_core import patterns
from nas_core.config import SearchConfig
from nas_core.runs import History
from nas_core.space import Topology, derive, selected_edges, width_depth

TOP = Topology.named("minimal")  # edges 0-3 from the inputs, edge 4 deep


def probs_for(gaps):
    """A cell's p (edges x 8 ops) whose best other op beats p(none) by gaps[e]."""
    rows = []
    for g in gaps:
        row = np.full(8, (1 - 0.3) / 6)
        row[0], row[4] = 0.15 - g / 2, 0.15 + g / 2
        rows.append(row / row.sum())
    return np.array(rows)


def history(gap_rows, level="single"):
    """One record per epoch from per-edge gaps (best other op minus p(none))."""
    config = SearchConfig(data="synthetic", epochs=len(gap_rows), level=level, algorithm="darts")
    records = []
    for i, gaps in enumerate(gap_rows, 1):
        p = probs_for(gaps)
        allowed = np.ones_like(p, dtype=bool)
        d = derive(p, allowed)
        w, dp = width_depth(d, TOP)
        records.append({"epoch": i, "probs": {"normal": p.tolist()}, "p_none": {"normal": p[:, 0].tolist()},
                        "derived": {"normal": d}, "selected_edges": {"normal": selected_edges(d)},
                        "n_selected": {"normal": len(selected_edges(d))}, "width": {"normal": w},
                        "depth": {"normal": dp}})
    return History(config, records)


M = patterns.TIE_MARGIN


def test_edge_decisions_at_the_margin():
    d = patterns.edge_decisions(probs_for([M, M * 0.99, 0.0, -M * 0.99, -M]))
    assert d == ["selected", "undecided", "undecided", "undecided", "none"]
    np.testing.assert_allclose(patterns.edge_margins(probs_for([M, 0.0, -M, 0.3, -0.05])), [M, 0.0, -M, 0.3, -0.05],
                               atol=1e-12)


@pytest.mark.parametrize("deep_gap, input_gap, paper, decisive", [
    (-M, M, True, True),               # deep edge decisively none, inputs decisively selected
    (-M * 0.5, M, True, False),        # deep edge loses the argmax by less than the margin: undecided
    (M * 0.5, M, False, False),        # deep edge selected by argmax
    (-M, M * 0.5, True, False),        # inputs win the argmax but inside the margin
])
def test_width_and_its_tie_aware_version(deep_gap, input_gap, paper, decisive):
    h = history([[input_gap] * 4 + [deep_gap]])
    assert patterns.width(h)["holds"] is paper
    assert patterns.width_decisive(h)["holds"] is decisive


def test_width_input_fraction_threshold():
    three = history([[M, M, M, -M, -M]])      # 3 of 4 input edges: exactly the threshold
    two = history([[M, M, -M, -M, -M]])
    assert patterns.width(three)["holds"] and patterns.width_decisive(three)["holds"]
    assert not patterns.width(two)["holds"] and not patterns.width_decisive(two)["holds"]


def growing_rows(empty_gap, final_gap, epochs=9):
    """p(none) rises for a third of the run with edges at ``empty_gap``, then edges
    come back at ``final_gap``."""
    third = epochs // 3
    return [[0.01] * 5] + [[empty_gap] * 5] * (third - 1) + [[final_gap] * 5] * (epochs - third)


def test_growing_and_its_tie_aware_version():
    clear = history(growing_rows(-0.2, 0.2))
    assert patterns.growing(clear)["holds"] and patterns.growing_decisive(clear)["holds"]
    # the empty phase only inside the margin: the argmax says empty, the tie-aware version does not
    tie = history(growing_rows(-M * 0.5, 0.2))
    assert patterns.growing(history(growing_rows(-0.2, 0.2)))["holds"]
    assert not patterns.growing_decisive(tie)["holds"]
    # edges back only inside the margin
    assert not patterns.growing_decisive(history(growing_rows(-0.2, M * 0.5)))["holds"]
    # never empty: neither
    never = history(growing_rows(0.2, 0.2))
    assert not patterns.growing(never)["holds"] and not patterns.growing_decisive(never)["holds"]


def test_bilevel_and_its_tie_aware_version():
    assert patterns.bilevel_decisive(history([[-M] * 5], level="bi"))["holds"]
    assert patterns.bilevel(history([[-M * 0.5] * 5], level="bi"))["holds"]
    assert not patterns.bilevel_decisive(history([[-M * 0.5] * 5], level="bi"))["holds"]
    assert patterns.bilevel_decisive(history([[M] * 4 + [-M]]))["holds"]          # control keeps 4 of 5
    assert not patterns.bilevel_decisive(history([[M] * 3 + [M * 0.5, -M]]))["holds"]


def test_statistics_reports_both_versions():
    stats = patterns.statistics(history([[M] * 4 + [-M]]))
    assert {"growing", "growing_decisive", "width", "width_decisive", "bilevel", "bilevel_decisive"} <= set(stats)
