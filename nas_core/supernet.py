"""The supernet: cells and networks whose forward pass takes the op weights Z
explicitly, so that the gradient of the loss w.r.t. Z is the cost of each op.

``Z[cell_type]`` has shape (cells of that type, edges, ops): every cell has its
own copy, so the backward pass gives per-cell costs. ``active[cell_type][e]``
lists the ops that run on edge e; an op not listed is not computed at all (its
Z entry must be 0), which is how DSNAS runs only the sampled op and how a
deleted edge never computes.

This is the textbook supernet, each op its module and ``sum_k Z_k * op_k(x)``.
The CPU fast path (:mod:`nas_core.fast`) computes the same sums with the same
parameters and state_dict keys; :func:`nas_core.fast.network` chooses between them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .ops import OPS, FactorizedReduce, ReLUConvBN, make_op
from .space import Topology, cell_types


def retain_nodes(states, nodes):
    """Append a cell's intermediate nodes (``states[2:]``) to the list ``nodes``, their
    gradients retained (for the node identities of the unified view); None: nothing."""
    if nodes is not None:
        for node in states[2:]:
            if node.requires_grad:
                node.retain_grad()
        nodes.append(states[2:])


class MixedEdge(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.channels = channels
        self.ops = nn.ModuleList(make_op(name, channels, stride) for name in OPS)

    def forward(self, x, z, active):
        out = None
        for k in active:
            y = z[k] * self.ops[k](x)
            out = y if out is None else out + y
        return out


class Cell(nn.Module):
    def __init__(self, topology: Topology, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.topology = topology
        self.reduction = reduction
        self.channels = c
        self.pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, False)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, False)
        self.edges = nn.ModuleList(
            MixedEdge(c, 2 if reduction and i < 2 else 1) for i, _ in topology.edges
        )

    def forward(self, s0, s1, z, active, nodes=None):
        """``z``: this cell's Z (edges x ops). A list ``nodes`` gets this cell's
        intermediate nodes, their gradients retained."""
        states = [self.pre0(s0), self.pre1(s1)]
        n, _, h, w = states[1].shape
        if self.reduction:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        for j in range(2, 2 + self.topology.steps):
            node = None
            for e, (i, t) in enumerate(self.topology.edges):
                if t == j and active[e]:
                    y = self.edges[e](states[i], z[e], active[e])
                    node = y if node is None else node + y
            if node is None:  # every incoming edge is `none`: the node is zero
                node = states[1].new_zeros(n, self.channels, h, w)
            states.append(node)
        retain_nodes(states, nodes)
        return torch.cat([states[j] for j in self.topology.output_nodes], dim=1)


class Network(nn.Module):
    """``all_normal``: the authors' analysis network (no reduction cells).
    ``standard``: DARTS' network, reduction cells at 1/3 and 2/3 of the depth
    (the rule is :func:`nas_core.space.cell_types`).
    Both end in global average pooling and a bias-free linear classifier whose
    initial weights are multiplied by ``logit_scale``."""

    def __init__(self, topology: Topology, n_cells: int, channels: int, in_channels: int, n_classes: int,
                 network: str = "all_normal", stem_multiplier: int = 3, logit_scale: float = 1.0):
        super().__init__()
        self.topology = topology
        c_stem = channels * stem_multiplier
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        self.cell_types: list[str] = cell_types(network, n_cells)
        reduction_prev = False
        for cell_type in self.cell_types:
            reduction = cell_type == "reduce"
            if reduction:
                c *= 2
            self.cells.append(Cell(topology, c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, topology.multiplier * c
        self.classifier = nn.Linear(c_p, n_classes, bias=False)
        with torch.no_grad():
            self.classifier.weight.mul_(logit_scale)

    @property
    def types(self) -> list[str]:
        """The cell types present, each with its own alpha."""
        return sorted(set(self.cell_types), key=["normal", "reduce"].index)

    def count(self, cell_type: str) -> int:
        return self.cell_types.count(cell_type)

    def features(self, x, z, active, nodes=None):
        """The last cell's output, pooled over height and width."""
        s0 = s1 = self.stem(x)
        seen = {t: 0 for t in self.types}
        for cell, t in zip(self.cells, self.cell_types):
            s0, s1 = s1, cell(s0, s1, z[t][seen[t]], active[t], nodes=nodes)
            seen[t] += 1
        return s1.mean(dim=(2, 3))

    def forward(self, x, z, active, nodes=None):
        """Logits; a list ``nodes`` gets each cell's intermediate nodes (see :class:`Cell`)."""
        return self.classifier(self.features(x, z, active, nodes))
