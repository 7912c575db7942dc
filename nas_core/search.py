"""The search loop: one supernet, one relaxation, single- or bi-level updates,
and the cost instrumentation that every step gets for free.

Each step draws Z from the relaxation, gives every cell its own leaf copy of Z,
runs forward and backward once, and reads the cost dL/dZ off the leaves' .grad.
The weights' gradient comes from the same backward pass; alpha's gradient is
the relaxation's rule applied to the cost summed over the cells sharing alpha.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import data as datasets
from .config import SearchConfig
from .cost import CostStats, OutputCostStats
from .faults import DivergenceError
from .ops import NONE, OPS
from .relax import Darts, probabilities, relaxation
from .space import derive, derive_darts, selected_edges, width_depth
from .supernet import Network


@contextlib.contextmanager
def kept_buffers(net: torch.nn.Module):
    """Run with BN in train mode (batch statistics) and restore the running
    statistics afterwards, so that measuring changes nothing.

    A context manager; yields nothing."""
    saved = {k: b.clone() for k, b in net.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, b in net.named_buffers():
                b.copy_(saved[k])


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The random stream of one epoch: fixed by (seed, epoch), so a resumed run
    draws exactly what an uninterrupted one would.

    Returns a seeded ``torch.Generator``."""
    return torch.Generator().manual_seed(1_000_003 * seed + 7919 * epoch + stream)


class Search:
    """One search: the supernet, alpha per cell type, both optimizers and the data
    splits for ``config``. :meth:`run_epoch` trains one epoch and returns its
    record (costs, alpha, the derived cell); :func:`nas_core.run` drives it,
    with checkpoints and the run cache."""
    def __init__(self, config: SearchConfig, splits: datasets.Splits | None = None):
        self.config = config
        self.topology = config.topology
        self.device = config.resolved_device()
        splits = splits if splits is not None else datasets.load(config)
        self.splits = splits.to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = Network(self.topology, config.cells, config.channels, splits.in_channels,
                               splits.n_classes, config.network, config.stem_multiplier, config.logit_scale)
            g = torch.Generator().manual_seed(config.seed)
            shape = (self.topology.n_edges, len(OPS))
            self.alpha = {t: torch.nn.Parameter(config.alpha_mean + config.alpha_init * torch.randn(shape, generator=g))
                          for t in self.net.types}
        self.net.to(self.device)
        for a in self.alpha.values():
            a.data = a.data.to(self.device)
        self.types = self.net.types
        self.allowed = {t: config.intervention.allowed(self.topology.n_edges).to(self.device) for t in self.types}
        self.relax = relaxation(config.algorithm, config.dsnas_estimator, config.random_sample,
                                config.dsnas_reward_clamp)
        # listed once: scanning the module tree every step cost a fifth of a small DSNAS epoch
        self.params = list(self.net.parameters())
        # fused: one kernel per step, the foreach update's arithmetic (4x faster at the CPU presets)
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {"foreach": True}
        self.w_opt = torch.optim.SGD(self.params, lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay, **fused)
        self.a_opt = torch.optim.Adam(self.alpha.values(), lr=config.arch_lr, betas=(config.arch_beta1, 0.999),
                                      weight_decay=config.arch_weight_decay, **fused)
        self._momentum_buffers()
        # position of each network cell within its type, to lay costs out in network order
        seen = {t: 0 for t in self.types}
        self.cell_index = []
        for t in self.net.cell_types:
            self.cell_index.append((t, seen[t]))
            seen[t] += 1
        self.epoch = 0
        self.step = 0

    # ---- schedules -------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        """The weights' learning rate at ``epoch`` (cosine from ``lr`` to ``lr_min``)."""
        c = self.config
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * epoch / max(c.epochs, 1)))

    def temperature_at(self, epoch: int) -> float:
        """The relaxation's temperature at ``epoch`` (annealed to ``temperature_min``
        when that is set, else constant)."""
        c = self.config
        if c.temperature_min is None or c.epochs <= 1:
            return c.temperature
        return c.temperature * (c.temperature_min / c.temperature) ** (epoch / (c.epochs - 1))

    # ---- one forward / backward ------------------------------------------------
    def draw(self, generator, temperature=None, relax=None):
        """One sample of Z per cell type from the relaxation (``relax``, default the
        config's) at the epoch's temperature; returns {cell type: sample}."""
        relax = relax or self.relax
        temperature = temperature if temperature is not None else self.temperature_at(self.epoch)
        return {t: relax.sample(self.alpha[t], self.allowed[t], generator, temperature) for t in self.types}

    def forward(self, x, samples):
        """Logits and the per-cell leaf copies of Z whose .grad will be the cost."""
        z = {t: s.z.detach().unsqueeze(0).expand(self.net.count(t), -1, -1).clone().requires_grad_()
             for t, s in samples.items()}
        logits = self.net(x, z, {t: s.active for t, s in samples.items()})
        return logits, z

    @staticmethod
    def backward(loss, z):
        """Backward pass; afterwards every z[t].grad is the cost (zeros where Z did
        not reach the loss at all, e.g. when every edge of a cell drew ``none``)."""
        loss.backward()
        for leaf in z.values():
            if leaf.grad is None:
                leaf.grad = torch.zeros_like(leaf)

    @staticmethod
    def cost_backward(loss, z):
        """:meth:`backward` to Z alone: the same costs, no weight gradients (a held-out
        or probing pass discards them; their convolution backward is most of the pass)."""
        leaves = list(z.values())
        for leaf, g in zip(leaves, torch.autograd.grad(loss, leaves, allow_unused=True)):
            leaf.grad = torch.zeros_like(leaf) if g is None else g

    def costs(self, z, samples):
        """Cost per (cell in network order, edge, op) and which entries were computed.
        ``none`` counts as computed (with cost exactly 0) whenever its Z is positive."""
        per_type = {t: z[t].grad.detach().double().cpu().numpy() for t in z}
        computed = {}
        for t, s in samples.items():
            m = np.zeros(s.z.shape, dtype=bool)
            for e, ops in enumerate(s.active):
                m[e, ops] = True
            m[:, NONE] = s.z[:, NONE].detach().cpu().numpy() > 0
            computed[t] = m
        cost = np.stack([per_type[t][i] for t, i in self.cell_index])
        mask = np.stack([computed[t] for t, _ in self.cell_index])
        return cost, mask

    def zero_grad(self):
        """Drop the weights' gradients (the cached parameter list, no module scan).

        Returns None."""
        for p in self.params:
            p.grad = None

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

    def _alpha_step(self, samples, cost_by_type):
        self.a_opt.zero_grad(set_to_none=True)
        loss = sum(samples[t].alpha_loss(cost_by_type[t]) for t in self.types)
        loss.backward()
        if self.config.arch_grad_clip is not None:
            for a in self.alpha.values():  # one alpha per cell type, each clipped on its own
                torch.nn.utils.clip_grad_norm_([a], self.config.arch_grad_clip)
        self.a_opt.step()

    def _weight_step(self) -> torch.Tensor:
        """Clip and step; returns the weights' gradient norm (before clipping)."""
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip, foreach=True)  # (skips grad None)
        self.w_opt.step()
        return norm

    def _check_finite(self, quantities: dict):
        """Stop at the first non-finite loss, alpha or gradient norm of a step, with
        one device sync for all of them (the record of a diverged epoch is never written)."""
        values = torch.stack([v.detach().float().sum() for v in quantities.values()]).tolist()
        for name, value in zip(quantities, values):
            if not math.isfinite(value):
                c = self.config
                raise DivergenceError(f"the search diverged at epoch {self.epoch + 1}, step {self.step}: {name} is "
                                      f"{value}; lower the weights' learning rate (--lr, now {c.lr:g}) or alpha's "
                                      f"(--arch-lr, now {c.arch_lr:g})")

    def _record(self, stats, outs, split, logits, y, z, samples):
        if outs is not None:
            outs[split].add(logits.detach(), y)
        if stats is not None and self.config.record_costs:
            stats[split].add(*self.costs(z, samples))

    def train_step(self, x, y, generator, stats=None, outs=None, update_weights=True, update_alpha=True):
        """Single-level step: one backward gives both the weights' and alpha's gradients.

        Returns the batch's training loss (a float)."""
        samples = self.draw(generator)
        self.zero_grad()
        logits, z = self.forward(x, samples)
        loss = F.cross_entropy(logits, y)
        self.backward(loss, z)
        self._record(stats, outs, "train", logits, y, z, samples)
        checks = {"the train loss": loss}
        if update_alpha:
            self._alpha_step(samples, {t: z[t].grad.sum(0) for t in z})
            checks.update({f"alpha ({t})": a for t, a in self.alpha.items()})
        if update_weights:
            checks["the weights' gradient norm"] = self._weight_step()
        self._check_finite(checks)
        return loss.item()

    def heldout_alpha_step(self, x, y, generator, stats=None, outs=None, train_batch=None):
        """Bi-level: alpha moves along the cost measured on held-out data
        (first order), or DARTS' unrolled estimate (second order).

        Returns None (alpha and ``stats`` are updated in place)."""
        samples = self.draw(generator)
        checks = {}
        if self.config.order == 2:
            with kept_buffers(self.net):
                cost_v, logits, z = self._unrolled_cost(x, y, *train_batch, samples)
        else:
            self.zero_grad()
            logits, z = self.forward(x, samples)
            checks["the held-out loss"] = F.cross_entropy(logits, y)
            self.cost_backward(checks["the held-out loss"], z)
            cost_v = {t: z[t].grad.sum(0) for t in z}
        self._record(stats, outs, "heldout", logits, y, z, samples)
        self._alpha_step(samples, cost_v)
        self._check_finite({**checks, **{f"alpha ({t})": a for t, a in self.alpha.items()}})
        self.zero_grad()

    def _unrolled_cost(self, xv, yv, xt, yt, samples):
        """DARTS' second-order alpha signal, expressed as a cost:
        C_val(w') - eta * [C_train(w+) - C_train(w-)] / (2 eps), where
        w' = w - eta * grad_w L_train and w+- = w +- eps * grad_w' L_val(w')."""
        eta, wd = self.lr_at(self.epoch), self.config.weight_decay
        params = [p for p in self.net.parameters()]
        saved = [p.detach().clone() for p in params]

        def train_cost():
            logits_t, z_t = self.forward(xt, samples)
            grads = torch.autograd.grad(F.cross_entropy(logits_t, yt), [z_t[t] for t in self.types], allow_unused=True)
            return [torch.zeros_like(z_t[t]) if g is None else g for t, g in zip(self.types, grads)]

        logits_t, _ = self.forward(xt, samples)
        g = torch.autograd.grad(F.cross_entropy(logits_t, yt), params, allow_unused=True)
        with torch.no_grad():
            for p, gi in zip(params, g):
                if gi is not None:
                    p.sub_(eta * (gi + wd * p))
        logits, z = self.forward(xv, samples)
        grads = torch.autograd.grad(F.cross_entropy(logits, yv), params + [z[t] for t in self.types],
                                    allow_unused=True)
        dw = grads[: len(params)]
        dz = [torch.zeros_like(z[t]) if g is None else g for t, g in zip(self.types, grads[len(params):])]
        for t, gz in zip(self.types, dz):
            z[t].grad = gz
        norm = torch.sqrt(sum((d**2).sum() for d in dw if d is not None))
        eps = 0.01 / (norm.item() + 1e-12)
        with torch.no_grad():
            for p, s, d in zip(params, saved, dw):
                p.copy_(s if d is None else s + eps * d)
        plus = train_cost()
        with torch.no_grad():
            for p, s, d in zip(params, saved, dw):
                p.copy_(s if d is None else s - eps * d)
        minus = train_cost()
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        cost = {t: (dz[i] - eta * (plus[i] - minus[i]) / (2 * eps)).sum(0) for i, t in enumerate(self.types)}
        return cost, logits, z

    # ---- measuring without learning --------------------------------------------
    def probe(self, n_batches: int, generator) -> tuple[dict, dict]:
        """All ops' costs at the current alpha (Z = softmax(alpha), every allowed op
        runs) on ``n_batches`` train and held-out batches, BN in train mode; nothing
        is updated (BN running statistics are restored afterwards)."""
        splits = ("probe_train", "probe_heldout")
        stats, outs = self._new_stats(splits), self._new_outs(splits)
        with kept_buffers(self.net):
            self._probe(n_batches, generator, stats, outs)
        self.zero_grad()
        return stats, outs

    def _probe(self, n_batches, generator, stats, outs):
        s = self.splits
        for split, (x_all, y_all) in (("probe_train", (s.train_x, s.train_y)),
                                      ("probe_heldout", (s.heldout_x, s.heldout_y))):
            done = 0
            while done < n_batches:
                for x, y in datasets.batches(x_all, y_all, self.config.batch_size, generator):
                    samples = self.draw(generator, relax=Darts())
                    self.zero_grad()
                    logits, z = self.forward(x, samples)
                    self.cost_backward(F.cross_entropy(logits, y), z)
                    outs[split].add(logits.detach(), y)
                    stats[split].add(*self.costs(z, samples))
                    done += 1
                    if done == n_batches:
                        break

    @torch.no_grad()
    def evaluate(self, generator) -> OutputCostStats:
        """Held-out output cost and accuracy, Z drawn as in training, BN with batch
        statistics as in training and in the cost measurements (with few steps per
        epoch the running statistics lag far behind the weights)."""
        outs = OutputCostStats()
        with kept_buffers(self.net):
            self._evaluate(generator, outs)
        return outs

    def _evaluate(self, generator, outs):
        n = self.config.eval_size or len(self.splits.heldout_y)
        for x, y in datasets.batches(self.splits.heldout_x[:n], self.splits.heldout_y[:n], 256, generator):
            samples = self.draw(generator)
            z = {t: s.z.unsqueeze(0).expand(self.net.count(t), -1, -1) for t, s in samples.items()}
            logits = self.net(x, z, {t: s.active for t, s in samples.items()})
            outs.add(logits, y)

    # ---- one epoch -------------------------------------------------------------
    def view(self, x, generator):
        """The batch as training sees it: a fresh augmented view when
        ``augment_shift`` is set (both splits, as the authors augment both halves)."""
        c = self.config
        if not c.augment_shift:
            return x
        return datasets.augment(x, c.augment_shift, self.splits.flip_ok, generator)

    def _new_stats(self, splits):
        return {s: CostStats(len(self.cell_index), self.topology.n_edges, len(OPS)) for s in splits}

    def _new_outs(self, splits):
        return {s: OutputCostStats() for s in splits}

    def run_epoch(self) -> dict:
        """Train one epoch and return its history record."""
        c, start = self.config, time.perf_counter()
        lr = self.lr_at(self.epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        g = epoch_generator(c.seed, self.epoch)
        stats, outs = self._new_stats(("train", "heldout")), self._new_outs(("train",))
        update_alpha = c.alpha_updated_on is not None
        s = self.splits
        self.net.train()
        if c.level == "bi":
            held = list(datasets.batches(s.heldout_x, s.heldout_y, c.batch_size, g))
        for i, (x, y) in enumerate(datasets.batches(s.train_x, s.train_y, c.batch_size, g)):
            self.step = i + 1  # named by a DivergenceError
            x = self.view(x, g)
            if c.level == "bi" and update_alpha:
                xv, yv = held[i % len(held)]
                xv = self.view(xv, g)
                self.heldout_alpha_step(xv, yv, g, stats, None, train_batch=(x, y))
            self.train_step(x, y, g, stats, outs, update_weights=c.update_weights,
                            update_alpha=update_alpha and c.level == "single")
        cost = {k: v.summary() for k, v in stats.items() if v.count.any()}
        output = {k: v.summary() for k, v in outs.items()}
        output["heldout"] = self.evaluate(g).summary()
        if c.probe_batches:
            pstats, pouts = self.probe(c.probe_batches, epoch_generator(c.seed, self.epoch, stream=1))
            cost.update({k: v.summary() for k, v in pstats.items()})
            output.update({k: v.summary() for k, v in pouts.items()})
        self.epoch += 1
        return {
            "epoch": self.epoch,
            **self.architecture(),
            "cost": cost,
            "output_cost": output,
            "train_acc": output["train"]["accuracy"],
            "train_loss": output["train"]["loss"],
            "heldout_acc": output["heldout"]["accuracy"],
            "heldout_loss": output["heldout"]["loss"],
            "lr": lr,
            "temperature": self.temperature_at(self.epoch - 1),
            "seconds": time.perf_counter() - start,
        }

    def architecture(self) -> dict:
        """alpha, p, the derived cells (``none`` counted, and DARTS' top-2) and
        their wiring metrics, per cell type."""
        rec = {k: {} for k in ("alpha", "probs", "p_none", "derived", "derived_darts",
                               "selected_edges", "n_selected", "width", "depth")}
        for t in self.types:
            allowed = self.allowed[t].cpu().numpy()
            p = probabilities(self.alpha[t].detach(), self.allowed[t]).double().cpu().numpy()
            derived = derive(p, allowed)
            rec["alpha"][t] = np.round(self.alpha[t].detach().double().cpu().numpy(), 6).tolist()
            rec["probs"][t] = np.round(p, 6).tolist()
            rec["p_none"][t] = np.round(p[:, NONE], 6).tolist()
            rec["derived"][t] = derived
            rec["derived_darts"][t] = derive_darts(p, self.topology, allowed)
            rec["selected_edges"][t] = selected_edges(derived)
            rec["n_selected"][t] = len(rec["selected_edges"][t])
            rec["width"][t], rec["depth"][t] = width_depth(derived, self.topology)
        return rec

    # ---- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (epoch, weights, alpha, both optimizers), as a dict."""
        return {"epoch": self.epoch, "net": self.net.state_dict(),
                "alpha": {t: a.detach().cpu() for t, a in self.alpha.items()},
                "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict()}

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict` in place; returns None."""
        self.epoch = state["epoch"]
        self.net.load_state_dict(state["net"])
        for t, a in state["alpha"].items():
            self.alpha[t].data.copy_(a.to(self.device))
        self.w_opt.load_state_dict(state["w_opt"])
        self._momentum_buffers()
        self.a_opt.load_state_dict(state["a_opt"])

    # ---- measuring for the chapters ---------------------------------------------
    def measure(self, x, y, samples, train: bool = True) -> dict:
        """One forward and backward pass on the batch (x, y) at ``samples`` (from
        :meth:`draw`), changing nothing: no weight or alpha moves, BN's running
        statistics are restored, the weights' gradients are dropped. BN uses
        batch statistics (``train=False``: its running ones, eval mode).

        Returns {"loss": scalar tensor, "logits": (batch, classes) tensor,
        "z": {cell type: (cells of the type, edges, ops) Z the cells ran},
        "cost": {cell type: dL/dZ of the same shape}}, all detached."""
        was = self.net.training
        with kept_buffers(self.net):
            self.net.train(train)
            try:
                self.zero_grad()
                logits, z = self.forward(x, samples)
                loss = F.cross_entropy(logits, y)
                self.backward(loss, z)
            finally:
                self.net.train(was)
        self.zero_grad()
        return {"loss": loss.detach(), "logits": logits.detach(), "z": {t: v.detach() for t, v in z.items()},
                "cost": {t: v.grad for t, v in z.items()}}
