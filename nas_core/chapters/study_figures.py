"""The study chapter's tables and figures, drawn from the committed study
tables (``study/runs.csv``, ``study/curves.csv``; see ``nas_core.chapters.study``)."""
from __future__ import annotations

from collections import Counter

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plots.style import GROUP_COLORS, LAYOUT, OP_LABEL, figure_title, mean_band
from ..presets import preset
from ..data import weight_split_size, weight_steps
from .reproduction import rounding_reach
from .study import RUNGS, STATISTICS, rung, still_to_run

MARK = {True: "✓", False: "·"}
STAT_LABEL = {"growing": "growing", "growing_decisive": "growing (tie-aware)", "width": "width",
              "width_decisive": "width (tie-aware)", "bilevel": "no edge / control", "bilevel_decisive":
              "no edge / control (tie-aware)"}


def per_seed(runs: pd.DataFrame, rungs: list[str], statistics=("width", "width_decisive")) -> pd.DataFrame:
    """One row per rung and statistic, one column per seed: ✓ where it holds,
    and the count over the seeds run."""
    rows = []
    for r in rungs:
        sub = runs[runs.rung == r].sort_values("seed")
        if not len(sub):
            rows.append({"rung": r, "statistic": "(not run)", "holds": "0 of 0"})
            continue
        for stat in statistics:
            row = {"rung": r, "statistic": STAT_LABEL[stat]}
            row.update({f"seed {s}": MARK[bool(v)] for s, v in zip(sub.seed, sub[f"{stat}.holds"])})
            row["holds"] = f"{int(sub[f'{stat}.holds'].sum())} of {len(sub)}"
            rows.append(row)
    return pd.DataFrame(rows).set_index(["rung", "statistic"]).fillna("")


def _statistics_of(name: str) -> tuple[str, ...]:
    """The statistics that judge a rung: the no-edge one (its control's role on a
    single-level control) for the bi-level rungs and their controls, growing and width for
    the others; all of them for a rung the study does not name."""
    try:
        bilevel = rung(name).preset.startswith("bilevel")
    except ValueError:
        return STATISTICS
    return tuple(s for s in STATISTICS if s.startswith("bilevel") == bilevel)


def rung_table(runs: pd.DataFrame, rungs: list[str]) -> pd.DataFrame:
    """One column per rung (so that the table fits the book's text column): seeds,
    steps, accuracies and gap, final edges, the steps the train output cost stays
    positive from the start, minutes per run (means over seeds), and on how many
    seeds each statistic that judges the rung holds ('–' for one that does not judge it;
    a statistic that judges none of the rungs is left out)."""
    rows, shown = [], set()
    for r in rungs:
        sub, judged = runs[runs.rung == r], _statistics_of(r)
        shown.update(judged)
        if not len(sub):
            rows.append({"rung": r, "seeds": 0})  # not run (yet): shown, not hidden
            continue
        row = {"rung": r, "seeds": len(sub), "steps": int(sub.steps.iloc[0]),
               "train acc": sub.train_acc.mean(), "held-out acc": sub.heldout_acc.mean(), "gap": sub.gap.mean(),
               "edges at the end": sub.final_selected.mean(),
               "output cost > 0 (steps)": sub.positive_output_cost_steps.mean(), "min per run": sub.minutes.mean()}
        for stat in STATISTICS:
            row[STAT_LABEL[stat]] = int(sub[f"{stat}.holds"].sum()) if stat in judged else "–"
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["rung"]).set_index("rung")
    table = table.drop(columns=[STAT_LABEL[s] for s in STATISTICS if s not in shown and STAT_LABEL[s] in table]).T
    table.columns.name = None

    def show(label, v):
        """Means to the digits that they carry: accuracies and gaps to a thousandth, steps and
        minutes whole (minutes below 10 to a tenth), edges to a tenth, counts whole."""
        if isinstance(v, str):
            return v
        if pd.isna(v):
            return ""
        v = float(v)
        if label in ("steps", "output cost > 0 (steps)") or (label == "min per run" and v >= 10):
            return f"{v:,.0f}"
        if label in ("train acc", "held-out acc", "gap"):
            return f"{v:.3f}"
        return f"{int(v)}" if v.is_integer() else f"{v:.1f}"

    return table.apply(lambda row: row.map(lambda v: show(row.name, v)), axis=1)


def winners(runs: pd.DataFrame, rungs: list[str]) -> pd.DataFrame:
    """Per rung and edge: the op that wins the edge early (at a tenth of the run)
    and at the end on most seeds, with the count of seeds ('skip 4/5')."""
    rows = []
    for r in rungs:
        sub = runs[runs.rung == r]
        if not len(sub):
            continue
        for when, col in (("early", "early_winners"), ("late", "late_winners")):
            per_edge = list(zip(*[w.split("|") for w in sub[col]]))
            row = {"rung": r, "when": when}
            for e, ops in enumerate(per_edge):
                op, n = Counter(ops).most_common(1)[0]
                row[f"e{e}"] = f"{OP_LABEL.get(op, op)} {n}/{len(ops)}"
            rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["rung", "when"]).set_index(["rung", "when"])


def _edge_means(curves: pd.DataFrame, prefix: str, edges: dict) -> pd.DataFrame:
    out = curves[["rung", "seed", "step"]].copy()
    for name, cols in edges.items():
        out[name] = curves[[f"{prefix}{e}" for e in cols]].mean(axis=1)
    return out


def p_none_figure(curves: pd.DataFrame, rungs: list[str], input_edges=(0, 1, 2, 3), deep_edges=(4,),
                  title: str = "p(none) of the input edges and of the deep edge"):
    """Mean p(none) over the input edges (solid) and the deep edge (dashed)
    against steps, one colour per rung, mean and min-max band over seeds."""
    df = _edge_means(curves, "p_none_e", {"input": input_edges, "deep": deep_edges})
    fig = go.Figure()
    for i, r in enumerate(rungs):
        g = df[df.rung == r]
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        for part, dash in (("input", "solid"), ("deep", "dash")):
            mean_band(fig, g, "step", part, name=f"{r}: {part}", color=color, dash=dash, legendgroup=f"{r}{part}")
    fig.add_hline(y=1 / 8, line=dict(color="grey", dash="dot", width=1), annotation_text="uniform 1/8",
                  annotation_position="bottom right")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="p(none)")
    fig.update_layout(**LAYOUT, height=480, legend=dict(orientation="h", y=-0.25),
                      title=figure_title(title, "solid: input edges (mean), dashed: the deep edge; mean and min–max "
                                          "band over seeds"))
    fig.update_layout(margin=dict(t=95))
    return fig


def curves_figure(curves: pd.DataFrame, rungs: list[str], columns: dict, title: str, note: str = "",
                  zero_line: bool = False):
    """One panel per column of the curves table ({column: panel title}), mean
    and min-max band over seeds against steps, one colour per rung."""
    fig = make_subplots(rows=1, cols=len(columns), horizontal_spacing=0.12, subplot_titles=list(columns.values()))
    for i, r in enumerate(rungs):
        g = curves[curves.rung == r]
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        for col, y in enumerate(columns, 1):
            if g[y].notna().any():
                mean_band(fig, g.dropna(subset=[y]), "step", y, name=r, color=color, row=1, col=col,
                           showlegend=col == 1)
            if zero_line:
                fig.add_hline(y=0, line=dict(color="grey", width=1), row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_layout(**LAYOUT, height=470, legend=dict(orientation="h", y=-0.25),
                      title=figure_title(title, note or "mean and min–max band over seeds"))
    fig.update_layout(margin=dict(t=100))
    return fig


def settings_table() -> pd.DataFrame:
    """The quantities that decide what a small run shows (the paper's, the
    faithful presets', the first calibration's), read from the presets."""
    rows = {}
    for label, name in (("faithful DSNAS", "growing"), ("first calibration, DSNAS", "levers-dsnas"),
                        ("faithful bi-level", "bilevel"), ("first calibration, bi-level", "levers-bilevel")):
        c = preset(name)
        rows[label] = {"arch lr / weight lr": f"{c.arch_lr:g} / {c.lr:g}", "classifier init": f"x{c.logit_scale:g}",
                       "augmentation": f"shift ≤ {c.augment_shift} px per batch" if c.augment_shift else "none",
                       "train images": weight_split_size(c),
                       "labels replaced": f"{c.label_noise:.0%}", "steps": weight_steps(c)}
    rows["the paper, DSNAS"] = {"arch lr / weight lr": "0.0003 / 0.025", "classifier init": "x1",
                                "augmentation": "crop (pad 4) + flip per batch", "train images": 50_000,
                                "labels replaced": "0%", "steps": "about 78k"}
    rows["the paper, bi-level DARTS"] = {**rows["the paper, DSNAS"], "train images": 25_000, "steps": "about 13k"}
    return pd.DataFrame(rows).T


def to_run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`~nas_core.chapters.study.still_to_run`, for reading: steps with thousands
    separators, whole minutes, the fastest and slowest rates measured in brackets where they
    differ, and 'not measured yet' where no run of the same step cost has finished."""
    def minutes(row):
        if row["minutes per seed"] != row["minutes per seed"]:
            return "not measured yet"
        mean, low, high = (f"{row[c]:,.0f}" for c in ("minutes per seed", "fastest", "slowest"))
        return mean if low == high else f"{mean} ({low}–{high})"

    table = still_to_run(runs)
    table["minutes per seed"] = table.apply(minutes, axis=1)
    table["steps per seed"] = table["steps per seed"].map("{:,}".format)
    table = table.drop(columns=["fastest", "slowest"])
    table["make study runs it"] = table["make study runs it"].map({True: "yes", False: "no"})
    return table


def version_table(before: pd.DataFrame, after: pd.DataFrame, statistics=("growing", "width", "bilevel")):
    """Per rung, on how many seeds each statistic holds (the paper's and the
    tie-aware version) in the runs of code version 1 (``before``) and of the
    corrected code (``after``): 'v1 → v2', each 'holding/seeds', '–' where a
    version has no run of the rung."""
    def count(frame, name, column):
        sub = frame[frame.rung == name]
        return f"{int(sub[column].sum())}/{len(sub)}" if len(sub) else "–"

    def short(name):  # headers that wrap, so that the table fits the text column
        return name.replace("faithful ", "").replace(", held-out seeds", ", seeds 5-9")

    names = [r.name for r in RUNGS if r.name in set(before.rung) | set(after.rung)]
    rows = []
    for name in names:
        row = {"rung": short(name)}
        for s in statistics:
            for label, column in (("paper's", f"{s}.holds"), ("tie-aware", f"{s}_decisive.holds")):
                row[f"{s} {label}"] = f"{count(before, name, column)}→{count(after, name, column)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("rung")


def margins_table(runs: pd.DataFrame, edges: int = 5) -> pd.DataFrame:
    """Per run: the edges selected at the end, the width statistics and each edge's
    final margin (its best op's p minus p(none); > 0 selected), narrow enough for
    the text column."""
    cols = {"final_selected": "edges", "width.holds": "width", "width_decisive.holds": "width tie-aware",
            **{f"margin_e{e}": f"e{e}" for e in range(edges)}}
    return runs.set_index(["rung", "seed"])[list(cols)].rename(columns=cols).round(3)


def rounding_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per rung and final-cell statistic: 'holds/seeds (could flip)', where 'could flip'
    counts the rung's verdicts that rounding on another kind of machine could turn
    (:func:`nas_core.chapters.reproduction.rounding_reach`)."""
    return rounding_reach(runs).rename(columns={**STAT_LABEL, "deep_avoided": "deep avoided"})
