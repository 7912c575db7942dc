"""BatchNorm of the fast supernet path (nas_core.waves): several BN modules
applied at once to their concatenated channels, with Z as the weight; on a CPU,
inputs of up to NATIVE_MAX_ELEMENTS elements in training mode run
nas_core.native's kernels (the same sums; at the CPU presets a library call costs
several times the arithmetic), which read the blocks of channels where they are
instead of a concatenated copy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native
from .fused import cat_channels

# measured, forward and backward against F.batch_norm on channels-last inputs: the same at 16k elements,
# 2.7x faster at 330k, 4.5x at 1.8M (PyTorch's channels-last BN backward is slow), the same at 8M
NATIVE_MAX_ELEMENTS = 1 << 22


class _NativeBatchNorm(torch.autograd.Function):
    """Training-mode BN (batch statistics, no bias) of channels-last CPU blocks of channels,
    normalised as their concatenation without making it (its copy, and the copies that
    split its gradient, took longer than the BN); the running statistics moved in place
    (not saved: a later step may move them again before this backward runs)."""

    @staticmethod
    def forward(ctx, weight, running_mean, running_var, momentum, eps, *blocks):
        with torch.no_grad():
            y, mean, invstd = native.batch_norm(blocks, weight, None if running_mean is None else running_mean.data,
                                                None if running_var is None else running_var.data, momentum, eps)
        ctx.save_for_backward(weight, mean, invstd, *blocks)
        return y

    @staticmethod
    def backward(ctx, g):
        weight, mean, invstd, *blocks = ctx.saved_tensors
        gxs, gw = native.batch_norm_backward(blocks, weight, g.contiguous(memory_format=torch.channels_last), mean,
                                             invstd, ctx.needs_input_grad[5:],
                                             weight is not None and ctx.needs_input_grad[0])
        return (gw, None, None, None, None, *gxs)


def batch_norm(x, bns, weight, training):
    """The BNs ``bns`` (affine=False, one per consecutive block of channels) applied at once to
    x, a channels-last tensor or a list of them (their channel concatenation, not made
    on the native path), with ``weight`` multiplying the normalised output. Running
    statistics are updated in each module as its own forward would."""
    blocks = list(x) if isinstance(x, (list, tuple)) else [x]
    b0 = bns[0]
    if len(bns) == 1:
        rm, rv = b0.running_mean, b0.running_var
    else:
        rm = torch.cat([b.running_mean for b in bns])
        rv = torch.cat([b.running_var for b in bns])
    momentum = b0.momentum
    if momentum is None and training:  # a cumulative average, as nn.BatchNorm2d with momentum=None
        momentum = 1.0 / (float(b0.num_batches_tracked) + 1.0)
    momentum = 0.0 if momentum is None else momentum
    if training and sum(b.numel() for b in blocks) <= NATIVE_MAX_ELEMENTS and native.usable(blocks[0]):
        y = _NativeBatchNorm.apply(weight, rm, rv, momentum, b0.eps,
                                   *[b.contiguous(memory_format=torch.channels_last) for b in blocks])
    else:
        y = F.batch_norm(cat_channels(blocks), rm, rv, weight, None, training, momentum, b0.eps)
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
