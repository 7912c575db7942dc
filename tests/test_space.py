"""The cell space (nas_core.space): topology, the network's cell types, derivation
(``none`` counted, and DARTS' top-2) and the width / depth of hand-made cells."""
import itertools

import numpy as np
import pytest

from nas_core.ops import NONE, OPS, op_index
from nas_core.space import Topology, cell_types, derive, derive_darts, random_width_depth, selected_edges, width_depth


def test_topologies():
    m = Topology.named("minimal")
    assert m.edges == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert m.input_edges == (0, 1, 2, 3) and m.deep_edges == (4,) and m.output_nodes == (2, 3)
    assert m.edge_name(4) == "e4: n0->n1" and m.edge_name(1) == "e1: x1->n0"
    f = Topology.named("full")
    assert f.n_edges == 14 and len(f.input_edges) == 8 and len(f.deep_edges) == 6 and f.output_nodes == (2, 3, 4, 5)
    t = Topology(3, 2)
    assert t.n_edges == 2 + 3 + 4 and t.output_nodes == (3, 4)
    with pytest.raises(ValueError, match="unknown cell 'big'; choose one of minimal, full"):
        Topology.named("big")
    with pytest.raises(ValueError, match="multiplier must be in 1..steps=2"):
        Topology(2, 3)


def test_cell_types_put_reduction_cells_at_a_third_and_two_thirds_of_the_depth():
    assert cell_types("standard", 8) == ["normal", "normal", "reduce", "normal", "normal", "reduce", "normal",
                                         "normal"]
    assert cell_types("standard", 3) == ["normal", "reduce", "reduce"]
    assert cell_types("all_normal", 4) == ["normal"] * 4
    with pytest.raises(ValueError, match="unknown network 'resnet'; choose one of all_normal, standard"):
        cell_types("resnet", 4)


MIN = Topology.named("minimal")
CONV = "sep_conv_3x3"


def cell(*edges, n=5, op=CONV):
    return [op if e in edges else "none" for e in range(n)]


@pytest.mark.parametrize("derived, expected", [
    # edges 0-3 (both nodes read both inputs), deep edge 4 none: wide and shallow
    (cell(0, 1, 2, 3), (2, 2)),
    # every edge: still width 2, and the deep edge adds one to the depth
    (cell(0, 1, 2, 3, 4), (2, 3)),
    # only edge 0 and the deep edge 4: a chain x0 -> n0 -> n1 -> output
    (cell(0, 4), (1, 3)),
    # only the deep edge: n0 is not reached from an input, so nothing is connected
    (cell(4), (0, 0)),
    # one input edge into n1 only
    (cell(2), (1, 2)),
    # n1 fed by x1 and by n0, n0 fed by x0: width 2, depth 3
    (cell(0, 3, 4), (2, 3)),
    # the empty cell
    (cell(), (0, 0)),
    # the op does not matter, only whether it is none
    (cell(0, 4, op="skip_connect"), (1, 3)),
])
def test_width_depth_minimal_cell(derived, expected):
    assert width_depth(derived, MIN) == expected


def test_width_depth_full_cell():
    full = Topology.named("full")
    edge = {pair: e for e, pair in enumerate(full.edges)}
    chain = [edge[(0, 2)], edge[(2, 3)], edge[(3, 4)], edge[(4, 5)]]
    assert width_depth(cell(*chain, n=14), full) == (1, 5)
    assert width_depth(cell(*full.input_edges, n=14), full) == (4, 2)
    assert width_depth(cell(*range(14), n=14), full) == (4, 5)
    # a chain that does not reach the output nodes' inputs: n3 unconnected, depth from n2
    assert width_depth(cell(edge[(0, 2)], edge[(2, 4)], n=14), full) == (1, 3)


def test_derive_counts_none_and_respects_the_mask():
    p = np.full((5, len(OPS)), 0.1)
    p[:, NONE] = 0.3
    p[3, op_index("sep_conv_5x5")] = 0.5
    assert derive(p) == ["none", "none", "none", "sep_conv_5x5", "none"]
    assert selected_edges(derive(p)) == [3]
    allowed = np.ones_like(p, dtype=bool)
    allowed[3, op_index("sep_conv_5x5")] = False
    allowed[0, NONE] = False
    p[0, op_index("dil_conv_3x3")] = 0.2
    d = derive(p, allowed)
    assert d[3] == "none" and d[0] == "dil_conv_3x3"


def test_derive_darts_keeps_top_two_edges_per_node_without_none():
    p = np.full((5, len(OPS)), 0.05)
    p[:, NONE] = 0.6  # none dominates every edge, yet DARTS' derivation ignores it
    p[0, op_index("max_pool_3x3")] = 0.1
    p[1, op_index("sep_conv_3x3")] = 0.2
    p[2, op_index("skip_connect")] = 0.07
    p[3, op_index("dil_conv_5x5")] = 0.3
    p[4, op_index("avg_pool_3x3")] = 0.2
    assert derive(p) == ["none"] * 5
    # node n0 has only two incoming edges (both kept); node n1 keeps edges 3 and 4, drops edge 2
    assert derive_darts(p, MIN) == ["max_pool_3x3", "sep_conv_3x3", "none", "dil_conv_5x5", "avg_pool_3x3"]
    assert width_depth(derive_darts(p, MIN), MIN) == (2, 3)
    # a deleted edge (only none allowed) is never selected, even with one slot free
    allowed = np.ones_like(p, dtype=bool)
    allowed[4] = False
    allowed[4, NONE] = True
    assert derive_darts(p, MIN, allowed) == ["max_pool_3x3", "sep_conv_3x3", "skip_connect", "dil_conv_5x5", "none"]
    assert derive_darts(p, MIN, k=1) == ["none", "sep_conv_3x3", "none", "dil_conv_5x5", "none"]


def test_random_width_depth():
    assert random_width_depth(0, MIN) == (0.0, 0.0)
    assert random_width_depth(5, MIN) == (2.0, 3.0)
    # the seed fixes the random cells: the same seed repeats an estimate, others change it at few samples
    estimates = [random_width_depth(2, MIN, samples=10, seed=s) for s in range(6)]
    assert random_width_depth(2, MIN, samples=10, seed=3) == estimates[3] and len(set(estimates)) > 1
    # agrees with the exact mean over all cells with n edges (C(5, n) of them)
    for n in (1, 2, 3):
        exact = np.mean([width_depth(cell(*chosen), MIN) for chosen in itertools.combinations(range(5), n)], axis=0)
        w, d = random_width_depth(n, MIN, samples=4000, seed=n)
        assert w == pytest.approx(exact[0], abs=0.05) and d == pytest.approx(exact[1], abs=0.06), n
    assert random_width_depth(1, MIN, samples=4000)[0] == pytest.approx(0.8, abs=0.03)  # 4 of 5 edges read an input
    widths = [random_width_depth(n, Topology.named("full"), samples=300)[0] for n in range(0, 15, 2)]
    assert all(b >= a - 0.05 for a, b in zip(widths, widths[1:])) and widths[0] == 0 and widths[-1] == 4.0
