"""The epoch's cost statistics (nas_core.cost.CostStats): kept as tensors, read as
the mean, variance and count of each op's cost over the steps that computed it."""
from __future__ import annotations

import numpy as np
import torch

from nas_core.cost import CostStats


def test_cost_stats_count_only_the_steps_that_computed_an_op():
    rng = np.random.default_rng(0)
    costs = rng.normal(size=(6, 2, 3, 4))
    computed = rng.random((6, 2, 3, 4)) < 0.6
    computed[:, 0, 0, 0] = False  # never computed: NaN mean and variance, count 0
    stats = CostStats(2, 3, 4)
    for i, (c, m) in enumerate(zip(costs, computed)):
        # tensors (as the epoch adds them, float32 on the device) and numpy arrays alike
        stats.add(torch.from_numpy(c) if i % 2 else c, torch.from_numpy(m) if i % 2 else m)
    n = computed.sum(0)
    w = computed.astype(float)
    mean = (w * costs).sum(0) / np.maximum(n, 1)
    var = (w * (costs - mean) ** 2).sum(0) / np.maximum(n, 1)
    out = stats.summary()
    assert out["count"] == n.tolist() and stats.count.dtype == np.int64
    got_mean = np.array(out["mean"], dtype=float)
    got_var = np.array(out["var"], dtype=float)
    assert np.isnan(got_mean[0, 0, 0]) and np.isnan(got_var[0, 0, 0])
    seen = n > 0
    np.testing.assert_allclose(got_mean[seen], mean[seen], rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(got_var[seen], var[seen], rtol=1e-6, atol=1e-8)


def test_empty_cost_stats_read_as_zeros():
    stats = CostStats(1, 2, 3)
    assert stats.total.shape == (1, 2, 3) and not stats.count.any()
