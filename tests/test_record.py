"""The epoch record's schema (nas_core.record), on hand-built records."""
from __future__ import annotations

import numpy as np
import pytest

from nas_core import SearchConfig, record
from nas_core.ops import NONE, OPS, PARAMETRIC
from nas_core.search import Search

N = None
ALL_NORMAL = SearchConfig(data="synthetic", cells=3)
STANDARD = SearchConfig(data="synthetic", network="standard", cells=6)   # n n r n r n


def make_record(mean, count=None, split="train", probs=None):
    """A record whose ``split`` costs are ``mean`` (nested lists, None = never computed)."""
    mean = np.array(mean, dtype=object)
    if count is None:
        count = np.where(np.equal(mean, None), 0, 1)
    rec = {"cost": {split: {"mean": mean.tolist(), "count": np.asarray(count).tolist()}},
           "output_cost": {"train": {"output_cost": 0.25, "loss": 1.0, "accuracy": 0.5}}}
    if probs is not None:
        rec["probs"] = {"normal": probs}
        rec["p_none"] = {"normal": [row[NONE] for row in probs]}
    return rec


def row(**ops):
    """One edge's costs: {op: cost}, the other ops never computed."""
    return [ops.get(o, N) for o in OPS]


def test_costs_are_floats_with_nan_for_never_computed():
    rec = make_record([[row(none=0.0, sep_conv_3x3=2.0)]] * 3)
    c = record.costs(rec, "train", ALL_NORMAL)
    assert c.dtype == float and c.shape == (3, 1, len(OPS))
    assert c[0, 0, OPS.index("sep_conv_3x3")] == 2.0 and c[0, 0, NONE] == 0.0
    assert np.isnan(c[0, 0, OPS.index("dil_conv_5x5")])
    assert np.isnan(c).sum() == 3 * (len(OPS) - 2)
    assert record.costs(rec, "heldout", ALL_NORMAL) is None
    assert record.counts(rec, "train", ALL_NORMAL)[1, 0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0]


def test_the_standard_networks_reduction_cells_are_kept_apart():
    assert record.cell_indices(STANDARD, "normal") == [0, 1, 3, 5]
    assert record.cell_indices(STANDARD, "reduce") == [2, 4]
    with pytest.raises(ValueError, match="no 'reduce' cells"):
        record.cell_indices(ALL_NORMAL, "reduce")
    cells = [[row(sep_conv_3x3=float(10 ** i))] for i in range(6)]   # cell i costs 10^i
    rec = make_record(cells)
    normal = record.summed_costs(rec, "train", STANDARD)
    reduce = record.summed_costs(rec, "train", STANDARD, "reduce")
    k = OPS.index("sep_conv_3x3")
    assert normal[0, k] == 1 + 10 + 1000 + 100000
    assert reduce[0, k] == 100 + 10000
    assert record.costs(rec, "train", STANDARD, "reduce")[:, 0, k].tolist() == [100.0, 10000.0]
    assert record.summed_costs(rec, "train", STANDARD, "normal", cell=2)[0, k] == 1000.0


def test_summed_costs_add_the_cells_that_computed_an_op_and_nan_where_none_did():
    rec = make_record([[row(skip_connect=1.0, sep_conv_3x3=2.0)],
                       [row(skip_connect=3.0)],
                       [row(skip_connect=5.0)]])
    m = record.summed_costs(rec, "train", ALL_NORMAL)
    assert m.shape == (1, len(OPS))
    assert m[0, OPS.index("skip_connect")] == 9.0
    assert m[0, OPS.index("sep_conv_3x3")] == 2.0      # one cell computed it
    assert np.isnan(m[0, OPS.index("max_pool_3x3")])    # no cell did
    assert record.summed_costs(rec, "probe_train", ALL_NORMAL) is None


def test_parametric_edge_cost_is_the_mean_of_the_computed_convolutions():
    m = np.full((3, len(OPS)), np.nan)
    m[0, [OPS.index(o) for o in PARAMETRIC]] = [1.0, 2.0, 3.0, 6.0]
    m[1, OPS.index("sep_conv_5x5")] = -4.0
    m[1, OPS.index("skip_connect")] = 100.0             # not parametric: ignored
    m[2, OPS.index("skip_connect")] = 1.0               # no convolution computed
    got = record.edge_cost(m, "parametric")
    assert got[0] == pytest.approx(3.0) and got[1] == -4.0 and np.isnan(got[2])


def test_ops_edge_cost_leaves_out_none():
    m = np.full((2, len(OPS)), np.nan)
    m[0, NONE] = 0.0
    m[0, OPS.index("skip_connect")] = 3.0
    m[0, OPS.index("dil_conv_3x3")] = 5.0
    m[1, NONE] = 0.0
    got = record.edge_cost(m, "ops")
    assert got[0] == 4.0 and np.isnan(got[1])


def test_weighted_edge_cost_renormalises_p_over_the_computed_ops():
    p = np.full((1, len(OPS)), 0.1)
    p[0, NONE] = 0.3
    m = np.full((1, len(OPS)), np.nan)
    m[0, NONE] = 0.0
    m[0, OPS.index("sep_conv_3x3")] = 2.0
    m[0, OPS.index("avg_pool_3x3")] = -1.0
    # (0.3 * 0 + 0.1 * 2 + 0.1 * -1) / (0.3 + 0.1 + 0.1)
    assert record.edge_cost(m, "weighted", p)[0] == pytest.approx(0.1 / 0.5)
    # a batch of edge-cost matrices (cells, edges, ops) against one p
    assert record.edge_cost(np.stack([m, 2 * m]), "weighted", p)[:, 0] == pytest.approx([0.2, 0.4])
    with pytest.raises(ValueError, match="needs probs"):
        record.edge_cost(m, "weighted")
    with pytest.raises(ValueError, match="parametric, ops, weighted"):
        record.edge_cost(m, "mean")


def test_edge_costs_of_a_record_use_its_own_p():
    p = [[0.5 if k == NONE else 0.5 / 7 for k in range(len(OPS))]]
    rec = make_record([[row(none=0.0, sep_conv_3x3=1.0)]] * 3, probs=p)
    # summed over three cells: sep 3x3 costs 3; weighted: (0.5/7 * 3) / (0.5 + 0.5/7)
    assert record.edge_costs(rec, "train", ALL_NORMAL, "parametric")[0] == 3.0
    assert record.edge_costs(rec, "train", ALL_NORMAL, "weighted")[0] == pytest.approx(3 / 8)
    assert record.edge_costs(rec, "train", ALL_NORMAL, "ops", cell=1)[0] == 1.0
    assert record.edge_costs(rec, "heldout", ALL_NORMAL) is None


def test_accessors():
    p = [[0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2], [0.6, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]]
    rec = make_record([[row()] * 2] * 3, probs=p)
    rec["derived"] = {"normal": ["dil_conv_5x5", "none"]}
    rec["alpha"] = {"normal": [[0.0] * 8, [1.0] * 8]}
    assert record.probs(rec).shape == (2, 8) and record.p_none(rec).tolist() == [0.2, 0.6]
    assert record.best_other(rec).tolist() == [OPS.index("dil_conv_5x5"), 1]
    assert record.derived(rec) == ["dil_conv_5x5", "none"]
    assert record.alpha(rec)[1].tolist() == [1.0] * 8
    assert record.output_cost(rec) == 0.25 and record.outputs(rec, "train")["loss"] == 1.0
    assert record.outputs(rec, "heldout") is None


def test_epoch_totals_and_cell_types():
    rec = {"epoch": 3, "derived": {"normal": ["none"], "reduce": ["skip_connect"]}, "train_acc": 0.5,
           "heldout_acc": 0.25, "train_loss": 1.5, "heldout_loss": 2.5, "seconds": 7.0}
    assert record.epoch(rec) == 3 and record.types(rec) == ["normal", "reduce"] and record.seconds(rec) == 7.0
    assert (record.accuracy(rec), record.accuracy(rec, "heldout")) == (0.5, 0.25)
    assert (record.loss(rec), record.loss(rec, "heldout")) == (1.5, 2.5)
    with pytest.raises(ValueError, match="train, heldout"):
        record.accuracy(rec, "probe_train")


def test_history_reads_its_records(tiny):
    config = SearchConfig(**tiny)
    recs = [{"epoch": e, "n_selected": {"normal": e}} for e in (1, 2)]
    h = record.History(config, recs)
    assert len(h) == 2 and h.finished and h.last is recs[-1] and h.path is None
    assert h.series("n_selected", "normal") == [1, 2] and h.series("epoch") == [1, 2]
    assert not record.History(config, recs[:1]).finished
    assert h.initial["epoch"] == 0 and record.derived(h.initial) == record.derived(Search(config).architecture())


def test_wiring_reads_one_cell_type_and_names_the_valid_keys():
    rec = {"n_selected": {"normal": 3, "reduce": 1}, "width": {"normal": 4.0, "reduce": 2.0}}
    assert record.wiring(rec, "n_selected") == 3 and record.wiring(rec, "width", "reduce") == 2.0
    with pytest.raises(ValueError, match="n_selected, selected_edges, width, depth"):
        record.wiring(rec, "n_edges")
