"""The unified-view chapter: its identities, checked live on a small float64 network.

Each function takes a :class:`~nas_core.search.Search` (see :func:`small_search`),
runs one batch through it and returns a table comparing two independent ways of
computing the same quantity:

* :func:`cost_vs_finite_difference`: the recorded cost C = dL/dZ (the gradient
  of the leaf Z) against a central finite difference of the loss in that Z;
* :func:`alpha_gradients`: alpha's gradient from the cost and each algorithm's
  rule (``relax``), against plain autograd through a Z built from alpha inside
  the graph, and against the closed-form formula derived in the book;
* :func:`node_identity`: sum_i sum_k Z_ij^k C_ij^k against <dL/dx_j, x_j>;
* :func:`output_cost_identity`: <dL/df, f>, E_p f - f_y and loss - entropy,
  and the last cell's Z-weighted cost;
* :func:`cell_sums` / :func:`scale_scenarios`: the Z-weighted cost of every
  cell, which is about 0 except in the last cell, and when it is not.

The chapter derives the identities and its check cell asserts them;
:func:`nas_core.chapters.cost_figures.scale_scenario_figure` draws the scenarios.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import Intervention, SearchConfig
from ..cost import output_cost
from ..ops import NONE, OPS
from ..relax import ALGORITHMS, masked, probabilities
from ..search import Search

#: the small network of the checks: 3 normal cells of 4 channels on digits
SMALL = dict(data="digits", cells=3, channels=4, batch_size=32, epochs=1)


def small_search(algorithm: str = "darts", *, seed: int = 0, bn_eps: float | None = None, alpha_std: float = 0.5,
                 temperature: float = 0.7, intervention: Intervention | None = None, **config) -> Search:
    """A float64 search on a small network, with alpha drawn with std
    ``alpha_std`` (so that p is far from uniform). ``bn_eps`` replaces BN's
    epsilon: BN is exactly scale invariant only as eps -> 0, so a tiny eps
    makes the scale identities hold to the last digits."""
    cfg = SearchConfig(**{**SMALL, **config, "algorithm": algorithm, "seed": seed, "temperature": temperature,
                          "intervention": intervention or Intervention(), "device": "cpu"})
    s = Search(cfg)
    s.to(torch.float64)
    if bn_eps is not None:
        s.set_batch_norm_eps(bn_eps)
    g = torch.Generator().manual_seed(10_000 + seed)
    s.set_alpha({t: a.detach() + alpha_std * torch.randn(a.shape, generator=g, dtype=torch.float64)
                 for t, a in s.alpha.items()})
    return s


def batch(s: Search, n: int | None = None, start: int = 0):
    """A fixed batch of the train split."""
    return s.examples("train", start, n or s.config.batch_size)


def draw(s: Search, seed: int = 0, relax=None):
    """A sample of Z from the search's relaxation, reproducible from ``seed``."""
    return s.draw(torch.Generator().manual_seed(seed), relax=relax)


def _active(samples):
    return {t: sm.active for t, sm in samples.items()}


def gumbel_noise(shape, seed: int, dtype) -> torch.Tensor:
    """The Gumbel noise a relaxation draws first from a generator seeded with
    ``seed`` (written out again here, so that the checks do not reuse the code
    they check; :func:`_z_of_alpha` asserts that it reproduces the sample)."""
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp_(1e-12, 1 - 1e-12))).to(dtype)


def _loss_at(s: Search, samples, x, y, z, train: bool = True) -> float:
    with torch.no_grad(), s.measuring(train):
        return F.cross_entropy(s.logits(x, z, _active(samples)), y).item()


def _rel(a, b, floor: float = 1e-12) -> float:
    """|a - b| relative to the larger magnitude (absolute below ``floor``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    return float(np.max(np.abs(a - b) / scale))


# ---------------------------------------------------------------------------
# cost = gradient
# ---------------------------------------------------------------------------

def cost_vs_finite_difference(s: Search, samples, x, y, entries=None, h: float = 1e-6, n: int = 8, seed: int = 0):
    """The recorded cost of (cell, edge, op) entries against the central finite
    difference [L(Z + h e) - L(Z - h e)] / 2h. Default entries: ``n`` computed
    entries spread over the cells, edges and ops (plus one ``none``)."""
    t = "normal"
    m = s.measure(x, y, samples)
    cost = m["cost"][t]
    base = m["z"][t].clone()
    active = samples[t].active
    if entries is None:
        rng = np.random.default_rng(seed)
        pool = [(c, e, k) for c in range(base.shape[0]) for e in range(base.shape[1]) for k in active[e]]
        pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        entries = sorted(pool[i] for i in pick) + [(base.shape[0] - 1, 0, NONE)]
    rows = []
    for c, e, k in entries:
        def loss_with(delta):
            zz = base.clone()
            zz[c, e, k] += delta
            return _loss_at(s, samples, x, y, {t: zz})

        fd = (loss_with(h) - loss_with(-h)) / (2 * h)
        rec = cost[c, e, k].item()
        rows.append(dict(cell=c, edge=e, op=OPS[k], Z=base[c, e, k].item(), cost=rec, finite_difference=fd,
                         rel_error=_rel(rec, fd, floor=1e-9)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# alpha's gradient: autograd vs the cost rule vs the formula
# ---------------------------------------------------------------------------

def _z_of_alpha(algorithm: str, alpha, allowed, samples, seed: int, temperature: float):
    """Z as a function of alpha inside the graph, with the randomness of ``samples``."""
    sm = samples["normal"]
    if algorithm == "darts":
        return probabilities(alpha, allowed)
    g = gumbel_noise(alpha.shape, seed, alpha.dtype).to(alpha.device)
    soft = F.softmax((masked(alpha, allowed) + g) / temperature, dim=-1)
    if algorithm == "snas":
        assert torch.allclose(soft.detach(), sm.z), "the Gumbel noise was not reproduced"
        return soft
    if algorithm == "gdas":  # hard one-hot forward, gradient through the soft sample
        assert torch.equal(soft.detach().argmax(-1), sm.z.argmax(-1)), "the Gumbel noise was not reproduced"
        return sm.z + soft - soft.detach()
    if algorithm == "dsnas":  # value 1 on the sampled op, gradient d log p_s (likelihood ratio)
        logp = F.log_softmax(masked(alpha, allowed), dim=-1)
        logp_s = logp.gather(1, sm.z.argmax(-1, keepdim=True))  # finite even where ops are masked
        return sm.z * torch.exp(logp_s - logp_s.detach())
    raise ValueError(algorithm)


def _formula(algorithm: str, p, zs, cost, temperature: float):
    """The book's closed forms (p = softmax(alpha), zs = the sample's Z)."""
    if algorithm == "darts":
        return p * (cost - (p * cost).sum(-1, keepdim=True))
    if algorithm in ("snas", "gdas"):  # for GDAS zs is the soft sample, cost 0 on ops that did not run
        return zs * (cost - (zs * cost).sum(-1, keepdim=True)) / temperature
    if algorithm == "dsnas":
        index = zs.argmax(-1, keepdim=True)
        return cost.gather(1, index) * (F.one_hot(index[:, 0], p.shape[-1]).to(p.dtype) - p)
    raise ValueError(algorithm)


def alpha_gradient(s: Search, x, y, seed: int = 0) -> dict:
    """Alpha's gradient three ways for the search's algorithm: autograd through
    Z(alpha) built in the graph; the cost C = dL/dZ put through the relaxation's
    rule (what the search does); the closed-form formula. Returns the three
    (edges x ops) arrays and their relative differences."""
    algorithm, tau = s.config.algorithm, s.config.temperature
    samples = draw(s, seed)
    t, alpha, allowed = "normal", s.alpha["normal"], s.allowed["normal"]
    cost = s.measure(x, y, samples)["cost"][t].sum(0)  # cells share alpha: their costs add up
    rule = torch.autograd.grad(samples[t].alpha_loss(cost), alpha)[0]
    z_alpha = _z_of_alpha(algorithm, alpha, allowed, samples, seed, tau)
    with s.measuring():
        logits = s.logits(x, s.z_for_cells({t: z_alpha}), _active(samples))
        auto = torch.autograd.grad(F.cross_entropy(logits, y), alpha)[0]
    p = probabilities(alpha.detach(), allowed)
    zs = samples[t].z
    if algorithm == "gdas":
        g = gumbel_noise(alpha.shape, seed, alpha.dtype).to(alpha.device)
        zs = F.softmax((masked(alpha.detach(), allowed) + g) / tau, dim=-1)
    formula = _formula(algorithm, p, zs, cost, tau)
    a, r, f = (v.detach().cpu().numpy() for v in (auto, rule, formula))
    return dict(algorithm=algorithm, autograd=a, rule=r, formula=f,
                rule_vs_autograd=_rel(r, a, floor=1e-9 * np.abs(a).max()),
                formula_vs_autograd=_rel(f, a, floor=1e-9 * np.abs(a).max()),
                max_abs_gradient=float(np.abs(a).max()))


def alpha_gradients(algorithms=ALGORITHMS, seed: int = 0, n: int = 32):
    """:func:`alpha_gradient` for each algorithm on its own small float64
    search, as a table."""
    rows = []
    for alg in algorithms:
        s = small_search(alg, seed=seed)
        r = alpha_gradient(s, *batch(s, n), seed=seed)
        rows.append({k: r[k] for k in ("algorithm", "max_abs_gradient", "rule_vs_autograd", "formula_vs_autograd")})
    return pd.DataFrame(rows).set_index("algorithm")


# ---------------------------------------------------------------------------
# node identity, output cost, Z-weighted cost per cell
# ---------------------------------------------------------------------------

def forward_nodes(s: Search, x, z, active):
    """The network's forward pass keeping every cell's intermediate nodes in the
    graph with their gradients retained (``supernet.Network``'s ``nodes``).
    Returns (logits, nodes) with nodes[cell][j] the tensor of node j."""
    if len(s.types) != 1:
        raise ValueError("forward_nodes handles networks of normal cells only")
    nodes = []
    logits = s.logits(x, z, active, nodes=nodes)
    return logits, nodes


def node_identity(s: Search, samples, x, y):
    """Per cell and intermediate node j: sum over incoming edges and ops of
    Z C (left) and <dL/dx_j, x_j> (right)."""
    t = "normal"
    z = {t: s.z_for_cells({t: samples[t].z.detach()})[t].clone().requires_grad_()}
    with s.measuring():
        logits, nodes = forward_nodes(s, x, z, _active(samples))
        F.cross_entropy(logits, y).backward()
    weighted = (z[t].detach() * z[t].grad).numpy()
    top = s.topology
    rows = []
    for c, cell_nodes in enumerate(nodes):
        for j, node in enumerate(cell_nodes):
            lhs = sum(weighted[c, e].sum() for e, (_, target) in enumerate(top.edges) if target == j + 2)
            rhs = 0.0 if node.grad is None else (node.grad * node).sum().item()
            rows.append(dict(cell=c, node=f"n{j}", z_weighted_cost=float(lhs), grad_dot_node=rhs,
                             rel_error=_rel(lhs, rhs, floor=1e-9)))
    return pd.DataFrame(rows)


def output_cost_identity(s: Search, samples, x, y, train: bool = True) -> dict:
    """The network's output cost four ways: <dL/df, f> for the logits f; the
    batch mean of E_p f - f_y; of loss - entropy; and the last cell's
    Z-weighted cost (equal only where the last cell is homogeneous in its Z)."""
    t = "normal"
    with s.measuring(train):
        logits, z = s.forward(x, samples)
        logits.retain_grad()
        F.cross_entropy(logits, y).backward()
    f, df = logits.detach(), logits.grad
    oc, loss, entropy = output_cost(f, y)
    zw = (z[t].detach() * z[t].grad).sum(dim=(1, 2)).numpy()
    return dict(grad_dot_logits=(df * f).sum().item(), mean_Ep_f_minus_f_y=oc.mean().item(),
                mean_loss_minus_entropy=(loss - entropy).mean().item(), last_cell_z_weighted=float(zw[-1]),
                all_cells_z_weighted=float(zw.sum()))


def output_cost_signs(n: int = 4000, classes: int = 10, scale: float = 4.0, seed: int = 0) -> dict:
    """On random logits: the largest output cost among correctly classified
    samples (never above 0: E_p f - f_y = sum_c p_c (f_c - f_y) and f_y is the
    largest logit) and the fraction of wrongly classified samples whose output
    cost is positive (most, not all)."""
    g = torch.Generator().manual_seed(seed)
    f = scale * torch.randn(n, classes, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    oc, _, _ = output_cost(f, y)
    right = f.argmax(-1) == y
    return dict(samples=n, correct=int(right.sum()), max_correct=oc[right].max().item(),
                wrong_positive=(oc[~right] > 0).double().mean().item())


def cell_sums(s: Search, samples, x, y, train: bool = True) -> np.ndarray:
    """The Z-weighted cost sum_{e,k} Z C of each cell (network order)."""
    m = s.measure(x, y, samples, train=train)
    return (m["z"]["normal"] * m["cost"]["normal"]).sum(dim=(1, 2)).numpy()


def _estimate_running_stats(s: Search, n_batches: int = 5):
    """BN running statistics as the cumulative average over ``n_batches``
    train batches (what a trained network carries into eval mode)."""
    samples = draw(s, 12345)
    images = [batch(s, start=32 * (i + 1))[0] for i in range(n_batches)]
    s.estimate_bn_statistics(images, s.z_for_cells({"normal": samples["normal"].z}), _active(samples))


#: The scale-invariance scenarios: (label, small_search kwargs, BN train mode?)
SCENARIOS = (
    ("exact: tiny BN eps, no skip on the deep edge",
     dict(bn_eps=1e-14, intervention=Intervention(exclude={4: ["skip_connect"]})), True),
    ("as in the search: BN eps 1e-5, every op", dict(), True),
    ("fails: BN in eval mode", dict(), False),
    ("fails: skip_connect on the deep edge", dict(bn_eps=1e-14, intervention=Intervention(fix={4: "skip_connect"})),
     True),
)


def scale_scenarios(seed: int = 0, n: int = 64, scenarios=SCENARIOS):
    """Per scenario and cell: the Z-weighted cost of the cell, under DARTS'
    Z = softmax(alpha), with the network's output cost <dL/df, f> alongside.
    One row per (scenario, cell)."""
    rows = []
    for label, kw, train in scenarios:
        s = small_search("darts", seed=seed, **kw)
        if not train:
            _estimate_running_stats(s)
        x, y = batch(s, n)
        samples = draw(s, seed)
        sums = cell_sums(s, samples, x, y, train=train)
        out = output_cost_identity(s, samples, x, y, train=train)["grad_dot_logits"]
        for c, v in enumerate(sums):
            rows.append(dict(scenario=label, cell=c, last=c == len(sums) - 1, z_weighted_cost=float(v),
                             output_cost=out, relative=float(v) / abs(out)))
    return pd.DataFrame(rows)


def worst_errors(fd_tables, alpha_table, nodes, output: dict, scenarios) -> pd.Series:
    """The worst relative error of every identity, from the tables of
    :func:`cost_vs_finite_difference` (a dict {label: table}),
    :func:`alpha_gradients`, :func:`node_identity`, :func:`output_cost_identity`
    and :func:`scale_scenarios` (its first, exact scenario)."""
    worst = {f"cost = finite difference ({k})": t.rel_error.max() for k, t in fd_tables.items()}
    for kind in ("rule", "formula"):
        for alg, v in alpha_table[f"{kind}_vs_autograd"].items():
            worst[f"α gradient: {kind} = autograd ({alg.upper()})"] = v
    worst["node identity"] = nodes.rel_error.max()
    g = output["grad_dot_logits"]
    for key in ("mean_Ep_f_minus_f_y", "mean_loss_minus_entropy", "last_cell_z_weighted",
                "all_cells_z_weighted"):
        worst[f"output cost: ⟨∂L/∂f, f⟩ = {key}"] = _rel(g, output[key])
    exact = scenarios[(scenarios.scenario == SCENARIOS[0][0]) & ~scenarios["last"]]
    worst["scale invariance (exact): inner cells / output cost"] = exact.relative.abs().max()
    return pd.Series(worst, name="worst relative error", dtype=float)


def inner_share(scenarios) -> pd.Series:
    """Per scenario, the largest |Z-weighted cost| of a non-final cell relative
    to the output cost."""
    inner = scenarios[~scenarios["last"]]
    return inner.groupby("scenario", sort=False).relative.apply(lambda v: v.abs().max())
