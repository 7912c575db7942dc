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
the first steps and grows over thousands of steps into other draws, and a verdict
decided by a margin near its threshold can flip with no change to the code. So
there only the verdicts that rounding cannot reach are asserted
(:func:`asserted_elsewhere`): those that read the final cell alone and come out
the same however the committed final margins move, each by at most
:data:`ROUNDING_REACH`. The trajectory verdicts (growing, empty phase) read the
first third of the epochs, where p is near uniform and an argmax moves with
rounding, and are reported. Every other quantity is reported too.
:func:`rounding_reach` counts, per rung of the study, the verdicts that rounding
could flip.

So that a kind of machine other than the study's gets the whole comparison, the
chapters' own runs can be remade there and kept as its reference rows
(``study/reproduction.csv``, ``python -m nas_core reproduction``): a run is
compared with the row made on its kind of machine where there is one.

A run whose config no rung of the study holds (a reader's own parameters) has
nothing to be compared with and is reported as such. A run whose config a rung
holds but whose row the table lacks fails: the table is behind the code.
"""
from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import display

from .. import patterns
from ..runs.history import machine, read_provenance, run_all, run_dir_for
from ..runs.io import write_atomic
from . import study

#: Fixed before the first comparison: the absolute difference allowed in a probability,
#: margin, accuracy or cost of a row made on this kind of machine. On one CPU kind with
#: one thread a run repeats bit for bit; the smallest |margin| of a seed-0 run the
#: chapters execute is 0.008 (bi-level DARTS, edge e1), so a value within the tolerance
#: cannot flip a verdict unnoticed. (It was meant to absorb another machine's rounding
#: too; the module's docstring gives what another kind of machine does instead.)
TOLERANCE = 0.005

#: How far a final margin can move when the same code, config and seed run on another
#: kind of machine. Measured against the committed rows of faithful DSNAS (made on a
#: machine not recorded): on an AVX-512 AMD EPYC (family 26 model 2), seeds 0-4 moved a
#: margin by 0.018, 0.025, 0.015, 0.021 and 0.010 at most (edge e0 fell on all five);
#: on an Intel Xeon (family 6 model 167) seed 0 moved margin e1 by 0.013, from 0.0275 into
#: the tie margin. The rule, fixed before the EPYC's seeds 1, 2 and 4 were measured:
#: 1.5 x the largest change measured, rounded up to the next 0.005. A verdict that
#: flips from farther away fails, as a code change or a machine that rounds further.
ROUNDING_REACH = 0.04

#: The verdicts that read only the final cell (:func:`nas_core.patterns.final_cell_verdicts`).
FINAL_CELL_VERDICTS = ("width.holds", "width_decisive.holds", "deep_avoided.holds", "bilevel.holds",
                       "bilevel_decisive.holds")

VERDICTS = tuple(f"{s}.holds" for s in study.STATISTICS) + ("empty_phase.holds", "deep_avoided.holds")
EXACT = ("epochs", "steps", "final_selected", "positive_output_cost_steps", "early_winners", "late_winners")
CLOSE_PREFIXES = ("train_acc", "heldout_acc", "gap", "p_none_", "margin_", "late_conv_cost_")


REFERENCE_TABLE = "reproduction.csv"   # beside the study's tables
REFERENCE_KEYS = ("run", "seed", "machine")  # what finds a reference row
#: The presets whose seed-0 runs the pattern chapters execute at their defaults.
CHAPTER_PRESETS = ("growing", "width", "bilevel", "bilevel-control")


def _run_name(h) -> str:
    return h.path.name if h.path is not None else run_dir_for(h.config).name


def _study_rung_of() -> dict[str, str]:
    """Run directory name -> the study rung whose config it is (digits rungs only:
    the chapters run on digits)."""
    return {run_dir_for(c).name: r.name for r in study.RUNGS if r.profile == "cpu" for c in r.configs()}


def _same(column: str, old, new) -> bool:
    if column in VERDICTS:
        return bool(old) == bool(new)
    if column in EXACT:
        return str(old) == str(new) if isinstance(old, str) or isinstance(new, str) else float(old) == float(new)
    old, new = float(old), float(new)
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    return abs(old - new) <= TOLERANCE


def _favoured(verdict: str, topology, level: str) -> np.ndarray:
    """Per edge, the direction in which a larger margin never turns ``verdict`` from
    holding to failing: each final-cell verdict is monotone in every margin. Width
    and deep-avoided want input edges kept and deep edges ``none``; a bi-level run
    wants every edge ``none``, its single-level control every edge kept."""
    if verdict.startswith("bilevel"):
        return np.full(topology.n_edges, -1.0 if level == "bi" else 1.0)
    return np.array([-1.0 if e in topology.deep_edges else 1.0 for e in range(topology.n_edges)])


def asserted_elsewhere(row) -> set[str]:
    """The verdicts of a committed ``row`` of the study that rounding on another kind of
    machine cannot flip: final-cell verdicts that come out the same however each final
    margin moves by at most :data:`ROUNDING_REACH`. A verdict is monotone in every
    margin (:func:`_favoured`), so moving all of them by the reach towards it and
    against it gives the two extremes. Judged on the committed row, so what a run is
    held to is fixed before it runs."""
    config = study.rung(row["rung"]).configs()[0]
    top = config.topology
    margins = np.array([float(row[f"margin_e{e}"]) for e in range(top.n_edges)])
    if np.isnan(margins).any():
        return set()
    held = set()
    for verdict in FINAL_CELL_VERDICTS:
        shift = ROUNDING_REACH * _favoured(verdict, top, config.level)
        extremes = {patterns.final_cell_verdicts(margins + sign * shift, top, config.level)[verdict]
                    for sign in (1, -1)}
        if len(extremes) == 1:
            held.add(verdict)
    return held


def could_flip(runs: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``runs`` and final-cell verdict: whether rounding on another kind of
    machine could flip it (not :func:`asserted_elsewhere`)."""
    return pd.DataFrame([{v: v not in asserted_elsewhere(row) for v in FINAL_CELL_VERDICTS}
                         for _, row in runs.iterrows()], index=runs.index, columns=list(FINAL_CELL_VERDICTS))


def rounding_reach(runs: pd.DataFrame) -> pd.DataFrame:
    """Per rung of ``runs`` (the study's table) and final-cell verdict: on how many
    seeds it holds, and how many of the rung's verdicts rounding on another kind of
    machine could flip (:func:`could_flip`): "holds/seeds (could flip)"."""
    flips = could_flip(runs)
    rows = {}
    for name, sub in runs.groupby("rung", sort=False):
        rows[name] = {"seeds": len(sub)} | {
            v.removesuffix(".holds"): f"{int(sub[v].sum())}/{len(sub)} ({int(flips.loc[sub.index, v].sum())})"
            for v in FINAL_CELL_VERDICTS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("rung")


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
        text = (f"Compared with the committed rows (study/runs.csv, or study/reproduction.csv where it holds "
                f"this kind of machine's): {compared}. "
                f"{agree} of {len(self.table)} quantities agree (verdicts and cells exactly, values "
                f"within {TOLERANCE}).")
        if self.elsewhere:
            text += (f" Made on another kind of machine than this one ({machine()}), or on one not recorded: "
                     f"{', '.join(self.elsewhere)}. A run repeats bit for bit only on the same kind, so for "
                     f"these only the verdicts out of rounding's reach are asserted (final-cell verdicts whose "
                     f"committed margins all lie farther than {ROUNDING_REACH} from their thresholds); the other "
                     f"quantities are reported.")
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

        def asserted(sub):
            verdicts = sub[sub.quantity.isin(VERDICTS)]
            return "all" if sub.asserted.all() else f"{int(verdicts.asserted.sum())} of {len(verdicts)} verdicts"

        rows = [{"seed": seed, "rung": rung, "agree": f"{int(sub.agrees.sum())} of {len(sub)}",
                 "largest difference": f"{largest(sub):.2g}", "asserted": asserted(sub)}
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


def load_references(folder: str | Path | None = None) -> pd.DataFrame:
    """The chapters' runs remade on other kinds of machine (``study/reproduction.csv``,
    beside the study's tables); empty where there is none."""
    folders = [Path(folder)] if folder is not None else study.TABLE_FOLDERS
    found = [f / REFERENCE_TABLE for f in folders if (f / REFERENCE_TABLE).is_file()]
    if not found:
        return pd.DataFrame(columns=list(REFERENCE_KEYS))
    try:
        table = pd.read_csv(found[0])
    except ValueError as err:   # pandas' parser errors are ValueErrors
        problem = repr(err)
    else:
        lacking = set(REFERENCE_KEYS) - set(table.columns)
        if not lacking:
            return table
        problem = f"no column {', '.join(sorted(lacking))}"
    raise ValueError(f"{found[0]} is unreadable ({problem}); restore it (git checkout {found[0]}) or "
                     f"remake it (python -m nas_core reproduction)")


def reproduction_check(histories, study_runs: pd.DataFrame | None = None,
                       references: pd.DataFrame | None = None) -> Reproduction:
    """Compare each run of ``histories`` with the committed row of the same config
    (its run directory's name) and seed: the row made on this kind of machine among
    the study's and the ``references`` (:func:`load_references`), else the study's."""
    if study_runs is None:
        study_runs = study.load_tables()[0]
    if references is None:
        references = load_references()
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
        remade = references[(references.run == name) & (references.seed == h.config.seed)]
        made_here = [f[f["machine"] == machine()] for f in (committed, remade) if "machine" in f]
        old = next((f for f in made_here if len(f)), committed).iloc[0]
        made_on = old.get("machine") if isinstance(old.get("machine"), str) else "not recorded"
        here = made_on == machine()
        held = set(VERDICTS) if here else asserted_elsewhere(old)
        if not here:
            elsewhere.append(f"seed {h.config.seed} of {old.rung!r} ({made_on})")
        new = study.run_row(study.Rung(old.rung, old.group, ""), h)
        columns = [c for c in study_runs.columns if c in new and
                   (c in VERDICTS or c in EXACT or c.startswith(CLOSE_PREFIXES))]
        for c in columns:
            rows.append({"seed": h.config.seed, "rung": old.rung, "quantity": c, "committed": old[c],
                         "now": new[c], "agrees": _same(c, old[c], new[c]), "asserted": here or c in held})
    table = pd.DataFrame(rows, columns=["seed", "rung", "quantity", "committed", "now", "agrees", "asserted"])
    return Reproduction(table, missing, unmatched, elsewhere)


def record_references(histories, folder: str | Path = study.TABLE_DIR) -> Path:
    """Write this machine's rows of ``histories`` (runs of study rungs) to the reference
    table in ``folder``, replacing the rows this kind of machine made before. Each
    run must come from committed code, so that its row names what made it."""
    rung_of = _study_rung_of()
    rows = []
    for h in histories:
        name = _run_name(h)
        made_by = read_provenance(h.path) if h.path else {}
        if name not in rung_of:
            raise ValueError(f"{name}: no rung of the study runs this config; a reference row needs one")
        if made_by.get("machine") != machine() or str(made_by.get("commit", "+")).endswith(("+", "unknown")):
            raise ValueError(f"{h.path}: made by {made_by.get('commit', 'unknown code')} on "
                             f"{made_by.get('machine', 'a machine not recorded')}; a reference row must come "
                             f"from committed code on this machine: commit, move the directory aside and run again")
        rung = study.rung(rung_of[name])
        rows.append(study.run_row(rung, h))
    path = Path(folder) / REFERENCE_TABLE
    old = load_references(folder)
    old = old[~(old.machine == machine()) | ~old.run.isin([r["run"] for r in rows])]
    parts = [f for f in (old, pd.DataFrame(rows)) if not f.empty]
    table = pd.concat(parts, ignore_index=True).sort_values(["machine", "rung", "seed"], kind="stable")
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    return path


def main(args) -> int:
    """``python -m nas_core reproduction``: run the chapters' seed-0 runs at their
    defaults here and keep them as this kind of machine's reference rows."""
    from .. import presets

    configs = {run_dir_for(c).name: c for p in CHAPTER_PRESETS for c in presets.seed_configs(p, "cpu", [0])}
    histories = run_all(list(configs.values()), workers=args.workers)
    path = record_references(histories, args.out)
    print(f"{path}: the rows of {', '.join(configs)} made on {machine()}", file=sys.stderr)
    return 0
