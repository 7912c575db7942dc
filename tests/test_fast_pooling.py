"""nas_core.fast.pooling: the native 3x3 pools against PyTorch's, ties and NaNs
included, and where they run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas_core.fast import native, pooling

CL = torch.channels_last


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("n,c,h,w", [(2, 8, 8, 8), (3, 5, 7, 6), (1, 13, 2, 3), (2, 4, 1, 1)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("values", ["random", "ties", "nan"])
def test_pool_kernels_equal_pytorch_in_float64(n, c, h, w, stride, values):
    """Max and average 3x3 pools: outputs and input gradients as PyTorch's, the max pool's
    gradient at the same pixel where a window holds equal values (small integers, or all
    zeros as a node that every `none` leaves) or a NaN."""
    g = torch.Generator().manual_seed(n * 100 + c * 10 + h + stride)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    if values == "ties":
        x = torch.randint(0, 3, x.shape, generator=g).double()
        x[0] = 0
    elif values == "nan":
        x.view(-1)[:: 7] = float("nan")
    x = x.contiguous(memory_format=CL).requires_grad_()
    for ours, ref in ((pooling.max_pool, lambda t: F.max_pool2d(t, 3, stride, 1)),
                      (pooling.avg_pool, lambda t: F.avg_pool2d(t, 3, stride, 1, count_include_pad=False))):
        a, b = ours(x, stride), ref(x)
        assert a.shape == b.shape and a.is_contiguous(memory_format=CL)
        assert torch.equal(a.isnan(), b.isnan()) and torch.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)
        dy = torch.randn(b.shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
        (ga,), (gb,) = torch.autograd.grad(a, (x,), dy), torch.autograd.grad(b, (x,), dy)
        assert torch.allclose(ga, gb, rtol=1e-12, atol=1e-300, equal_nan=True)



def test_pools_run_native_on_small_cpu_inputs_only(monkeypatch):
    calls = []
    for name in ("max_pool", "avg_pool"):
        f = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, f=f: calls.append(1) or f(*a))
    x = torch.randn(2, 8, 8, 8).contiguous(memory_format=CL)
    pooling.max_pool(x, 1), pooling.avg_pool(x, 2)
    assert len(calls) == 2
    big = torch.randn(1, 4, 1, pooling.NATIVE_MAX_ELEMENTS // 4 + 1)
    assert torch.equal(pooling.max_pool(big, 1), F.max_pool2d(big, 3, 1, 1))
    with native.native_kernels(False):
        pooling.avg_pool(x, 1)
    assert len(calls) == 2
