"""The unified view's identities, checked in float64 on tiny supernets,
and the unified-view chapter's own checks of them (nas_core.chapters.unified_view).

Each test compares the instrumented core against an independent computation: finite
differences of the loss, autograd through Z(alpha), a hand-written cell forward that keeps
every node in the graph, or a closed-form formula.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_core import Intervention, SearchConfig
from nas_core.chapters import cost_figures, unified_view
from nas_core.cost import OutputCostStats, output_cost
from nas_core.ops import NONE, OPS, op_index
from nas_core.relax import Dsnas, _gumbel, masked, probabilities
from nas_core.search import Search

from conftest import TINY as BASE

# 3 cells: the third is the first whose two inputs are both cells' outputs (not the stem), so the
# identities are checked through the whole cell-to-cell chain
TINY = {**BASE, "cells": 3}
SKIP = op_index("skip_connect")
NO_DEEP_SKIP = Intervention(exclude={4: ["skip_connect"]})  # edge 4 is the minimal cell's only deep edge


def make_search(bn_eps=None, alpha_std=0.5, **kw):
    """A float64 search whose alpha is far from uniform (so that formula checks discriminate).

    ``bn_eps`` replaces BatchNorm's eps (1e-5): eps is the only thing that keeps BN from being
    exactly scale invariant, so the homogeneity identities hold to the last digits only with
    a tiny eps (and to ~1e-4 relative with the default one).
    """
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", **kw}))
    s.to(torch.float64)
    if bn_eps is not None:
        for m in s.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = bn_eps
    g = torch.Generator().manual_seed(11)
    for a in s.alpha.values():
        a.data = a.data.double() + alpha_std * torch.randn(a.shape, generator=g, dtype=torch.float64)
    return s


def batch(s, n=24, start=0):
    return s.splits.train_x[start:start + n], s.splits.train_y[start:start + n]


def active_of(samples):
    return {t: sm.active for t, sm in samples.items()}


def forward_backward(s, samples, x, y):
    s.net.zero_grad(set_to_none=True)
    logits, z = s.forward(x, samples)
    loss = F.cross_entropy(logits, y)
    s.passes.backward(loss, z)
    return logits, z, loss


def costs(s, z, samples):
    """Cost per (network cell, edge, op) and which entries were computed, as float64 numpy:
    what the epoch records (``CostPasses.cost_tensors``, the layout of ``CostStats``)."""
    cost, computed = s.passes.cost_tensors(z, samples)
    return cost.double().cpu().numpy(), computed.cpu().numpy()


def z_network_order(s, samples):
    """Z per network cell (cells, edges, ops), in the layout of :func:`costs`."""
    return np.stack([samples[t].z.detach().double().cpu().numpy() for t, _ in s.cell_index])


def z_weighted_per_cell(s, samples, x, y, train=True):
    """sum_{edges, ops} Z * C per network cell, and the batch-mean output cost."""
    s.net.train(train)
    try:
        logits, z, _ = forward_backward(s, samples, x, y)
    finally:
        s.net.train()
    cost, _ = costs(s, z, samples)
    return (z_network_order(s, samples) * cost).sum(axis=(1, 2)), output_cost(logits.detach(), y)[0].mean().item()


# ---- 1. cost = gradient ------------------------------------------------------------------

@pytest.mark.parametrize("algorithm, network", [("darts", "all_normal"), ("darts", "standard"), ("dsnas", "all_normal")])
def test_cost_equals_central_finite_difference(algorithm, network):
    """The recorded cost (z.grad, laid out as the epoch records it) is dL/dZ: it matches a central
    finite difference of the loss w.r.t. that one Z entry (BN uses the batch's statistics in
    both, so the loss is a deterministic function of Z). The standard network has 4 cells,
    normal-reduce-reduce-normal, so network order differs from grouping by cell type."""
    s = make_search(algorithm=algorithm, network=network, cells=4 if network == "standard" else 3)
    assert s.net.cell_types == (["normal", "reduce", "reduce", "normal"] if network == "standard" else ["normal"] * 3)
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    _, z, _ = forward_backward(s, samples, x, y)
    cost, computed = costs(s, z, samples)
    base = {t: v.detach().clone() for t, v in z.items()}
    rng = np.random.default_rng(0)
    if algorithm == "darts":
        entries = [(c, e, k) for c in range(len(s.cell_index))
                   for e, k in zip(rng.integers(0, 5, 3), rng.integers(1, 8, 3))]
    else:  # DSNAS: the cost of the sampled (computed) op on each edge
        entries = [(c, e, samples["normal"].active[e][0]) for c in range(3) for e in range(5) if samples["normal"].active[e]]
    assert len(entries) >= 6
    # ReLUs and max-pools make the loss piecewise smooth; on the standard network's 2x2 maps a
    # kink lies within 1e-4 of some Z entries, so the step is small (roundoff ~1e-10 in float64)
    h = 1e-6
    checked = 0
    for c, e, k in entries:
        t, i = s.cell_index[c]

        def loss_with(delta):
            zz = {tt: v.clone() for tt, v in base.items()}
            zz[t][i, e, k] += delta
            with torch.no_grad():
                return F.cross_entropy(s.net(x, zz, active_of(samples)), y).item()

        fd = (loss_with(h) - loss_with(-h)) / (2 * h)
        assert computed[c, e, k]
        assert cost[c, e, k] == z[t].grad[i, e, k].item()
        assert cost[c, e, k] == pytest.approx(fd, rel=1e-5, abs=1e-10), (c, e, k)
        checked += abs(fd) > 1e-5  # non-trivial entries
    assert checked >= len(entries) // 2


# ---- 2. alpha's gradient ---------------------------------------------------------------

def alpha_grad_autograd(s, samples, x, y, z_of_alpha):
    """alpha's gradient with Z = z_of_alpha(alpha) built inside the graph, expanded to every
    cell and differentiated directly (no cost view involved)."""
    alpha = s.alpha["normal"]
    zt = z_of_alpha(alpha).unsqueeze(0).expand(s.net.count("normal"), -1, -1)
    loss = F.cross_entropy(s.net(x, {"normal": zt}, active_of(samples)), y)
    return torch.autograd.grad(loss, alpha)[0]


def cost_rule(s, samples, x, y):
    """The cost summed over the cells sharing alpha, and the gradient of Sample.alpha_loss."""
    _, z, _ = forward_backward(s, samples, x, y)
    cost = z["normal"].grad.detach().sum(0)
    rule = torch.autograd.grad(samples["normal"].alpha_loss(cost), s.alpha["normal"])[0]
    return cost, rule


def assert_close(a, b, rtol=1e-7, atol=1e-11):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("intervention", [Intervention(), Intervention(exclude={4: ["skip_connect", "none"]},
                                                                        fix={1: "dil_conv_3x3"})])
def test_darts_alpha_gradient(intervention):
    s = make_search(algorithm="darts", intervention=intervention)
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    allowed = s.allowed["normal"]
    auto = alpha_grad_autograd(s, samples, x, y, lambda a: probabilities(a, allowed))
    cost, rule = cost_rule(s, samples, x, y)
    p = probabilities(s.alpha["normal"], allowed).detach()
    formula = p * (cost - (p * cost).sum(-1, keepdim=True))
    assert auto.abs().max() > 1e-4
    assert_close(rule, auto)
    assert_close(formula, auto)
    assert torch.all(auto[~allowed] == 0)  # a disallowed op's logit gets no gradient
    if intervention.fix:
        assert torch.all(auto[1] == 0)  # p is one-hot on a fixed edge: nothing to learn


def test_snas_alpha_gradient_with_temperature():
    tau = 0.4
    s = make_search(algorithm="snas", temperature=tau)
    x, y = batch(s)
    seed = 3
    samples = s.draw(torch.Generator().manual_seed(seed))
    zs = samples["normal"].z
    gumbel = _gumbel(zs.shape, torch.Generator().manual_seed(seed), torch.float64, "cpu")
    assert_close(F.softmax((s.alpha["normal"].detach() + gumbel) / tau, -1), zs, rtol=1e-12, atol=1e-15)
    assert torch.all(zs > 0) and torch.all(zs.max(-1).values < 1)  # a relaxed (soft) sample
    auto = alpha_grad_autograd(s, samples, x, y, lambda a: F.softmax((a + gumbel) / tau, -1))
    cost, rule = cost_rule(s, samples, x, y)
    formula = zs * (cost - (zs * cost).sum(-1, keepdim=True)) / tau
    assert auto.abs().max() > 1e-4
    assert_close(rule, auto)
    assert_close(formula, auto)
    # the 1/tau factor matters: the tau = 1 formula is off by 1/tau
    assert not torch.allclose(formula * tau, auto, rtol=1e-3)


def count_op_calls(net):
    calls = np.zeros((len(net.cells), net.topology.n_edges, len(OPS)), dtype=int)
    handles = []
    for c, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                def hook(*_, c=c, e=e, k=k):
                    calls[c, e, k] += 1
                handles.append(op.register_forward_hook(hook))
    return calls, handles


def test_dsnas_gradient_and_only_sampled_ops_run():
    s = make_search(algorithm="dsnas", alpha_std=1.0)
    x, y = batch(s)
    seen_none = seen_op = False
    for seed in range(6):
        samples = s.draw(torch.Generator().manual_seed(seed))
        sm = samples["normal"]
        index = sm.z.argmax(-1)
        assert torch.equal(sm.z, F.one_hot(index, len(OPS)).double())
        assert sm.active == [[] if k == NONE else [k] for k in index.tolist()]  # one op per edge at most
        seen_none |= bool((index == NONE).any())
        seen_op |= bool((index != NONE).any())
        calls, handles = count_op_calls(s.net)
        cost, rule = cost_rule(s, samples, x, y)
        for h in handles:
            h.remove()
        ran = np.zeros((5, len(OPS)), dtype=bool)
        for e, ops in enumerate(sm.active):
            ran[e, ops] = True
        assert np.all(calls[:, ran] == 1) and np.all(calls[:, ~ran] == 0)  # every cell, once per forward
        assert torch.all(cost[torch.from_numpy(~ran)] == 0)
        p = probabilities(s.alpha["normal"], s.allowed["normal"]).detach()
        c_s = cost.gather(1, index[:, None])  # the sampled op's cost, summed over the cells
        assert_close(rule, c_s * (F.one_hot(index, len(OPS)).double() - p))
    assert seen_none and seen_op


def test_dsnas_estimator_is_unbiased_for_the_expected_cost_gradient():
    """With the cost held fixed, E_s[C_s (1[m=s] - p_m)] = p_m (C_m - E_p C), and s ~ p
    (respecting the allowed mask)."""
    gen = torch.Generator().manual_seed(4)
    alpha = torch.randn(5, len(OPS), generator=gen, dtype=torch.float64).requires_grad_()
    allowed = torch.ones(5, len(OPS), dtype=torch.bool)
    allowed[4, SKIP] = False
    cost = torch.randn(5, len(OPS), generator=gen, dtype=torch.float64)
    p = probabilities(alpha, allowed).detach()
    n, total, counts = 3000, torch.zeros_like(alpha), torch.zeros_like(alpha)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        sm = Dsnas().sample(alpha, allowed, g)
        counts += sm.z
        total += torch.autograd.grad(sm.alpha_loss(cost), alpha)[0]
    assert torch.all(counts[~allowed] == 0)
    freq_err = (counts / n - p).abs() / torch.sqrt(p * (1 - p) / n).clamp_min(1e-12)
    assert freq_err.max() < 5
    expected = p * (cost - (p * cost).sum(-1, keepdim=True))
    se = cost.abs().max() / n ** 0.5
    assert (total / n - expected).abs().max() < 5 * se
    assert expected.abs().max() > 10 * se  # the check can tell a wrong sign or scale apart


def test_dsnas_reward_clamp_bounds_each_edges_reward():
    gen = torch.Generator().manual_seed(2)
    alpha = torch.randn(5, len(OPS), generator=gen, dtype=torch.float64).requires_grad_()
    allowed = torch.ones(5, len(OPS), dtype=torch.bool)

    def grad(estimator, value, clamp=5.0):
        sm = Dsnas(estimator, clamp).sample(alpha, allowed, torch.Generator().manual_seed(0))
        return torch.autograd.grad(sm.alpha_loss(torch.full((5, len(OPS)), value, dtype=torch.float64)), alpha)[0]

    for estimator in ("standard", "authors"):
        assert_close(grad(estimator, 1e4), grad(estimator, 5.0), rtol=0, atol=0)
        assert_close(grad(estimator, -1e4), grad(estimator, -5.0), rtol=0, atol=0)
        assert grad(estimator, 5.0).abs().max() > 1e-3
        assert not torch.allclose(grad(estimator, 2.0), grad(estimator, 5.0))  # linear inside the clamp
        assert not torch.allclose(grad(estimator, 1e4, None), grad(estimator, 5.0, None))  # no clamp: none
    # the config reaches the relaxation
    relax = make_search(algorithm="dsnas", dsnas_estimator="authors", dsnas_reward_clamp=5.0, cells=2).relax
    assert (relax.estimator, relax.reward_clamp) == ("authors", 5.0)


@pytest.mark.parametrize("k", [5, 14])
def test_dsnas_authors_estimator_weights_each_edge_by_its_own_reward(k):
    """The authors' loss (log S + log q).sum() counts the scalar log S once per edge:
    row e's gradient is k * r_e * grad p_e(s_e) / S, S = sum_e' p_e'(s_e'), k the
    edges of the cell (5 minimal, 14 full), with costs that differ per edge
    (multiplying every row by the summed reward, or dropping k, fails this)."""
    gen = torch.Generator().manual_seed(3)
    alpha = torch.randn(k, len(OPS), generator=gen, dtype=torch.float64).requires_grad_()
    allowed = torch.ones(k, len(OPS), dtype=torch.bool)
    cost = torch.randn(k, len(OPS), generator=gen, dtype=torch.float64) * torch.arange(1, k + 1)[:, None]
    sm = Dsnas("authors").sample(alpha, allowed, torch.Generator().manual_seed(0))
    got = torch.autograd.grad(sm.alpha_loss(cost), alpha)[0]
    index = sm.z.argmax(-1)
    p = probabilities(alpha, allowed).detach()
    p_s = p.gather(1, index[:, None])
    reward = cost.gather(1, index[:, None])
    expected = k * reward * p_s * (F.one_hot(index, len(OPS)).double() - p) / p_s.sum()
    assert_close(got, expected, rtol=1e-12, atol=1e-14)
    # the authors' own construction: a scalar S broadcast against a per-edge vector, summed
    a2 = alpha.detach().clone().requires_grad_()
    probs = F.softmax(a2, dim=-1)
    one_hot = F.one_hot(index, len(OPS)).double()
    s_scalar = (one_hot * probs).sum()
    q = (one_hot * F.softmax(torch.zeros_like(a2), dim=-1)).sum(-1)  # the reduce cell's vector (no reduce cells)
    (torch.log(s_scalar) + torch.log(q)).sum().backward()
    assert_close(got, a2.grad * reward, rtol=1e-12, atol=1e-14)
    summed = reward.sum() * p_s * (F.one_hot(index, len(OPS)).double() - p) / p_s.sum()
    assert not torch.allclose(got, summed)


def test_gdas_straight_through_gradient():
    """GDAS: forward with the hard sample, gradient through the soft one. alpha_loss's gradient
    equals autograd through hard - soft.detach() + soft, i.e. (1/tau) soft_s C_s (1[m=s] - soft_m)."""
    tau = 0.5
    s = make_search(algorithm="gdas", temperature=tau)
    x, y = batch(s)
    seed = 7
    samples = s.draw(torch.Generator().manual_seed(seed))
    gumbel = _gumbel(s.alpha["normal"].shape, torch.Generator().manual_seed(seed), torch.float64, "cpu")

    def soft_of(a):
        return F.softmax((masked(a, s.allowed["normal"]) + gumbel) / tau, -1)

    soft = soft_of(s.alpha["normal"]).detach()
    index = soft.argmax(-1)
    hard = F.one_hot(index, len(OPS)).double()
    assert torch.equal(samples["normal"].z, hard)
    auto = alpha_grad_autograd(s, samples, x, y, lambda a: hard - soft_of(a).detach() + soft_of(a))
    cost, rule = cost_rule(s, samples, x, y)
    c_s = cost.gather(1, index[:, None])
    formula = soft.gather(1, index[:, None]) * c_s * (hard - soft) / tau
    assert auto.abs().max() > 1e-5
    assert_close(rule, auto)
    assert_close(formula, auto)


# ---- 3. node identity, 4. none -----------------------------------------------------------

def forward_keeping_nodes(net, x, z, active):
    """The network's forward written out, with every intermediate node kept (retain_grad)."""
    s0 = s1 = net.stem(x)
    nodes, seen = [], {t: 0 for t in net.types}
    top = net.topology
    for cell, t in zip(net.cells, net.cell_types):
        zc, act = z[t][seen[t]], active[t]
        seen[t] += 1
        states = [cell.pre0(s0), cell.pre1(s1)]
        cell_nodes = []
        for j in range(2, 2 + top.steps):
            terms = [cell.edges[e](states[i], zc[e], act[e]) for e, (i, tj) in enumerate(top.edges)
                     if tj == j and act[e]]
            assert terms, "this test needs every node to have an incoming op"
            node = sum(terms[1:], terms[0])
            node.retain_grad()
            states.append(node)
            cell_nodes.append(node)
        nodes.append(cell_nodes)
        s0, s1 = s1, torch.cat([states[j] for j in top.output_nodes], dim=1)
    f = net.classifier(s1.mean(dim=(2, 3)))
    return f, nodes


@pytest.mark.parametrize("algorithm, train_mode, kw", [
    ("darts", True, {}),
    ("darts", False, {}),  # holds with BN in eval mode too: it only uses that x_j is linear in its Z
    ("snas", True, {"cell": "3/2", "cells": 2}),
    ("darts", True, {"network": "standard"}),
])
def test_node_identity(algorithm, train_mode, kw):
    """sum_i sum_k Z_ij^k C_ij^k = <dL/dx_j, x_j> for every node of every cell."""
    s = make_search(algorithm=algorithm, **kw)
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(1))
    z = {t: sm.z.detach().unsqueeze(0).expand(s.net.count(t), -1, -1).clone().requires_grad_()
         for t, sm in samples.items()}
    s.net.train(train_mode)
    try:
        f, nodes = forward_keeping_nodes(s.net, x, z, active_of(samples))
        with torch.no_grad():
            torch.testing.assert_close(f, s.net(x, z, active_of(samples)), rtol=0, atol=1e-12)
        F.cross_entropy(f, y).backward()
    finally:
        s.net.train()
    top, seen = s.topology, {t: 0 for t in s.net.types}
    for c, t in enumerate(s.net.cell_types):
        i = seen[t]
        seen[t] += 1
        zc, cc = z[t][i].detach(), z[t].grad[i]
        for n, node in enumerate(nodes[c]):
            lhs = sum((zc[e] * cc[e]).sum() for e, (_, tj) in enumerate(top.edges) if tj == n + 2).item()
            rhs = (node.grad * node).sum().item()
            assert lhs == pytest.approx(rhs, rel=1e-8, abs=1e-13), (c, n)


def test_none_costs_exactly_zero():
    s = make_search(algorithm="darts", cells=2)
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    assert torch.all(samples["normal"].z[:, NONE] > 0)  # none has weight, but it never runs
    _, z, _ = forward_backward(s, samples, x, y)
    cost, computed = costs(s, z, samples)
    assert np.all(cost[..., NONE] == 0.0) and np.all(computed[..., NONE])
    assert np.abs(cost[..., 1:]).max() > 1e-4
    rec = s.run_epoch()
    mean = np.array(rec["cost"]["train"]["mean"], dtype=float)
    assert np.all(mean[..., NONE] == 0.0)
    assert np.all(np.array(rec["cost"]["train"]["count"])[..., NONE] > 0)


# ---- 5. output cost ----------------------------------------------------------------------

def test_output_cost_is_expected_logit_minus_true_logit_and_loss_minus_entropy():
    g = torch.Generator().manual_seed(0)
    f = 3 * torch.randn(64, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    cost, loss, entropy = output_cost(f, y)
    p = torch.softmax(f, -1)
    assert_close(cost, (p * f).sum(-1) - f[torch.arange(64), y], rtol=1e-12, atol=1e-12)
    assert_close(loss, F.cross_entropy(f, y, reduction="none"), rtol=1e-12, atol=1e-12)
    assert_close(entropy, torch.distributions.Categorical(logits=f).entropy(), rtol=1e-12, atol=1e-12)
    assert_close(cost, loss - entropy, rtol=1e-10, atol=1e-12)
    # sign: negative for a confident correct prediction, positive for a confident wrong one
    confident = torch.tensor([[5.0, 0, 0], [5.0, 0, 0]], dtype=torch.float64)
    c, _, _ = output_cost(confident, torch.tensor([0, 1]))
    assert -0.1 < c[0] < -0.01 and c[1] > 4.9
    # the per-group statistics of a run record the same quantities
    stats = OutputCostStats()
    stats.add(f, y)
    summary = stats.summary()
    right = f.argmax(-1) == y
    assert summary["correct"]["n"] == right.sum() and summary["wrong"]["n"] == (~right).sum()
    assert summary["output_cost"] == pytest.approx(cost.mean().item(), rel=1e-12)
    assert summary["wrong"]["output_cost"] == pytest.approx(cost[~right].mean().item(), rel=1e-12)
    for group in ("correct", "wrong"):
        g_ = summary[group]
        assert g_["output_cost"] == pytest.approx(g_["loss"] - g_["entropy"], rel=1e-9, abs=1e-12)


def test_output_cost_is_the_networks_cost():
    """With a bias-free classifier after global pooling, the batch-mean output cost is
    <dL/df, f> for the batch-mean loss, and (the last cell's output being homogeneous of degree 1
    in its Z when no skip_connect sits on a deep edge) equals the last cell's Z-weighted cost.
    BN's eps is made tiny: with the default eps the agreement is only ~1e-4 relative."""
    s = make_search(algorithm="darts", intervention=NO_DEEP_SKIP, bn_eps=1e-14)
    assert s.net.classifier.bias is None
    x, y = batch(s, n=32)
    samples = s.draw(torch.Generator().manual_seed(2))
    z = {t: sm.z.detach().unsqueeze(0).expand(s.net.count(t), -1, -1).clone().requires_grad_()
         for t, sm in samples.items()}
    f = s.net(x, z, active_of(samples))
    f.retain_grad()
    F.cross_entropy(f, y).backward()
    oc = output_cost(f.detach(), y)[0].mean().item()
    assert abs(oc) > 1e-3
    assert oc == pytest.approx((f.grad * f).sum().item(), rel=1e-10)
    last = (z["normal"].detach()[-1] * z["normal"].grad[-1]).sum().item()
    assert last == pytest.approx(oc, rel=1e-6)
    # the whole network's Z-weighted cost is carried by the last cell
    assert (z["normal"].detach() * z["normal"].grad).sum().item() == pytest.approx(oc, rel=1e-6)


def test_recorded_output_cost_is_loss_minus_entropy():
    s = Search(SearchConfig(**{**TINY, "cells": 2}))
    rec = s.run_epoch()
    for split in ("train", "heldout"):
        o = rec["output_cost"][split]
        assert o["correct"]["n"] + o["wrong"]["n"] > 0
        for group in ("correct", "wrong"):
            if o[group]["n"]:
                assert o[group]["output_cost"] == pytest.approx(o[group]["loss"] - o[group]["entropy"], abs=1e-6)
    assert rec["train_loss"] == rec["output_cost"]["train"]["loss"] > 0
    assert rec["heldout_loss"] == rec["output_cost"]["heldout"]["loss"] > 0
    assert rec["train_acc"] == rec["output_cost"]["train"]["accuracy"]


# ---- 6. scale invariance -----------------------------------------------------------------

@pytest.mark.parametrize("network", ["all_normal", "standard"])
def test_scale_invariance_inner_cells_carry_no_cost(network):
    """Every consumer of a non-final cell's output starts with ReLU-Conv-BN, and every op on
    a deep edge ends in BN, so L(lambda Z_c) does not depend on lambda for a non-final cell c
    (BN with batch statistics, no skip_connect on a deep edge; skip_connect on *input* edges is
    allowed here and harmless: they read the preprocessed, normalised inputs). Its derivative at
    lambda = 1 is the cell's Z-weighted cost sum, hence ~0; the last cell carries the output cost."""
    s = make_search(algorithm="darts", intervention=NO_DEEP_SKIP, network=network, bn_eps=1e-14,
                    cells=4 if network == "standard" else 3)  # standard: normal, reduce, reduce, normal
    x, y = batch(s, n=32)
    samples = s.draw(torch.Generator().manual_seed(0))
    assert samples[s.types[0]].z[0, SKIP] > 0
    sums, oc = z_weighted_per_cell(s, samples, x, y)
    assert abs(sums[-1]) > 1e-4
    assert np.abs(sums[:-1]).max() < 1e-8 * abs(sums[-1]), sums
    assert sums[-1] == pytest.approx(oc, rel=1e-8)


def test_scale_invariance_with_default_bn_eps_is_approximate():
    s = make_search(algorithm="darts", intervention=NO_DEEP_SKIP)
    x, y = batch(s, n=32)
    sums, oc = z_weighted_per_cell(s, s.draw(torch.Generator().manual_seed(0)), x, y)
    ratio = np.abs(sums[:-1]).max() / abs(sums[-1])
    # eps = 1e-5 breaks the invariance slightly (here ~2e-3 of the last cell's; the deep edge's ops
    # see a small-variance node n0, where eps matters), far less than the failures below (4e-2 to 1)
    assert 1e-9 < ratio < 1e-2, sums
    assert sums[-1] == pytest.approx(oc, rel=1e-2)


def test_scale_invariance_fails_with_eval_mode_bn():
    """(a) BN with running statistics is affine, not scale invariant: inner cells get cost."""
    s = make_search(algorithm="darts", intervention=NO_DEEP_SKIP, bn_eps=1e-14)
    s.run_epoch()  # running statistics that differ from any one batch's
    x, y = batch(s, n=32)
    samples = s.draw(torch.Generator().manual_seed(0))
    train_sums, _ = z_weighted_per_cell(s, samples, x, y, train=True)
    eval_sums, eval_oc = z_weighted_per_cell(s, samples, x, y, train=False)
    assert np.abs(train_sums[:-1]).max() < 1e-8 * abs(train_sums[-1])
    assert np.abs(eval_sums[:-1]).max() > 1e-2 * abs(eval_sums[-1]), eval_sums
    # and in eval mode the last cell no longer carries exactly the output cost either
    assert abs(eval_sums[-1] - eval_oc) > 1e-2 * abs(eval_oc)


@pytest.mark.parametrize("intervention", [Intervention(), Intervention(fix={4: "skip_connect"})],
                         ids=["skip_allowed", "skip_fixed"])
def test_scale_invariance_fails_with_skip_on_the_deep_edge(intervention):
    """(b) With skip_connect on the deep edge, n1 = ... + Z_skip * n0 is of degree 2 in the cell's
    Z, so the cell's output is no longer homogeneous: inner cells get (sizeable) cost, and the last
    cell's Z-weighted cost is not the output cost. Both failure modes are real."""
    s = make_search(algorithm="darts", intervention=intervention, bn_eps=1e-14)
    x, y = batch(s, n=32)
    samples = s.draw(torch.Generator().manual_seed(0))
    assert samples["normal"].z[4, SKIP] > 0.05
    sums, oc = z_weighted_per_cell(s, samples, x, y)
    assert np.abs(sums[:-1]).max() > 0.1 * abs(sums[-1]), sums
    assert abs(sums[-1] - oc) > 0.1 * abs(oc)


# ---------------------------------------------------------------------------
# The chapter's own checks (nas_core.chapters.unified_view), as its check cell runs them
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["snas", "gdas"])
def test_the_chapters_gumbel_noise_reproduces_the_relaxations(algorithm):
    s = unified_view.small_search(algorithm)
    alpha, allowed, tau = s.alpha["normal"].detach(), s.allowed["normal"], s.config.temperature
    soft = F.softmax((masked(alpha, allowed) + unified_view.gumbel_noise(alpha.shape, 3, alpha.dtype)) / tau, -1)
    z = unified_view.draw(s, 3)["normal"].z
    if algorithm == "snas":
        assert torch.allclose(soft, z)
    else:
        assert torch.equal(soft.argmax(-1), z.argmax(-1))
    other = F.softmax((masked(alpha, allowed) + unified_view.gumbel_noise(alpha.shape, 4, alpha.dtype)) / tau, -1)
    assert not torch.allclose(other, soft)


def test_the_chapters_identities_hold_to_its_tolerance():
    darts = unified_view.small_search("darts")
    x, y = unified_view.batch(darts, 16)
    fd = {"DARTS": unified_view.cost_vs_finite_difference(darts, unified_view.draw(darts), x, y, n=3)}
    assert list(fd["DARTS"].columns) == ["cell", "edge", "op", "Z", "cost", "finite_difference", "rel_error"]
    alpha = unified_view.alpha_gradients(n=16)
    assert list(alpha.index) == ["darts", "snas", "dsnas", "gdas"] and (alpha.max_abs_gradient > 0).all()
    exact = unified_view.small_search("darts", **unified_view.SCENARIOS[0][1])
    xe, ye = unified_view.batch(exact, 16)
    samples = unified_view.draw(exact)
    nodes = unified_view.node_identity(exact, samples, xe, ye)
    assert len(nodes) == 3 * 2                                     # cells x intermediate nodes
    output = unified_view.output_cost_identity(exact, samples, xe, ye)
    scenarios = unified_view.scale_scenarios(n=16, scenarios=unified_view.SCENARIOS[:1])
    worst = unified_view.worst_errors(fd, alpha, nodes, output, scenarios)
    assert len(worst) == 1 + 2 * 4 + 1 + 4 + 1
    assert (worst <= 1e-5).all(), worst[worst > 1e-5]
    # a wrong cost would show: the finite difference of another entry
    shifted = fd["DARTS"].assign(rel_error=unified_view._rel(fd["DARTS"].cost, fd["DARTS"].finite_difference[::-1]))
    assert unified_view.worst_errors({"x": shifted}, alpha, nodes, output, scenarios).max() > 1e-5


def test_the_chapters_scale_scenarios_fail_where_its_text_says():
    scenarios = unified_view.scale_scenarios(n=32)
    assert list(scenarios.columns) == ["scenario", "cell", "last", "z_weighted_cost", "output_cost", "relative"]
    inner = unified_view.inner_share(scenarios)
    labels = [label for label, _, _ in unified_view.SCENARIOS]
    assert inner[labels[0]] < 1e-6 and inner[labels[1]] < 1e-2
    assert inner[labels[2]] > 0.01 and inner[labels[3]] > 0.01
    fig = cost_figures.scale_scenario_figure(scenarios)
    assert [t.type for t in fig.data] == ["bar"] * 4 and fig.data[0].marker.color[-1] == "#d62728"
    signs = unified_view.output_cost_signs(n=500)
    assert signs["max_correct"] <= 0 < signs["wrong_positive"] < 1
