"""The fast supernet path against the plain one (nas_core.supernet.fast_path):
same losses, weight gradients and recorded costs, in float64, for every
algorithm, cell and network; each test twice, with nas_core.native's compiled
kernels and with PyTorch's."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nas_core import data as datasets
from nas_core.config import SearchConfig
from nas_core.search import Search
from nas_core import depthwise
from nas_core.native import native_kernels
from nas_core.supernet import fast_path

RTOL = 1e-10
ALGORITHMS = [("darts", "single", 1), ("darts", "bi", 1), ("darts", "bi", 2), ("snas", "single", 1),
              ("dsnas", "single", 1), ("gdas", "single", 1)]


@pytest.fixture(autouse=True, params=[True, False], ids=["native", "pytorch-kernels"])
def kernels(request):
    with native_kernels(request.param):
        yield request.param


def _config(algorithm, level, order, cell, network):
    return SearchConfig(algorithm=algorithm, level=level, order=order, cell=cell, network=network, cells=3,
                        channels=4, batch_size=8, data="synthetic", device="cpu", seed=0, logit_scale=5.0)


def _close(a, b, what, floor=1e-300):
    """Relative difference at most RTOL, relative to the larger magnitude (at least
    ``floor``: a running mean that is 0 up to rounding, ~1e-17, has no digits to compare)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.abs(a).max(), np.abs(b).max(), floor)
    err = np.abs(a - b).max() / scale
    assert err <= RTOL, f"{what}: relative difference {err:.2e}"


def _run(search, batches, fast):
    """A few steps as run_epoch takes them; per step the loss, the weights' gradients
    (before the weight update) and the recorded costs."""
    out = []
    g = torch.Generator().manual_seed(3)
    grads = {}

    def keep(_):  # the weight gradients as the optimiser sees them
        grads["w"] = [None if p.grad is None else p.grad.detach().clone() for p in search.params]

    handle = search.w_opt.register_step_pre_hook(lambda opt, args, kwargs: keep(opt))
    try:
        with fast_path(fast):
            for x, y, xv, yv in batches:
                stats = search._new_stats(("train", "heldout"))
                if search.config.level == "bi":
                    search.heldout_alpha_step(xv, yv, g, stats, train_batch=(x, y))
                loss = search.train_step(x, y, g, stats, None, update_alpha=search.config.level == "single")
                out.append((loss, grads["w"], {k: v.total.copy() for k, v in stats.items()},
                            {k: v.count.copy() for k, v in stats.items()}))
    finally:
        handle.remove()
    alpha = {t: a.detach().clone() for t, a in search.alpha.items()}
    return out, alpha, {k: v.clone() for k, v in search.net.state_dict().items()}


@pytest.mark.parametrize("network", ["all_normal", "standard"])
@pytest.mark.parametrize("cell", ["minimal", "full"])
@pytest.mark.parametrize("algorithm,level,order", ALGORITHMS, ids=lambda v: str(v))
def test_fast_equals_plain(algorithm, level, order, cell, network, monkeypatch):
    torch.set_num_threads(1)
    # the split depthwise backward on every size (by default only on large inputs)
    monkeypatch.setattr(depthwise, "DEPTHWISE_SPLIT_BACKWARD_MIN", 0 if cell == "full" else 10**12)
    cfg = _config(algorithm, level, order, cell, network)
    splits = datasets.load(cfg)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        s = _double_search(cfg, splits)
        s2 = _with_foreach_optimisers(copy.deepcopy(s))
        _with_foreach_optimisers(s)
        batches = _batches(s, 2)
        plain, alpha_p, state_p = _run(s, batches, False)
        fast, alpha_f, state_f = _run(s2, batches, True)
    finally:
        torch.set_default_dtype(old)
    for step, ((lp, gp, cp, np_), (lf, gf, cf, nf)) in enumerate(zip(plain, fast)):
        _close(lp, lf, f"step {step} loss")
        for i, (a, b_) in enumerate(zip(gp, gf)):
            assert (a is None) == (b_ is None), f"step {step} param {i}: gradient present in one path only"
            if a is not None:
                _close(a, b_, f"step {step} grad of param {i}")
        assert cp.keys() == cf.keys()
        for k in cp:
            assert (np_[k] == nf[k]).all(), f"step {step} {k}: ops computed differ"
            _close(cp[k], cf[k], f"step {step} {k} cost")
    for t in alpha_p:
        _close(alpha_p[t], alpha_f[t], f"alpha {t}")
    assert state_p.keys() == state_f.keys()
    for k in state_p:  # weights after the updates and BN running statistics
        _close(state_p[k].double(), state_f[k].double(), f"state {k}", floor=1e-3)


def test_fast_path_accumulates_running_statistics_like_bn_with_momentum_none():
    """BN with momentum=None keeps a cumulative average; the fast path's batched BN must too."""
    from nas_core.config import SearchConfig
    from nas_core.search import Search
    from nas_core.supernet import fast_path

    nets = {}
    for fast in (False, True):
        with fast_path(fast):
            s = Search(SearchConfig(data="synthetic", algorithm="darts", cells=2, channels=4))
            bns = [m for m in s.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            samples = s.draw(torch.Generator().manual_seed(0))
            with torch.no_grad():
                for i in range(3):
                    x = s.splits.train_x[16 * i:16 * (i + 1)]
                    s.forward(x, samples)
            nets[fast] = [m.running_mean.clone() for m in bns]
    for a, b in zip(nets[False], nets[True]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _double_search(cfg, splits=None):
    return Search(cfg, splits=splits or datasets.load(cfg)).to(torch.float64)


def _with_foreach_optimisers(s):
    """``s`` with the plain foreach SGD and Adam in place of the fused ones."""
    c = s.config
    s.params = list(s.net.parameters())
    s.w_opt = torch.optim.SGD(s.params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, foreach=True)
    s.a_opt = torch.optim.Adam(s.alpha.values(), lr=c.arch_lr, betas=(c.arch_beta1, 0.999),
                               weight_decay=c.arch_weight_decay, foreach=True)
    return s


def _batches(s, n):
    """n (train x, train y, held-out x, held-out y) batches of the search's splits."""
    sp, b = s.splits, s.config.batch_size
    return [(sp.train_x[i * b:(i + 1) * b], sp.train_y[i * b:(i + 1) * b],
             sp.heldout_x[i * b:(i + 1) * b], sp.heldout_y[i * b:(i + 1) * b]) for i in range(n)]


@pytest.mark.parametrize("algorithm,level,order", [("darts", "bi", 1), ("dsnas", "single", 1)], ids=str)
def test_fused_optimisers_equal_foreach(algorithm, level, order):
    """Search's fused SGD and Adam take the foreach update's steps (float64, 1e-10)."""
    torch.set_num_threads(1)
    cfg = _config(algorithm, level, order, "minimal", "standard")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        s = _double_search(cfg)
        assert s.w_opt.defaults["fused"] and s.a_opt.defaults["fused"]
        s2 = _with_foreach_optimisers(copy.deepcopy(s))
        batches = _batches(s, 3)
        fused, alpha_f, state_f = _run(s, batches, True)
        each, alpha_e, state_e = _run(s2, batches, True)
    finally:
        torch.set_default_dtype(old)
    for (lf, *_), (le, *_) in zip(fused, each):
        _close(lf, le, "loss")
    for t in alpha_f:
        _close(alpha_f[t], alpha_e[t], f"alpha {t}")
    for k in state_f:
        _close(state_f[k].double(), state_e[k].double(), f"state {k}", floor=1e-3)


def test_cost_only_pass_equals_backward_and_computes_no_weight_gradient(kernels, monkeypatch):
    """The held-out pass (forward_backward to Z alone, the weights frozen) gives the
    costs of the full backward, leaves no weight gradient, runs no weight-gradient
    kernel, and restores every weight's requires_grad, a frozen one's included."""
    from nas_core import native

    torch.set_num_threads(1)
    cfg = _config("darts", "bi", 1, "minimal", "standard")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        s = _double_search(cfg)
        s.params[0].requires_grad_(False)  # a weight frozen by the user stays frozen
        wanted = [p.requires_grad for p in s.params]
        x, y = s.splits.train_x[:8].double(), s.splits.train_y[:8]
        samples = s.draw(torch.Generator().manual_seed(0))
        costs, calls = [], []
        for name in ("depthwise_weight_grad", "pointwise_weight_grad"):
            kernel = getattr(native, name)
            monkeypatch.setattr(native, name, lambda *a, _k=kernel, _n=name, **kw: calls.append(_n) or _k(*a, **kw))
        for weight_grads in (True, False):
            with torch.no_grad():
                state = copy.deepcopy(s.net.state_dict())
            calls.clear()
            _, _, z = s.forward_backward(x, y, samples, weight_grads=weight_grads)
            costs.append({t: z[t].grad.clone() for t in z})
            s.net.load_state_dict(state)
        assert not calls, f"weight-gradient kernels ran in the cost-only pass: {sorted(set(calls))}"
        assert all(p.grad is None for p in s.params), "the cost-only pass left weight gradients"
        assert [p.requires_grad for p in s.params] == wanted, "requires_grad was not restored"
    finally:
        torch.set_default_dtype(old)
    for t in costs[0]:
        _close(costs[0][t], costs[1][t], f"cost {t}")


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
    out = depthwise._conv_same(x, w, pad, 6)
    _close(ref.detach(), out.detach(), "output")
    for a, b_, what in zip(torch.autograd.grad(ref, (x, w), dy), torch.autograd.grad(out, (x, w), dy), ("x", "w")):
        _close(a, b_, f"grad {what}")


def _convolutions(net, x, z, active, monkeypatch):
    """The convolution kernels one forward pass of ``net`` launches (PyTorch's and
    nas_core.native's)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nas_core import native

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    def counted(forward):
        def call(*args, **kwargs):
            Count.n += 1
            return forward(*args, **kwargs)
        return call

    for name in ("depthwise_forward", "pointwise_forward"):
        monkeypatch.setattr(native, name, counted(getattr(native, name)))
    with Count():
        net(x, z, active)
    return Count.n


def test_a_wave_runs_each_conv_op_as_one_depthwise_conv_and_each_stage_as_one_pointwise_conv(monkeypatch):
    """One all_normal minimal cell, every op on every edge (DARTS): the plain path runs
    12 convs per edge (each sep conv 4, each dilated conv 2); the fast path's two waves
    (the four input edges, then the deep edge) each run one depthwise conv per conv op
    and one grouped pointwise conv per stage, 4 + 1 + 2 + 1. The plain path adds the
    stem and the two preprocessing convs; the fast path one for both (they read the same
    stem output), and its stem is a matrix product (nas_core.stem), no conv."""
    from nas_core.supernet import Network
    from nas_core.space import Topology

    topo = Topology.named("minimal")
    x = torch.randn(4, 1, 8, 8)
    z = {"normal": torch.rand(1, topo.n_edges, 8)}
    active = {"normal": [list(range(1, 8))] * topo.n_edges}  # every op but `none`, which never runs
    counts = {fast: _convolutions(Network(topo, 1, 4, 1, 10, fast=fast), x, z, active, monkeypatch)
              for fast in (False, True)}
    assert counts == {False: 3 + 12 * topo.n_edges, True: 1 + 2 * (4 + 1 + 2 + 1)}


@pytest.mark.parametrize("c_in,c_out,h,w", [(1, 24, 8, 8), (3, 48, 5, 7)])
def test_the_stem_as_a_product_of_patches_equals_its_conv_in_float64(c_in, c_out, h, w):
    """nas_core.stem: output (channels-last) and the gradients of the input and the kernel."""
    from nas_core.stem import stem_conv

    g = torch.Generator().manual_seed(c_in)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False).double()
    x = torch.randn(3, c_in, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    want, got = conv(x), stem_conv(conv, x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (want - got).abs().max() < 1e-12
    dy = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(want, (x, conv.weight), dy), torch.autograd.grad(got, (x, conv.weight), dy)):
        assert (a - b).abs().max() < 1e-10 * a.abs().max()
