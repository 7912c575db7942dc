"""What a search holds: the supernet, alpha per cell type, both optimisers, the
data splits and the schedules, the optimiser updates, and the checkpoint that
restores all of it. The steps (:mod:`.step`, :mod:`.bilevel`) and the epoch loop
(:mod:`.epoch`) share one :class:`SearchState` and hold nothing of their own that
a checkpoint would need."""
from __future__ import annotations

import contextlib
import math

import torch

from .. import data as datasets
from ..config import SearchConfig
from ..faults import DivergenceError
from ..fast import network
from ..fast.memory import keep_freed_memory
from ..ops import OPS
from ..relax import relaxation


@contextlib.contextmanager
def kept_buffers(net: torch.nn.Module):
    """Run with BN in train mode (batch statistics) and restore the running
    statistics afterwards, so that measuring changes nothing.

    A context manager; yields nothing."""
    saved = [b.clone() for b in net.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            buffers = list(net.buffers())
            if len(buffers) != len(saved):
                raise RuntimeError("kept_buffers: the network's buffers changed inside the block")
            if buffers:
                torch._foreach_copy_(buffers, saved)


@contextlib.contextmanager
def train_mode(net: torch.nn.Module, train: bool = True):
    """Run with ``net`` in train mode (BN on batch statistics) or eval mode
    (``train=False``), and restore its mode afterwards. A context manager; yields nothing."""
    was = net.training
    net.train(train)
    try:
        yield
    finally:
        net.train(was)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The random stream of one epoch: fixed by (seed, epoch), so a resumed run
    draws exactly what an uninterrupted one would.

    Returns a seeded ``torch.Generator``."""
    return torch.Generator().manual_seed(1_000_003 * seed + 7919 * epoch + stream)


def initial_alpha(config: SearchConfig, types) -> dict[str, torch.Tensor]:
    """Alpha before any step, one (edges x ops) tensor per cell type: drawn from
    ``config.seed`` alone (N(alpha_mean, alpha_init^2)), so the epoch-0 record
    is a function of the config."""
    g = torch.Generator().manual_seed(config.seed)
    shape = (config.topology.n_edges, len(OPS))
    return {t: config.alpha_mean + config.alpha_init * torch.randn(shape, generator=g) for t in types}


class SearchState:
    """The state of one search for ``config``: ``net``, ``alpha`` (one leaf per
    cell type), ``w_opt`` (SGD on the weights), ``a_opt`` (Adam on alpha),
    ``splits`` (on the config's device), ``epoch`` (epochs done) and ``step``
    (the step within the epoch, named by a DivergenceError). Every part of a
    :class:`~nas_core.search.Search` reads and writes this one object, so a
    checkpoint of it is a checkpoint of the search."""

    def __init__(self, config: SearchConfig, splits: datasets.Splits | None = None):
        self.config = config
        self.topology = config.topology
        self.device = config.resolved_device()
        if self.device.type == "cpu":
            keep_freed_memory()  # see nas_core.fast.memory: at 32x32, page faults took a quarter of a step
        splits = splits if splits is not None else datasets.load(config)
        self.splits = splits.to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = network(self.topology, config.cells, config.channels, splits.in_channels,
                               splits.n_classes, config.network, config.stem_multiplier, config.logit_scale)
            self.alpha = {t: torch.nn.Parameter(a) for t, a in initial_alpha(config, self.net.types).items()}
        self.net.to(self.device)
        for a in self.alpha.values():
            a.data = a.data.to(self.device)
        self.types = self.net.types
        self.allowed = {t: config.intervention.allowed(self.topology.n_edges).to(self.device) for t in self.types}
        self.relax = relaxation(config.algorithm, config.dsnas_estimator, config.random_sample,
                                config.dsnas_reward_clamp)
        # listed once: scanning the module tree every step cost a fifth of a small DSNAS epoch
        self.params = list(self.net.parameters())
        self._optimizers()
        # position of each network cell within its type, to lay costs out in network order
        seen = {t: 0 for t in self.types}
        self.cell_index = []
        for t in self.net.cell_types:
            self.cell_index.append((t, seen[t]))
            seen[t] += 1
        # the rows of per-type tensors concatenated in type order that give network order (None: one type)
        start = {t: sum(self.net.count(u) for u in self.types[:i]) for i, t in enumerate(self.types)}
        self.network_order = None if len(self.types) == 1 else torch.tensor(
            [start[t] + i for t, i in self.cell_index], device=self.device)
        self.epoch = 0
        self.step = 0

    def _optimizers(self):
        c = self.config
        # fused: one kernel per step, the foreach update's arithmetic (4x faster at the CPU presets)
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {"foreach": True}
        self.w_opt = torch.optim.SGD(self.params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, **fused)
        self.a_opt = torch.optim.Adam(self.alpha.values(), lr=c.arch_lr, betas=(c.arch_beta1, 0.999),
                                      weight_decay=c.arch_weight_decay, **fused)
        self._momentum_buffers()

    def _momentum_buffers(self):
        """A zero momentum buffer for every weight that has none: the fused SGD takes
        no mix of weights with and without one (DSNAS reaches new weights late), and
        its first update from zero, momentum * 0 + grad, is exactly the gradient that
        a new buffer starts as."""
        if self.config.momentum:
            for p in self.params:
                state = self.w_opt.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def to(self, dtype: torch.dtype) -> "SearchState":
        """The whole search in ``dtype`` (e.g. float64, for identities checked to the
        last digits): weights, alpha, the images of both splits; the optimisers
        start afresh. Returns self."""
        self.net.to(dtype)
        for a in self.alpha.values():
            a.data = a.data.to(dtype)
        self.splits = self.splits.to(self.device, dtype=dtype)
        self.params = list(self.net.parameters())
        self._optimizers()
        return self

    # ---- schedules -------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        """The weights' learning rate during ``epoch`` (0-based). The authors step
        PyTorch's cosine schedule at the *start* of every epoch, so epoch e trains
        at the cosine's value at e + 1: the first epoch already below ``lr``, the
        last at ``lr_min``."""
        c = self.config
        t = min(epoch + 1, c.epochs)
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * t / max(c.epochs, 1)))

    def temperature_at(self, epoch: int) -> float:
        """The relaxation's temperature at ``epoch`` (annealed to ``temperature_min``
        when that is set, else constant)."""
        c = self.config
        if c.temperature_min is None or c.epochs <= 1:
            return c.temperature
        return c.temperature * (c.temperature_min / c.temperature) ** (epoch / (c.epochs - 1))

    def zero_grad(self):
        """Zero the weights' gradients, as the authors' PyTorch did (``zero_grad``
        kept the tensors): a weight that has had a gradient once keeps one, so SGD
        moves it by momentum and weight decay on every later step even when its op
        is not sampled. A weight that never ran keeps None and does not move.

        Returns None."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_zero_(grads)

    # ---- updates -----------------------------------------------------------------
    def z_for_cells(self, z: dict) -> dict:
        """Each type's one (edges x ops) Z given to every cell of the type:
        {cell type: (cells of the type, edges, ops)}, a view of ``z``."""
        return {t: v.unsqueeze(0).expand(self.net.count(t), -1, -1) for t, v in z.items()}

    def update_alpha(self, samples, cost_by_type: dict):
        """One Adam step of alpha along the relaxation's rule applied to ``cost_by_type``
        ({cell type: cost summed over the cells sharing its alpha}); each type's
        gradient is clipped on its own. Returns None."""
        self.a_opt.zero_grad(set_to_none=True)
        loss = sum(samples[t].alpha_loss(cost_by_type[t]) for t in self.types)
        loss.backward()
        if self.config.arch_grad_clip is not None:
            for a in self.alpha.values():
                torch.nn.utils.clip_grad_norm_([a], self.config.arch_grad_clip)
        self.a_opt.step()

    def update_weights(self) -> torch.Tensor:
        """Clip the weights' gradients and take one SGD step; returns their norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip, foreach=True)  # (skips grad None)
        self.w_opt.step()
        return norm

    def check_finite(self, quantities: dict):
        """Stop at the first non-finite loss, alpha or gradient norm of a step, with
        one device sync for all of them (the record of a diverged epoch is never
        written). ``quantities``: {name in the message: tensor}; returns None."""
        values = torch.stack([v.detach().float().sum() for v in quantities.values()]).tolist()
        for name, value in zip(quantities, values):
            if not math.isfinite(value):
                c = self.config
                raise DivergenceError(f"the search diverged at epoch {self.epoch + 1}, step {self.step}: {name} is "
                                      f"{value}; lower the weights' learning rate (--lr, now {c.lr:g}) or alpha's "
                                      f"(--arch-lr, now {c.arch_lr:g})")

    # ---- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (epoch, weights, alpha, both optimizers), as a dict."""
        return {"epoch": self.epoch, "net": self.net.state_dict(),
                "alpha": {t: a.detach().cpu() for t, a in self.alpha.items()},
                "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                # which weights hold a (zeroed) gradient, and so keep moving (see zero_grad)
                "has_grad": [p.grad is not None for p in self.params]}

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict` in place; returns None."""
        self.epoch = state["epoch"]
        self.net.load_state_dict(state["net"])
        for t, a in state["alpha"].items():
            self.alpha[t].data.copy_(a.to(self.device))
        self.w_opt.load_state_dict(state["w_opt"])
        self._momentum_buffers()
        for p, had in zip(self.params, state.get("has_grad", [])):
            p.grad = torch.zeros_like(p) if had else None
        self.a_opt.load_state_dict(state["a_opt"])
