"""The bi-level alpha step: alpha moves along the cost measured on held-out
data, to first order (the weights as they are) or DARTS' second order (the
weights after one virtual SGD step on the training batch), as DARTS'
``cnn/architect.py`` does before each weight step."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .passes import CostPasses
from .state import SearchState, kept_buffers


class BilevelAlphaStep:
    """The held-out alpha step of a search (its :class:`SearchState`), through its
    :class:`CostPasses`; it leaves the weights as they were."""

    #: the finite difference's step in weight space, DARTS' 0.01 (eps = FD_STEP / |dL_val/dw'|)
    FD_STEP = 0.01

    def __init__(self, state: SearchState, passes: CostPasses):
        self.state, self.passes = state, passes

    def __call__(self, x, y, generator, stats=None, train_batch=None):
        """Alpha moves along the cost measured on the held-out batch (x, y) (first
        order), or DARTS' unrolled estimate (second order, which needs
        ``train_batch``). Held-out costs go to ``stats["heldout"]``.

        Returns None (alpha and ``stats`` are updated in place)."""
        st = self.state
        samples = self.passes.draw(generator)
        checks = {}
        if st.config.order == 2:
            with kept_buffers(st.net):
                cost_v, logits, z = self.unrolled_cost(x, y, *train_batch, samples)
        else:
            checks["the held-out loss"], logits, z = self.passes.forward_backward(x, y, samples, weight_grads=False)
            cost_v = {t: z[t].grad.sum(0) for t in z}
        self.passes.add_to_stats(stats, None, "heldout", logits, y, z, samples)
        st.update_alpha(samples, cost_v)
        st.check_finite({**checks, **{f"alpha ({t})": a for t, a in st.alpha.items()}})
        st.zero_grad()

    def virtual_step(self, grads, eta: float):
        """DARTS' virtual weights w' = w - eta * (momentum * buffer + dL_train/dw + wd * w),
        the momentum term included as in DARTS' own code (the buffer is the SGD
        optimiser's; zero before the first step). Weights without a gradient (ops
        that never ran) stay. Changes the weights in place; returns None."""
        st = self.state
        c = st.config
        with torch.no_grad():
            for p, g in zip(st.params, grads):
                if g is None:
                    continue
                step = g + c.weight_decay * p
                buf = st.w_opt.state[p].get("momentum_buffer") if c.momentum else None
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
        st, forward = self.state, self.passes.forward
        eta = st.lr_at(st.epoch)
        params, types = st.params, st.types
        saved = [p.detach().clone() for p in params]

        def train_cost():
            logits_t, z_t = forward(xt, samples)
            grads = torch.autograd.grad(F.cross_entropy(logits_t, yt), [z_t[t] for t in types], allow_unused=True)
            return [torch.zeros_like(z_t[t]) if g is None else g for t, g in zip(types, grads)]

        logits_t, _ = forward(xt, samples)
        self.virtual_step(torch.autograd.grad(F.cross_entropy(logits_t, yt), params, allow_unused=True), eta)
        logits, z = forward(xv, samples)
        grads = torch.autograd.grad(F.cross_entropy(logits, yv), params + [z[t] for t in types], allow_unused=True)
        dw = grads[: len(params)]
        dz = [torch.zeros_like(z[t]) if g is None else g for t, g in zip(types, grads[len(params):])]
        for t, gz in zip(types, dz):
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
        cost = {t: (dz[i] - eta * (plus[i] - minus[i]) / (2 * eps)).sum(0) for i, t in enumerate(types)}
        return cost, logits, z
