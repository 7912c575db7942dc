"""Does a chapter's own run reproduce the study's committed run of the same config?

A pattern chapter executes its runs (seed 0 of the faithful preset at the default
profile) and compares each one with the row of the study's table
(``study/runs.csv``) that the same config and seed made: the same verdict for
every statistic, the same derived cells and counts, and every other value within
:data:`TOLERANCE`. A change to nas_core that alters the search fails the build
and names each quantity that changed. The study's five-seed counts are checked
separately (:mod:`nas_core.chapters.checks`).

That comparison holds on the kind of machine that made the row (the table's
``machine``, :func:`nas_core.runs.history.machine`): there a run repeats bit for
bit. On another kind, or where the row does not record one, rounding differs from
the first steps and grows over thousands of steps into other draws: measured on an
AVX-512 EPYC against rows made before machines were recorded, the faithful DSNAS
seed 0 moved its margins and p(none) by up to 0.018 and bi-level DARTS seed 0 won
edge e2 with another op, every verdict unchanged. There the verdicts are asserted,
and the other quantities are reported, not asserted.

A run whose config no rung of the study holds (a reader's own parameters) has
nothing to be compared with and is reported as such. A run whose config a rung
holds but whose row the table lacks fails: the table is behind the code.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import pandas as pd
from IPython.display import display

from ..runs.history import machine
from . import study

#: Fixed before the first comparison: the absolute difference allowed in a probability,
#: margin, accuracy or cost of a row made on this kind of machine. On one CPU kind with
#: one thread a run repeats bit for bit; the smallest |margin| of a seed-0 run the
#: chapters execute is 0.008 (bi-level DARTS, edge e1), so a value within the tolerance
#: cannot flip a verdict unnoticed. (It was meant to absorb another machine's rounding
#: too; the module's docstring gives what another kind of machine does instead.)
TOLERANCE = 0.005

VERDICTS = tuple(f"{s}.holds" for s in study.STATISTICS) + ("empty_phase.holds", "deep_avoided.holds")
EXACT = ("epochs", "steps", "final_selected", "positive_output_cost_steps", "early_winners", "late_winners")
CLOSE_PREFIXES = ("train_acc", "heldout_acc", "gap", "p_none_", "margin_", "late_conv_cost_")


def _run_name(h) -> str:
    return h.path.name if h.path is not None else f"{h.config.algorithm}-{h.config.key()}"


def _study_rung_of() -> dict[str, str]:
    """Run directory name -> the study rung whose config it is (digits rungs only:
    the chapters run on digits)."""
    return {f"{c.algorithm}-{c.key()}": r.name for r in study.RUNGS if r.profile == "cpu" for c in r.configs()}


def _same(column: str, old, new) -> bool:
    if column in VERDICTS:
        return bool(old) == bool(new)
    if column in EXACT:
        return str(old) == str(new) if isinstance(old, str) or isinstance(new, str) else float(old) == float(new)
    old, new = float(old), float(new)
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    return abs(old - new) <= TOLERANCE


@dataclass
class Reproduction:
    """Per compared run and quantity: the committed value, the value now, and
    whether they agree; with the runs that had no row to compare with."""

    table: pd.DataFrame        # seed, rung, quantity, committed, now, agrees, asserted
    missing: list[str]         # runs of a study rung whose row the table lacks (fails)
    unmatched: list[str]       # runs of no study rung (reported)
    elsewhere: list[str] = ()  # compared runs whose row another (or an unrecorded) machine made

    @property
    def passed(self) -> bool:
        return not self.missing and bool(self.changed.empty)

    @property
    def changed(self) -> pd.DataFrame:
        """The asserted quantities that differ."""
        return self.table[~self.table["agrees"] & self.table["asserted"]]

    @property
    def differs_elsewhere(self) -> pd.DataFrame:
        """The quantities that differ and are not asserted (rows of another machine)."""
        return self.table[~self.table["agrees"] & ~self.table["asserted"]]

    @property
    def message(self) -> str:
        parts = [f"seed {r.seed} ({r.rung!r}): {r.quantity} {r.committed} -> {r.now}"
                 for r in self.changed.itertuples()]
        parts += [f"{m}: the study table has no row for this run" for m in self.missing]
        return ("This chapter's runs do not reproduce the study's committed runs of the same configs "
                f"(study/runs.csv; tolerance {TOLERANCE} on values, verdicts and cells exact): "
                + "; ".join(parts) + ". If nas_core changed the search on purpose, rerun the study "
                "(`make study`) and commit its tables with the chapters' statements; otherwise the change "
                "broke the reproduction.")

    def sentence(self) -> str:
        runs = self.table.groupby(["seed", "rung"], sort=False).size()
        compared = ", ".join(f"seed {s} of '{r}'" for s, r in runs.index) or "no run"
        agree = int(self.table["agrees"].sum()) if len(self.table) else 0
        text = (f"Compared with the study's committed rows (study/runs.csv): {compared}. "
                f"{agree} of {len(self.table)} quantities agree (verdicts and cells exactly, values "
                f"within {TOLERANCE}).")
        if self.elsewhere:
            text += (f" Made on another kind of machine than this one ({machine()}), or on one not recorded: "
                     f"{', '.join(self.elsewhere)}. A run repeats bit for bit only on the same kind, so for "
                     f"these the verdicts are asserted and the other quantities reported.")
        if self.unmatched:
            text += (f" Not compared, as no rung of the study ran their configs: "
                     f"{', '.join(self.unmatched)}.")
        return text

    def summary(self) -> pd.DataFrame:
        """One row per compared run: how many quantities agree, and the largest
        difference of a value (0 where the run repeats bit for bit)."""
        def largest(sub):
            close = sub[~sub.quantity.isin(VERDICTS + EXACT)]
            diffs = [abs(float(a) - float(b)) for a, b in zip(close.committed, close.now)
                     if not (pd.isna(a) or pd.isna(b))]
            return max(diffs, default=0.0)

        rows = [{"seed": seed, "rung": rung, "agree": f"{int(sub.agrees.sum())} of {len(sub)}",
                 "largest difference": f"{largest(sub):.2g}",
                 "asserted": "all" if sub.asserted.all() else "verdicts"}
                for (seed, rung), sub in self.table.groupby(["seed", "rung"], sort=False)]
        return pd.DataFrame(rows, columns=["seed", "rung", "agree", "largest difference", "asserted"])

    def report(self):
        print(textwrap.fill(self.sentence(), 78))
        if len(self.table):
            display(self.summary().set_index("seed"))
        if len(self.changed):
            display(self.changed.set_index(["seed", "quantity"]))
        if len(self.differs_elsewhere):   # as text: cells (five op names each) make a table too wide to read
            def value(v):
                return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", " ")

            print(textwrap.fill("Differing, not asserted (rows of another machine): " + "; ".join(
                f"seed {r.seed} ({r.rung}) {r.quantity} {value(r.committed)} -> {value(r.now)}"
                for r in self.differs_elsewhere.itertuples()) + ".", 78))


def reproduction_check(histories, study_runs: pd.DataFrame | None = None) -> Reproduction:
    """Compare each run of ``histories`` with the committed study row of the same
    config (its run directory's name) and seed."""
    if study_runs is None:
        study_runs = study.load_tables()[0]
    rung_of = _study_rung_of()
    rows, missing, unmatched, elsewhere = [], [], [], []
    for h in histories:
        name = _run_name(h)
        committed = study_runs[(study_runs.run == name) & (study_runs.seed == h.config.seed)]
        if not len(committed):
            if name in rung_of:
                missing.append(f"seed {h.config.seed} of {rung_of[name]!r} ({name})")
            else:
                unmatched.append(f"seed {h.config.seed} ({name})")
            continue
        old = committed.iloc[0]
        made_on = old.get("machine") if isinstance(old.get("machine"), str) else "not recorded"
        here = made_on == machine()
        if not here:
            elsewhere.append(f"seed {h.config.seed} of {old.rung!r} ({made_on})")
        new = study.run_row(study.Rung(old.rung, old.group, ""), h)
        columns = [c for c in study_runs.columns if c in new and
                   (c in VERDICTS or c in EXACT or c.startswith(CLOSE_PREFIXES))]
        for c in columns:
            rows.append({"seed": h.config.seed, "rung": old.rung, "quantity": c, "committed": old[c],
                         "now": new[c], "agrees": _same(c, old[c], new[c]), "asserted": here or c in VERDICTS})
    table = pd.DataFrame(rows, columns=["seed", "rung", "quantity", "committed", "now", "agrees", "asserted"])
    return Reproduction(table, missing, unmatched, elsewhere)
