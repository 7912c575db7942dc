"""One forward and backward pass, and the single-level step built on it.

:meth:`Step.forward_backward` is the one pass every caller makes (training,
the held-out and probing passes, :meth:`Step.measure` for the chapters and the
tests): draw Z, give every cell a leaf copy of it, run the supernet, and
backpropagate once; the leaves' ``.grad`` are the costs dL/dZ.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..faults import DivergenceError
from ..ops import NONE
from .state import SearchState, kept_buffers


@contextmanager
def frozen(params):
    """Run with ``params`` not requiring grad (restored afterwards): a pass that only
    wants dL/dZ then builds no weight-gradient graph, and its convolutions' backward
    computes input gradients alone (in a bi-level DARTS epoch that halves the
    held-out pass's convolution backward). A context manager; yields nothing."""
    wanted = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, w in zip(params, wanted):
            p.requires_grad_(w)


class Step(SearchState):
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
        or probing pass discards them). The forward must run inside :func:`frozen`,
        else every custom kernel's backward still computes its weight gradient
        (``ctx.needs_input_grad`` is fixed in the forward, whatever is asked of the backward)."""
        leaves = list(z.values())
        for leaf, g in zip(leaves, torch.autograd.grad(loss, leaves, allow_unused=True)):
            leaf.grad = torch.zeros_like(leaf) if g is None else g

    def forward_backward(self, x, y, samples, weight_grads: bool = True):
        """The one pass: forward at ``samples``, cross-entropy, backward (to the
        weights too if ``weight_grads``, else to Z alone). Returns (loss, logits, z)
        with z[t].grad the cost."""
        self.zero_grad()
        if weight_grads:
            logits, z = self.forward(x, samples)
            loss = F.cross_entropy(logits, y)
            self.backward(loss, z)
            return loss, logits, z
        with frozen(self.params):
            logits, z = self.forward(x, samples)
            loss = F.cross_entropy(logits, y)
            self.cost_backward(loss, z)
        return loss, logits, z

    def measure(self, x, y, samples, train: bool = True) -> dict:
        """One forward and backward pass on the batch (x, y) at ``samples`` (from
        :meth:`draw`), changing nothing: no weight or alpha moves, BN's running
        statistics are restored, no weight gets a gradient. BN uses
        batch statistics (``train=False``: its running ones, eval mode).

        Returns {"loss": scalar tensor, "logits": (batch, classes) tensor,
        "z": {cell type: (cells of the type, edges, ops) Z the cells ran},
        "cost": {cell type: dL/dZ of the same shape}}, all detached."""
        was = self.net.training
        with kept_buffers(self.net):
            self.net.train(train)
            try:
                # costs alone: no weight gets a gradient, so measuring never changes
                # which weights SGD keeps moving (see zero_grad)
                loss, logits, z = self.forward_backward(x, y, samples, weight_grads=False)
            finally:
                self.net.train(was)
        self.zero_grad()
        return {"loss": loss.detach(), "logits": logits.detach(), "z": {t: v.detach() for t, v in z.items()},
                "cost": {t: v.grad for t, v in z.items()}}

    def cost_tensors(self, z, samples):
        """Cost per (cell in network order, edge, op), and which entries were computed,
        as tensors on the device (what the epoch's statistics add up without a sync).
        ``none`` counts as computed (with cost exactly 0) whenever its Z is positive."""
        order = self.network_order
        grads = [z[t].grad.detach() for t in self.types]
        cost = grads[0] if order is None else torch.cat(grads).index_select(0, order)
        masks = []
        for t in self.types:
            s = samples[t]
            m = np.zeros(s.z.shape, dtype=bool)
            for e, ops in enumerate(s.active):
                m[e, ops] = True
            m = torch.from_numpy(m).to(s.z.device)
            m[:, NONE] = s.z[:, NONE].detach() > 0
            masks.append(m.unsqueeze(0).expand(self.net.count(t), -1, -1))
        mask = masks[0] if order is None else torch.cat(masks).index_select(0, order)
        return cost, mask

    def costs(self, z, samples):
        """:meth:`cost_tensors` as float64 numpy arrays (for reading; the epoch keeps tensors)."""
        cost, mask = self.cost_tensors(z, samples)
        return cost.double().cpu().numpy(), mask.cpu().numpy()

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
            stats[split].add(*self.cost_tensors(z, samples))

    def train_step(self, x, y, generator, stats=None, outs=None, update_weights=True, update_alpha=True):
        """Single-level step: one backward gives both the weights' and alpha's gradients.

        Returns the batch's training loss (a float)."""
        samples = self.draw(generator)
        loss, logits, z = self.forward_backward(x, y, samples)
        self._record(stats, outs, "train", logits, y, z, samples)
        checks = {"the train loss": loss}
        if update_alpha:
            self._alpha_step(samples, {t: z[t].grad.sum(0) for t in z})
            checks.update({f"alpha ({t})": a for t, a in self.alpha.items()})
        if update_weights:
            checks["the weights' gradient norm"] = self._weight_step()
        self._check_finite(checks)
        return loss.item()
