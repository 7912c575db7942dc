"""A cell's forward on the fast path: its edges computed in waves.

An edge can run once its input node is complete, so a cell's edges fall into
waves: the edges that read the cell's two inputs, then those that read node 2
(complete once every edge into it has run), then node 3's, and so on. A wave
runs the ops of all its edges at once, which on a CPU, where a step at the small
presets is dominated by the fixed cost of each of its many tiny kernels, is what
makes the step fast:

- one ReLU per input node, shared by every conv op of the wave that reads it;
  each pool computed once per input node;
- the depthwise convs of one kind (op) as one conv over their concatenated inputs
  and kernels (nas_core.fast.depthwise_conv: dilated ones on polyphase components);
- every pointwise conv of a stage as one grouped conv (nas_core.fast.pointwise_conv);
- the pools by nas_core.fast.pooling's kernels;
- every BatchNorm of a stage as one BN over the concatenated channels (BN with
  batch statistics and ``affine=False`` is per channel, so this is exact, running
  statistics included; nas_core.fast.batch_norm), whose output goes straight into the
  nodes its ops are summed into (``batch_norm_parts``: no per-op output, no adds,
  no split of its gradient).

Across cells, the preprocessing ops that read one tensor (a cell's output is read
by the next two cells, the stem's by the first two) run as one ReLU, one conv and
one BN (:func:`shared_preprocessing`).

Z enters as the weight of an op's final BN (``Z_k * BN(y)`` is ``BN(y)`` with
weight Z_k), read by ``index_select`` from one flat copy of Z per cell type
with a constant 1 after each (cell, edge) row (the weight of the sep convs'
first units), so dL/dZ arrives through the same autograd graph. Every gradient
stays channels-last (nas_core.fast.channels_last). tests/test_fast_network.py checks
the result against the plain path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops import NONE, OPS, ReLUConvBN
from .batch_norm import batch_norm, batch_norm_parts
from .channels_last import cat_channels, split_channels
from .depthwise_conv import depthwise
from .pointwise_conv import pointwise
from .pooling import avg_pool, max_pool

MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = (OPS.index(n) for n in (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))
ONE = len(OPS)  # offset of the constant 1 that follows each row of the flat Z
ROW = len(OPS) + 1
CL = torch.channels_last
INDEX_CACHE = 8192
_INDEX: dict = {}  # (positions, channels, device) -> index tensor (Waves.index)


def _separable(groups):
    """Depthwise then pointwise convs. ``groups``: (input, (depthwise, pointwise, BN)
    units of one op) pairs, the input the channel concatenation of the units' inputs. Each group's
    depthwise convs run as one conv, then every pointwise conv as one grouped conv.
    Each depthwise output is made channels-last (a polyphase one at 2x2 is not), else
    the cat and every BN behind it would run in NCHW order (see nas_core.fast.channels_last)."""
    outs = []
    for x, units in groups:
        dw = units[0][0]
        w = dw.weight if len(units) == 1 else torch.cat([u[0].weight for u in units])
        outs.append(depthwise(x, dw, w).contiguous(memory_format=CL))
    pw = [u[1].weight for _, units in groups for u in units]
    return pointwise(cat_channels(outs), pw[0] if len(pw) == 1 else torch.cat(pw), groups=len(pw))


def _by_op(units):
    """Consecutive runs of units with the same op (the units are sorted by op)."""
    runs = []
    for u in units:
        if runs and runs[-1][0][0] == u[0]:
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


def shared_preprocessing(x, modules, training):
    """The cells' preprocessing ops ``modules`` that read the same tensor x (a cell's
    output is read by the next two cells; the stem's by the first two), those that
    are ReLU-1x1 conv-BN run as one ReLU, one conv and one BN (the fast path's
    kernels, also for a tensor with one such reader: the last cell's pre0). Returns
    one output per module, None for those left to their cell."""
    out = [None] * len(modules)
    fused = [i for i, m in enumerate(modules) if isinstance(m, ReLUConvBN)]
    if not fused:
        return out
    ms = [modules[i] for i in fused]
    y = pointwise(F.relu(x), ms[0][1].weight if len(ms) == 1 else torch.cat([m[1].weight for m in ms]))
    y = batch_norm(y, [m[2] for m in ms], None, training)
    parts = [y] if len(ms) == 1 else split_channels(y, [m[1].out_channels for m in ms])
    for i, part in zip(fused, parts):
        out[i] = part
    return out


class Waves:
    """The fast forward pass of one :class:`nas_core.supernet.Cell` (see the module
    docstring); ``cell.edges[e].ops`` hold the parameters, as on the plain path.
    It keeps references to the cell's modules: a cell whose modules are replaced
    needs a new one."""

    def __init__(self, cell):
        self.cell = cell
        # per edge and op, the modules the fused forward reads (indexing nn containers every step
        # cost a few percent of a small DSNAS step): a pool's BN, the reduction's skip, or the
        # (depthwise, pointwise, BN) stages of a conv op
        self.parts = [[self._parts(k, op) for k, op in enumerate(edge.ops)] for edge in cell.edges]
        self.edges = list(cell.topology.edges)
        self.strides = [edge.stride for edge in cell.edges]

    @staticmethod
    def _parts(k, op):
        if k in (MAX, AVG):
            return op[1]
        if k in (DIL3, DIL5):
            return ((op[1], op[2], op[3]),)
        if k in (SEP3, SEP5):
            return tuple((unit[1], unit[2], unit[3]) for unit in op)
        return op

    @staticmethod
    def index(zf, positions, c):
        """``c`` copies of each position in the flat Z, as an index tensor, cached for
        every cell (DSNAS draws a new set of ops each step: the
        cache is emptied when it holds INDEX_CACHE tensors)."""
        key = (positions, c, zf.device)
        idx = _INDEX.get(key)
        if idx is None:
            if len(_INDEX) >= INDEX_CACHE:
                _INDEX.clear()
            idx = torch.tensor([p for p in positions for _ in range(c)], dtype=torch.long, device=zf.device)
            _INDEX[key] = idx
        return idx

    def forward(self, states, zf, base, active):
        """The cell's intermediate nodes from its two preprocessed inputs ``states``
        (a list, extended in place). ``zf``: the flat Z of the cell's type, this
        cell's rows starting at ``base``; ``active[e]``: the ops that run on edge e."""
        cell = self.cell
        edges, strides = self.edges, self.strides
        n_nodes = 2 + cell.topology.steps
        acc: dict = {}

        def run(sources):
            wave = [e for e, (i, _) in enumerate(edges) if i in sources and active[e]]
            for stride in sorted({strides[e] for e in wave}):
                self._wave(acc, states, [e for e in wave if strides[e] == stride], zf, base, active, stride)

        run((0, 1))
        n, _, h, w = states[1].shape
        for j in range(2, n_nodes):
            node = acc.get(j)
            if node is None:  # every incoming edge is `none`: the node is zero
                s = 2 if cell.reduction else 1
                node = states[1].new_zeros(n, cell.channels, -(-h // s), -(-w // s)).contiguous(memory_format=CL)
            states.append(node)
            if j < n_nodes - 1:
                run((j,))
        return states

    @staticmethod
    def _add(acc, j, y):
        acc[j] = y if j not in acc else acc[j] + y

    def _wave(self, acc, states, wave, zf, base, active, stride):
        cell = self.cell
        c, training = cell.channels, cell.training
        relu, pooled = {}, {}

        def r(i):
            if i not in relu:
                relu[i] = F.relu(states[i])
            return relu[i]

        # stage 1: pools and the reduction's skip (weighted by Z), then the convs' first units
        blocks, bns, pos, target = [], [], [], []
        units = []  # (op index, its (depthwise, pointwise, BN) stages, source node, target node, position of its Z)
        for e in wave:
            i, j = self.edges[e]
            ops, b = self.parts[e], base + e * ROW
            for k in active[e]:
                if k == NONE:  # contributes exactly 0 (and its cost is 0)
                    continue
                if k == MAX or k == AVG:
                    if (k, i) not in pooled:
                        x = states[i]
                        pooled[k, i] = max_pool(x, stride) if k == MAX else avg_pool(x, stride)
                    blocks.append(pooled[k, i])
                    bns.append(ops[k])
                elif k == SKIP:
                    if stride == 1:
                        self._add(acc, j, states[i] * zf.index_select(0, self.index(zf, (b + k,), 1)))
                        continue
                    blocks.append(cat_channels(ops[k].halves(r(i))))  # the reduction's FactorizedReduce
                    bns.append(ops[k].bn)
                elif k in (DIL3, DIL5, SEP3, SEP5):
                    units.append((k, ops[k], i, j, b + k))
                    continue
                else:
                    raise ValueError(f"op {OPS[k]} has no fused form")
                pos.append(b + k)
                target.append(j)
        # dilated convs first (weighted by Z), then the sep convs' first units (weight 1); by op within each
        units.sort(key=lambda u: (u[0] in (SEP3, SEP5), u[0]))
        sep = [u for u in units if u[0] in (SEP3, SEP5)]
        first = [(u[0], u[1][0]) + u[2:] for u in units]  # each op's first stage
        if units:
            inputs: dict = {}  # sources -> their ReLUs' concatenation, made once (DARTS: every op reads the same)

            def cat(sources):
                if sources not in inputs:
                    inputs[sources] = cat_channels([r(i) for i in sources])
                return inputs[sources]

            blocks.append(_separable([(cat(tuple(u[2] for u in run)), [u[1] for u in run]) for run in _by_op(first)]))
            bns += [u[1][2] for u in first]
            pos += [u[4] for u in first[:len(first) - len(sep)]] + [u[4] - u[0] + ONE for u in sep]
            target += [u[3] for u in first[:len(first) - len(sep)]]
        if not blocks:
            return
        weight = None if not target else zf.index_select(0, self.index(zf, tuple(pos), c))
        # one output per target node (its parts summed), then one per run of sep convs (their parts side by side)
        nodes = sorted(set(target))
        runs = _by_op(sep)
        slots = [(nodes.index(j), 0) for j in target] + [(len(nodes) + r, s) for r, run in enumerate(runs)
                                                          for s in range(len(run))]
        outs = batch_norm_parts(blocks, bns, weight, training, c, slots, [1] * len(nodes) + [len(run) for run in runs])
        for j, out in zip(nodes, outs):
            self._add(acc, j, out)
        if not sep:
            return
        # stage 2: the sep convs' second units, weighted by Z; one ReLU per op
        y2 = _separable([(F.relu(piece), [u[1][1] for u in run]) for piece, run in zip(outs[len(nodes):], runs)])
        w2 = zf.index_select(0, self.index(zf, tuple(u[4] for u in sep), c))
        nodes = sorted({u[3] for u in sep})
        outs = batch_norm_parts(y2, [u[1][1][2] for u in sep], w2, training, c, [(nodes.index(u[3]), 0) for u in sep],
                                [1] * len(nodes))
        for j, out in zip(nodes, outs):
            self._add(acc, j, out)
