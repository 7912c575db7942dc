"""nas_core.fast.network: the fast path against the plain supernet
(nas_core.supernet): same losses, weight gradients and recorded costs, in
float64, for every algorithm, cell and network; each test twice, with
nas_core.fast.native's compiled kernels and with PyTorch's. Where the path is
chosen (nas_core.fast.network), and what a hook does."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nas_core import data as datasets
from nas_core.config import SearchConfig
from nas_core.fast import FastNetwork, depthwise_conv, fast_path, network
from nas_core.fast.native import native_kernels
from nas_core.search import Search
from nas_core.space import Topology
from nas_core.supernet import Network

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


def _run(search, batches):
    """A few steps as run_epoch takes them; per step the loss, the weights' gradients
    (before the weight update) and the recorded costs."""
    out = []
    g = torch.Generator().manual_seed(3)
    grads = {}

    def keep(_):  # the weight gradients as the optimiser sees them
        grads["w"] = [None if p.grad is None else p.grad.detach().clone() for p in search.params]

    handle = search.w_opt.register_step_pre_hook(lambda opt, args, kwargs: keep(opt))
    try:
        for x, y, xv, yv in batches:
            stats = search.epochs.new_cost_stats(("train", "heldout"))
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
    monkeypatch.setattr(depthwise_conv, "DEPTHWISE_SPLIT_BACKWARD_MIN", 0 if cell == "full" else 10**12)
    cfg = _config(algorithm, level, order, cell, network)
    splits = datasets.load(cfg)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with fast_path(False):
            s = _double_search(cfg, splits)
        s2 = _double_search(cfg, splits)
        assert type(s.net) is Network and type(s2.net) is FastNetwork
        s2.net.load_state_dict(s.net.state_dict())  # the same keys (and, seeded alike, the same weights)
        _with_foreach_optimisers(s)
        _with_foreach_optimisers(s2)
        batches = _batches(s, 2)
        plain, alpha_p, state_p = _run(s, batches)
        fast, alpha_f, state_f = _run(s2, batches)
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
        fused, alpha_f, state_f = _run(s, batches)
        each, alpha_e, state_e = _run(s2, batches)
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
    kernel (nas_core.fast.native's or PyTorch's, which the full backward runs), and
    restores every weight's requires_grad, a frozen one's included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nas_core.fast import native

    class WeightGradients(TorchDispatchMode):  # PyTorch's convolution backward asked for a weight gradient
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default and args[-1][1]:
                calls.append("convolution_backward")
            return func(*args, **(kwargs or {}))

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
        costs, calls, ran = [], [], {}
        for name in ("depthwise_weight_grad", "pointwise_weight_grad"):
            kernel = getattr(native, name)
            monkeypatch.setattr(native, name, lambda *a, _k=kernel, _n=name, **kw: calls.append(_n) or _k(*a, **kw))
        for weight_grads in (True, False):
            with torch.no_grad():
                state = copy.deepcopy(s.net.state_dict())
            calls.clear()
            with WeightGradients():
                _, _, z = s.forward_backward(x, y, samples, weight_grads=weight_grads)
            ran[weight_grads] = set(calls)
            costs.append({t: z[t].grad.clone() for t in z})
            s.net.load_state_dict(state)
        want = {"depthwise_weight_grad", "pointwise_weight_grad"} if kernels else {"convolution_backward"}
        assert want <= ran[True], f"the full backward's weight-gradient kernels were not seen: {ran[True]}"
        assert not ran[False], f"weight-gradient kernels ran in the cost-only pass: {sorted(ran[False])}"
        # the full pass's gradients were zeroed, as the authors' zero_grad does, and stay zero
        assert all(p.grad is None or not p.grad.any() for p in s.params), "the cost-only pass left weight gradients"
        assert [p.requires_grad for p in s.params] == wanted, "requires_grad was not restored"
    finally:
        torch.set_default_dtype(old)
    for t in costs[0]:
        _close(costs[0][t], costs[1][t], f"cost {t}")


def _convolutions(net, x, z, active, monkeypatch):
    """The convolution kernels one forward pass of ``net`` launches (PyTorch's and
    nas_core.fast.native's)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nas_core.fast import native

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
    stem output), and its stem is a matrix product (nas_core.fast.stem_conv), no conv."""
    topo = Topology.named("minimal")
    x = torch.randn(4, 1, 8, 8)
    z = {"normal": torch.rand(1, topo.n_edges, 8)}
    active = {"normal": [list(range(1, 8))] * topo.n_edges}  # every op but `none`, which never runs
    counts = {fast: _convolutions(network(topo, 1, 4, 1, 10, fast=fast), x, z, active, monkeypatch)
              for fast in (False, True)}
    assert counts == {False: 3 + 12 * topo.n_edges, True: 1 + 2 * (4 + 1 + 2 + 1)}


def test_the_path_is_chosen_where_the_network_is_built_and_keeps_parameters_and_keys():
    """nas_core.fast.network: a FastNetwork unless ``fast=False``, fast_path(False) or
    NAS_CORE_FAST=0 (read when nas_core.fast is imported) asks for the plain Network;
    the same parameters and state_dict keys, and the same logits."""
    topo = Topology.named("minimal")
    args = (topo, 3, 4, 1, 10, "standard")
    torch.manual_seed(0)
    fast = network(*args)
    with fast_path(False):
        plain = network(*args)
    assert type(fast) is FastNetwork and type(plain) is Network and type(network(*args, fast=False)) is Network
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in plain.named_parameters()]
    assert fast.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(4, 1, 8, 8)
    z = {t: torch.rand(fast.count(t), topo.n_edges, 8) for t in fast.types}
    active = {t: [list(range(1, 8))] * topo.n_edges for t in fast.types}
    torch.testing.assert_close(fast(x, z, active), plain(x, z, active), rtol=1e-4, atol=1e-5)
    probe = ("import nas_core, nas_core.fast as f; "
             "print(type(f.network(nas_core.Topology.named('minimal'), 1, 4, 1, 10)).__name__)")
    for flag, name in (("0", "Network"), ("1", "FastNetwork")):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                             env={**os.environ, "NAS_CORE_FAST": flag}).stdout.strip()
        assert out == name


@pytest.mark.parametrize("where", ["op", "inner", "cell", "stem", "global"])
def test_a_hook_on_a_module_makes_the_forward_plain_and_is_called(where):
    """A hook must see its module's own call, which the fused kernels never make: while
    one is set on any module below the network (an op, a conv inside an op, a cell, the
    stem) or globally, the forward is the plain one, and the hook is called; a hook on
    the network itself keeps the fast path (its call happens either way)."""
    topo = Topology.named("minimal")
    torch.manual_seed(0)
    net = network(topo, 1, 4, 1, 10)
    x = torch.randn(4, 1, 8, 8)
    z = {"normal": torch.rand(1, topo.n_edges, 8)}
    active = {"normal": [list(range(1, 8))] * topo.n_edges}
    plain = []
    features = Network.features

    def recorded(self, *args, **kwargs):
        plain.append(1)
        return features(self, *args, **kwargs)

    calls = []
    module = {"op": net.cells[0].edges[0].ops[4], "inner": net.cells[0].edges[0].ops[4][0][1],
              "cell": net.cells[0], "stem": net.stem[0], "global": None}[where]
    hook = (torch.nn.modules.module.register_module_forward_hook if module is None
            else module.register_forward_hook)(lambda *_: calls.append(1))
    top = net.register_forward_hook(lambda *_: calls.append(0))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Network, "features", recorded)
            net(x, z, active)
            assert plain and 1 in calls, "the hook was not called on the plain forward"
            hook.remove()
            plain.clear()
            net(x, z, active)
            assert not plain, "a hook on the network itself made the forward plain"
    finally:
        hook.remove()
        top.remove()
