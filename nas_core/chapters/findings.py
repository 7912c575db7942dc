"""What the study shows, written from its runs: each pattern chapter's summary, the
ablation's and the ladder's, and the introduction's, as Markdown whose every number,
count and verdict word is computed from the study's table (``study/runs.csv``).

A statement typed into a chapter goes stale when the study is rerun; these are
rewritten by the rerun. A rung not (yet) run on the current code is said to be so.
What the chapters' typed text still asserts is checked by
:mod:`nas_core.chapters.checks`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from IPython.display import Markdown

from ..patterns import BILEVEL_CONTROL_MIN, TIE_MARGIN
from ..plots.style import OP_LABEL
from .reproduction import FINAL_CELL_VERDICTS, ROUNDING_REACH, could_flip
from .study import CHOICE_SEEDS, FASHION_GAP_MIN, FASHION_RUNGS, FASHION_SMALL_CLEAN, HELDOUT_SEEDS, RUNGS, rung

NOT_RUN = "not yet run on the current code (`make study` runs it)"
PATTERN_NAMES = {"growing": "growing, not pruning", "width": "width over depth",
                 "bilevel": "no edge under bi-level optimisation"}
# Each pattern's faithful rung on digits and its held-out seeds.
FAITHFUL = {"growing": ("faithful DSNAS", "faithful DSNAS, held-out seeds"),
            "width": ("faithful DSNAS", "faithful DSNAS, held-out seeds"),
            "bilevel": ("faithful bi-level DARTS", "faithful bi-level DARTS, held-out seeds")}


# ---- phrases ------------------------------------------------------------------------
def _of(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    return runs[runs.rung == name]


def seeds(k: int, n: int) -> str:
    """'every seed', 'no seed' or 'k of n seeds'."""
    return "every seed" if k == n else "no seed" if k == 0 else f"{k} of {n} seeds"


def count(sub: pd.DataFrame, column: str) -> str:
    """On how many of the rung's seeds a boolean column holds: 'k of n'."""
    return f"{int(sub[column].astype(bool).sum())} of {len(sub)}"


def span(values, digits: int = 3, thousands: str = "") -> str:
    """'a' or 'a to b' (min to max), rounded (``thousands=','``: 6,875)."""
    values = np.asarray(list(values), dtype=float)
    lo, hi = np.nanmin(values), np.nanmax(values)
    form = f"{thousands}.{digits}f"
    return f"{lo:{form}}" if round(lo, digits) == round(hi, digits) else f"{lo:{form}} to {hi:{form}}"


def points(values) -> str:
    """Accuracy differences as percentage points: 'a to b points'."""
    return f"{span(100 * np.asarray(list(values), dtype=float), 1)} points"


def _edges(sub: pd.DataFrame, prefix: str, edges) -> pd.DataFrame:
    return sub[[f"{prefix}{e}" for e in edges]]


def _late_ops(sub: pd.DataFrame, edges) -> str:
    """Which op ends on ``edges`` (an edge, or a slice of edges) over the rung's seeds,
    most frequent first: 'none on 3, skip on 2'."""
    ops = sub.late_winners.str.split("|").str[edges].explode().value_counts()
    return ", ".join(f"{OP_LABEL.get(op, op)} on {n}" for op, n in ops.items())


def _stat_line(sub: pd.DataFrame, stat: str, who: str = "seeds") -> str:
    """'the tie-aware statistic holds on k of the n WHO (the paper's argmax statistic on m)'."""
    k, m = int(sub[f"{stat}_decisive.holds"].sum()), int(sub[f"{stat}.holds"].sum())
    if len(sub) == 1:
        def verdict(holds):
            return "holds" if holds else "does not hold"
        return f"the tie-aware statistic {verdict(k)} on the one seed run (the paper's argmax statistic {verdict(m)})"
    return f"the tie-aware statistic holds on {k} of the {len(sub)} {who} (the paper's argmax statistic on {m})"


def _held(held: pd.DataFrame, stat: str) -> str:
    """'; on the held-out seeds 5-9, k of n (the paper's m).' or '.' when not run."""
    if not len(held):
        return "."
    return (f"; on the held-out seeds {min(HELDOUT_SEEDS)}-{max(HELDOUT_SEEDS)}, on "
            f"{int(held[f'{stat}_decisive.holds'].sum())} of {len(held)} "
            f"(the paper's on {int(held[f'{stat}.holds'].sum())}).")


def _so_far(sub: pd.DataFrame, name: str) -> str:
    """'; only k of the rung's n seeds have run so far' where it has not run them all, else ''."""
    n = len(rung(name).seeds)
    return f"; only {len(sub)} of the rung's {n} seeds {'has' if len(sub) == 1 else 'have'} run so far" \
        if len(sub) < n else ""


def _fashion(runs: pd.DataFrame, stat: str) -> str:
    """The chapter's pattern on Fashion-MNIST, rung by rung, or that it has not run."""
    lines = []
    for name in FASHION_RUNGS[stat]:
        sub, r = _of(runs, name), rung(name)
        about = [r.note] if r.note else []
        if r.preset == "bilevel-control":   # the statistic judges a control by the edges it keeps
            about.append(f"a control's statistic holds where it keeps at least {BILEVEL_CONTROL_MIN:.0%} of its edges")
        head = f"*{name}* ({'; '.join(about)}): " if about else f"*{name}*: "
        if not len(sub):
            lines.append(f"{head}{NOT_RUN}.")
            continue
        detail = ""   # the minimal cell's deep edge is e4; the full cell's deep edges are summed up by the statistic
        if stat == "width" and r.overrides.get("cell") != "full":
            detail = (f"the deep edge's p(none) ends at {span(sub.p_none_e4)} (margin {span(sub.margin_e4)}), "
                      f"and the input edges end with {_late_ops(sub, slice(0, 4))}; ")
        elif stat == "width":
            detail = (f"{span(8 * sub['width.input_edges_fraction'], 0)} of the 8 input edges and "
                      f"{span(sub['width.deep_edges_selected'], 0)} of the 6 deep edges are selected; ")
        elif stat == "growing":
            detail = f"the train output cost is positive for {span(sub.positive_output_cost_steps, 0, ',')} steps; "
        elif stat == "bilevel":
            detail = (f"the mean p(none) over the edges rises on {seeds(int((sub.p_none_rise > 0).sum()), len(sub))}, "
                      f"the deep edge ends with {_late_ops(sub, 4)}; ")
        lines.append(f"{head}{_stat_line(sub, stat)}{_so_far(sub, name)}; {detail}"
                     f"{span(sub.final_selected, 0)} edges remain at the end, train accuracy "
                     f"{span(sub.train_acc, 2)}, gap {points(sub.gap)}.")
    return ("\n\n**On Fashion-MNIST**, a harder dataset with about the paper's steps per epoch:\n\n"
            + "\n".join(f"- {line}" for line in lines) + "\n")


def _steps(sub: pd.DataFrame) -> str:
    return f"{int(sub.steps.iloc[0]):,} steps"


def _bounds(sub: pd.DataFrame, column: str, could: pd.DataFrame) -> tuple[int, int]:
    """The fewest and the most of ``sub``'s seeds on which another kind of machine could
    find ``column`` to hold."""
    holds, flips = sub[column].astype(bool), could.loc[sub.index, column]
    return int((holds & ~flips).sum()), int((holds | flips).sum())


def _elsewhere(sub: pd.DataFrame, column: str, could: pd.DataFrame) -> str:
    """'on k of n' or 'on between a and b of n' (:func:`_bounds`)."""
    low, high = _bounds(sub, column, could)
    return f"on {low} of {len(sub)}" if low == high else f"on between {low} and {high} of {len(sub)}"


def _rounding_clause(sub: pd.DataFrame, column: str, could: pd.DataFrame) -> str:
    low, high = _bounds(sub, column, could)
    if low == high:
        return " (rounding on another kind of machine cannot move the tie-aware count)"
    return f" (on another kind of machine rounding could move the tie-aware count to between {low} and {high})"


def _rounding_sentence(both: pd.DataFrame, stat: str) -> str:
    """'On another kind of machine ... the tie-aware count could lie anywhere from a to b
    and the paper's cannot move.' over the seeds of ``both``."""
    could = could_flip(both)
    parts = []
    for column, label in ((f"{stat}_decisive.holds", "the tie-aware count"), (f"{stat}.holds", "the paper's")):
        low, high = _bounds(both, column, could)
        parts.append(f"{label} {'cannot move' if low == high else f'could lie anywhere from {low} to {high}'}")
    return (f"On another kind of machine, where rounding can move each final margin by up to {ROUNDING_REACH} "
            f"(the study chapter counts what that could flip), over these {len(both)} seeds "
            + " and ".join(parts) + ".")


# ---- the pattern chapters -----------------------------------------------------------
def width(runs: pd.DataFrame) -> Markdown:
    """The width chapter's summary: the statistics, the deep edge's and the input
    edges' margins, p(none) and costs, the full cell, more steps."""
    faithful, held = _of(runs, "faithful DSNAS"), _of(runs, "faithful DSNAS, held-out seeds")
    if not len(faithful):
        return Markdown(f"**What the study shows.** The faithful DSNAS preset is {NOT_RUN}.")
    both = pd.concat([faithful, held])
    inputs, deep = _edges(both, "margin_e", range(4)), both.margin_e4
    input_won = int((inputs.min(axis=1) > 0).sum())
    three_decisive = int(((inputs >= TIE_MARGIN).sum(axis=1) >= 3).sum())
    text = [f"**What the study shows.** At the faithful preset ({_steps(faithful)}), "
            f"{_stat_line(faithful, 'width', 'seeds that chose the settings')}"
            + _held(held, "width"), _rounding_sentence(both, "width")]
    text.append(f"Over all {len(both)} seeds the deep edge e4 ends with a margin of {span(deep)} (its best "
                f"op's p minus p(`none`); negative: `none` wins, decisively beyond {TIE_MARGIN}). The four "
                f"input edges are all selected on {seeds(input_won, len(both))}, at least three of them "
                f"decisively on {seeds(three_decisive, len(both))}; the narrowest input edge wins by "
                f"{inputs.min().min():.3f}. "
                f"The deep edge's p(none) ends at {span(both.p_none_e4)}, against the uniform "
                f"{1 / 8:.3f} it starts from, and the input edges' at "
                f"{span(_edges(both, 'p_none_e', range(4)).values.ravel())}.")
    ranked = both.late_conv_cost_train_input.max() < 0 < both.late_conv_cost_train_deep.min()
    text.append(("The costs rank the edges as the paper says" if ranked else "The costs do not separate the "
                 "edges on every seed") + ": over the last tenth of the search the "
                f"input edges' convolutions cost {span(both.late_conv_cost_train_input)} on the train split "
                f"and the deep edge's {span(both.late_conv_cost_train_deep)}.")
    return _dsnas_ending(runs, text, "width", lambda full: (
        f"\n\n**The full cell** (14 edges, the authors' first experiment): {_stat_line(full, 'width')}; "
        f"{span(full.final_selected, 0)} edges are selected at the end, and every deep edge's argmax is "
        f"`none` on {seeds(int((full['width.deep_edges_selected'] == 0).sum()), len(full))}."))


def growing(runs: pd.DataFrame) -> Markdown:
    """The growing chapter's summary: the statistics, how many edges the cell keeps
    early, how long the output cost stays positive, and p(none)'s direction."""
    faithful, held = _of(runs, "faithful DSNAS"), _of(runs, "faithful DSNAS, held-out seeds")
    if not len(faithful):
        return Markdown(f"**What the study shows.** The faithful DSNAS preset is {NOT_RUN}.")
    both = pd.concat([faithful, held])
    kept = (5 * both["growing.early_min_fraction"]).round().astype(int)
    falls = int((both.p_none_rise < 0).sum())
    one_epoch = int((both.positive_output_cost_steps <= both.steps / both.epochs).sum())
    text = [f"**What the study shows.** At the faithful preset ({_steps(faithful)}), "
            f"{_stat_line(faithful, 'growing', 'seeds that chose the settings')}"
            + _held(held, "growing"),
            ("The cell does not start empty" if kept.min() > 0 else f"The cell empties early on "
             f"{seeds(int((kept == 0).sum()), len(both))}")
            + ": through the first third of the search it keeps at least "
            f"{kept.min()} of its five edges on every one of the {len(both)} seeds, and the mean p(none) "
            f"over the edges falls on {seeds(falls, len(both))}. The train output cost, where every "
            f"op's cost starts, is positive for {span(both.positive_output_cost_steps, 0)} steps from "
            f"the start: the first epoch only on {seeds(one_epoch, len(both))}. With PyTorch's default "
            f"initialisation the logits start small, so that cost starts near zero, and α, moving at "
            f"3e-4 a step, has no time to let `none` win" + _positive_phase(both) + "."]
    text.append(_if_run(runs, "logit scale x20", lambda scaled: (
        f"\n\nThe initial logit scale is the lever the first calibration turned ({'{doc}'}`study`): with "
        f"the classifier's initial weights ×20 the output cost stays positive for "
        f"{span(scaled.positive_output_cost_steps, 0)} steps{_positive_phase(scaled)}; `none` takes "
        f"{span(5 - (5 * scaled['growing.early_min_fraction']).round(), 0)} of the five edges early, the "
        f"cell empties on {seeds(int((scaled['growing.early_min_fraction'] == 0).sum()), len(scaled))}, "
        f"and the paper's statistic holds on {count(scaled, 'growing.holds')} seeds.")))
    return _dsnas_ending(runs, text, "growing", lambda full: (
        f"On the full cell the output cost is positive for {span(full.positive_output_cost_steps, 0)} steps "
        f"and the cell keeps at least {int((14 * full['growing.early_min_fraction']).round().min())} of its "
        f"14 edges through the first third; {_stat_line(full, 'growing')}."))


def bilevel(runs: pd.DataFrame) -> Markdown:
    """The bi-level chapter's summary: the gap, how many edges remain, the deep
    edge's op, p(none)'s direction, the held-out and train costs, the control."""
    bi, held = _of(runs, "faithful bi-level DARTS"), _of(runs, "faithful bi-level DARTS, held-out seeds")
    ctrl = pd.concat([_of(runs, "faithful single-level control"),
                      _of(runs, "faithful single-level control, held-out seeds")])
    if not len(bi):
        return Markdown(f"**What the study shows.** The faithful bi-level preset is {NOT_RUN}.")
    both = pd.concat([bi, held])
    rises = int((both.p_none_rise > 0).sum())
    text = [f"**What the study shows.** The small clean train split gives the supernet a generalisation "
            f"gap of {points(both.gap)} (train accuracy {span(both.train_acc, 2)}, held out "
            f"{span(both.heldout_acc, 2)}) over the {len(both)} seeds. At the faithful preset "
            f"({_steps(bi)}), {_stat_line(bi, 'bilevel', 'seeds that chose the settings')}"
            + _held(held, "bilevel"), _rounding_sentence(both, "bilevel"),
            ("The bi-level runs prune" if 2 * rises > len(both) else "The bi-level runs do not prune")
            + f": the mean p(none) over the edges rises on {seeds(rises, len(both))}, "
            f"and {span(both.final_selected, 0)} of the five edges remain at the end. The deep edge ends "
            f"with {_late_ops(both, 4)} of the {len(both)} seeds. Its convolutions cost "
            f"{span(both.late_conv_cost_heldout_deep)} on the held-out split over the last tenth of the "
            f"search, which α follows, and {span(both.late_conv_cost_train_deep)} on the train split."]
    if len(ctrl):
        text.append(f"The single-level control (same data, α on the train split) keeps "
                    f"{span(ctrl.final_selected, 0)} of its five edges on the {len(ctrl)} seeds, and its mean "
                    f"p(none) falls on {seeds(int((ctrl.p_none_rise < 0).sum()), len(ctrl))}"
                    + (": the pruning comes from the held-out costs." if (ctrl.p_none_rise < 0).all() else "."))
    full = _of(runs, "full cell bi-level DARTS")
    if len(full):
        text.append(f"\n\n**The full cell**: {span(full.final_selected, 0)} of its 14 edges remain at the end "
                    f"(gap {points(full.gap)}); {_stat_line(full, 'bilevel', 'seeds')}.")
    for name, what in (("bi-level DARTS, 256 clean images", "With twice the clean train images (256)"),
                       ("bi-level DARTS 13k steps", "At the paper's 13k bi-level steps")):
        sub = _of(runs, name)
        text.append(f"\n\n{what}: " + (
            f"a gap of {points(sub.gap)}, {span(sub.final_selected, 0)} edges remain at the end, the deep "
            f"edge ends with {_late_ops(sub, 4)}, and {_stat_line(sub, 'bilevel', 'seeds')}{_so_far(sub, name)}."
            if len(sub) else f"{NOT_RUN}."))
    sub = _of(runs, "single-level control 13k steps")
    text.append("Its single-level control at 13k steps " + (
        f"keeps {span(sub.final_selected, 0)} of its five edges, and its mean p(none) falls on "
        f"{seeds(int((sub.p_none_rise < 0).sum()), len(sub))}{_so_far(sub, 'single-level control 13k steps')}."
        if len(sub) else f"is {NOT_RUN}."))
    text.append(_fashion(runs, "bilevel") + _gap_rule(runs))
    return Markdown(" ".join(text))


def _gap_rule(runs: pd.DataFrame) -> str:
    """Where the rule fixed before the Fashion-MNIST bi-level runs stands (``study.FASHION_GAP_MIN``)."""
    sub = _of(runs, "Fashion-MNIST bi-level DARTS")
    sub = sub[sub.seed.isin(CHOICE_SEEDS)]
    if not len(sub):
        return ""
    mean, rule = 100 * sub.gap.mean(), 100 * FASHION_GAP_MIN
    if len(sub) < len(CHOICE_SEEDS):
        where = f"so far {mean:.1f} points, on {len(sub)} of the {len(CHOICE_SEEDS)} seeds: not decided yet"
    else:
        where = f"{mean:.1f} points: " + (f"the rung with {FASHION_SMALL_CLEAN:,} clean train images is added "
                                         "(below), and the held-out seeds 5-9 run there"
                                         if mean < rule else "the rung stays as it is")
    return (f"\nThe rule fixed before these runs: if the mean gap of *Fashion-MNIST bi-level DARTS* over "
            f"seeds 0-4 is below {rule:g} points, a rung with {FASHION_SMALL_CLEAN:,} clean train images is "
            f"added. The mean gap is {where}.\n")


def _if_run(runs: pd.DataFrame, name: str, describe) -> str:
    """``describe(the rung's rows)``, or nothing where the rung has not run."""
    sub = _of(runs, name)
    return describe(sub) if len(sub) else ""


def _positive_phase(sub: pd.DataFrame) -> str:
    """', in that phase α moves at most a and p(none) gains at most b (on k seeds)', on
    the seeds whose rows measured it (a column added after some runs were tabulated)."""
    if "alpha_moved_positive_phase" not in sub:
        return ""
    measured = sub.dropna(subset=["alpha_moved_positive_phase"])
    if not len(measured):
        return ""
    where = "" if len(measured) == len(sub) else f" (measured on {len(measured)} of the {len(sub)} seeds)"
    return (f": in that phase α moves by at most {measured.alpha_moved_positive_phase.max():.2g} and an edge's "
            f"p(none) gains at most {measured.p_none_gain_positive_phase.max():.1g}{where}")


def _dsnas_ending(runs: pd.DataFrame, text: list[str], stat: str, full_cell) -> Markdown:
    """A DSNAS chapter's summary ``text``, then the full cell (``full_cell(rows)``) and
    the rung with more steps, each where it has run."""
    text.append(_if_run(runs, "full cell DSNAS", full_cell))
    return Markdown(" ".join(text) + "\n\n" + _more_steps(runs, "DSNAS 20k steps", stat) + _fashion(runs, stat))


def _more_steps(runs: pd.DataFrame, name: str, stat: str) -> str:
    sub, base = _of(runs, name), _of(runs, "faithful DSNAS")
    if not len(sub):
        return f"**With more steps** ({rung(name).note}): {NOT_RUN}."
    ratio = sub.steps.iloc[0] / base.steps.iloc[0] if len(base) else float("nan")
    return (f"**With {ratio:.1f} times the steps** ({_steps(sub)}): {_stat_line(sub, stat, 'seeds')}; "
            f"the deep edge's p(none) ends at {span(sub.p_none_e4)} and its margin at {span(sub.margin_e4)}, "
            f"{span(sub.final_selected, 0)} edges are selected at the end.")


# ---- the study chapter and the introduction ----------------------------------------------
def ablation(runs: pd.DataFrame) -> Markdown:
    """What each departure of the first calibration does, put back alone."""
    base = _of(runs, "faithful DSNAS")
    if not len(base):
        return Markdown(f"**What each departure does**: the faithful DSNAS preset is {NOT_RUN}.")
    lines = ["**What each departure does**, against the faithful preset (width "
             f"{count(base, 'width.holds')}, tie-aware {count(base, 'width_decisive.holds')}; deep edge's "
             f"p(none) {span(base.p_none_e4)}; output cost positive for {span(base.positive_output_cost_steps, 0)} "
             f"steps):\n"]
    for name in ("arch lr x33", "logit scale x20", "no augmentation", "128 images, half the labels replaced"):
        sub = _of(runs, name)
        if not len(sub):
            lines.append(f"- *{name}*: {NOT_RUN}.")
            continue
        lines.append(
            f"- *{name}*: width holds on {count(sub, 'width.holds')} seeds (tie-aware "
            f"{count(sub, 'width_decisive.holds')}), growing on {count(sub, 'growing.holds')}; the deep edge's "
            f"p(none) ends at {span(sub.p_none_e4)} and its argmax is {_late_ops(sub, 4)}; "
            f"the output cost is positive for "
            f"{span(sub.positive_output_cost_steps, 0)} steps; train accuracy {span(sub.train_acc, 2)}.")
    return Markdown("\n".join(lines))


def ladder(runs: pd.DataFrame) -> Markdown:
    """What each rung of the ladder within reach shows, or that it has not run."""
    lines = ["**What the ladder shows**, rung by rung:\n", "- " + _more_steps(runs, "DSNAS 20k steps", "width")]
    for name in ("bi-level DARTS, 256 clean images", "bi-level DARTS 13k steps", "single-level control 13k steps",
                 *(r.name for r in RUNGS if r.profile == "fashion" and r.group == "ladder")):
        sub = _of(runs, name)
        stat = "width" if rung(name).preset == "growing" else "bilevel"
        growing = (f"; growing: tie-aware on {count(sub, 'growing_decisive.holds')}, the paper's on "
                   f"{count(sub, 'growing.holds')}" if stat == "width" else "")
        label = PATTERN_NAMES[stat] if rung(name).preset != "bilevel-control" else \
            f"the control, which holds where it keeps at least {BILEVEL_CONTROL_MIN:.0%} of its edges"
        lines.append(f"- *{name}*" + (
            f" ({label}): {_stat_line(sub, stat)}{growing}{_so_far(sub, name)}; {span(sub.final_selected, 0)} "
            f"edges remain at the end, gap {points(sub.gap)}." if len(sub) else f": {NOT_RUN}."))
    return Markdown("\n".join(lines))


def headline(runs: pd.DataFrame) -> Markdown:
    """The introduction's summary: each pattern at the faithful presets on digits,
    tie-aware first, then on Fashion-MNIST's first rung where it has run."""
    rows = []
    could = could_flip(runs)
    for stat, (name, held_name) in FAITHFUL.items():
        first = FASHION_RUNGS[stat][0]   # Fashion-MNIST's first rung of the pattern
        fashion = _of(runs, first)
        sub, held, label = _of(runs, name), _of(runs, held_name), PATTERN_NAMES[stat].capitalize()
        if not len(sub):
            rows.append(f"- **{label}**: {NOT_RUN}.")
            continue
        k = int(sub[f"{stat}_decisive.holds"].sum()) + int(held[f"{stat}_decisive.holds"].sum())
        n = len(sub) + len(held)
        verdict = "appears" if k == n else "does not appear" if k == 0 else "appears on some seeds"
        rows.append(f"- **{label} {verdict}** on digits at this scale: the tie-aware statistic holds on "
                    f"{k} of {n} seeds (seeds 0-4 and the held-out {min(HELDOUT_SEEDS)}-{max(HELDOUT_SEEDS)}), "
                    f"the paper's argmax statistic on "
                    f"{int(sub[f'{stat}.holds'].sum()) + int(held[f'{stat}.holds'].sum())} of {n}"
                    + (_rounding_clause(pd.concat([sub, held]), f"{stat}_decisive.holds", could)
                       if stat != "growing" else "")
                    + (f". On Fashion-MNIST (*{first}*, {rung(first).note}), "
                       f"{_stat_line(fashion, stat)}{_so_far(fashion, first)}."
                       if len(fashion) else "."))
    return Markdown("\n".join(rows))


def rounding(runs: pd.DataFrame) -> Markdown:
    """How many of the study's final-cell verdicts rounding on another kind of machine
    could flip, and between which counts the faithful presets' patterns would then hold
    on digits."""
    if not len(runs):
        return Markdown(f"**What rounding could flip**: {NOT_RUN}.")
    could = could_flip(runs)
    flips = int(could.values.sum())
    lines = [f"**What rounding could flip.** Of the study's {could.size} final-cell verdicts ({len(runs)} runs, "
             f"{len(FINAL_CELL_VERDICTS)} statistics each), {flips} could come out the other "
             f"way on another kind of machine: some move of the final margins by at most {ROUNDING_REACH} each "
             f"turns them; the other {could.size - flips} cannot flip. On digits, at the faithful presets, "
             f"seeds 0-9, another kind of machine could find:\n"]
    for stat in ("width", "bilevel"):
        sub = runs[runs.rung.isin(FAITHFUL[stat])]
        parts = [f"{label} {_elsewhere(sub, column, could)} (here {int(sub[column].sum())})"
                 for column, label in ((f"{stat}_decisive.holds", "the tie-aware statistic"),
                                       (f"{stat}.holds", "the paper's argmax statistic"))]
        lines.append(f"- {PATTERN_NAMES[stat]}: " + "; ".join(parts) + ".")
    lines.append("\nGrowing reads the first epochs, where p is near uniform and rounding moves an argmax most; "
                 "its verdicts are not counted here.")
    return Markdown("\n".join(lines))
