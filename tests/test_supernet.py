"""The plain supernet (nas_core.supernet) directly: shapes, the reduction cells at
the positions nas_core.space.cell_types names, and Z's role (an op with Z = 0 or
not listed as active does not reach the output). The fast path's agreement with
it is tested in test_fast_network.py."""
import pytest
import torch

from nas_core.ops import OPS, op_index
from nas_core.space import Topology, cell_types
from nas_core.supernet import Cell, MixedEdge, Network

TOP = Topology.named("minimal")


def _inputs(net: Network, op: str | None = None, value: float = 1.0):
    """Z and active for every cell of ``net``: one op on every edge (``op``), or all ops at uniform Z."""
    z, active = {}, {}
    for t in net.types:
        if op is None:
            z[t] = torch.full((net.count(t), TOP.n_edges, len(OPS)), 1 / len(OPS))
            active[t] = [list(range(1, len(OPS)))] * TOP.n_edges
        else:
            z[t] = torch.zeros(net.count(t), TOP.n_edges, len(OPS))
            z[t][..., op_index(op)] = value
            active[t] = [[op_index(op)]] * TOP.n_edges
    return z, active


@pytest.mark.parametrize("network,n_cells", [("all_normal", 2), ("standard", 3), ("standard", 5)])
def test_network_output_shape_and_cell_types(network, n_cells):
    torch.manual_seed(0)
    net = Network(TOP, n_cells, channels=4, in_channels=3, n_classes=7, network=network)
    assert net.cell_types == cell_types(network, n_cells)
    assert [c.reduction for c in net.cells] == [t == "reduce" for t in cell_types(network, n_cells)]
    z, active = _inputs(net)
    x = torch.randn(2, 3, 8, 8)
    assert net(x, z, active).shape == (2, 7)
    assert net.features(x, z, active).shape == (2, net.classifier.in_features)


def test_reduction_cells_halve_the_resolution_and_double_the_channels():
    assert cell_types("standard", 3) == ["normal", "reduce", "reduce"]   # the rule: test_space.py
    net = Network(TOP, 3, channels=4, in_channels=3, n_classes=2, network="standard")
    assert net.types == ["normal", "reduce"] and net.count("reduce") == 2
    assert [c.channels for c in net.cells] == [4, 8, 16]
    # a reduction cell's input edges have stride 2, its other edges stride 1
    reduce = net.cells[1]
    assert [e.stride for e in reduce.edges] == [2 if i < 2 else 1 for i, _ in TOP.edges]
    assert all(e.stride == 1 for e in net.cells[0].edges)
    shapes = []
    net.cells[1].register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    net.cells[2].register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    z, active = _inputs(net)
    net(torch.randn(1, 3, 8, 8), z, active)
    assert shapes == [(1, TOP.multiplier * 8, 4, 4), (1, TOP.multiplier * 16, 2, 2)]


def test_mixed_edge_is_the_z_weighted_sum_of_the_active_ops():
    torch.manual_seed(0)
    edge = MixedEdge(4, stride=1).eval()
    x = torch.randn(2, 4, 6, 6)
    z = torch.rand(len(OPS))
    active = [1, 3, 4]
    expected = sum(z[k] * edge.ops[k](x) for k in active)
    torch.testing.assert_close(edge(x, z, active), expected)
    skip = op_index("skip_connect")
    torch.testing.assert_close(edge(x, torch.eye(len(OPS))[skip], [skip]), x)


def test_a_cell_whose_edges_are_all_none_outputs_zeros_and_z_carries_the_gradient():
    torch.manual_seed(0)
    cell = Cell(TOP, 4, 4, 4, reduction=False, reduction_prev=False)
    s = torch.randn(2, 4, 6, 6)
    z = torch.zeros(TOP.n_edges, len(OPS))
    out = cell(s, s, z, [[]] * TOP.n_edges)
    assert out.shape == (2, TOP.multiplier * 4, 6, 6) and not out.any()
    # the cost dL/dZ of an op that runs is its output's inner product with dL/d(node)
    z = torch.zeros(TOP.n_edges, len(OPS), requires_grad=True)
    skip = op_index("skip_connect")
    with torch.no_grad():
        z[:, skip] = 1.0
    cell(s, s, z, [[skip]] * TOP.n_edges).sum().backward()
    assert z.grad[:, skip].abs().sum() > 0
    assert not z.grad[:, [k for k in range(len(OPS)) if k != skip]].any()
