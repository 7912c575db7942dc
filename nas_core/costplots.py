"""The cost view: measurements and figures for the chapters on the unified
view and on the mechanisms.

Measurements take a :class:`~nas_core.search.Search` or finished runs
(:class:`~nas_core.history.History`) and return tidy tables (one row per
observation); figures take those tables. Costs are C = dL/dZ, recorded per
(cell, edge, op) by the search (``record["cost"][split]``): ``train`` holds the
costs of the ops the search ran (under ``random_sample`` one op per edge drawn
uniformly, so each op's mean is over the steps that drew it), ``probe_train``
and ``probe_heldout`` every op's cost at Z = softmax(alpha) on a few batches of
each split.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from . import data as datasets
from .cost import OutputCostStats, output_cost
from .ops import NONE, OPS, PARAMETRIC
from .relax import UniformSample
from .search import Search, kept_buffers
from .space import cell_types

PARAMETRIC_INDEX = [OPS.index(o) for o in PARAMETRIC]
OP_SHORT = {"none": "none", "max_pool_3x3": "max", "avg_pool_3x3": "avg", "skip_connect": "skip",
            "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5"}
EDGE_COLOR = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
CELL_COLOR = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b", "#041a3a", "#020d1d")
SPLIT_NAME = {"train": "train (sampled ops)", "heldout": "held-out", "probe_train": "train (probe)",
              "probe_heldout": "held-out (probe)"}
LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=60, r=20, t=90, b=50))


def title(main: str, *notes: str) -> dict:
    """A title with smaller note lines (the book's column is ~600 px wide)."""
    return dict(text=main + "".join(f"<br><sup>{n}</sup>" for n in notes if n), x=0.01, xanchor="left")


def edge_name(topology, e: int) -> str:
    """'e4 n0→n1 (deep)'."""
    kind = "deep" if e in topology.deep_edges else "input"
    return f"{topology.edge_name(e).replace('->', '→').replace(':', '')} ({kind})"


def _runs(runs) -> dict[str, list]:
    """{label: [History, ...]} from a History, a list (one label) or a dict."""
    if isinstance(runs, dict):
        return {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in runs.items()}
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    return {"": runs}


# ---------------------------------------------------------------------------
# The mechanisms chapter's runs
# ---------------------------------------------------------------------------

#: Per profile: epochs and probe batches of the cost-measuring runs (alpha frozen,
#: ops sampled uniformly). cpu: about a minute per run on two cores.
MEASURE = {"cpu": dict(epochs=30, probe_batches=1), "paper": dict(epochs=150, probe_batches=10)}

#: The intervention of the paper's figure 10b: delete the edges from x0, fix the
#: edge x1 -> n0 to a convolution; the deep edge n0 -> n1 is then the only way
#: to make the cell deeper.
FIG10B = dict(delete_edges=[0, 2], fix={1: "sep_conv_3x3"})


def mechanism_configs(profile: str = "cpu", seeds=(0,), contrast_logit_scale: float | None = None,
                      **overrides) -> dict:
    """The runs of the mechanisms chapter, as {name: [config per seed]}:
    ``main``, the growing preset with alpha frozen and ops sampled uniformly,
    probing every op's cost on both splits each epoch; ``contrast``, the same
    at another initial logit scale (default 1, or the CPU preset's scale when
    the main runs already use 1), without probes; ``intervention``, the main
    run under :data:`FIG10B`, without probes."""
    from .config import Intervention
    from .presets import PRESETS, preset

    if profile not in MEASURE:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(MEASURE)}")
    base = {**MEASURE[profile], **overrides, "random_sample": True}
    # on a CPU: the first calibration's DSNAS preset (logit scale 20), contrasted
    # with the faithful presets' default initialisation (scale 1)
    name = "levers-dsnas" if profile == "cpu" else "growing"
    main = [preset(name, profile, seed=s, **base) for s in seeds]
    if contrast_logit_scale is None:
        contrast_logit_scale = 1.0 if main[0].logit_scale != 1.0 else PRESETS["levers-dsnas"]["logit_scale"]
    quiet = dict(base, probe_batches=0)
    contrast = [preset(name, profile, seed=s, **{**quiet, "logit_scale": float(contrast_logit_scale)})
                for s in seeds]
    inter = [preset(name, profile, seed=s, **{**quiet, "intervention": Intervention(**FIG10B)})
             for s in seeds]
    return {"main": main, "contrast": contrast, "intervention": inter}


# ---------------------------------------------------------------------------
# Costs out of records
# ---------------------------------------------------------------------------

def record_costs(record: dict, split: str):
    """(mean, count) arrays (cells, edges, ops) of one epoch's costs on
    ``split``; mean is NaN where an op was not computed. None if not recorded."""
    stats = (record.get("cost") or {}).get(split)
    if not stats:
        return None
    return np.array(stats["mean"], dtype=float), np.array(stats["count"])


def edge_op_costs(record: dict, split: str, config, cell_type: str = "normal") -> np.ndarray | None:
    """Edges x ops mean cost summed over the cells of ``cell_type``, the cells
    that share one alpha (the cost that alpha sees), NaN where no such cell
    computed the op. ``config`` (the run's) says which cells are of which type."""
    got = record_costs(record, split)
    if got is None:
        return None
    mean, _ = got
    mean = mean[[i for i, t in enumerate(cell_types(config.network, config.cells)) if t == cell_type]]
    allnan = np.isnan(mean).all(0)
    return np.where(allnan, np.nan, np.nansum(mean, 0))


def edge_cost(matrix: np.ndarray, how: str = "parametric", probs=None) -> np.ndarray:
    """Per edge, from an edges x ops cost matrix: ``parametric`` the mean cost
    of the four convolutions; ``ops`` the mean over the ops other than none;
    ``weighted`` the p-weighted average sum_k p_k C_k (none's C = 0), the
    quantity whose sign decides whether none's logit grows."""
    m = np.asarray(matrix, dtype=float)
    with _quiet():
        if how == "parametric":
            return np.nanmean(m[:, PARAMETRIC_INDEX], 1)
        if how == "ops":
            return np.nanmean(np.delete(m, NONE, axis=1), 1)
        if how == "weighted":
            p = np.asarray(probs, dtype=float)
            known = ~np.isnan(m)
            return np.where(known, p * m, 0).sum(1) / np.where(known, p, 0).sum(1)
    raise ValueError(f"how must be 'parametric', 'ops' or 'weighted', got {how!r}")


@contextlib.contextmanager
def _quiet():
    """No RuntimeWarning for means of all-NaN slices (ops never measured)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def cost_frame(runs, splits=("train",), how: str = "parametric"):
    """One row per (group, seed, epoch, split, edge): the edge's cost summed
    over cells (see :func:`edge_cost` for ``how``)."""
    import pandas as pd

    rows = []
    for group, hs in _runs(runs).items():
        for h in hs:
            top = h.config.topology
            for r in h.records:
                for split in splits:
                    m = edge_op_costs(r, split, h.config)
                    if m is None:
                        continue
                    c = edge_cost(m, how, r["probs"]["normal"])
                    for e in range(top.n_edges):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=r["epoch"], split=split, edge=e,
                                         edge_name=edge_name(top, e), deep=e in top.deep_edges, cost=c[e]))
    return pd.DataFrame(rows)


def cell_sum_frame(runs, splits=("train", "probe_train", "probe_heldout")):
    """One row per (seed, epoch, split, cell): the cell's Z-weighted cost
    sum_{e,k} Z C averaged over the epoch's steps, and the output cost of the
    same steps. For sampled ops (one-hot Z) the Z-weighted cost of a step is
    the sum of the sampled ops' costs, so the epoch average is
    sum(mean x count) / steps; for probes Z = p."""
    import pandas as pd

    rows = []
    for group, hs in _runs(runs).items():
        for h in hs:
            for r in h.records:
                for split in splits:
                    got = record_costs(r, split)
                    if got is None:
                        continue
                    mean, count = got
                    m = np.nan_to_num(mean)
                    if split.startswith("probe"):
                        sums = (m * np.asarray(r["probs"]["normal"], dtype=float)[None]).sum((1, 2))
                    else:
                        steps = count[0, 0].sum()  # one op per edge and step (none included)
                        sums = (m * count).sum((1, 2)) / max(steps, 1)
                    oc = r["output_cost"][split]["output_cost"]
                    for c, v in enumerate(sums):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=r["epoch"], split=split, cell=c,
                                         last=c == len(sums) - 1, z_weighted_cost=float(v), output_cost=oc))
    return pd.DataFrame(rows)


def output_frame(runs, splits=("train", "heldout")):
    """One row per (seed, epoch, split, group in correct / wrong / all):
    output cost, loss, entropy and number of samples."""
    import pandas as pd

    rows = []
    for group, hs in _runs(runs).items():
        for h in hs:
            for r in h.records:
                for split in splits:
                    o = r["output_cost"].get(split)
                    if not o:
                        continue
                    for g in ("correct", "wrong"):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=r["epoch"], split=split, samples=g,
                                         n=o[g]["n"], output_cost=o[g]["output_cost"], loss=o[g]["loss"],
                                         entropy=o[g]["entropy"], accuracy=o["accuracy"]))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Measuring a network without training it
# ---------------------------------------------------------------------------

def load_search(history) -> Search:
    """A Search holding a finished run's last weights (its checkpoint at its last
    epoch, loaded with weights_only=True and checked; RunError if there is none)."""
    from .runs import checkpoint_of

    s = Search(history.config)
    checkpoint_of(history, s)
    return s


def sampled_costs(s: Search, split: str = "train", n_batches: int = 20, seed: int = 0) -> dict:
    """Costs with one op per edge drawn uniformly (alpha and weights untouched,
    BN with batch statistics and its running statistics restored), on
    ``n_batches`` batches of ``split``. Returns per batch the output cost, loss
    and entropy (batch means) and every sampled non-none op's cost summed over
    cells, plus the per-cell Z-weighted costs of every batch."""
    g = torch.Generator().manual_seed(seed)
    sp = s.splits
    x_all, y_all = (sp.train_x, sp.train_y) if split == "train" else (sp.heldout_x, sp.heldout_y)
    relax, t = UniformSample(), "normal"
    op_costs, batch_rows, cell_rows = [], [], []
    outs = OutputCostStats()
    with kept_buffers(s.net):
        s.net.train()
        done = 0
        while done < n_batches:
            for x, y in datasets.batches(x_all, y_all, s.config.batch_size, g):
                samples = s.draw(g, relax=relax)
                s.net.zero_grad(set_to_none=True)
                logits, z = s.forward(x, samples)
                s.backward(F.cross_entropy(logits, y), z)
                cost = z[t].grad.detach().double().cpu().numpy()  # cells, edges, ops
                index = samples[t].z.argmax(-1).cpu().numpy()
                summed = cost.sum(0)
                op_costs += [(e, OPS[k], summed[e, k]) for e, k in enumerate(index) if k != NONE]
                oc, loss, ent = (v.detach().double().mean().item() for v in output_cost(logits.detach(), y))
                batch_rows.append(dict(output_cost=oc, loss=loss, entropy=ent))
                cell_rows.append(cost[:, np.arange(len(index)), index].sum(1))
                outs.add(logits.detach(), y)
                done += 1
                if done == n_batches:
                    break
    s.net.zero_grad(set_to_none=True)
    return dict(ops=op_costs, batches=batch_rows, cells=np.array(cell_rows), outputs=outs.summary())


def logit_scale_sweep(config, scales=(1, 3, 10, 20, 40), seeds=(0, 1, 2), n_batches: int = 20):
    """At initialisation (no training), for each initial logit scale and seed:
    the output cost (loss - entropy), loss, entropy, the mean cost of the
    uniformly sampled ops (summed over cells), the fraction of them with
    positive cost, and the share of the Z-weighted cost that the last cell
    carries. Seeds fix the network and the batches, so scales are compared on
    the same networks (only the classifier's initial weights are scaled)."""
    import pandas as pd

    rows = []
    for seed in seeds:
        for scale in scales:
            s = Search(config.replace(logit_scale=float(scale), seed=seed, random_sample=True))
            m = sampled_costs(s, "train", n_batches, seed=seed)
            c = np.array([v for _, _, v in m["ops"]])
            b = pd.DataFrame(m["batches"]).mean()
            cells = m["cells"]
            rows.append(dict(logit_scale=float(scale), seed=seed, output_cost=b.output_cost, loss=b.loss,
                             entropy=b.entropy, mean_cost=c.mean(), positive=(c > 0).mean(),
                             parametric_cost=np.mean([v for _, op, v in m["ops"] if op in PARAMETRIC]),
                             last_cell=cells[:, -1].mean(), other_cells_abs=np.abs(cells[:, :-1]).mean()))
    return pd.DataFrame(rows)


def run_summary(runs) -> "pd.DataFrame":
    """One row per run: its initial logit scale, intervention, epochs, final
    train and held-out accuracy, and the seconds it took."""
    import pandas as pd

    rows = []
    for group, hs in _runs(runs).items():
        for h in hs:
            c, iv = h.config, h.config.intervention
            change = "; ".join([" ".join(f"e{e}" for e in iv.delete_edges) + " deleted"] * bool(iv.delete_edges)
                               + [f"e{e} = {OP_SHORT[op]}" for e, op in iv.fix]) or "–"
            rows.append({"run": group, "seed": c.seed, "logit scale": c.logit_scale, "intervention": change,
                         "probes": c.probe_batches, "epochs": len(h.records), "train acc": h.last["train_acc"],
                         "held-out acc": h.last["heldout_acc"], "seconds": sum(r["seconds"] for r in h.records)})
    return pd.DataFrame(rows).set_index("run")


def mean_matrix(runs, split: str, epochs) -> np.ndarray:
    """Edges x ops cost summed over cells, averaged over the given epochs (1-based)
    and over the runs (seeds); NaN where never measured."""
    hs = [h for v in _runs(runs).values() for h in v]
    ms = [edge_op_costs(h.records[e - 1], split, h.config) for h in hs for e in epochs]
    with _quiet():
        return np.nanmean(np.stack(ms), 0)


def window_mean(frame, epochs, by=("group", "split", "edge")):
    """Mean cost over the given epochs (and seeds) per ``by``."""
    return frame[frame.epoch.isin(list(epochs))].groupby(list(by)).cost.mean()


def epoch_windows(n_epochs: int, first: int = 3, last: int = 5) -> dict:
    """{label: epochs} for the first and the last few epochs (1-based)."""
    a = range(1, min(first, n_epochs) + 1)
    b = range(max(n_epochs - last + 1, 1), n_epochs + 1)
    return {f"epochs {a[0]}–{a[-1]}": a, f"epochs {b[0]}–{b[-1]}": b}


def start_end(frame, windows: dict, topology, by: str = "group"):
    """Mean cost per edge (rows) in each window, one column per (window, ``by``)."""
    import pandas as pd

    parts = {w: window_mean(frame, epochs, by=(by, "edge")) for w, epochs in windows.items()}
    table = pd.DataFrame(parts).unstack(by)
    table.index = [edge_name(topology, e) for e in table.index]
    return table


def carried_by_last_cell(cell_sums):
    """Per split: mean |Z-weighted cost| of the inner cells and of the last
    cell, and the mean |last cell - output cost| (from :func:`cell_sum_frame`)."""
    import pandas as pd

    last = cell_sums[cell_sums["last"]]
    inner = cell_sums[~cell_sums["last"]]
    return pd.DataFrame({
        "inner cells |Σ Z·C|": inner.z_weighted_cost.abs().groupby(inner.split).mean(),
        "last cell |Σ Z·C|": last.z_weighted_cost.abs().groupby(last.split).mean(),
        "|last cell − output cost|": (last.z_weighted_cost - last.output_cost).abs().groupby(last.split).mean(),
    })


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def scale_scenario_figure(frame):
    """Bars of each cell's Z-weighted cost, one panel per scenario of
    :func:`nas_core.identities.scale_scenarios`, with the output cost <dL/df, f>
    as a dashed line."""
    scenarios = list(dict.fromkeys(frame.scenario))
    ncols = 2 if len(scenarios) > 1 else 1
    nrows = -(-len(scenarios) // ncols)
    # "exact: tiny BN eps, ..." -> two lines, to fit half the column
    names = [sc.replace(": ", ":<br>", 1) for sc in scenarios]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=names, vertical_spacing=0.2, horizontal_spacing=0.14)
    for i, sc in enumerate(scenarios):
        r, c = i // ncols + 1, i % ncols + 1
        d = frame[frame.scenario == sc]
        fig.add_trace(go.Bar(x=[f"cell {k}" for k in d.cell], y=d.z_weighted_cost,
                             marker_color=["#d62728" if last else "#1f77b4" for last in d["last"]],
                             text=[f"{v:+.2g}" for v in d.z_weighted_cost], textposition="outside", cliponaxis=False,
                             textfont=dict(size=11), showlegend=False,
                             hovertemplate="%{x}<br>Σ Z·C = %{y:.3g}<extra></extra>"), row=r, col=c)
        oc = float(d.output_cost.iloc[0])
        fig.add_hline(y=oc, line=dict(color="black", dash="dash", width=1.5), row=r, col=c)
        lo, hi = min(0.0, d.z_weighted_cost.min(), oc), max(0.0, d.z_weighted_cost.max(), oc)
        pad = 0.25 * (hi - lo)
        fig.update_yaxes(range=[lo - pad, hi + pad], row=r, col=c)
    fig.update_yaxes(title_text="Σ Z·C", col=1)
    fig.update_layout(**LAYOUT, height=300 * nrows + 130,
                      title=title("Z-weighted cost of each cell", "DARTS' Z = softmax(α), one batch, float64",
                                  "dashed: the output cost ⟨∂L/∂f, f⟩; red: the last cell"))
    fig.update_layout(margin=dict(t=180))
    fig.update_annotations(font_size=12)
    return fig


def sweep_figure(frame):
    """Initial output cost and fraction of sampled ops with positive cost
    against the initial logit scale: one dot per seed, the mean joined."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("output cost = loss − entropy", "sampled ops with cost > 0"))
    for col, y in ((1, "output_cost"), (2, "positive")):
        fig.add_trace(go.Scatter(x=frame.logit_scale, y=frame[y], mode="markers", name="one seed",
                                 marker=dict(color="#1f77b4", size=7, opacity=0.5), showlegend=col == 1,
                                 customdata=frame.seed, hovertemplate="scale %{x}<br>seed %{customdata}<br>%{y:.3f}"
                                                                      "<extra></extra>"), row=1, col=col)
        m = frame.groupby("logit_scale")[y].mean()
        fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name="mean over seeds",
                                 line=dict(color="#1f77b4", width=2.5), showlegend=col == 1), row=1, col=col)
    fig.add_hline(y=0, line=dict(color="black", width=1), row=1, col=1)
    fig.add_hline(y=0.5, line=dict(color="grey", width=1, dash="dot"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="initial logit scale")
    fig.update_yaxes(title_text="output cost", row=1, col=1)
    fig.update_yaxes(title_text="fraction", range=[0, 1], row=1, col=2)
    n_seeds = frame.seed.nunique()
    fig.update_layout(**LAYOUT, height=420, legend=dict(orientation="h", y=-0.25),
                      title=title("At initialisation: the logit scale sets the cost",
                                  f"{n_seeds} seeds; uniformly sampled ops, costs summed over cells"))
    return fig


def heatmap_grid(panels: dict, topology, main: str = "Cost per op and edge", note: str = ""):
    """Ops x edges heatmaps in a grid: ``panels`` maps (row label, column label)
    to an edges x ops matrix. A diverging colour scale centred at 0 per row
    (red: above 0, the op loses to none; blue: below 0), saturating at the
    row's 98th percentile of |cost|."""
    rows = list(dict.fromkeys(r for r, _ in panels))
    cols = list(dict.fromkeys(c for _, c in panels))
    fig = make_subplots(rows=len(rows), cols=len(cols), shared_xaxes=True, shared_yaxes=True,
                        column_titles=cols, horizontal_spacing=0.025, vertical_spacing=0.08)
    xs = [f"e{e}" + ("*" if e in topology.deep_edges else "") for e in range(topology.n_edges)]
    ys = [OP_SHORT[o] for o in OPS]
    for ri, r in enumerate(rows, 1):
        vals = np.concatenate([np.ravel(m) for (rr, _), m in panels.items() if rr == r])
        zmax = float(np.nanquantile(np.abs(vals), 0.98)) or 1.0
        for ci, c in enumerate(cols, 1):
            if (r, c) not in panels:
                continue
            m = np.asarray(panels[(r, c)], dtype=float).T  # ops x edges
            text = [["" if np.isnan(v) else f"{v:.2f}".replace("-0.00", "0.00") for v in row] for row in m]
            yaxis = fig.get_subplot(ri, ci).yaxis.domain
            fig.add_trace(go.Heatmap(z=m, x=xs, y=ys, text=text, texttemplate="%{text}", textfont=dict(size=10),
                                     colorscale="RdBu", reversescale=True, zmid=0, zmin=-zmax, zmax=zmax,
                                     showscale=ci == 1,
                                     colorbar=dict(len=yaxis[1] - yaxis[0], y=(yaxis[0] + yaxis[1]) / 2,
                                                   yanchor="middle", thickness=12, x=1.01, tickfont=dict(size=10)),
                                     hovertemplate=f"{r}, {c}<br>%{{x}}, %{{y}}: %{{z:.3f}}<extra></extra>"),
                          row=ri, col=ci)
        fig.update_yaxes(title_text=r, row=ri, col=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=11))
    fig.update_xaxes(tickfont=dict(size=11), side="bottom")
    fig.update_layout(**LAYOUT, height=130 + 260 * len(rows),
                      title=title(main, note, "summed over cells; * the deep edge; red above 0 (loses to none), "
                                              "blue below; one colour scale per row"))
    fig.update_layout(margin=dict(l=70, r=60, t=115, b=40))
    fig.update_annotations(font_size=12)
    return fig


def edge_cost_figure(frame, panels: str = "group", smooth: int = 1, main: str = "Edge costs over epochs",
                     note: str = "", edges=None):
    """Cost per edge over epochs (mean over seeds), one colour per edge, one
    panel per value of ``panels`` (a column of ``frame``: group or split)."""
    df = frame if edges is None else frame[frame.edge.isin(list(edges))]
    names = list(dict.fromkeys(df[panels]))
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[SPLIT_NAME.get(n, n) for n in names] if len(names) > 1 else None)
    for i, name in enumerate(names, 1):
        d = df[df[panels] == name]
        for e, de in d.groupby("edge"):
            m = de.groupby("epoch").cost.mean()
            if smooth > 1:
                m = m.rolling(smooth, min_periods=1, center=True).mean()
            fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name=de.edge_name.iloc[0],
                                     legendgroup=f"e{e}", showlegend=i == 1,
                                     line=dict(color=EDGE_COLOR[e % len(EDGE_COLOR)], width=3 if de.deep.iloc[0] else 2,
                                               dash="dash" if de.deep.iloc[0] else "solid"),
                                     hovertemplate=f"{de.edge_name.iloc[0]}<br>epoch %{{x}}<br>cost %{{y:.3f}}"
                                                   "<extra></extra>"), row=1, col=i)
        fig.add_hline(y=0, line=dict(color="black", width=1), row=1, col=i)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cost", row=1, col=1)
    sm = f"running mean over {smooth} epochs" if smooth > 1 else ""
    fig.update_layout(**LAYOUT, height=460, legend=dict(orientation="h", y=-0.2),
                      title=title(main, ", ".join(x for x in (note, sm) if x), "0 is the cost of none; "
                                  "below 0 an op beats none"))
    fig.update_layout(margin=dict(t=140 if len(names) > 1 else 110))
    return fig


def cell_sum_figure(frame, split: str = "train"):
    """Each cell's Z-weighted cost per epoch (mean over seeds) and the output
    cost of the same steps (black dashed)."""
    d = frame[frame.split == split]
    fig = go.Figure()
    n = d.cell.max() + 1
    for c, dc in d.groupby("cell"):
        m = dc.groupby("epoch").z_weighted_cost.mean()
        fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines+markers", marker=dict(size=4),
                                 name=f"cell {c}" + (" (last)" if c == n - 1 else ""),
                                 line=dict(color="#d62728" if c == n - 1 else CELL_COLOR[c % len(CELL_COLOR)],
                                           width=2.5 if c == n - 1 else 1.5)))
    oc = d[d["last"]].groupby("epoch").output_cost.mean()
    fig.add_trace(go.Scatter(x=list(oc.index), y=list(oc), mode="lines", name="output cost",
                             line=dict(color="black", dash="dash", width=2)))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_layout(**LAYOUT, height=420, legend=dict(orientation="h", y=-0.22), xaxis_title="epoch",
                      yaxis_title="Σ Z·C per step",
                      title=title("Z-weighted cost of each cell over epochs",
                                  f"{SPLIT_NAME.get(split, split)}; mean over the epoch's steps"))
    return fig


def output_figure(frame, group: str | None = None):
    """Output cost (top) and loss / entropy (bottom) of correctly and wrongly
    classified samples per epoch, train and held-out side by side."""
    d = frame if group is None else frame[frame.group == group]
    splits = list(dict.fromkeys(d.split))
    fig = make_subplots(rows=2, cols=len(splits), shared_xaxes=True, shared_yaxes="rows", vertical_spacing=0.1,
                        horizontal_spacing=0.05, column_titles=[SPLIT_NAME.get(s, s) for s in splits])
    fig.update_yaxes(title_text="loss − entropy", row=1, col=1)
    fig.update_yaxes(title_text="loss, entropy", row=2, col=1)
    color = {"correct": "#1f77b4", "wrong": "#d62728"}
    for g in ("correct", "wrong"):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{g} samples",
                                 line=dict(color=color[g], width=3)), row=1, col=1)
    for label, dash in (("loss", "solid"), ("entropy", "dot")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{label} (lower panels)",
                                 line=dict(color="#555555", width=2, dash=dash)), row=1, col=1)
    for j, split in enumerate(splits, 1):
        for g in ("correct", "wrong"):
            dg = d[(d.split == split) & (d.samples == g)].groupby("epoch")
            for row, y, dash in ((1, "output_cost", "solid"), (2, "loss", "solid"), (2, "entropy", "dot")):
                m = dg[y].mean()
                fig.add_trace(go.Scatter(x=list(m.index), y=list(m), mode="lines", name=f"{g}: {y}",
                                         showlegend=False, line=dict(color=color[g], dash=dash, width=2),
                                         hovertemplate=f"{g} samples, {y}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>"),
                              row=row, col=j)
        fig.add_hline(y=0, line=dict(color="black", width=1), row=1, col=j)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(**LAYOUT, height=600, legend=dict(orientation="h", y=-0.1),
                      title=title("Output cost of correct and wrong samples",
                                  "per sample: loss − entropy = E_p f − f_y; mean over the split's samples"))
    fig.update_layout(margin=dict(t=110))
    return fig
