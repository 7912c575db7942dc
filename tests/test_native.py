"""nas_core.native's compiled kernels against PyTorch's (depthwise and pointwise convolutions, BN):
outputs and both gradients in float64 (relative 1e-12) over strides,
dilations, kernel sizes, channel counts that fill no vector, rows of 8, 4 and 1
pixels' blocks and inputs smaller than the kernel; the pools, ties and NaNs
included; float32 to rounding; and what happens when they cannot be built."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

from nas_core import batchnorm, depthwise, native, pointwise

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
    out = depthwise._NativeDepthwise.apply(x, wt, s, pad, d)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    assert _rel(ref, out) < 1e-12
    for a, b, what in zip(torch.autograd.grad(ref, (x, wt), dy), torch.autograd.grad(out, (x, wt), dy), "xw"):
        assert _rel(a, b) < 1e-12, what


@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("k,d", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_the_fast_paths_depthwise_runs_native_and_drops_taps_that_read_only_padding(size, k, d, monkeypatch):
    """depthwise.depthwise on a small CPU input calls the native kernel; on an input
    smaller than the kernel's reach, with the outer taps left out (their gradient is
    exactly 0), and the same output and gradients."""
    conv = torch.nn.Conv2d(6, 6, k, 1, d * (k - 1) // 2, d, groups=6, bias=False).double()
    x = torch.randn(3, 6, size, size, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    calls = []
    forward = native.depthwise_forward
    monkeypatch.setattr(native, "depthwise_forward", lambda *a, **k: calls.append(a[1].shape) or forward(*a, **k))
    out = depthwise.depthwise(x, conv)
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
    out = pointwise.pointwise(x, wt, groups)
    assert out.is_contiguous(memory_format=CL) and _rel(ref, out) < 1e-12
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for a, b, what in zip(torch.autograd.grad(ref, (x, wt), dy), torch.autograd.grad(out, (x, wt), dy), "xw"):
        assert _rel(a, b) < 1e-12, what


@pytest.mark.parametrize("n,c,h,w", [(8, 8, 4, 4), (3, 13, 2, 3), (2, 1, 1, 1)])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
@pytest.mark.parametrize("split", [None, (1, 2), (2, 0)])
def test_batch_norm_kernels_equal_pytorch_in_float64(n, c, h, w, weighted, momentum, split):
    """Output, both gradients and the running statistics, against F.batch_norm in training mode;
    of one tensor, or of blocks of its channels (``split``: the first and the second one's
    channels, the rest a third; a block that needs no gradient included) whose concatenation is
    never made."""
    g = torch.Generator().manual_seed(n * 100 + c + int(weighted))
    x = (3 * torch.randn(n, c, h, w, generator=g, dtype=torch.float64) + 1).contiguous(
        memory_format=CL).requires_grad_()
    wt = torch.rand(c, generator=g, dtype=torch.float64).requires_grad_() if weighted else None
    start = (torch.rand(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g, dtype=torch.float64) + 1)
    stats = {k: tuple(s.clone() for s in start) for k in ("ref", "native")}
    ref = F.batch_norm(x, *stats["ref"], wt, None, True, momentum, 1e-5)
    if split is None or c < sum(split) + 1:
        blocks = [x]
    else:
        sizes = [*split, c - sum(split)]
        blocks = [b.detach().contiguous(memory_format=CL).requires_grad_(i != 1)
                  for i, b in enumerate(x.split(sizes, dim=1)) if b.shape[1]]
    running = tuple([s] for s in stats["native"])  # one module's (means, variances)
    out = batchnorm._NativeBatchNorm.apply(wt, running, momentum, 1e-5, *blocks)
    assert _rel(ref, out) < 1e-12
    for a, b in zip(stats["ref"], stats["native"]):
        assert _rel(a, b) < 1e-12
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    leaves = [b for b in blocks if b.requires_grad] + ([wt] if weighted else [])
    ref_leaves = (x, wt) if weighted else (x,)
    want = torch.autograd.grad(ref, ref_leaves, dy)
    got = torch.autograd.grad(out, leaves, dy)
    if len(blocks) > 1:
        offsets = [0, *itertools.accumulate(b.shape[1] for b in blocks)]
        want = [want[0][:, offsets[i]:offsets[i + 1]] for i, b in enumerate(blocks) if b.requires_grad] + list(want[1:])
    for a, b in zip(want, got):
        assert _rel(a, b) < 1e-10


@pytest.mark.parametrize("c,n,h,w", [(8, 4, 4, 4), (3, 3, 2, 3), (5, 2, 3, 1), (8, 16, 8, 8), (3, 7, 9, 11)])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("native_on", [True, False])
def test_batch_norm_by_parts_equals_the_sums_of_a_batch_norms_parts_in_float64(c, n, h, w, weighted, native_on):
    """batchnorm.batch_norm_parts (native kernels, or PyTorch's) against F.batch_norm of the
    blocks' concatenation whose parts of c channels are then summed into outputs or placed side
    by side: outputs, gradients of every block and of the weight, running statistics (the
    statistics come in chunks of rows: the larger inputs have several, and a partial one)."""
    g = torch.Generator().manual_seed(c * 10 + n + int(weighted))
    sizes = [1, 3, 2]  # parts per block
    slots = [(0, 0), (1, 0), (0, 0), (2, 1), (1, 0), (2, 0)]  # part -> (output, slot): sums, and two side by side
    n_slots = [1, 1, 2]
    blocks = [(3 * torch.randn(n, k * c, h, w, generator=g, dtype=torch.float64) + 1).contiguous(memory_format=CL)
              .requires_grad_(i != 1) for i, k in enumerate(sizes)]
    wt = torch.rand(6 * c, generator=g, dtype=torch.float64).requires_grad_() if weighted else None
    bns = {k: [torch.nn.BatchNorm2d(c, affine=False, momentum=0.3).double() for _ in range(6)] for k in ("ref", "got")}
    for a, b in zip(*bns.values()):
        a.running_mean.uniform_(generator=g)
        b.load_state_dict(a.state_dict())
    rm = torch.cat([b.running_mean for b in bns["ref"]])
    rv = torch.cat([b.running_var for b in bns["ref"]])
    parts = F.batch_norm(torch.cat(blocks, dim=1), rm, rv, wt, None, True, 0.3, 1e-5).split(c, dim=1)
    want = [parts[0] + parts[2], parts[1] + parts[4], torch.cat([parts[5], parts[3]], dim=1)]
    with native.native_kernels(native_on):
        got = batchnorm.batch_norm_parts(blocks, bns["got"], wt, True, c, slots, n_slots)
    for a, b in zip(want, got):
        assert b.is_contiguous(memory_format=CL) and _rel(a, b) < 1e-12
    for i, b in enumerate(bns["got"]):
        assert _rel(rm[i * c:(i + 1) * c], b.running_mean) < 1e-12
        assert _rel(rv[i * c:(i + 1) * c], b.running_var) < 1e-12
        assert int(b.num_batches_tracked) == 1
    dy = [torch.randn(a.shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL) for a in want]
    leaves = [b for b in blocks if b.requires_grad] + ([wt] if weighted else [])
    for a, b in zip(torch.autograd.grad(want, leaves, dy), torch.autograd.grad(got, leaves, dy)):
        assert _rel(a, b) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_norm_moves_running_statistics_kept_apart_from_the_blocks_boundaries(dtype):
    """The kernels move each module's running statistics in place, in the channels' order, whatever
    the blocks: here modules of 4 and 8 channels over blocks of 5 and 7 (a module spans two blocks),
    against F.batch_norm's update of the concatenation (float32: the same operations, so equal)."""
    g = torch.Generator().manual_seed(3)
    blocks = [(2 * torch.randn(6, k, 4, 4, generator=g, dtype=dtype) + 1).contiguous(memory_format=CL) for k in (5, 7)]
    rm, rv = torch.rand(12, generator=g, dtype=dtype), torch.rand(12, generator=g, dtype=dtype) + 0.5
    means, variances = [rm[:4].clone(), rm[4:].clone()], [rv[:4].clone(), rv[4:].clone()]
    want = F.batch_norm(torch.cat(blocks, dim=1), rm, rv, None, None, True, 0.3, 1e-5)
    y, _, _ = native.batch_norm(blocks, None, (means, variances), 0.3, 1e-5)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _rel(want, y) < tol
    assert _rel(rm, torch.cat(means)) < tol and _rel(rv, torch.cat(variances)) < tol
    with pytest.raises(ValueError, match="running statistics of"):
        native.batch_norm(blocks, None, ([rm[:4]], [rv[:4]]), 0.3, 1e-5)


def test_batch_norm_of_one_value_per_channel_fails_as_pytorchs_does():
    x = torch.randn(1, 4, 1, 1)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x, None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        native.batch_norm([x], None, None, 0.1, 1e-5)


def test_float32_agrees_to_rounding():
    x = torch.randn(32, 8, 8, 8).contiguous(memory_format=CL)
    w = torch.randn(8, 1, 5, 5)
    assert _rel(F.conv2d(x, w, None, 1, 2, 1, 8), native.depthwise_forward(x, w, 1, (2, 2), 1)) < 1e-5
    w1 = torch.randn(24, 4, 1, 1)
    x1 = torch.randn(32, 8, 8, 8).contiguous(memory_format=CL)
    assert _rel(F.conv2d(x1, w1, None, 1, 0, 1, 2), native.pointwise_forward(x1, w1, 2)) < 1e-5


def test_large_inputs_cuda_other_dtypes_and_native_off_use_pytorch(monkeypatch):
    conv = torch.nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False)
    for name in ("depthwise_forward", "pointwise_forward"):
        monkeypatch.setattr(native, name, lambda *a, **k: pytest.fail("native kernel called"))
    big = torch.randn(1, 4, 1, depthwise.NATIVE_MAX_ELEMENTS // 4 + 1).contiguous(memory_format=CL)
    depthwise.depthwise(big, conv)
    pointwise.pointwise(torch.randn(1, 4, 1, pointwise.NATIVE_MAX_ELEMENTS // 4 + 1), torch.randn(4, 4, 1, 1))
    with native.native_kernels(False):
        assert not native.usable(torch.zeros(1))
        depthwise.depthwise(torch.randn(2, 4, 8, 8), conv)
    assert not native.usable(torch.zeros(1, dtype=torch.float16))
    assert native.usable(torch.zeros(1)) and native.usable(torch.zeros(1, dtype=torch.float64))


def test_a_build_is_cached_and_a_failed_build_says_what_to_do(tmp_path, monkeypatch):
    lib = native.build(directory=tmp_path)
    stamp = lib.stat().st_mtime_ns
    assert native.build(directory=tmp_path) == lib and lib.stat().st_mtime_ns == stamp  # not compiled again
    with pytest.raises(native.NativeBuildError, match="could not run"):
        native.build(directory=tmp_path / "b", compiler=str(tmp_path / "no-such-compiler"))
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    with pytest.raises(native.NativeBuildError, match="bad.c"):
        native.build(bad, directory=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.so"))  # nothing half-written left behind

    # a machine that cannot build: one warning, then PyTorch's kernels, with the same result
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_failure", None)
    monkeypatch.setattr(native, "build", lambda: (_ for _ in ()).throw(native.NativeBuildError("cc: not found")))
    with pytest.warns(RuntimeWarning, match="apt-get install gcc"):
        assert not native.usable(torch.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.usable(torch.zeros(1))  # warned once, not on every call
    conv = torch.nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL)
    assert _rel(F.conv2d(x, conv.weight, None, 1, 1, 1, 4), depthwise.depthwise(x, conv)) < 1e-6


@pytest.mark.parametrize("n,c,h,w", [(2, 8, 8, 8), (3, 5, 7, 6), (1, 13, 2, 3), (2, 4, 1, 1)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("values", ["random", "ties", "nan"])
def test_pool_kernels_equal_pytorch_in_float64(n, c, h, w, stride, values):
    """Max and average 3x3 pools: outputs and input gradients as PyTorch's, the max pool's
    gradient at the same pixel where a window holds equal values (small integers, or all
    zeros as a node that every `none` leaves) or a NaN."""
    from nas_core import pooling

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
    from nas_core import pooling

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


@pytest.mark.parametrize("k,d", [(3, 2), (5, 2), (5, 1)])
def test_a_kernel_that_keeps_its_rows_and_loses_its_columns_on_a_narrow_input(k, d):
    """On an 8x2 input the taps that read only padding go from the columns alone (a
    dilated 3x3 kernel becomes 3x1): the native path with the shrunk kernel, as PyTorch's."""
    conv = torch.nn.Conv2d(8, 8, k, 1, d * (k - 1) // 2, d, groups=8, bias=False).double()
    x = torch.randn(2, 8, 8, 2, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    out = depthwise.depthwise(x, conv)
    ref = F.conv2d(x, conv.weight, None, 1, conv.padding, d, 8)
    assert _rel(ref, out) < 1e-12
    dy = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, (x, conv.weight), dy), torch.autograd.grad(out, (x, conv.weight), dy)):
        assert _rel(a, b) < 1e-12
