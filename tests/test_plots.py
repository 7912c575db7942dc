"""Every tidy table and figure of nas_core.plots (and the explorer that draws
them), built from one real two-epoch run on tiny data."""
from __future__ import annotations

import numpy as np
import plotly.io as pio
import pytest

import nas_core
from nas_core import SearchConfig, plots, record
from nas_core.chapters.explorer import Explorer
from nas_core.ops import LABEL, OPS, SHORT
from nas_core.plots import style

FIGURE = {"data": [{"type": "scatter", "y": [1, 2]}], "layout": {}}
TINY = dict(data="synthetic", cells=3, channels=4, batch_size=16, epochs=2)


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    """A DSNAS run (train costs of the sampled ops only) that also probes every op."""
    return nas_core.run(SearchConfig(**TINY, probe_batches=1), cache_dir=tmp_path_factory.mktemp("runs"),
                        progress=False)


@pytest.fixture(scope="module")
def two_groups(h):
    return {"first": [h], "second": [h]}


def names(fig):
    return [t.name for t in fig.data]


def test_setup_plotly_renders_html_without_mathjax():
    assert plots.setup_plotly() == "book" and pio.renderers.default == "book"
    assert pio.templates.default == style.LAYOUT["template"]
    bundle = style.BookRenderer().to_mimebundle(FIGURE)
    assert list(bundle) == ["text/html"] and "cdn.plot.ly" in bundle["text/html"]
    assert "mathjax/" not in bundle["text/html"].lower()   # no script loading a second MathJax
    assert "mathjax/" in pio.to_html(FIGURE, include_mathjax="cdn", full_html=False).lower()


def test_labels_and_groups(h, two_groups):
    top = h.config.topology
    assert style.edge_label(top, 4) == "e4: n0→n1" and style.edge_label(top, 4, kind=True) == "e4: n0→n1 (deep)"
    assert style.edge_label(top, 0, kind=True) == "e0: x0→n0 (input)"
    assert set(style.OP_LABEL) == set(SHORT) == set(style.OP_COLOR) == set(OPS)
    # one table of names (ops.NAMES); the labels the book and the command line show
    assert style.OP_LABEL is LABEL and list(LABEL) == list(SHORT) == list(OPS)
    assert [LABEL[o] for o in OPS] == ["none", "max 3×3", "avg 3×3", "skip", "sep 3×3", "sep 5×5",
                                       "dil 3×3", "dil 5×5"]
    assert [SHORT[o] for o in OPS] == ["none", "max", "avg", "skip", "sep3", "sep5", "dil3", "dil5"]
    assert plots.frames.groups(h) == {"DSNAS": [h]} == plots.frames.groups([h])
    assert plots.frames.groups({"a": h, "b": [h, h]}) == {"a": [h], "b": [h, h]}


def test_epoch_and_edge_frames(h, two_groups):
    ep = plots.epoch_frame(h)
    assert list(ep.columns) == ["group", "seed", "epoch", "n_selected", "fraction", "p_none", "width", "depth",
                                "random_width", "random_depth", "train_acc", "heldout_acc", "train_loss",
                                "heldout_loss"]
    assert ep.epoch.tolist() == [1, 2] and (ep.group == "DSNAS").all()
    assert ep.p_none.tolist() == pytest.approx([np.mean(r["p_none"]["normal"]) for r in h.records])
    assert len(plots.epoch_frame(two_groups)) == 4
    ed = plots.edge_frame(h)
    assert list(ed.columns) == ["group", "seed", "epoch", "edge", "edge_name", "kind", "op", "selected", "p_none",
                                "best_op", "p_best"]
    assert len(ed) == 2 * 5 and (ed.selected == (ed.op != "none")).all() and (ed.best_op != "none").all()
    assert ed[ed.edge == 4].kind.unique().tolist() == ["deep"]


def test_cost_frame_reads_every_recorded_split_through_the_record(h):
    df = plots.cost_frame(h)
    assert list(df.columns) == ["group", "seed", "epoch", "split", "edge", "edge_name", "kind", "cost"]
    assert list(dict.fromkeys(df.split)) == ["train", "probe_train", "probe_heldout"]
    assert len(df) == 2 * 3 * 5
    # the probe ran every op: its parametric cost is the mean of the four convolutions summed over cells
    r = h.records[1]
    raw = np.array(r["cost"]["probe_train"]["mean"], dtype=float)
    convs = [OPS.index(o) for o in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")]
    got = df[(df.epoch == 2) & (df.split == "probe_train")].cost.to_numpy()
    assert got == pytest.approx(raw.sum(0)[:, convs].mean(-1))
    weighted = plots.cost_frame(h, "weighted", splits=("train",))
    assert set(weighted.split) == {"train"} and weighted.cost.notna().all()
    one = plots.cost_frame(h, cell=0, splits=("probe_train",))
    assert one[one.epoch == 2].cost.to_numpy() == pytest.approx(raw[0][:, convs].mean(-1))
    assert plots.cost_frame(h, splits=("heldout",)).empty


def test_final_and_config_frames(h, two_groups):
    f = plots.final_frame(h)
    assert f.index.name == "seed" and list(f.columns) == ["edges", "deep", "width", "depth", "random width",
                                                           "random depth", "cell"]
    assert f.edges.iloc[0] == h.last["n_selected"]["normal"]
    assert plots.final_frame(two_groups).index.names == ["group", "seed"]
    c = plots.config_frame(h.config)
    assert c.loc["probe_batches"].tolist() == ["1", "0"] and "seed" not in c.index and "algorithm" not in c.index


def test_selection_and_width_depth_figures(h, two_groups):
    fig = plots.selection_figure(h)
    assert names(fig) == ["DSNAS", "DSNAS"] and fig.data[1].xaxis == "x2"   # one seed: no band
    assert len(plots.selection_figure(two_groups).data) == 4
    assert len(plots.selection_figure({"a": [h, h]}).data) == 4            # two seeds: a band per panel
    wd = plots.width_depth_figure(two_groups)
    assert names(wd)[:4] == ["first: derived", "first: random, as many edges"] * 2
    assert len(wd.data) == 8


def test_edge_selection_figure(h, two_groups):
    fig = plots.edge_selection_figure(two_groups)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert list(fig.data[0].y) == ["e0: x0→n0 input", "e1: x1→n0 input", "e2: x0→n1 input", "e3: x1→n1 input",
                                   "e4: n0→n1 deep"]


def test_cost_figure(h, two_groups):
    fig = plots.cost_figure(h, smooth=2)
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend[:5] == [f"{style.edge_label(h.config.topology, e)} ({'deep' if e == 4 else 'input'})"
                          for e in range(5)]
    assert legend[5:] == ["train split", "train (probe) split", "held-out (probe) split"]
    assert len(fig.data) == 5 + 3 + 3 * 5
    assert len(plots.cost_figure(two_groups, edges=[4]).data) == 1 + 3 + 2 * 3
    with pytest.raises(ValueError, match="no costs"):
        plots.cost_figure(nas_core.History(h.config, [{k: v for k, v in r.items() if k != "cost"}
                                                      for r in h.records], None))


def test_cell_figure_alpha_heatmap_and_edge_figure(h):
    fig = plots.cell_figure(h)
    assert len(fig.frames) == 2 and len(fig.data) == 5 + 2 + 1          # edges, into the output, nodes
    assert fig.data[-1].text == ("x0", "x1", "n0", "n1", "output")
    one = plots.cell_figure(h, epoch=1)
    assert not one.frames and len(one.layout.annotations) == 5
    with pytest.raises(ValueError, match="epoch 9"):
        plots.cell_figure(h, epoch=9)
    heat = plots.alpha_heatmap(h)
    assert len(heat.data) == 1 and len(heat.frames) == 2
    assert np.asarray(heat.data[0].z) == pytest.approx(record.probs(h.last))
    assert np.asarray(plots.alpha_heatmap(h, value="alpha").data[0].z) == pytest.approx(record.alpha(h.last))
    with pytest.raises(ValueError, match="'p' or 'alpha'"):
        plots.alpha_heatmap(h, value="q")
    edge = plots.edge_figure(h, 4, epoch=2)
    assert len(edge.data) == 2 * len(OPS) and names(edge)[::2] == [style.OP_LABEL[o] for o in OPS]
    assert list(edge.data[2 * 4 + 1].y) == pytest.approx(
        [record.summed_costs(r, "train", h.config)[4, 4] for r in h.records], nan_ok=True)
    with pytest.raises(ValueError, match="out of range"):
        plots.edge_figure(h, 5)


def test_op_probability_figure_draws_p_of_every_op_on_every_edge_in_the_books_colours(h):
    fig = plots.op_probability_figure(h)
    n_edges = h.config.topology.n_edges
    assert len(fig.data) == n_edges * len(OPS)
    assert [a.text for a in fig.layout.annotations] == [style.edge_label(h.config.topology, e) for e in range(n_edges)]
    for e in range(n_edges):
        for k, op in enumerate(OPS):
            trace = fig.data[e * len(OPS) + k]
            assert trace.name == style.OP_LABEL[op] and trace.line.color == style.OP_COLOR[op]
            assert trace.showlegend == (e == 0) and list(trace.x) == [record.epoch(r) for r in h.records]
            assert list(trace.y) == pytest.approx([record.probs(r)[e, k] for r in h.records])
    assert fig.data[0].line.color == "#b0b0b0" and fig.data[0].line.dash == "dash"    # none: grey, dashed
    assert "grey dashed: none" in fig.layout.title.text and "DSNAS, seed 0" in fig.layout.title.text
    # a full cell's 14 edges wrap into rows of at most 5 panels
    wide = record.History(h.config.replace(cell="full"), [
        {"epoch": 1, "probs": {"normal": np.full((14, len(OPS)), 1 / len(OPS)).tolist()}}])
    fig = plots.op_probability_figure(wide)
    assert len(fig.data) == 14 * len(OPS) and fig.data[-1].xaxis == "x14"
    assert len(fig.layout.annotations) == 14 and fig.layout.yaxis6.domain[1] < fig.layout.yaxis5.domain[0]
    assert fig.layout.yaxis11.domain[1] < fig.layout.yaxis6.domain[0] and fig.layout.xaxis6.domain == fig.layout.xaxis1.domain


def test_the_explorer_draws_each_view_of_a_run(h):
    ex = Explorer()
    assert ex.figure() is None and [label for label, _ in ex.edge.options][4] == "e4: n0→n1"
    ex.history = h
    ex.epoch.max, ex.epoch.value = 2, 2
    for view, traces in (("cell", 8), ("edge", 16), ("costs", 5 + 3 + 15)):
        ex.view.value = view
        assert len(ex.figure().data) == traces, view
