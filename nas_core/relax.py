"""How each algorithm turns alpha into the op weights Z, and its cost into
alpha's gradient.

A relaxation draws one :class:`Sample` per cell type and step. ``z`` (edges x
ops, no graph) is what the supernet multiplies each op by; ``active`` lists the
ops that run; ``alpha_loss(cost)`` is a scalar whose gradient w.r.t. alpha is
the algorithm's alpha gradient, given the cost dL/dZ summed over the cells that
share alpha. Writing every algorithm this way is the unified view: all of them
move alpha along the cost, differing only in which Z they use and how the cost
is weighted (see the book's chapter on the unified view).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .ops import NONE


@dataclass
class Sample:
    z: torch.Tensor
    active: list[list[int]]
    alpha_loss: Callable[[torch.Tensor], torch.Tensor]


def masked(alpha: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """alpha with disallowed ops at -inf, so their probability is exactly 0."""
    return alpha.masked_fill(~allowed, float("-inf"))


def probabilities(alpha: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return F.softmax(masked(alpha, allowed), dim=-1)


def _active_from_allowed(allowed: torch.Tensor) -> list[list[int]]:
    """All allowed ops except ``none``, which contributes nothing."""
    return [[k for k in row.nonzero().flatten().tolist() if k != NONE] for row in allowed]


def _active_from_index(index: torch.Tensor) -> list[list[int]]:
    return [[] if k == NONE else [k] for k in index.tolist()]


def _gumbel(shape, generator, dtype, device):
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(dtype=dtype, device=device)


def _categorical(p: torch.Tensor, generator) -> torch.Tensor:
    return torch.multinomial(p.detach().double().cpu(), 1, generator=generator).flatten()


class Darts:
    """Z = softmax(alpha); every allowed op runs. Gradient p_m (C_m - sum_k p_k C_k)."""

    def sample(self, alpha, allowed, generator, temperature=1.0):
        z = probabilities(alpha, allowed)
        return Sample(z.detach(), _active_from_allowed(allowed), lambda cost: (z * cost).sum())


class Snas:
    """Z = softmax((alpha + Gumbel) / tau), one draw shared by the cells of a type.
    Gradient (1/tau) Z_m (C_m - sum_k Z_k C_k)."""

    def sample(self, alpha, allowed, generator, temperature=1.0):
        g = _gumbel(alpha.shape, generator, alpha.dtype, alpha.device)
        z = F.softmax((masked(alpha, allowed) + g) / temperature, dim=-1)
        return Sample(z.detach(), _active_from_allowed(allowed), lambda cost: (z * cost).sum())


class Dsnas:
    """A one-hot sample s ~ p per edge, shared by the cells of a type; only the
    sampled op runs. Gradient C_s (1[m=s] - p_m): the score-function estimator
    with the sampled op's cost as the signal.

    ``reward_clamp`` clamps each edge's reward (its sampled op's cost, summed
    over the cells) to [-c, c], as the authors' analysis code does with c = 5.
    ``estimator="authors"`` is the authors' analysis code: their alpha loss is
    ``(log S + log q).sum()`` with S = sum over edges of the sampled ops'
    probabilities (a scalar for the normal cell) and q the reduce cell's vector
    over edges, so log S is counted once per edge, k times in all (k = edges per
    cell); each alpha row's gradient is then multiplied by its edge's reward:
    row e's gradient is k * r_e * grad p_e(s_e) / S. At uniform p that is
    r_e * grad log p_e(s_e). The factor k matters: Adam adds alpha's weight decay
    before it normalises, and the norm clip engages k times later.
    """

    def __init__(self, estimator: str = "standard", reward_clamp: float | None = None):
        self.estimator = estimator
        self.reward_clamp = reward_clamp

    def sample(self, alpha, allowed, generator, temperature=1.0):
        logp = F.log_softmax(masked(alpha, allowed), dim=-1)
        index = _categorical(logp.exp(), generator).to(alpha.device)
        z = F.one_hot(index, alpha.shape[-1]).to(alpha.dtype)
        rows = torch.arange(len(index), device=alpha.device)

        def alpha_loss(cost):
            reward = cost[rows, index].detach()
            if self.reward_clamp is not None:
                reward = reward.clamp(-self.reward_clamp, self.reward_clamp)
            if self.estimator == "authors":
                p = logp[rows, index].exp()
                return len(index) * (reward * p).sum() / p.sum().detach()
            return (reward * logp[rows, index]).sum()

        return Sample(z, _active_from_index(index), alpha_loss)


class Gdas:
    """A hard one-hot Gumbel sample, straight-through: only the sampled op runs,
    and the gradient flows through the soft sample at the sampled op's cost."""

    def sample(self, alpha, allowed, generator, temperature=1.0):
        g = _gumbel(alpha.shape, generator, alpha.dtype, alpha.device)
        soft = F.softmax((masked(alpha, allowed) + g) / temperature, dim=-1)
        index = soft.argmax(dim=-1)
        z = F.one_hot(index, alpha.shape[-1]).to(alpha.dtype)
        return Sample(z, _active_from_index(index), lambda cost: (soft * cost).sum())


class UniformSample:
    """Alpha frozen, one op per edge sampled uniformly among the allowed ops
    (the authors' ``random_sample`` mode, used to measure costs while the
    weights train)."""

    def sample(self, alpha, allowed, generator, temperature=1.0):
        p = allowed.to(torch.float64) / allowed.sum(dim=-1, keepdim=True)
        index = _categorical(p, generator).to(alpha.device)
        z = F.one_hot(index, alpha.shape[-1]).to(alpha.dtype)
        return Sample(z, _active_from_index(index), lambda cost: (alpha * 0).sum())


#: The algorithms, each name with its relaxation: the one registry of them (a new
#: algorithm is a class above and its entry here).
RELAXATIONS = {"darts": Darts, "snas": Snas, "dsnas": Dsnas, "gdas": Gdas}
#: The algorithms' names, in the order the book lists them (``config.ALGORITHMS``).
ALGORITHMS = tuple(RELAXATIONS)


def relaxation(algorithm: str, dsnas_estimator: str = "standard", random_sample: bool = False,
               dsnas_reward_clamp: float | None = None):
    """The relaxation object of ``algorithm`` (or the uniform sampler when
    ``random_sample``); an unknown name raises with the valid ones."""
    if random_sample:
        return UniformSample()
    if algorithm not in RELAXATIONS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(RELAXATIONS)}")
    if algorithm == "dsnas":
        return Dsnas(dsnas_estimator, dsnas_reward_clamp)
    return RELAXATIONS[algorithm]()
