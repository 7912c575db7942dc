"""The supernet: cells and networks whose forward pass takes the op weights Z
explicitly, so that the gradient of the loss w.r.t. Z is the cost of each op.

``Z[cell_type]`` has shape (cells of that type, edges, ops): every cell has its
own copy, so the backward pass gives per-cell costs. ``active[cell_type][e]``
lists the ops that run on edge e; an op not listed is not computed at all (its
Z entry must be 0), which is how DSNAS runs only the sampled op and how a
deleted edge never computes.

Two implementations of the same maths. The *plain* path is the textbook one:
each op is its module and ``sum_k Z_k * op_k(x)``. The *fast* path (the default)
runs in channels-last memory; an edge computes relu(x) once for every op that
starts with it; the depthwise stages of its ops each run as their own conv
(nas_core.depthwise: dilated ones as dense convs on the polyphase components of
their input, kernels larger than their input cropped), their pointwise 1x1
convs as one grouped conv, and every BatchNorm of one stage as one BN over the
concatenated channels (BN with batch statistics and ``affine=False`` is per
channel, so this is exact, running statistics included); Z enters as the weight of an op's final BN (``Z_k * BN(y)`` is
``BN(y)`` with weight Z_k), read from one padded flat copy of Z per cell type by
``index_select``, so dL/dZ arrives through the same autograd graph. Every
gradient stays channels-last (nas_core.fused: the CPU's BN and cat backward are
several times slower on an NCHW gradient of a channels-last input). Parameters
and state_dict keys are the same in both paths. An edge one of whose ops has a
forward hook runs the plain way (a hook sees each op's call, which the fused sum
does not make). ``fast_path(False)`` (a context
manager), ``Network(..., fast=False)`` or ``NAS_CORE_FAST=0`` selects the plain
path; tests/test_fastpath.py checks that both give the same losses, weight
gradients and costs.
"""
from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise import depthwise as _depthwise
from .fused import cat_channels, global_mean
from .ops import OPS, FactorizedReduce, ReLUConvBN, make_op
from .space import Topology

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


MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = (OPS.index(n) for n in (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))
ONE = len(OPS)  # index of the constant 1 appended to each row of the flat Z


def _global_hooks() -> bool:
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks)


def _batch_norm(x, bns, weight, training):
    """The BNs ``bns`` (affine=False, one per consecutive block of channels of x)
    applied at once, with ``weight`` multiplying the normalised output. Running
    statistics are updated in each module as its own forward would."""
    b0 = bns[0]
    if len(bns) == 1:
        rm, rv = b0.running_mean, b0.running_var
    else:
        rm = torch.cat([b.running_mean for b in bns])
        rv = torch.cat([b.running_var for b in bns])
    momentum = b0.momentum
    if momentum is None and training:  # a cumulative average, as nn.BatchNorm2d with momentum=None
        momentum = 1.0 / (float(b0.num_batches_tracked) + 1.0)
    y = F.batch_norm(x, rm, rv, weight, None, training, 0.0 if momentum is None else momentum, b0.eps)
    if training:
        with torch.no_grad():
            if len(bns) > 1:
                sizes = [b.num_features for b in bns]
                # through .data: as inside BN's own kernel, the buffers' version counters do not move
                # (autograd saved them in graphs that may still be waiting for backward)
                torch._foreach_copy_([b.running_mean.data for b in bns], list(rm.split(sizes)))
                torch._foreach_copy_([b.running_var.data for b in bns], list(rv.split(sizes)))
            torch._foreach_add_([b.num_batches_tracked for b in bns], 1)
    return y


def _pointwise(parts, convs):
    """The 1x1 convs ``convs`` applied to ``parts`` (one input each): one grouped conv.
    Each part is made channels-last (a polyphase output at 2x2 is not), else the cat
    and every BN behind it would run in NCHW order (see nas_core.fused)."""
    parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
    if len(parts) == 1:
        return F.conv2d(parts[0], convs[0].weight)
    return F.conv2d(cat_channels(parts), torch.cat([c.weight for c in convs]), groups=len(parts))


def _sum_blocks(y, c, m):
    """The sum of the first m blocks of c channels of y, and the rest of y (None if
    nothing is left). One split, whose backward is one cat: slicing each block
    instead would fill a zero gradient of all of y's channels per block."""
    rest = y.shape[1] - m * c
    if m == 1 and not rest:
        return y, None
    parts = y.split([c] * m + ([rest] if rest else []), dim=1)
    out = parts[0]
    for i in range(1, m):
        out = out + parts[i]
    return out, (parts[m] if rest else None)


class MixedEdge(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.channels = channels
        self.ops = nn.ModuleList(make_op(name, channels, stride) for name in OPS)
        self._cache: dict = {}  # index tensors of the fast path

    def forward(self, x, z, active):
        out = None
        for k in active:
            y = z[k] * self.ops[k](x)
            out = y if out is None else out + y
        return out

    def forward_fast(self, x, zf, base, active):
        """The same sum as :meth:`forward`, fused (see the module docstring). ``zf``
        is the flat padded Z of this cell type; this edge's row starts at ``base``."""
        ops, s, c, training = self.ops, self.stride, self.channels, self.training
        if any(ops[k]._forward_hooks or ops[k]._forward_pre_hooks for k in active) or _global_hooks():
            # hooks expect each op's own call, input and output, which the fused sum never forms
            return self.forward(x, zf[base:base + len(OPS)], active)
        xr = None
        blocks, bns, wix = [], [], []  # stage 1: pools and skip (reduce), weighted by Z
        dil, sep = [], []              # (op, first unit) of the convs
        out = None
        for k in active:
            if k == MAX or k == AVG:
                if k == MAX:
                    blocks.append(F.max_pool2d(x, 3, s, 1))
                else:
                    blocks.append(F.avg_pool2d(x, 3, s, 1, count_include_pad=False))
                bns.append(ops[k][1])
                wix.append(k)
            elif k == SKIP:
                op = ops[k]
                if s == 1:
                    out = x * zf.index_select(0, self._index(zf, base, (k,), 1))
                    continue
                if xr is None:
                    xr = F.relu(x)
                shifted = xr[:, :, 1:, 1:] if xr.shape[-1] > 1 else xr
                a, b = F.conv2d(xr, op.conv1.weight, None, 2), F.conv2d(shifted, op.conv2.weight, None, 2)
                if b.shape[-2:] != a.shape[-2:]:
                    b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
                blocks.append(cat_channels([a, b]))
                bns.append(op.bn)
                wix.append(k)
            elif k == DIL3 or k == DIL5:
                dil.append((k, ops[k]))
            elif k == SEP3 or k == SEP5:
                sep.append((k, ops[k][0]))
            else:
                raise ValueError(f"op {OPS[k]} has no fused form")
        convs = dil + sep  # dilated first (weighted by Z), then the sep convs' first units (weight 1)
        if convs:
            if xr is None:
                xr = F.relu(x)
            blocks.append(_pointwise([_depthwise(xr, u[1]) for _, u in convs], [u[2] for _, u in convs]))
            bns += [u[3] for _, u in convs]
            wix += [k for k, _ in dil] + [ONE] * len(sep)
        if blocks:
            y = cat_channels(blocks)
            weight = None if all(k == ONE for k in wix) else \
                zf.index_select(0, self._index(zf, base, tuple(wix), c))
            y = _batch_norm(y, bns, weight, training)
            n_w = len(wix) - len(sep)
            if n_w:
                part, rest = _sum_blocks(y, c, n_w)
                out = part if out is None else out + part
            else:
                rest = y
            if sep:
                units = [ops[k][1] for k, _ in sep]
                # one ReLU per block: each output is dense (a slice of one ReLU's output would be copied by the conv)
                rs = [F.relu(r) for r in rest.split(c, dim=1)] if len(sep) > 1 else [F.relu(rest)]
                dw2 = [_depthwise(ri, u[1]) for ri, u in zip(rs, units)]
                y2 = _batch_norm(_pointwise(dw2, [u[2] for u in units]), [u[3] for u in units],
                                 zf.index_select(0, self._index(zf, base, tuple(k for k, _ in sep), c)), training)
                part, _ = _sum_blocks(y2, c, len(sep))
                out = part if out is None else out + part
        return out

    def _index(self, zf, base, ks, c):
        """Positions in the flat Z: ``c`` copies of each op's entry (ONE: the constant 1)."""
        key = (base, ks, c, zf.device)
        idx = self._cache.get(key)
        if idx is None:
            idx = torch.tensor([base + k for k in ks for _ in range(c)], dtype=torch.long, device=zf.device)
            self._cache[key] = idx
        return idx


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

    def forward(self, s0, s1, z, active, base=None, nodes=None):
        """``z``: this cell's Z (edges x ops); on the fast path (``base`` given) the
        flat padded Z of its type, this cell's rows starting at ``base``. A list
        ``nodes`` gets this cell's intermediate nodes, their gradients retained
        (for the node identities of the unified view)."""
        states = [self.pre0(s0), self.pre1(s1)]
        n, _, h, w = states[1].shape
        if self.reduction:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        row = len(OPS) + 1
        for j in range(2, 2 + self.topology.steps):
            node = None
            for e, (i, t) in enumerate(self.topology.edges):
                if t != j or not active[e]:
                    continue
                if base is None:
                    y = self.edges[e](states[i], z[e], active[e])
                else:
                    y = self.edges[e].forward_fast(states[i], z, base + e * row, active[e])
                node = y if node is None else node + y
            if node is None:  # every incoming edge is `none`: the node is zero
                node = states[1].new_zeros(n, self.channels, h, w)
                if base is not None:
                    node = node.contiguous(memory_format=torch.channels_last)
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
            # with one input channel the conv's output is not channels-last: made so before its BN
            s0 = s1 = self.stem[1](self.stem[0](x).contiguous(memory_format=torch.channels_last))
        else:
            s0 = s1 = self.stem(x)
        seen = {t: 0 for t in self.types}
        for cell, t in zip(self.cells, self.cell_types):
            if fast:
                s0, s1 = s1, cell(s0, s1, zf[t], active[t], base=seen[t] * per_cell, nodes=nodes)
            else:
                s0, s1 = s1, cell(s0, s1, z[t][seen[t]], active[t], nodes=nodes)
            seen[t] += 1
        return global_mean(s1) if fast else s1.mean(dim=(2, 3))

    def forward(self, x, z, active, nodes=None):
        """Logits; a list ``nodes`` gets each cell's intermediate nodes (see :class:`Cell`)."""
        return self.classifier(self.features(x, z, active, nodes))
