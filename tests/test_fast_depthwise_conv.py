"""nas_core.fast.depthwise_conv: the native depthwise kernels against PyTorch's
convolution, output and both gradients in float64 (relative 1e-12), over strides,
dilations, kernel sizes, channel counts that fill no vector, rows of 8, 4 and 1
pixels' blocks and inputs smaller than the kernel (the taps that read only
padding dropped)."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nas_core.fast import depthwise_conv, native

CL = torch.channels_last


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


CASES = [(n, c, h, w, k, s, d)
         for (n, c, h, w), k, s, d in itertools.product([(2, 8, 8, 8), (3, 5, 7, 6), (1, 13, 2, 3), (4, 1, 1, 1),
                                                         (2, 16, 5, 13), (2, 8, 9, 2)],
                                                        [3, 5], [1, 2], [1, 2])]


@pytest.mark.parametrize("n,c,h,w,k,s,d", CASES)
@pytest.mark.parametrize("padding", ["same", "none"])
def test_depthwise_kernels_equal_pytorch_in_float64(n, c, h, w, k, s, d, padding):
    g = torch.Generator().manual_seed(hash((n, c, h, w, k, s, d)) % 2**31)
    pad = (d * (k - 1) // 2,) * 2 if padding == "same" else (0, 0)
    if h + 2 * pad[0] < d * (k - 1) + 1 or w + 2 * pad[1] < d * (k - 1) + 1:
        pytest.skip("no output pixel")
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    wt = torch.randn(c, 1, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, wt, None, s, pad, d, c)
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    out = depthwise_conv._NativeDepthwise.apply(x, wt, s, pad, d)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    assert _rel(ref, out) < 1e-12
    for a, b, what in zip(torch.autograd.grad(ref, (x, wt), dy), torch.autograd.grad(out, (x, wt), dy), "xw"):
        assert _rel(a, b) < 1e-12, what



@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("k,d", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_the_fast_paths_depthwise_runs_native_and_drops_taps_that_read_only_padding(size, k, d, monkeypatch):
    """depthwise_conv.depthwise on a small CPU input calls the native kernel; on an input
    smaller than the kernel's reach, with the outer taps left out (their gradient is
    exactly 0), and the same output and gradients."""
    conv = torch.nn.Conv2d(6, 6, k, 1, d * (k - 1) // 2, d, groups=6, bias=False).double()
    x = torch.randn(3, 6, size, size, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    calls = []
    forward = native.depthwise_forward
    monkeypatch.setattr(native, "depthwise_forward", lambda *a, **k: calls.append(a[1].shape) or forward(*a, **k))
    out = depthwise_conv.depthwise(x, conv)
    assert calls, "the native kernel did not run"
    ref = F.conv2d(x, conv.weight, None, 1, conv.padding, d, 6)
    assert _rel(ref, out) < 1e-12
    dy = torch.randn_like(ref)
    (gx, gw), (rx, rw) = torch.autograd.grad(out, (x, conv.weight), dy), torch.autograd.grad(ref, (x, conv.weight), dy)
    assert _rel(rx, gx) < 1e-12 and _rel(rw, gw) < 1e-12
    live = calls[0][-1]
    assert live == min(k, 2 * ((size - 1) // d) + 1)  # only taps that read a pixel of some output
    dead = (k - live) // 2
    if dead:
        assert gw[..., :dead, :].abs().max() == 0 and gw[..., :, :dead].abs().max() == 0



@pytest.mark.parametrize("k,d", [(3, 2), (5, 2), (5, 1)])
def test_a_kernel_that_keeps_its_rows_and_loses_its_columns_on_a_narrow_input(k, d):
    """On an 8x2 input the taps that read only padding go from the columns alone (a
    dilated 3x3 kernel becomes 3x1): the native path with the shrunk kernel, as PyTorch's."""
    conv = torch.nn.Conv2d(8, 8, k, 1, d * (k - 1) // 2, d, groups=8, bias=False).double()
    x = torch.randn(2, 8, 8, 2, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    out = depthwise_conv.depthwise(x, conv)
    ref = F.conv2d(x, conv.weight, None, 1, conv.padding, d, 8)
    assert _rel(ref, out) < 1e-12
    dy = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, (x, conv.weight), dy), torch.autograd.grad(out, (x, conv.weight), dy)):
        assert _rel(a, b) < 1e-12


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [3, 5])
def test_depthwise_kernel_cropped_to_small_inputs_is_exact(size, k):
    """A kernel larger than its input drops the taps that read only padding: the same
    output and gradients (float64), the dropped taps' gradient exactly 0."""
    g = torch.Generator().manual_seed(size * 10 + k)
    x = torch.randn(4, 6, size, size, generator=g, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 1, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(4, 6, size, size, generator=g, dtype=torch.float64)
    pad = ((k - 1) // 2,) * 2
    ref = torch.nn.functional.conv2d(x, w, None, 1, pad, 1, 6)
    out = depthwise_conv._conv_same(x, w, pad, 6)
    assert _rel(ref.detach(), out.detach()) < 1e-10
    for a, b_, what in zip(torch.autograd.grad(ref, (x, w), dy), torch.autograd.grad(out, (x, w), dy), ("x", "w")):
        assert _rel(a, b_) < 1e-10, what
