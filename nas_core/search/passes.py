"""One forward and backward pass of the supernet, the pass every caller makes
(training, the held-out and probing passes, :meth:`CostPasses.measure` for the
chapters and the tests): draw Z, give every cell a leaf copy of it, run the
supernet, and backpropagate once; the leaves' ``.grad`` are the costs dL/dZ.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import NONE
from .state import SearchState, kept_buffers, train_mode


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


class CostPasses:
    """The passes of one search's supernet (its :class:`SearchState`) that read the
    cost off per-cell leaves of Z; they change no weight or alpha themselves."""

    def __init__(self, state: SearchState):
        self.state = state

    def draw(self, generator, temperature=None, relax=None):
        """One sample of Z per cell type from the relaxation (``relax``, default the
        config's) at the epoch's temperature; returns {cell type: sample}."""
        st = self.state
        relax = relax or st.relax
        temperature = temperature if temperature is not None else st.temperature_at(st.epoch)
        return {t: relax.sample(st.alpha[t], st.allowed[t], generator, temperature) for t in st.types}

    def forward(self, x, samples):
        """Logits and the per-cell leaf copies of Z whose .grad will be the cost."""
        z = {t: v.clone().requires_grad_()
             for t, v in self.state.z_for_cells({t: s.z.detach() for t, s in samples.items()}).items()}
        logits = self.state.net(x, z, {t: s.active for t, s in samples.items()})
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
        self.state.zero_grad()
        if weight_grads:
            logits, z = self.forward(x, samples)
            loss = F.cross_entropy(logits, y)
            self.backward(loss, z)
            return loss, logits, z
        with frozen(self.state.params):
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
        with kept_buffers(self.state.net), train_mode(self.state.net, train):
            # costs alone: no weight gets a gradient, so measuring never changes
            # which weights SGD keeps moving (see SearchState.zero_grad)
            loss, logits, z = self.forward_backward(x, y, samples, weight_grads=False)
        self.state.zero_grad()
        return {"loss": loss.detach(), "logits": logits.detach(), "z": {t: v.detach() for t, v in z.items()},
                "cost": {t: v.grad for t, v in z.items()}}

    def cost_tensors(self, z, samples):
        """Cost per (cell in network order, edge, op), and which entries were computed,
        as tensors on the device (what the epoch's statistics add up without a sync).
        ``none`` counts as computed (with cost exactly 0) whenever its Z is positive."""
        st = self.state
        order = st.network_order
        grads = [z[t].grad.detach() for t in st.types]
        cost = grads[0] if order is None else torch.cat(grads).index_select(0, order)
        masks = []
        for t in st.types:
            s = samples[t]
            m = np.zeros(s.z.shape, dtype=bool)
            for e, ops in enumerate(s.active):
                m[e, ops] = True
            m = torch.from_numpy(m).to(s.z.device)
            m[:, NONE] = s.z[:, NONE].detach() > 0
            masks.append(m.unsqueeze(0).expand(st.net.count(t), -1, -1))
        mask = masks[0] if order is None else torch.cat(masks).index_select(0, order)
        return cost, mask

    def add_to_stats(self, stats, outs, split, logits, y, z, samples):
        """Add a pass's outputs to ``outs[split]`` and its costs to ``stats[split]``
        (either may be None; costs only under ``record_costs``). Returns None."""
        if outs is not None:
            outs[split].add(logits.detach(), y)
        if stats is not None and self.state.config.record_costs:
            stats[split].add(*self.cost_tensors(z, samples))
