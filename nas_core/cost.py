"""Running statistics of the op costs C = dL/dZ, and the output cost.

The cost of op k on edge (i, j) is the gradient of the loss w.r.t. its weight
Z_ij^k, i.e. <dL/dx_j, O_k(x_i)>. It arrives with the ordinary backward pass
as the gradient of the leaf tensor Z; this module only accumulates it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class CostStats:
    """Mean, variance and count of the cost per (cell, edge, op) over the steps
    of one epoch, counting only steps in which the op was computed. The sums stay
    tensors on the costs' device (no synchronisation per step, which on a GPU would
    stall every step); ``total``, ``total_sq``, ``count`` and ``summary`` read them."""

    def __init__(self, n_cells: int, n_edges: int, n_ops: int):
        self.shape = (n_cells, n_edges, n_ops)
        self._sums = None  # (3, cells, edges, ops) float64: sum, sum of squares, count

    def add(self, cost, computed):
        """``cost`` (cells, edges, ops) and ``computed`` (the same shape, boolean):
        tensors (kept on their device) or numpy arrays."""
        cost = torch.as_tensor(cost)
        computed = torch.as_tensor(computed, device=cost.device)
        c = torch.where(computed, cost.to(torch.float64), 0.0)
        step = torch.stack([c, c * c, computed.to(torch.float64)])
        self._sums = step if self._sums is None else self._sums.add_(step)

    def _read(self):
        """(total, total of squares, count) as numpy arrays, in one transfer."""
        sums = np.zeros((3, *self.shape)) if self._sums is None else self._sums.cpu().numpy()
        return sums[0], sums[1], sums[2].astype(np.int64)

    @property
    def total(self) -> np.ndarray:
        return self._read()[0]

    @property
    def total_sq(self) -> np.ndarray:
        return self._read()[1]

    @property
    def count(self) -> np.ndarray:
        return self._read()[2]

    def summary(self) -> dict:
        total, total_sq, count = self._read()
        n = np.maximum(count, 1)
        mean = total / n
        var = np.maximum(total_sq / n - mean**2, 0.0)
        mean = np.where(count > 0, mean, np.nan)
        var = np.where(count > 0, var, np.nan)
        return {"mean": _json(mean), "var": _json(var), "count": count.tolist()}


def _json(a: np.ndarray):
    """Nested lists with NaN as None (valid JSON)."""
    return np.where(np.isnan(a), None, np.round(a, 8)).tolist()


def output_cost(logits: torch.Tensor, y: torch.Tensor):
    """Per-sample output cost E_p[f] - f_y with its two parts: loss - entropy.

    With a bias-free linear classifier this is <dL_n/df, f> for sample n, the
    cost that the whole network carries (the book derives it)."""
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    cost = (p * logits).sum(-1) - logits.gather(1, y[:, None]).squeeze(1)
    loss = -logp.gather(1, y[:, None]).squeeze(1)
    entropy = -(p * logp).sum(-1)
    return cost, loss, entropy


class OutputCostStats:
    """Sums of output cost, loss and entropy for correctly and wrongly
    classified samples."""

    def __init__(self):
        self._sums = None  # (2, 4) float64 tensor on the logits' device: correct, wrong x n, cost, loss, entropy

    def add(self, logits: torch.Tensor, y: torch.Tensor):
        """Adds a batch's per-sample output costs (on the logits' device, no synchronisation)."""
        logits = logits.detach()
        cost, loss, entropy = output_cost(logits, y)
        right = (logits.argmax(-1) == y).to(torch.float64)
        q = torch.stack([torch.ones_like(cost), cost, loss, entropy]).to(torch.float64)  # (4, batch)
        step = torch.stack([q @ right, q @ (1.0 - right)])
        self._sums = step if self._sums is None else self._sums.add_(step)

    @property
    def sums(self) -> dict:
        """{"correct" | "wrong": numpy [n, sum of output cost, of loss, of entropy]}."""
        sums = np.zeros((2, 4)) if self._sums is None else self._sums.cpu().numpy()
        return {"correct": sums[0], "wrong": sums[1]}

    def summary(self) -> dict:
        out, sums = {}, self.sums
        for group, (n, cost, loss, entropy) in sums.items():
            d = max(n, 1)
            out[group] = {"n": int(n), "output_cost": cost / d, "loss": loss / d, "entropy": entropy / d}
        total = sum(s[0] for s in sums.values())
        out["accuracy"] = sums["correct"][0] / max(total, 1)
        out["loss"] = sum(s[2] for s in sums.values()) / max(total, 1)
        out["output_cost"] = sum(s[1] for s in sums.values()) / max(total, 1)
        return out
