"""Bi-level updates (nas_core.search.bilevel, ``Search.heldout_alpha_step``): DARTS' second-order alpha signal
equals the exact gradient of the held-out loss after one virtual SGD step, the
momentum term included, to the accuracy of its finite difference (float64)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from torch.func import functional_call

from nas_core import SearchConfig
from nas_core.search import Search, kept_buffers
from nas_core.fast import fast_path


def _search():
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "level": "bi", "order": 2, "weight_decay": 3e-3}))
    s.to(torch.float64)
    g = torch.Generator().manual_seed(3)
    for p in s.params:  # a momentum buffer as after some steps, so that its term counts
        s.w_opt.state[p]["momentum_buffer"] = 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype)
    return s


def _exact_hypergradient(s, xv, yv, xt, yt, samples):
    """d/dZ of L_val(w'(Z), Z), w' = w - eta (dL_train/dw + wd w + momentum buffer), by
    differentiating through the virtual step (double backward)."""
    c, eta = s.config, s.lr_at(s.epoch)
    names, params = zip(*s.net.named_parameters())
    z = {t: samples[t].z.detach().unsqueeze(0).expand(s.net.count(t), -1, -1).clone().requires_grad_()
         for t in s.types}
    active = {t: samples[t].active for t in s.types}
    lt = F.cross_entropy(functional_call(s.net, dict(zip(names, params)), (xt, z, active)), yt)
    grads = torch.autograd.grad(lt, params, create_graph=True, allow_unused=True)
    virtual = {n: p if g is None else p - eta * (g + c.weight_decay * p + c.momentum * s.w_opt.state[p]["momentum_buffer"])
               for n, p, g in zip(names, params, grads)}
    lv = F.cross_entropy(functional_call(s.net, virtual, (xv, z, active)), yv)
    return {t: g.sum(0) for t, g in zip(s.types, torch.autograd.grad(lv, [z[t] for t in s.types]))}


@pytest.mark.parametrize("fd_step,tolerance", [(0.01, 0.1), (1e-6, 1e-6)])
def test_unrolled_cost_is_the_exact_second_order_gradient(fd_step, tolerance):
    """To the finite difference's accuracy: DARTS' step of 0.01 in weight space is
    within a few per cent here (its difference crosses ReLU and max-pool kinks), a
    step small enough to cross none agrees to 1e-6."""
    with fast_path(False):  # the plain network has a double backward (fast == plain: test_fast_network)
        s = _search()
    s.heldout_alpha_step.FD_STEP = fd_step
    sp = s.splits
    xt, yt, xv, yv = sp.train_x[:16], sp.train_y[:16], sp.heldout_x[:16], sp.heldout_y[:16]
    samples = s.draw(torch.Generator().manual_seed(0))
    with kept_buffers(s.net):
        before = [p.detach().clone() for p in s.params]
        cost, _, _ = s.heldout_alpha_step.unrolled_cost(xv, yv, xt, yt, samples)
        assert all(torch.equal(p, b) for p, b in zip(s.params, before)), "the weights must be restored"
        exact = _exact_hypergradient(s, xv, yv, xt, yt, samples)
        first_order = s.measure(xv, yv, samples)["cost"]
    for t in s.types:
        scale = exact[t].abs().max()
        assert (cost[t] - exact[t]).abs().max() <= tolerance * scale
        # and the second-order term is not negligible here (the test could not tell otherwise)
        assert (first_order[t].sum(0) - exact[t]).abs().max() > 1e-2 * scale


def test_virtual_step_includes_the_momentum_term():
    s = _search()
    grads = [torch.ones_like(p) for p in s.params]
    before = [p.detach().clone() for p in s.params]
    s.heldout_alpha_step.virtual_step(grads, eta=0.1)
    c = s.config
    for p, w, g in zip(s.params, before, grads):
        expected = w - 0.1 * (g + c.weight_decay * w + c.momentum * s.w_opt.state[p]["momentum_buffer"])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
def test_a_heldout_step_moves_alpha_only(order):
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "level": "bi", "order": order, "arch_lr": 0.1}))
    sp = s.splits
    weights = [p.detach().clone() for p in s.params]
    alpha = {t: a.detach().clone() for t, a in s.alpha.items()}
    batch = (sp.train_x[:16], sp.train_y[:16])
    s.heldout_alpha_step(sp.heldout_x[:16], sp.heldout_y[:16], torch.Generator().manual_seed(0), train_batch=batch)
    assert all(torch.equal(p, w) for p, w in zip(s.params, weights))
    assert all(not torch.equal(s.alpha[t], alpha[t]) for t in s.types)
    assert all(p.grad is None for p in s.params)
