"""Depthwise convolutions of the fast path (nas_core.fast.waves): the
same sums as ``F.conv2d(x, w, groups=C)``, arranged to avoid the CPU's slow kernels.

On a CPU, inputs of up to a size that depends on the kernel (``_native_limit``) run the
compiled kernels of nas_core.fast.native (at the CPU presets a library call costs several times the
conv's arithmetic). Otherwise, dilated convs with 'same' padding run as dense convs on the polyphase components
of their input; a kernel larger than its input drops the taps that only read
padding; a stride-1 conv on a large input can compute its input gradient as a
forward conv (``_DepthwiseConv``, above ``DEPTHWISE_SPLIT_BACKWARD_MIN`` elements).
tests/test_fast_network.py checks each against the plain path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native

# inputs up to this size run nas_core.fast.native's kernels on a CPU. Measured forward and both gradients
# against PyTorch's (oneDNN's) at 8x8 to 32x32, 16 to 128 channels: a 3x3 kernel the same up to 1M
# elements, 1.4-1.7x slower at 3-4M; a 5x5 or dilated one 1.3-3x faster up to 1M and still faster at 4M
NATIVE_MAX_ELEMENTS = 1 << 20
NATIVE_MAX_ELEMENTS_WIDE = 1 << 22  # a kernel of 5x5 taps or dilated
NATIVE_MAX_ELEMENTS_STRIDED = 1 << 17  # stride 2 (measured at C=16, 32x32, batch 64: oneDNN 2-4x faster)


def _native_limit(stride: int, dilation: int, taps: int) -> int:
    if stride != 1:
        return NATIVE_MAX_ELEMENTS_STRIDED
    return NATIVE_MAX_ELEMENTS_WIDE if dilation > 1 or taps >= 25 else NATIVE_MAX_ELEMENTS


class _NativeDepthwise(torch.autograd.Function):
    """A depthwise conv of a channels-last CPU tensor by nas_core.fast.native's kernels."""

    @staticmethod
    def forward(ctx, x, w, stride, padding, dilation):
        ctx.save_for_backward(x, w)
        ctx.conv = (stride, padding, dilation)
        return native.depthwise_forward(x, w, stride, padding, dilation)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = g.contiguous(memory_format=torch.channels_last)
        gx = native.depthwise_input_grad(w, g, x.shape, *ctx.conv) if ctx.needs_input_grad[0] else None
        gw = native.depthwise_weight_grad(x, g, w.shape, *ctx.conv) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None, None


def _live_taps(w, padding, dilation, size):
    """For a stride-1 'same' conv, the kernel without the outer taps that read only
    padding on an input of ``size`` (h, w), and the padding that goes with it:
    exactly the same sums (the dropped taps' gradients stay exactly 0)."""
    for axis, (k, p, n) in enumerate(zip(w.shape[-2:], padding, size)):
        dead = sum(1 for a in range(k) if a * dilation - p <= -n)
        if 0 < dead and dead == sum(1 for a in range(k) if a * dilation - p >= n):
            w = w.narrow(2 + axis, dead, k - 2 * dead)
            padding = padding[:axis] + (p - dead * dilation,) + padding[axis + 1:]
    return w, padding


def _native(x, conv, w):
    """``conv`` with weight w by nas_core.fast.native, or None where it does not apply."""
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    if sh != sw or dh != dw or x.numel() > _native_limit(sh, dh, w.shape[-2] * w.shape[-1]) or not native.usable(x):
        return None
    padding = tuple(conv.padding)
    if sh == 1 and all(2 * p == dh * (k - 1) for k, p in zip(w.shape[-2:], padding)):
        w, padding = _live_taps(w, padding, dh, x.shape[-2:])
    return _NativeDepthwise.apply(x.contiguous(memory_format=torch.channels_last), w, sh, padding, dh)


class _DepthwiseConv(torch.autograd.Function):
    """A stride-1 depthwise conv whose backward computes the input gradient as a
    forward conv with the flipped kernel (the CPU's fused backward of a depthwise
    conv is several times slower than its forward) and the weight gradient alone."""

    @staticmethod
    def forward(ctx, x, w, padding, groups):
        ctx.save_for_backward(x, w)
        ctx.padding, ctx.groups = padding, groups
        return F.conv2d(x, w, None, 1, padding, 1, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = F.conv2d(g, w.flip(-2, -1), None, 1, ctx.padding, 1, ctx.groups)
        if ctx.needs_input_grad[1]:
            gw = _depthwise_weight_grad(g, x, w, ctx.padding, ctx.groups)
        return gx, gw, None, None


def _weight_grad(g, x, w, padding, groups):
    return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], list(padding), [1, 1], False, [0, 0], groups,
                                               [False, True, False])[1]


def _depthwise_weight_grad(g, x, w, padding, groups):
    """dL/dw of a stride-1 depthwise conv. A 5x5 kernel's is taken as four 3x3 ones:
    the kernel padded to 6x6 with zeros is four 3x3 blocks, each a valid 3x3 conv
    of the input shifted by its offset (the CPU's 3x3 kernel is several times
    faster than its 5x5 one)."""
    if w.shape[-2:] != (5, 5) or tuple(padding) != (2, 2):
        return _weight_grad(g, x, w, padding, groups)
    h, wd = x.shape[-2:]
    xp = F.pad(x, (2, 3, 2, 3))
    gw = w.new_zeros(w.shape[0], w.shape[1], 6, 6)
    w3 = w[:, :, :3, :3]  # (its shape only)
    for qa in (0, 3):
        for qb in (0, 3):
            xs = xp[:, :, qa:qa + h + 2, qb:qb + wd + 2].contiguous(memory_format=torch.channels_last)
            gw[:, :, qa:qa + 3, qb:qb + 3] = _weight_grad(g, xs, w3, (0, 0), groups)
    return gw[:, :, :5, :5]


# inputs with fewer elements use the fused backward. Since every gradient is channels-last (fast.channels_last),
# the fused one is faster at every benchmarked size (10% of a DARTS step at 8x8, 23% at 32x32, batch 64, C=16):
# the split one is kept for larger inputs, where it has not been measured against it
DEPTHWISE_SPLIT_BACKWARD_MIN = 1 << 24


def _conv_same(x, w, padding, groups):
    """Stride-1, dilation-1 depthwise conv with 'same' padding. On an input smaller
    than the kernel the taps that only ever read padding are dropped (a 5x5 kernel
    on 2x2 is its central 3x3, on 1x1 its centre): exactly the same sums, and their
    gradient stays exactly 0; the CPU's kernel is slowest on such inputs."""
    if padding == ((w.shape[-2] - 1) // 2, (w.shape[-1] - 1) // 2):
        w, padding = _live_taps(w, tuple(padding), 1, x.shape[-2:])
    if (padding == ((w.shape[-2] - 1) // 2, (w.shape[-1] - 1) // 2) and torch.is_grad_enabled()
            and x.numel() >= DEPTHWISE_SPLIT_BACKWARD_MIN):
        return _DepthwiseConv.apply(x, w, padding, groups)
    return F.conv2d(x, w, None, 1, padding, 1, groups)


def depthwise(x, conv, weight=None):
    """The depthwise conv ``conv`` (its stride, padding and dilation) with ``weight``
    (default its own; the concatenated kernels of several such convs, applied to
    their concatenated inputs, run as one conv). Dilation 2 with 'same' padding runs
    as a dense conv on the polyphase components of x (the even/odd rows and
    columns): exactly the same sums, without the CPU's slow dilated kernels (their
    weight gradient took up to 70x a dense one's)."""
    w = conv.weight if weight is None else weight
    y = _native(x, conv, w)
    if y is not None:
        return y
    groups = w.shape[0]
    if conv.dilation == (2, 2) and conv.padding == (w.shape[-2] - 1, w.shape[-1] - 1):
        pad = (conv.padding[0] // 2, conv.padding[1] // 2)
        n, c, h, wd = x.shape
        if conv.stride == (2, 2):  # only the even rows and columns are read
            x0 = x[:, :, ::2, ::2].contiguous(memory_format=torch.channels_last)
            return _conv_same(x0, w, pad, groups)
        if conv.stride == (1, 1) and h % 2 == 0 and wd % 2 == 0:
            # (n, c, h/2, r, w/2, s) -> (r, s, n, h/2, w/2, c): a batch of 4n phases, channels last
            ph = x.reshape(n, c, h // 2, 2, wd // 2, 2).permute(3, 5, 0, 2, 4, 1)
            ph = ph.reshape(4 * n, h // 2, wd // 2, c).permute(0, 3, 1, 2)
            y = _conv_same(ph, w, pad, groups)  # (4n, c, h/2, w/2)
            y = y.permute(0, 2, 3, 1).reshape(2, 2, n, h // 2, wd // 2, c).permute(2, 3, 0, 4, 1, 5)
            return y.reshape(n, h, wd, c).permute(0, 3, 1, 2)
    if conv.stride == (1, 1) and conv.dilation == (1, 1):
        return _conv_same(x, w, conv.padding, groups)
    return F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, groups)
