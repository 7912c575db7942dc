"""nas_core.fast.pointwise_conv: the native grouped 1x1 kernels against PyTorch's
convolution, output and both gradients in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas_core.fast import pointwise_conv

CL = torch.channels_last


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("n,groups,ci,co,h,w", [(2, 1, 8, 8, 8, 8), (3, 5, 8, 8, 3, 5), (1, 2, 13, 16, 2, 3),
                                                (2, 3, 16, 5, 4, 4), (1, 1, 3, 3, 1, 1), (2, 4, 9, 24, 3, 3)])
def test_pointwise_kernels_equal_pytorch_in_float64(n, groups, ci, co, h, w):
    """Channel counts that fill whole vectors and ones that do not, pixel counts not a
    multiple of four, one group and several."""
    g = torch.Generator().manual_seed(n * 1000 + groups * 100 + ci * 10 + co)
    x = torch.randn(n, groups * ci, h, w, generator=g, dtype=torch.float64).contiguous(
        memory_format=CL).requires_grad_()
    wt = torch.randn(groups * co, ci, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, wt, None, 1, 0, 1, groups)
    out = pointwise_conv.pointwise(x, wt, groups)
    assert out.is_contiguous(memory_format=CL) and _rel(ref, out) < 1e-12
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for a, b, what in zip(torch.autograd.grad(ref, (x, wt), dy), torch.autograd.grad(out, (x, wt), dy), "xw"):
        assert _rel(a, b) < 1e-12, what
