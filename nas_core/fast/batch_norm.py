"""BatchNorm of the fast path (nas_core.fast.waves): several BN modules
applied at once to their concatenated channels, with Z as the weight; on a CPU,
inputs in training mode of up to NATIVE_MAX_ELEMENTS elements (of any size with no
graph) run nas_core.fast.native's kernels (the same sums; at the CPU presets a library
call costs several times the arithmetic), which read the blocks of channels where they
are instead of a concatenated copy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native
from .channels_last import cat_channels

# measured, forward and backward against F.batch_norm on channels-last inputs: the same at 16k elements,
# 2.7x faster at 330k, 4.5x at 1.8M (PyTorch's channels-last BN backward is slow), the same at 8M. A forward
# with no graph (the held-out evaluation, batch 256) runs the kernels at any size: it needs no concatenation
# of the blocks and no sums of the parts, which on the library's path cost more than the BN
# (benchmarks/evaluation.py)
NATIVE_MAX_ELEMENTS = 1 << 22
CL = torch.channels_last


class _NativeBatchNorm(torch.autograd.Function):
    """Training-mode BN (batch statistics, no bias) of channels-last CPU blocks of channels,
    normalised as their concatenation without making it (its copy, and the copies that
    split its gradient, took longer than the BN); the running statistics moved in place
    (not saved: a later step may move them again before this backward runs)."""

    @staticmethod
    def forward(ctx, weight, running, momentum, eps, *blocks):
        with torch.no_grad():
            y, mean, invstd = native.batch_norm(blocks, weight, running, momentum, eps)
        ctx.save_for_backward(weight, mean, invstd, *blocks)
        return y

    @staticmethod
    def backward(ctx, g):
        weight, mean, invstd, *blocks = ctx.saved_tensors
        gxs, gw = native.batch_norm_backward(blocks, weight, g.contiguous(memory_format=torch.channels_last), mean,
                                             invstd, ctx.needs_input_grad[4:],
                                             weight is not None and ctx.needs_input_grad[0])
        return (gw, None, None, None, *gxs)


class _NativeBatchNormParts(torch.autograd.Function):
    """:class:`_NativeBatchNorm` whose output goes by parts of c channels into the outputs
    that use them (nas_core.fast.native.batch_norm_parts): parts that are summed are added by
    the kernel, and each part's gradient is read where it arrives (no split, no copies)."""

    @staticmethod
    def forward(ctx, weight, running, momentum, eps, layout, *blocks):
        c, slots, n_slots = layout
        with torch.no_grad():
            outs, mean, invstd = native.batch_norm_parts(blocks, weight, running, momentum, eps, c, slots, n_slots)
        ctx.save_for_backward(weight, mean, invstd, *blocks)
        ctx.layout = layout
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        weight, mean, invstd, *blocks = ctx.saved_tensors
        c, slots, n_slots = ctx.layout
        x = blocks[0]
        grads = [torch.zeros((x.shape[0], k * c, *x.shape[2:]), dtype=x.dtype, memory_format=CL) if g is None
                 else g.contiguous(memory_format=CL) for g, k in zip(grads, n_slots)]
        gxs, gw = native.batch_norm_parts_backward(blocks, weight, grads, c, slots, mean, invstd,
                                                   ctx.needs_input_grad[5:],
                                                   weight is not None and ctx.needs_input_grad[0])
        return (gw, None, None, None, None, *gxs)


def _momentum(bns, training) -> float:
    """The momentum of the running statistics' update, as nn.BatchNorm2d's (momentum None: a cumulative average)."""
    b0 = bns[0]
    momentum = b0.momentum
    if momentum is None and training:
        momentum = 1.0 / (float(b0.num_batches_tracked) + 1.0)
    return 0.0 if momentum is None else momentum


def _running(bns):
    """The running statistics of ``bns`` as one pair of tensors (for F.batch_norm)."""
    if len(bns) == 1:
        return bns[0].running_mean, bns[0].running_var
    return torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])


def _native_running(bns):
    """Each module's running statistics (means, variances), or None if not kept: the native kernels move
    them in place, with no concatenation of them to make and split back. Through the data pointers, as
    inside BN's own kernel, the buffers' version counters do not move (autograd saved them in graphs
    that may still be waiting for backward)."""
    if bns[0].running_mean is None:
        return None
    return [b.running_mean for b in bns], [b.running_var for b in bns]


def _counted(bns, training):
    """Each module's count of batches moved, as its own forward would."""
    if training:
        torch._foreach_add_([b.num_batches_tracked for b in bns], 1)


def _moved(bns, rm, rv, training):
    """Each module's running statistics (updated in ``rm``, ``rv`` by F.batch_norm) and count moved as its
    own forward would."""
    if training:
        with torch.no_grad():
            if len(bns) > 1:
                sizes = [b.num_features for b in bns]
                # through .data: the version counters do not move (see _native_running)
                torch._foreach_copy_([b.running_mean.data for b in bns], list(rm.split(sizes)))
                torch._foreach_copy_([b.running_var.data for b in bns], list(rv.split(sizes)))
            _counted(bns, training)


def _native_ok(blocks, training, graph: bool | None = None) -> bool:
    """Whether the kernels take these blocks: in training mode, up to NATIVE_MAX_ELEMENTS
    for a forward that builds a graph (``graph``; None: as autograd is now), at any size
    for one that does not."""
    graph = torch.is_grad_enabled() if graph is None else graph
    small = sum(b.numel() for b in blocks) <= NATIVE_MAX_ELEMENTS
    return training and (small or not graph) and native.usable(blocks[0])


def batch_norm(x, bns, weight, training):
    """The BNs ``bns`` (affine=False, one per consecutive block of channels) applied at once to
    x, a channels-last tensor or a list of them (their channel concatenation, not made
    on the native path), with ``weight`` multiplying the normalised output. Running
    statistics are updated in each module as its own forward would."""
    blocks = list(x) if isinstance(x, (list, tuple)) else [x]
    momentum = _momentum(bns, training)
    if _native_ok(blocks, training):
        y = _NativeBatchNorm.apply(weight, _native_running(bns), momentum, bns[0].eps,
                                   *[b.contiguous(memory_format=CL) for b in blocks])
        _counted(bns, training)
        return y
    rm, rv = _running(bns)
    y = F.batch_norm(cat_channels(blocks), rm, rv, weight, None, training, momentum, bns[0].eps)
    _moved(bns, rm, rv, training)
    return y


def batch_norm_parts(x, bns, weight, training, c: int, slots, n_slots):
    """:func:`batch_norm` whose output is used by parts of c channels: part q (channels q c ..
    q c + c - 1) goes to ``slots[q]`` = (o, s), slot s of output o, which has ``n_slots[o]``
    slots; parts that share a slot are added (a wave's ops into one node). Returns the outputs,
    channels-last (N, n_slots[o] c, H, W). On the native path no BN output is made (nor split,
    nor its gradient put back together); otherwise :func:`batch_norm`'s output is split and summed."""
    blocks = list(x) if isinstance(x, (list, tuple)) else [x]
    slots, n_slots = tuple(slots), tuple(n_slots)
    if _native_ok(blocks, training):
        outs = _NativeBatchNormParts.apply(weight, _native_running(bns), _momentum(bns, training), bns[0].eps,
                                           (c, slots, n_slots), *[b.contiguous(memory_format=CL) for b in blocks])
        _counted(bns, training)
        return list(outs)
    parts = batch_norm(blocks, bns, weight, training).split(c, dim=1)
    into = [[None] * k for k in n_slots]
    for part, (o, s) in zip(parts, slots):
        into[o][s] = part if into[o][s] is None else into[o][s] + part
    return [cat_channels([p.contiguous(memory_format=CL) for p in out]) for out in into]
