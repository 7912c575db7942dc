"""Bi-level updates: alpha moves along the cost measured on held-out data, to
first order (the weights as they are) or DARTS' second order (the weights
after one virtual SGD step on the training batch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .state import kept_buffers
from .step import Step


class Bilevel(Step):
    #: the finite difference's step in weight space, DARTS' 0.01 (eps = FD_STEP / |dL_val/dw'|)
    FD_STEP = 0.01

    def heldout_alpha_step(self, x, y, generator, stats=None, train_batch=None):
        """Bi-level: alpha moves along the cost measured on the held-out batch (x, y)
        (first order), or DARTS' unrolled estimate (second order, which needs
        ``train_batch``). Held-out costs go to ``stats["heldout"]``.

        Returns None (alpha and ``stats`` are updated in place)."""
        samples = self.draw(generator)
        checks = {}
        if self.config.order == 2:
            with kept_buffers(self.net):
                cost_v, logits, z = self.unrolled_cost(x, y, *train_batch, samples)
        else:
            checks["the held-out loss"], logits, z = self.forward_backward(x, y, samples, weight_grads=False)
            cost_v = {t: z[t].grad.sum(0) for t in z}
        self._record(stats, None, "heldout", logits, y, z, samples)
        self._alpha_step(samples, cost_v)
        self._check_finite({**checks, **{f"alpha ({t})": a for t, a in self.alpha.items()}})
        self.zero_grad()

    def virtual_step(self, grads, eta: float):
        """DARTS' virtual weights w' = w - eta * (momentum * buffer + dL_train/dw + wd * w),
        the momentum term included as in DARTS' own code (the buffer is the SGD
        optimiser's; zero before the first step). Weights without a gradient (ops
        that never ran) stay. Changes the weights in place; returns None."""
        c = self.config
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                if g is None:
                    continue
                step = g + c.weight_decay * p
                buf = self.w_opt.state[p].get("momentum_buffer") if c.momentum else None
                if buf is not None:
                    step = step + c.momentum * buf
                p.sub_(eta * step)

    def unrolled_cost(self, xv, yv, xt, yt, samples):
        """DARTS' second-order alpha signal, expressed as a cost:
        C_val(w') - eta * [C_train(w+) - C_train(w-)] / (2 eps), where w' is
        :meth:`virtual_step` and w+- = w +- eps * dL_val(w')/dw', eps = FD_STEP / |dL_val/dw'|
        (DARTS' finite-difference Hessian-vector product, :attr:`FD_STEP`). The weights are
        restored afterwards. Returns ({cell type: cost summed over its cells},
        the held-out logits, the held-out Z leaves with their cost in .grad)."""
        eta = self.lr_at(self.epoch)
        params = self.params
        saved = [p.detach().clone() for p in params]

        def train_cost():
            logits_t, z_t = self.forward(xt, samples)
            grads = torch.autograd.grad(F.cross_entropy(logits_t, yt), [z_t[t] for t in self.types], allow_unused=True)
            return [torch.zeros_like(z_t[t]) if g is None else g for t, g in zip(self.types, grads)]

        logits_t, _ = self.forward(xt, samples)
        self.virtual_step(torch.autograd.grad(F.cross_entropy(logits_t, yt), params, allow_unused=True), eta)
        logits, z = self.forward(xv, samples)
        grads = torch.autograd.grad(F.cross_entropy(logits, yv), params + [z[t] for t in self.types],
                                    allow_unused=True)
        dw = grads[: len(params)]
        dz = [torch.zeros_like(z[t]) if g is None else g for t, g in zip(self.types, grads[len(params):])]
        for t, gz in zip(self.types, dz):
            z[t].grad = gz
        norm = torch.sqrt(sum((d**2).sum() for d in dw if d is not None))
        eps = self.FD_STEP / (norm.item() + 1e-12)
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
