"""nas_core.fast.batch_norm: BN of blocks of channels, and by parts, on the native
kernels and on PyTorch's, against F.batch_norm in training mode: outputs, gradients
and running statistics in float64."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nas_core.fast import batch_norm, native

CL = torch.channels_last


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


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
    out = batch_norm._NativeBatchNorm.apply(wt, running, momentum, 1e-5, *blocks)
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
    """batch_norm.batch_norm_parts (native kernels, or PyTorch's) against F.batch_norm of the
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
        got = batch_norm.batch_norm_parts(blocks, bns["got"], wt, True, c, slots, n_slots)
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



@pytest.mark.parametrize("parts", [False, True])
def test_inputs_over_the_limit_run_the_kernels_only_with_no_graph(parts, monkeypatch):
    """Above NATIVE_MAX_ELEMENTS a forward that builds a graph takes PyTorch's path (the kernels'
    backward is slower there), and one with no graph (the held-out evaluation) the kernels: the same
    outputs and running statistics as PyTorch's path, in float64."""
    monkeypatch.setattr(batch_norm, "NATIVE_MAX_ELEMENTS", 100)
    g = torch.Generator().manual_seed(7)
    c, slots, n_slots = 4, [(0, 0), (0, 0), (1, 0)], [1, 1]
    blocks = [(3 * torch.randn(6, k * c, 5, 5, generator=g, dtype=torch.float64) + 1).contiguous(memory_format=CL)
              for k in (2, 1)]
    wt = torch.rand(3 * c, generator=g, dtype=torch.float64)
    calls = []
    for name in ("batch_norm", "batch_norm_parts"):
        kernel = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _k=kernel, _n=name, **k: calls.append(_n) or _k(*a, **k))

    def run(native_on, graph):
        bns = [torch.nn.BatchNorm2d(c, affine=False).double() for _ in range(3)]
        with native.native_kernels(native_on), torch.set_grad_enabled(graph):
            xs = [b.clone().requires_grad_(graph) for b in blocks]
            out = (batch_norm.batch_norm_parts(xs, bns, wt, True, c, slots, n_slots) if parts
                   else [batch_norm.batch_norm(xs, bns, wt, True)])
        return out, bns

    want, ref = run(False, False)
    assert not calls
    got, bns = run(True, True)
    assert not calls   # a graph: PyTorch's path
    got, bns = run(True, False)
    assert calls == ["batch_norm_parts" if parts else "batch_norm"]
    for a, b in zip(want, got):
        assert _rel(a, b) < 1e-12
    for a, b in zip(ref, bns):
        assert _rel(a.running_mean, b.running_mean) < 1e-12 and _rel(a.running_var, b.running_var) < 1e-12
        assert int(b.num_batches_tracked) == 1


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
