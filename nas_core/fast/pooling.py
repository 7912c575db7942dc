"""The 3x3 pools of the fast path (nas_core.fast.waves): on a CPU, channels-last
inputs of up to NATIVE_MAX_ELEMENTS elements run nas_core.fast.native's kernels (PyTorch's
channels-last pools took 60-80 us for a 32 x 8 x 8 x 8 input, about ten times their
arithmetic), others ``F.max_pool2d`` and ``F.avg_pool2d``. The same values, and the
max pool's gradient goes to the same input pixel (the first maximum of the window)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native

# measured at 8x8, 8 to 32 channels, batch 32 and 256; larger inputs keep PyTorch's kernels
NATIVE_MAX_ELEMENTS = 1 << 21


class _NativeMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, stride):
        y, idx = native.max_pool(x, stride)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.stride = x.shape, stride
        ctx.mark_non_differentiable(idx)
        return y

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        return native.max_pool_backward(g.contiguous(memory_format=torch.channels_last), idx, ctx.shape,
                                        ctx.stride), None


class _NativeAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, stride):
        ctx.shape, ctx.stride = x.shape, stride
        return native.avg_pool(x, stride)

    @staticmethod
    def backward(ctx, g):
        return native.avg_pool_backward(g.contiguous(memory_format=torch.channels_last), ctx.shape, ctx.stride), None


def _native(x) -> bool:
    return x.dim() == 4 and x.numel() <= NATIVE_MAX_ELEMENTS and native.usable(x)


def max_pool(x, stride: int):
    """``F.max_pool2d(x, 3, stride, 1)``."""
    if _native(x):
        return _NativeMaxPool.apply(x.contiguous(memory_format=torch.channels_last), stride)
    return F.max_pool2d(x, 3, stride, 1)


def avg_pool(x, stride: int):
    """``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)``."""
    if _native(x):
        return _NativeAvgPool.apply(x.contiguous(memory_format=torch.channels_last), stride)
    return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
