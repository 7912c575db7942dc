"""Grouped 1x1 (pointwise) convolutions of the fast path: on a CPU,
inputs of up to NATIVE_MAX_ELEMENTS elements run nas_core.fast.native's kernels (the
same sums; at the CPU presets a library call costs several times the conv's
arithmetic), others ``F.conv2d``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native

# above it oneDNN's kernels are faster (forward and both gradients, 4 to 16 groups at 8x8 to 32x32: the
# same at 1M elements, native 1.2x faster at 2M, 2.5-3x slower at 3M and more)
NATIVE_MAX_ELEMENTS = 1 << 21


class _NativePointwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, groups):
        ctx.save_for_backward(x, w)
        ctx.groups = groups
        return native.pointwise_forward(x, w, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = g.contiguous(memory_format=torch.channels_last)
        gx = native.pointwise_input_grad(w, g, ctx.groups) if ctx.needs_input_grad[0] else None
        gw = native.pointwise_weight_grad(x, g, w.shape, ctx.groups) if ctx.needs_input_grad[1] else None
        return gx, gw, None


def pointwise(x, w, groups: int = 1):
    """``F.conv2d(x, w, groups=groups)`` for a 1x1 kernel w (stride 1, no padding)."""
    if x.numel() <= NATIVE_MAX_ELEMENTS and native.usable(x):
        return _NativePointwise.apply(x.contiguous(memory_format=torch.channels_last), w, groups)
    return F.conv2d(x, w, None, 1, 0, 1, groups)
