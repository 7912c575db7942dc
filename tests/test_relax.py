"""The relaxations (nas_core.relax) directly: each one's sample() gives Z (edges x ops,
no graph), the ops that run, and an alpha loss whose gradient is the algorithm's alpha
gradient for a given cost dL/dZ. The unified view's identities on whole searches are
in test_unified_view.py."""
import pytest
import torch
import torch.nn.functional as F

from nas_core import config, relax
from nas_core.ops import NONE, OPS

EDGES = 5


def _alpha(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(EDGES, len(OPS), generator=g, dtype=torch.float64).requires_grad_()


def _allowed():
    a = torch.ones(EDGES, len(OPS), dtype=torch.bool)
    a[1, [2, 5]] = False          # edge 1 may not use two ops
    a[3] = False
    a[3, NONE] = True             # edge 3 deleted: only none
    return a


def _sample(algorithm, seed=0, **kw):
    alpha, allowed = _alpha(seed), _allowed()
    s = relax.relaxation(algorithm, **kw).sample(alpha, allowed, torch.Generator().manual_seed(seed))
    return alpha, allowed, s


def _grad(alpha, s, cost):
    alpha.grad = None
    s.alpha_loss(cost).backward()
    return alpha.grad


def test_the_registry_names_every_algorithm_once():
    assert relax.ALGORITHMS == tuple(relax.RELAXATIONS) == config.ALGORITHMS == ("darts", "snas", "dsnas", "gdas")
    assert isinstance(relax.relaxation("dsnas", "authors", dsnas_reward_clamp=5.0), relax.Dsnas)
    assert isinstance(relax.relaxation("darts", random_sample=True), relax.UniformSample)
    with pytest.raises(ValueError, match="unknown algorithm 'enas'; choose one of darts, snas, dsnas, gdas"):
        relax.relaxation("enas")


def test_darts_z_is_softmax_alpha_and_every_allowed_op_but_none_runs():
    alpha, allowed, s = _sample("darts")
    expected = F.softmax(alpha.detach().masked_fill(~allowed, float("-inf")), dim=-1)
    assert s.z.shape == (EDGES, len(OPS)) and not s.z.requires_grad
    torch.testing.assert_close(s.z, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(s.z.sum(-1), torch.ones(EDGES, dtype=s.z.dtype))
    assert s.z[1, 2] == 0 and s.z[3, NONE] == 1
    assert s.active[0] == list(range(1, len(OPS))) and s.active[1] == [1, 3, 4, 6, 7] and s.active[3] == []
    # alpha's gradient: p_m (C_m - sum_k p_k C_k)
    cost = torch.randn(EDGES, len(OPS), dtype=torch.float64)
    p = expected
    torch.testing.assert_close(_grad(alpha, s, cost), p * (cost - (p * cost).sum(-1, keepdim=True)))


def test_snas_z_is_a_soft_gumbel_sample_that_sums_to_one():
    alpha, allowed, s = _sample("snas")
    assert s.z.shape == (EDGES, len(OPS)) and (s.z >= 0).all()
    torch.testing.assert_close(s.z.sum(-1), torch.ones(EDGES, dtype=s.z.dtype))
    assert (s.z[~allowed] == 0).all() and s.z[3, NONE] == 1
    assert not torch.allclose(s.z, relax.probabilities(alpha.detach(), allowed))   # the noise moved it
    assert s.active == relax.Darts().sample(alpha, allowed, None).active
    # alpha's gradient: Z_m (C_m - sum_k Z_k C_k) at tau = 1
    cost = torch.randn(EDGES, len(OPS), dtype=torch.float64)
    z = s.z
    torch.testing.assert_close(_grad(alpha, s, cost), z * (cost - (z * cost).sum(-1, keepdim=True)))


@pytest.mark.parametrize("algorithm", ["gdas", "dsnas"])
def test_gdas_and_dsnas_z_is_one_hot_and_only_the_sampled_op_runs(algorithm):
    alpha, allowed, s = _sample(algorithm)
    assert s.z.shape == (EDGES, len(OPS)) and set(s.z.flatten().tolist()) <= {0.0, 1.0}
    assert (s.z.sum(-1) == 1).all() and not s.z.requires_grad
    index = s.z.argmax(-1)
    assert allowed[torch.arange(EDGES), index].all() and index[3] == NONE
    assert s.active == [[] if k == NONE else [k] for k in index.tolist()]


def test_gdas_gradient_flows_through_the_soft_sample():
    alpha, allowed, s = _sample("gdas")
    cost = torch.randn(EDGES, len(OPS), dtype=torch.float64)
    g = _grad(alpha, s, cost)
    # the soft sample is softmax(alpha + the same Gumbel noise): recover it from the same generator
    noise = relax._gumbel(alpha.shape, torch.Generator().manual_seed(0), alpha.dtype, alpha.device)
    soft = F.softmax(alpha.detach().masked_fill(~allowed, float("-inf")) + noise, dim=-1)
    assert torch.equal(soft.argmax(-1), s.z.argmax(-1))
    torch.testing.assert_close(g, soft * (cost - (soft * cost).sum(-1, keepdim=True)))


def test_dsnas_gradient_is_the_sampled_cost_times_the_score():
    alpha, allowed, s = _sample("dsnas")
    cost = torch.randn(EDGES, len(OPS), dtype=torch.float64)
    index = s.z.argmax(-1)
    reward = cost[torch.arange(EDGES), index]
    p = relax.probabilities(alpha.detach(), allowed)
    torch.testing.assert_close(_grad(alpha, s, cost), reward[:, None] * (s.z - p))   # C_s (1[m=s] - p_m)
    # the reward clamp bounds each edge's reward
    alpha, allowed, s = _sample("dsnas", dsnas_reward_clamp=0.1)
    torch.testing.assert_close(_grad(alpha, s, 10 * cost), (10 * reward).clamp(-0.1, 0.1)[:, None] * (s.z - p))


def test_dsnas_samples_follow_p():
    alpha, allowed = _alpha(), _allowed()
    p = relax.probabilities(alpha.detach(), allowed)
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([relax.Dsnas().sample(alpha, allowed, g).z for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), p, atol=0.03, rtol=0)


def test_uniform_sample_leaves_alpha_alone():
    alpha, allowed = _alpha(), _allowed()
    s = relax.UniformSample().sample(alpha, allowed, torch.Generator().manual_seed(0))
    assert (s.z.sum(-1) == 1).all() and allowed[torch.arange(EDGES), s.z.argmax(-1)].all()
    assert not _grad(alpha, s, torch.randn(EDGES, len(OPS), dtype=torch.float64)).any()


def test_snas_temperature_sharpens_z_and_scales_the_gradient():
    alpha, allowed = _alpha(), _allowed()
    cost = torch.randn(EDGES, len(OPS), dtype=torch.float64)
    s = relax.Snas().sample(alpha, allowed, torch.Generator().manual_seed(0), temperature=0.5)
    noise = relax._gumbel(alpha.shape, torch.Generator().manual_seed(0), alpha.dtype, alpha.device)
    z = F.softmax((alpha.detach().masked_fill(~allowed, float("-inf")) + noise) / 0.5, dim=-1)
    torch.testing.assert_close(s.z, z)
    torch.testing.assert_close(_grad(alpha, s, cost), z * (cost - (z * cost).sum(-1, keepdim=True)) / 0.5)
