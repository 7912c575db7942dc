"""The mechanisms chapter's runs, measurements, tables and figures
(nas_core.chapters.mechanisms, cost_figures), and Search.measure."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import nas_core
from nas_core import SearchConfig, plots, record, run
from nas_core.chapters import mechanisms, cost_figures
from nas_core.ops import NONE, OPS
from nas_core.relax import UniformSample
from nas_core.search import Search
from nas_core.space import cell_types

torch.set_num_threads(1)
TINY = dict(data="synthetic", cells=3, channels=4, batch_size=16, epochs=2)


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    """Alpha frozen, ops sampled uniformly, probes on both splits: the chapter's main run, tiny."""
    return nas_core.run(SearchConfig(**TINY, random_sample=True, probe_batches=1),
                        cache_dir=tmp_path_factory.mktemp("runs"), progress=False)


def record_with(costs):
    """An epoch record whose train costs are ``costs`` (cells x edges x ops)."""
    c = np.asarray(costs, dtype=float)
    return {"cost": {"train": {"mean": c.tolist(), "var": np.zeros_like(c).tolist(),
                               "count": np.ones(c.shape, dtype=int).tolist()}}}


def test_cell_types_one_rule():
    assert cell_types("all_normal", 4) == ["normal"] * 4
    assert cell_types("standard", 8) == ["normal", "normal", "reduce", "normal", "normal", "reduce",
                                         "normal", "normal"]


def test_edge_cost_sums_only_the_cells_that_share_alpha():
    """In the standard network the reduction cells have their own alpha: summing
    their costs into the normal cells' (as the code did before) was wrong."""
    config = SearchConfig(data="synthetic", network="standard", cells=3)   # normal, reduce, reduce
    types = cell_types(config.network, config.cells)
    costs = np.zeros((3, 5, 8))
    for i, t in enumerate(types):
        costs[i] = 1.0 if t == "normal" else 100.0
    m = record.summed_costs(record_with(costs), "train", config)
    assert np.allclose(m, types.count("normal") * 1.0)
    r = record.summed_costs(record_with(costs), "train", config, "reduce")
    assert np.allclose(r, types.count("reduce") * 100.0)
    flat = SearchConfig(data="synthetic", cells=3)
    assert np.allclose(record.summed_costs(record_with(np.ones((3, 5, 8))), "train", flat), 3.0)


def test_mechanism_configs():
    configs = mechanisms.mechanism_configs("cpu", seeds=(0, 1), epochs=3)
    assert {k: len(v) for k, v in configs.items()} == {"main": 2, "contrast": 2, "intervention": 2}
    main, contrast, inter = (configs[k][0] for k in ("main", "contrast", "intervention"))
    assert main.random_sample and main.epochs == 3 and main.probe_batches == 1 and contrast.probe_batches == 0
    assert contrast.logit_scale == 1.0 != main.logit_scale
    assert list(inter.intervention.delete_edges) == [0, 2]
    with pytest.raises(ValueError, match="unknown profile"):
        mechanisms.mechanism_configs("gpu")


def test_measure_changes_nothing_and_returns_the_cost():
    s = Search(SearchConfig(**TINY))
    x, y = s.splits.train_x[:16], s.splits.train_y[:16]
    samples = s.draw(torch.Generator().manual_seed(0), relax=UniformSample())
    before = {k: v.clone() for k, v in s.net.state_dict().items()}
    s.net.eval()
    m = s.measure(x, y, samples)
    assert not s.net.training                                   # the mode it had
    assert all(torch.equal(before[k], v) for k, v in s.net.state_dict().items())
    assert all(p.grad is None for p in s.net.parameters())
    assert set(m) == {"loss", "logits", "z", "cost"} and m["cost"]["normal"].shape == (3, 5, 8)
    assert not m["loss"].requires_grad and m["logits"].shape == (16, s.splits.n_classes)
    # the cost of an op that did not run is 0, of the sampled ones not
    ran = samples["normal"].z.bool()
    assert (m["cost"]["normal"][:, ~ran] == 0).all() and (m["cost"]["normal"][:, ran] != 0).any()
    again = s.measure(x, y, samples)
    assert torch.equal(again["cost"]["normal"], m["cost"]["normal"])
    assert not torch.equal(s.measure(x, y, samples, train=False)["loss"], m["loss"])   # BN's running statistics


def test_sampled_costs_and_the_sweep():
    s = Search(SearchConfig(**TINY, random_sample=True))
    m = mechanisms.sampled_costs(s, n_batches=7, seed=1)            # more batches than the split has
    assert len(m["batches"]) == 7 and m["cells"].shape == (7, 3)
    assert all(op != "none" for _, op, _ in m["ops"])
    assert mechanisms.sampled_costs(s, n_batches=7, seed=1)["cells"] == pytest.approx(m["cells"])
    sweep = mechanisms.logit_scale_sweep(SearchConfig(**TINY), scales=(1, 20), seeds=(0,), n_batches=2)
    assert sweep.logit_scale.tolist() == [1.0, 20.0] and sweep.positive.between(0, 1).all()
    assert (sweep.output_cost - (sweep.loss - sweep.entropy)).abs().max() < 1e-5      # float32
    assert sweep.output_cost.iloc[1] > 100 * abs(sweep.output_cost.iloc[0])           # logits x20: a large cost
    assert len(cost_figures.sweep_figure(sweep).data) == 4


def test_tables_from_a_run(h):
    cs = mechanisms.cell_sum_frame(h)
    assert list(cs.columns) == ["group", "seed", "epoch", "split", "cell", "last", "z_weighted_cost", "output_cost"]
    assert len(cs) == 2 * 3 * 3 and cs.groupby(["epoch", "split"])["last"].sum().eq(1).all()
    probe = cs[(cs.epoch == 2) & (cs.split == "probe_train")].z_weighted_cost.to_numpy()
    r = h.records[1]
    expect = (np.nan_to_num(record.costs(r, "probe_train", h.config)) * record.probs(r)[None]).sum((1, 2))
    assert probe == pytest.approx(expect)
    carried = mechanisms.carried_by_last_cell(cs)
    assert set(carried.index) == {"train", "probe_train", "probe_heldout"} and carried.shape[1] == 3
    out = mechanisms.output_frame(h)
    assert set(out.samples) == {"correct", "wrong"} and len(out) == 2 * 2 * 2
    assert (out.groupby(["epoch", "split"]).n.sum() > 0).all()
    summary = mechanisms.run_summary({"tiny": [h]})
    assert summary.loc["tiny", "epochs"] == 2 and summary.loc["tiny", "intervention"] == "–"
    m = mechanisms.mean_matrix(h, "probe_train", [1, 2])
    assert m == pytest.approx((record.summed_costs(h.records[0], "probe_train", h.config)
                               + record.summed_costs(h.records[1], "probe_train", h.config)) / 2)
    windows = mechanisms.epoch_windows(2, first=1, last=1)
    assert list(windows) == ["epochs 1–1", "epochs 2–2"]
    frame = plots.cost_frame({"tiny": h}, splits=("train",))
    table = mechanisms.start_end(frame, windows, h.config.topology)
    assert table.index[4] == "e4: n0→n1 (deep)" and table.shape == (5, 2)
    assert table.iloc[0, 1] == pytest.approx(mechanisms.window_mean(frame, [2])[("tiny", "train", 0)])


def test_figures_from_a_run(h):
    frame = plots.cost_frame(h, splits=("probe_train", "probe_heldout"))
    fig = cost_figures.edge_cost_figure(frame, panels="split", smooth=2)
    assert len(fig.data) == 2 * 5 and fig.data[4].name == "e4: n0→n1 (deep)" and fig.data[4].line.dash == "dash"
    cs = cost_figures.cell_sum_figure(mechanisms.cell_sum_frame(h), "probe_train")
    assert [t.name for t in cs.data] == ["cell 0", "cell 1", "cell 2 (last)", "output cost"]
    top = h.config.topology
    grid = cost_figures.heatmap_grid({("a", "x"): np.ones((5, 8)), ("a", "y"): -np.ones((5, 8)),
                                            ("b", "x"): np.zeros((5, 8))}, top)
    assert [t.type for t in grid.data] == ["heatmap"] * 3 and grid.data[0].x[4] == "e4*"
    outputs = cost_figures.output_figure(mechanisms.output_frame(h))
    assert len(outputs.data) == 4 + 2 * 2 * 3        # legend entries, then 3 lines per split and group


def test_the_authors_setups_of_figures_4_and_10b(tmp_path):
    """Figure 4 on one minimal cell; figure 10b on one cell of 2 steps and multiplier 1
    (the output is n1 alone: n0 reaches it only through the deep edge e4), edges 0
    and 2 deleted, edge 1 fixed to sep_conv_5x5; alpha frozen, ops sampled uniformly.
    (Before: 4 cells, multiplier 2, sep_conv_3x3, where n0 reaches the output directly.)"""
    configs = mechanisms.authors_configs("cpu", seeds=(6,))
    fig4, fig10b = configs["fig4"][0], configs["fig10b"][0]
    assert (fig4.cells, fig4.cell, fig4.random_sample, fig4.seed) == (1, "minimal", True, 6)
    top = fig10b.topology
    assert fig10b.cells == 1 and top.output_nodes == (3,)  # state 3 = n1
    assert top.edges[4] == (2, 3) and top.deep_edges == (4,)
    allowed = fig10b.intervention.allowed(top.n_edges)
    assert allowed[0].sum() == allowed[2].sum() == 1 and allowed[0, NONE] and allowed[2, NONE]
    assert allowed[1].sum() == 1 and allowed[1, OPS.index("sep_conv_5x5")]
    # figure 4's measurement: frozen weights at initialisation and after training
    tiny = {**TINY, "epochs": 2}
    h = run(mechanisms.authors_configs("cpu", seeds=(0,), **tiny)["fig4"][0], tmp_path, progress=False)
    frame = mechanisms.costs_before_and_after([h], n_batches=3)
    assert set(frame.phase) == {"initialisation", "after training"} and set(frame.split) == {"train", "heldout"}
    before = frame[frame.phase == "initialisation"].set_index(["split", "edge", "op"]).cost
    after = frame[frame.phase == "after training"].set_index(["split", "edge", "op"]).cost
    common = before.index.intersection(after.index)
    assert len(common) and not np.allclose(before[common], after[common])  # the trained weights were loaded
    mats = mechanisms.before_after_matrices(frame, h.config.topology.n_edges)
    assert set(mats) == {(p, s) for p in ("initialisation", "after training") for s in ("train", "heldout")}


def test_from_epoch_is_the_first_epoch_of_the_last_unbroken_run():
    holds = pd.Series([True, False, True, True], index=[1, 2, 3, 4])
    assert mechanisms.from_epoch(holds) == 3
    assert mechanisms.from_epoch(pd.Series([True, True], index=[5, 6])) == 5
    assert mechanisms.from_epoch(pd.Series([True, False], index=[1, 2])) is None
    assert mechanisms.from_epoch(pd.Series([], dtype=bool)) is None


def test_cost_landmarks_read_the_curves_the_figure_draws():
    top = SearchConfig(**TINY).topology      # the minimal cell: e0, e2 from x0; e1, e3 from x1; e4 deep
    costs = {0: [1, -1, 1, -1, -1], 2: [1, 1, -1, -1, -1], 1: [1, 1, 1, 1, -1], 3: [-1] * 5,
             4: [0, 0, 2, 2, 2]}
    frame = pd.DataFrame([{"epoch": t + 1, "edge": e, "cost": c[t]} for e, c in costs.items() for t in range(5)])
    curves = plots.frames.edge_curves(frame)
    assert curves.shape == (5, 5) and curves.loc[2, 0] == -1
    assert mechanisms.cost_landmarks(frame, top, smooth=1) == {
        "x0_below_zero_from": 4, "x1_below_zero_from": 5, "deep_highest_from": 3}
    # smoothed as the figure smooths it: a centred running mean over 3 epochs
    smooth = plots.frames.edge_curves(frame, 3)
    assert smooth.loc[3, 0] == pytest.approx((-1 + 1 - 1) / 3) and smooth.loc[5, 0] == pytest.approx(-1)
    costs[1] = [1, 1, 1, 1, 1]               # an edge from x1 never below zero
    frame = pd.DataFrame([{"epoch": t + 1, "edge": e, "cost": c[t]} for e, c in costs.items() for t in range(5)])
    assert mechanisms.cost_landmarks(frame, top, smooth=1)["x1_below_zero_from"] is None
