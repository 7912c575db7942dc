"""The supernet: cells and networks whose forward pass takes the op weights Z
explicitly, so that the gradient of the loss w.r.t. Z is the cost of each op.

``Z[cell_type]`` has shape (cells of that type, edges, ops): every cell has its
own copy, so the backward pass gives per-cell costs. ``active[cell_type][e]``
lists the ops that run on edge e; an op not listed is not computed at all (its
Z entry must be 0), which is how DSNAS runs only the sampled op and how a
deleted edge never computes.

Two implementations of the same maths. The *plain* path is the textbook one:
each op is its module and ``sum_k Z_k * op_k(x)``. The *fast* path (the default)
runs in channels-last memory and computes a cell's edges in waves, each wave's
ops fused into a few large kernels, and the preprocessing ops of the cells that
read the same tensor as one (nas_core.waves). Parameters and state_dict
keys are the same in both paths. ``fast_path(False)`` (a context manager),
``Network(..., fast=False)`` or ``NAS_CORE_FAST=0`` selects the plain path;
tests/test_fastpath.py checks that both give the same losses, weight gradients
and costs.
"""
from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from .fused import cat_channels, global_mean
from .ops import OPS, FactorizedReduce, ReLUConvBN, make_op
from .space import Topology
from .stem import stem_conv
from .waves import Waves, shared_preprocessing

_FAST = os.environ.get("NAS_CORE_FAST", "1").strip().lower() not in ("0", "false", "no", "off", "")


def fast_enabled() -> bool:
    """Whether networks built with ``fast=None`` (the default) take the fast path."""
    return _FAST


@contextlib.contextmanager
def fast_path(enabled: bool = True):
    """Within the block, networks built with ``fast=None`` take the fast path if
    ``enabled``, else the plain one (the module default comes from the environment
    variable ``NAS_CORE_FAST``, on unless it is 0)."""
    global _FAST
    old, _FAST = _FAST, bool(enabled)
    try:
        yield
    finally:
        _FAST = old


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
        self.waves = Waves(self)  # the fast path's forward (holds only references to these modules)

    def forward(self, s0, s1, z, active, base=None, nodes=None, pre=(None, None)):
        """``z``: this cell's Z (edges x ops); on the fast path (``base`` given) the
        flat padded Z of its type, this cell's rows starting at ``base``. A list
        ``nodes`` gets this cell's intermediate nodes, their gradients retained
        (for the node identities of the unified view). ``pre``: the outputs of
        pre0 and pre1 where already computed (None: computed here)."""
        states = [self.pre0(s0) if pre[0] is None else pre[0], self.pre1(s1) if pre[1] is None else pre[1]]
        if base is not None:
            self.waves.forward(states, z, base, active)
        else:
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
        if nodes is not None:
            for node in states[2:]:
                if node.requires_grad:
                    node.retain_grad()
            nodes.append(states[2:])
        out = [states[j] for j in self.topology.output_nodes]
        return torch.cat(out, dim=1) if base is None else cat_channels(out)


class Network(nn.Module):
    """``all_normal``: the authors' analysis network (no reduction cells).
    ``standard``: DARTS' network, reduction cells at 1/3 and 2/3 of the depth.
    Both end in global average pooling and a bias-free linear classifier whose
    initial weights are multiplied by ``logit_scale``."""

    def __init__(self, topology: Topology, n_cells: int, channels: int, in_channels: int, n_classes: int,
                 network: str = "all_normal", stem_multiplier: int = 3, logit_scale: float = 1.0,
                 fast: bool | None = None):
        super().__init__()
        self.topology = topology
        self.fast = fast  # None: follow fast_path() / NAS_CORE_FAST at each forward
        c_stem = channels * stem_multiplier
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        reductions = {n_cells // 3, 2 * n_cells // 3} if network == "standard" else set()
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        self.cell_types: list[str] = []
        reduction_prev = False
        for idx in range(n_cells):
            reduction = idx in reductions
            if reduction:
                c *= 2
            self.cells.append(Cell(topology, c_pp, c_p, c, reduction, reduction_prev))
            self.cell_types.append("reduce" if reduction else "normal")
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
        fast = _FAST if self.fast is None else self.fast
        if fast:
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            # per type, Z as one flat vector with a constant 1 after each (cell, edge) row
            zf = {t: F.pad(z[t], (0, 1), value=1.0).reshape(-1) for t in self.types}
            per_cell = self.topology.n_edges * (len(OPS) + 1)
        if fast and x.dim() == 4 and not (self.stem._forward_hooks or self.stem._forward_pre_hooks):
            s0 = s1 = self.stem[1](stem_conv(self.stem[0], x))  # channels-last before its BN
        else:
            s0 = s1 = self.stem(x)
        seen = {t: 0 for t in self.types}
        pre = {}  # (cell, 0 | 1) -> its preprocessed input, computed with the other readers of that input
        if fast:
            self._share(s1, [(0, 0), (0, 1), (1, 0)], pre)
        for k, (cell, t) in enumerate(zip(self.cells, self.cell_types)):
            if fast:
                out = cell(s0, s1, zf[t], active[t], base=seen[t] * per_cell, nodes=nodes,
                           pre=(pre.pop((k, 0), None), pre.pop((k, 1), None)))
                s0, s1 = s1, out
                self._share(out, [(k + 1, 1), (k + 2, 0)], pre)
            else:
                s0, s1 = s1, cell(s0, s1, z[t][seen[t]], active[t], nodes=nodes)
            seen[t] += 1
        return global_mean(s1) if fast else s1.mean(dim=(2, 3))

    def _share(self, x, readers, pre):
        """The preprocessing of every cell among ``readers`` ((cell, 0 | 1): its pre0
        or pre1) that reads x, run at once where it can be (nas_core.waves)."""
        readers = [(k, i) for k, i in readers if k < len(self.cells)]
        modules = [self.cells[k].pre0 if i == 0 else self.cells[k].pre1 for k, i in readers]
        for r, y in zip(readers, shared_preprocessing(x, modules, self.training)):
            if y is not None:
                pre[r] = y

    def forward(self, x, z, active, nodes=None):
        """Logits; a list ``nodes`` gets each cell's intermediate nodes (see :class:`Cell`)."""
        return self.classifier(self.features(x, z, active, nodes))
