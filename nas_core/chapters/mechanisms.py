"""The mechanisms chapter: its runs, what it measures and its tables.

Measurements take a :class:`~nas_core.search.Search` or finished runs
(:class:`~nas_core.runs.History`, read through :mod:`nas_core.record`) and
return tidy tables (one row per observation); the chapter's figures
(:mod:`nas_core.chapters.cost_figures`) take those tables. Costs are
C = dL/dZ per (cell, edge, op): ``train`` holds the costs of the ops the search
ran (under ``random_sample`` one op per edge drawn uniformly, so each op's mean
is over the steps that drew it), ``probe_train`` and ``probe_heldout`` every
op's cost at Z = softmax(alpha) on a few batches of each split. The edge costs
of a run come from :func:`nas_core.plots.frames.cost_frame`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import data as datasets
from .. import record
from ..config import Intervention
from ..cost import OutputCostStats, output_cost
from ..ops import NONE, OPS, PARAMETRIC, SHORT
from ..plots.frames import edge_curves, groups
from ..plots.style import edge_label
from ..presets import PRESETS, preset
from ..relax import UniformSample
from ..search import Search

#: Per profile: epochs and probe batches of the cost-measuring runs (alpha frozen,
#: ops sampled uniformly). cpu: about a minute per run on two cores.
MEASURE = {"cpu": dict(epochs=30, probe_batches=1), "paper": dict(epochs=150, probe_batches=10)}

#: Our multi-cell version of the paper's figure 10b (4 cells, multiplier 2): delete
#: the edges from x0, fix the edge x1 -> n0 to a convolution. n0 still reaches the
#: cell's output directly, so the deep edge is not the only way to depth here.
FIG10B = dict(delete_edges=[0, 2], fix={1: "sep_conv_3x3"})

#: The authors' setups (Analysis/README.md): figure 4 on ONE minimal cell
#: (train_cal_cost.sh ... dsnas 1 96 2 2), figure 10b on ONE cell of 2 steps and
#: multiplier 1, so that the output is n1 alone and n0 reaches it only through
#: the deep edge, with edges 0 and 2 deleted and edge 1 fixed to sep_conv_5x5
#: (train.sh dsnas 1 150 96 order 2 1 del_edge0 del_edge2 fix_edge1_op7 random_sample).
AUTHORS_SETUPS = {
    "fig4": dict(cells=1),
    "fig10b": dict(cells=1, cell="2/1", intervention=Intervention(delete_edges=[0, 2], fix={1: "sep_conv_5x5"})),
}


def mechanism_configs(profile: str = "cpu", seeds=(0,), contrast_logit_scale: float | None = None,
                      **overrides) -> dict:
    """The runs of the mechanisms chapter, as {name: [config per seed]}:
    ``main``, the growing preset with alpha frozen and ops sampled uniformly,
    probing every op's cost on both splits each epoch; ``contrast``, the same
    at another initial logit scale (default 1, or the CPU preset's scale when
    the main runs already use 1), without probes; ``intervention``, the main
    run under :data:`FIG10B`, without probes."""
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


def authors_configs(profile: str = "cpu", seeds=(0,), **overrides) -> dict:
    """The runs of figures 4 and 10b in the authors' setups (:data:`AUTHORS_SETUPS`),
    {name: [config per seed]}: the faithful DSNAS preset, alpha frozen, ops sampled
    uniformly while the weights train."""
    if profile not in MEASURE:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(MEASURE)}")
    base = {**MEASURE[profile], "probe_batches": 0, **overrides, "random_sample": True}
    return {name: [preset("growing", profile, seed=s, **{**base, **setup}) for s in seeds]
            for name, setup in AUTHORS_SETUPS.items()}


def costs_before_and_after(runs, n_batches: int = 20) -> pd.DataFrame:
    """Figure 4 as the authors measure it: with weights and alpha frozen, the mean
    cost of each uniformly sampled op per edge, at initialisation and after the
    run's training (its last checkpoint), on the train and held-out splits. One
    row per (seed, phase, split, edge, op)."""
    from ..runs import checkpoint_of

    rows = []
    for h in runs:
        trained = Search(h.config)
        checkpoint_of(h, trained)
        for phase, s in (("initialisation", Search(h.config)), ("after training", trained)):
            for split in ("train", "heldout"):
                m = sampled_costs(s, split, n_batches, seed=h.config.seed)
                rows += [dict(seed=h.config.seed, phase=phase, split=split, edge=e, op=op, cost=v)
                         for e, op, v in m["ops"]]
    frame = pd.DataFrame(rows)
    return frame.groupby(["seed", "phase", "split", "edge", "op"], as_index=False, sort=False).cost.mean()


def before_after_matrices(frame: pd.DataFrame, n_edges: int) -> dict:
    """{(phase, split): edges x ops mean cost} of :func:`costs_before_and_after`
    (means over seeds; NaN where an op was never drawn), for ``cost_figures.heatmap_grid``."""
    out = {}
    for (phase, split), g in frame.groupby(["phase", "split"], sort=False):
        m = np.full((n_edges, len(OPS)), np.nan)
        for (e, op), v in g.groupby(["edge", "op"]).cost.mean().items():
            m[e, OPS.index(op)] = v
        out[(phase, split)] = m
    return out


# ---------------------------------------------------------------------------
# Tables from finished runs
# ---------------------------------------------------------------------------

def cell_sum_frame(runs, splits=("train", "probe_train", "probe_heldout"), cell_type: str = "normal"):
    """One row per (group, seed, epoch, split, cell of ``cell_type``): the
    cell's Z-weighted cost sum_{e,k} Z C averaged over the epoch's steps, and
    the output cost of the same steps. For sampled ops (one-hot Z) the
    Z-weighted cost of a step is the sum of the sampled ops' costs, so the
    epoch average is sum(mean x count) / steps; for probes Z = p."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            for r in h.records:
                for split in splits:
                    mean = record.costs(r, split, h.config, cell_type)
                    if mean is None:
                        continue
                    m = np.nan_to_num(mean)
                    if split.startswith("probe"):
                        sums = (m * record.probs(r, cell_type)[None]).sum((1, 2))
                    else:
                        count = record.counts(r, split, h.config, cell_type)
                        steps = count[0, 0].sum()  # one op per edge and step (none included)
                        sums = (m * count).sum((1, 2)) / max(steps, 1)
                    oc = record.output_cost(r, split)
                    for c, v in enumerate(sums):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=record.epoch(r), split=split, cell=c,
                                         last=c == len(sums) - 1, z_weighted_cost=float(v), output_cost=oc))
    return pd.DataFrame(rows)


def output_frame(runs, splits=("train", "heldout")):
    """One row per (seed, epoch, split, group in correct / wrong / all):
    output cost, loss, entropy and number of samples."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            for r in h.records:
                for split in splits:
                    o = record.outputs(r, split)
                    if not o:
                        continue
                    for g in ("correct", "wrong"):
                        rows.append(dict(group=group, seed=h.config.seed, epoch=record.epoch(r), split=split, samples=g,
                                         n=o[g]["n"], output_cost=o[g]["output_cost"], loss=o[g]["loss"],
                                         entropy=o[g]["entropy"], accuracy=o["accuracy"]))
    return pd.DataFrame(rows)


def run_summary(runs) -> pd.DataFrame:
    """One row per run: its initial logit scale, intervention, epochs, final
    train and held-out accuracy, and the seconds it took."""
    rows = []
    for group, hs in groups(runs).items():
        for h in hs:
            c, iv = h.config, h.config.intervention
            change = "; ".join([" ".join(f"e{e}" for e in iv.delete_edges) + " deleted"] * bool(iv.delete_edges)
                               + [f"e{e} = {SHORT[op]}" for e, op in iv.fix]) or "–"
            rows.append({"run": group, "seed": c.seed, "logit scale": c.logit_scale, "intervention": change,
                         "probes": c.probe_batches, "epochs": len(h.records),
                         "train acc": record.accuracy(h.last, "train"),
                         "held-out acc": record.accuracy(h.last, "heldout"),
                         "seconds": sum(record.seconds(r) for r in h.records)})
    return pd.DataFrame(rows).set_index("run")


def mean_matrix(runs, split: str, epochs, cell_type: str = "normal") -> np.ndarray:
    """Edges x ops cost summed over cells, averaged over the given epochs (1-based)
    and over the runs (seeds); NaN where never measured."""
    hs = [h for v in groups(runs).values() for h in v]
    ms = [record.summed_costs(h.records[e - 1], split, h.config, cell_type) for h in hs for e in epochs]
    with record.quiet_nan():
        return np.nanmean(np.stack(ms), 0)


def window_mean(frame, epochs, by=("group", "split", "edge")):
    """Mean cost over the given epochs (and seeds) per ``by``."""
    return frame[frame.epoch.isin(list(epochs))].groupby(list(by)).cost.mean()


def epoch_windows(n_epochs: int, first: int = 3, last: int = 5) -> dict:
    """{label: epochs} for the first and the last few epochs (1-based)."""
    a = range(1, min(first, n_epochs) + 1)
    b = range(max(n_epochs - last + 1, 1), n_epochs + 1)
    return {f"epochs {a[0]}–{a[-1]}": a, f"epochs {b[0]}–{b[-1]}": b}


def from_epoch(holds: pd.Series) -> int | None:
    """The first epoch (the index of ``holds``, in order) from which ``holds``
    is true to the end; None where it is false at the end."""
    if not len(holds) or not holds.iloc[-1]:
        return None
    broken = holds.index[~holds.to_numpy()]
    return int(holds.index[0] if not len(broken) else holds.index[holds.index > broken[-1]][0])


def cost_landmarks(frame, topology, smooth: int = 3) -> dict:
    """What the chapter's text reads off one group's cost curves (:func:`edge_curves`):
    from which epoch the input edges from each cell input (``x0``, ``x1``) all cost
    less than zero, and from which the deep edges' cost is the highest of all
    edges (None: not at the end)."""
    curves = edge_curves(frame, smooth)
    out = {}
    for source in (0, 1):
        edges = [e for e in topology.input_edges if topology.edges[e][0] == source]
        starts = [from_epoch(curves[e] < 0) for e in edges]
        out[f"x{source}_below_zero_from"] = None if None in starts else max(starts)
    out["deep_highest_from"] = from_epoch(curves.idxmax(axis=1).isin(topology.deep_edges))
    return out


def start_end(frame, windows: dict, topology, by: str = "group") -> pd.DataFrame:
    """Mean cost per edge (rows) in each window, one column per (window, ``by``)."""
    parts = {w: window_mean(frame, epochs, by=(by, "edge")) for w, epochs in windows.items()}
    table = pd.DataFrame(parts).unstack(by)
    table.index = [edge_label(topology, e, kind=True) for e in table.index]
    return table


def carried_by_last_cell(cell_sums) -> pd.DataFrame:
    """Per split: mean |Z-weighted cost| of the inner cells and of the last
    cell, and the mean |last cell - output cost| (from :func:`cell_sum_frame`)."""
    last = cell_sums[cell_sums["last"]]
    inner = cell_sums[~cell_sums["last"]]
    return pd.DataFrame({
        "inner cells |Σ Z·C|": inner.z_weighted_cost.abs().groupby(inner.split).mean(),
        "last cell |Σ Z·C|": last.z_weighted_cost.abs().groupby(last.split).mean(),
        "|last cell − output cost|": (last.z_weighted_cost - last.output_cost).abs().groupby(last.split).mean(),
    })


# ---------------------------------------------------------------------------
# Measuring a network without training it
# ---------------------------------------------------------------------------

def _batches(x, y, batch_size: int, generator, n: int):
    """``n`` shuffled batches, passing over the split as often as needed."""
    done = 0
    while done < n:
        for batch in datasets.batches(x, y, batch_size, generator):
            yield batch
            done += 1
            if done == n:
                return


def sampled_costs(s: Search, split: str = "train", n_batches: int = 20, seed: int = 0) -> dict:
    """Costs with one op per edge drawn uniformly (alpha and weights untouched,
    BN with batch statistics, :meth:`~nas_core.search.Search.measure`), on
    ``n_batches`` batches of ``split``. Returns per batch the output cost, loss
    and entropy (batch means) and every sampled non-none op's cost summed over
    cells, plus the per-cell Z-weighted costs of every batch."""
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = s.examples(split)
    relax, t = UniformSample(), "normal"
    op_costs, batch_rows, cell_rows = [], [], []
    outs = OutputCostStats()
    for x, y in _batches(x_all, y_all, s.config.batch_size, g, n_batches):
        samples = s.draw(g, relax=relax)
        m = s.measure(x, y, samples)
        cost = m["cost"][t].double().cpu().numpy()  # cells, edges, ops
        index = samples[t].z.argmax(-1).cpu().numpy()
        summed = cost.sum(0)
        op_costs += [(e, OPS[k], summed[e, k]) for e, k in enumerate(index) if k != NONE]
        oc, loss, ent = (v.double().mean().item() for v in output_cost(m["logits"], y))
        batch_rows.append(dict(output_cost=oc, loss=loss, entropy=ent))
        cell_rows.append(cost[:, np.arange(len(index)), index].sum(1))
        outs.add(m["logits"], y)
    return dict(ops=op_costs, batches=batch_rows, cells=np.array(cell_rows), outputs=outs.summary())


def logit_scale_sweep(config, scales=(1, 3, 10, 20, 40), seeds=(0, 1, 2), n_batches: int = 20) -> pd.DataFrame:
    """At initialisation (no training), for each initial logit scale and seed:
    the output cost (loss - entropy), loss, entropy, the mean cost of the
    uniformly sampled ops (summed over cells), the fraction of them with
    positive cost, and the share of the Z-weighted cost that the last cell
    carries. Seeds fix the network and the batches, so scales are compared on
    the same networks (only the classifier's initial weights are scaled)."""
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
