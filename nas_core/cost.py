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
    of one epoch, counting only steps in which the op was computed."""

    def __init__(self, n_cells: int, n_edges: int, n_ops: int):
        shape = (n_cells, n_edges, n_ops)
        self.total = np.zeros(shape)
        self.total_sq = np.zeros(shape)
        self.count = np.zeros(shape, dtype=np.int64)

    def add(self, cost: np.ndarray, computed: np.ndarray):
        """``cost`` (cells, edges, ops); ``computed`` (cells, edges, ops) boolean."""
        c = np.where(computed, cost, 0.0)
        self.total += c
        self.total_sq += c * c
        self.count += computed

    def summary(self) -> dict:
        n = np.maximum(self.count, 1)
        mean = self.total / n
        var = np.maximum(self.total_sq / n - mean**2, 0.0)
        mean = np.where(self.count > 0, mean, np.nan)
        var = np.where(self.count > 0, var, np.nan)
        return {"mean": _json(mean), "var": _json(var), "count": self.count.tolist()}


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
        self.sums = {g: np.zeros(4) for g in ("correct", "wrong")}  # n, cost, loss, entropy

    def add(self, logits: torch.Tensor, y: torch.Tensor):
        cost, loss, entropy = (t.detach().double().cpu() for t in output_cost(logits, y))
        right = (logits.argmax(-1) == y).cpu()
        for group, mask in (("correct", right), ("wrong", ~right)):
            self.sums[group] += [mask.sum().item(), cost[mask].sum().item(),
                                 loss[mask].sum().item(), entropy[mask].sum().item()]

    def summary(self) -> dict:
        out = {}
        for group, (n, cost, loss, entropy) in self.sums.items():
            d = max(n, 1)
            out[group] = {"n": int(n), "output_cost": cost / d, "loss": loss / d, "entropy": entropy / d}
        total = sum(s[0] for s in self.sums.values())
        out["accuracy"] = self.sums["correct"][0] / max(total, 1)
        out["loss"] = sum(s[2] for s in self.sums.values()) / max(total, 1)
        out["output_cost"] = sum(s[1] for s in self.sums.values()) / max(total, 1)
        return out
