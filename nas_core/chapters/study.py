"""The faithful-replication study: the faithful presets, the ablation (each
departure of the first calibration put back alone) and the ladder toward the
paper's scale. Every run is a config in the shared run cache, so the book, the
study and a rerun share finished runs; ``make study`` runs what is missing and
writes the study's tidy tables (``study/*.csv``), which the book draws from.

The design was fixed before its runs: settings are chosen on seeds 0-4 only;
seeds 5-9 are held out and reported on their own. Rungs marked ``cpu=False``
are out of reach on two cores; the study prints their commands instead.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import patterns, record
from ..config import SearchConfig
from ..data import steps_per_epoch, weight_steps
from ..presets import DEPARTURES, preset
from ..runs import History, RunError, load, run_all, run_dir_for
from ..runs.history import read_provenance
from ..runs.io import write_atomic

CHOICE_SEEDS = tuple(range(5))
HELDOUT_SEEDS = tuple(range(5, 10))


@dataclass(frozen=True)
class Rung:
    """One row of the study: a preset with overrides, run at ``seeds``."""

    name: str
    group: str                       # ablation | ladder
    preset: str
    overrides: dict = field(default_factory=dict)
    seeds: tuple = CHOICE_SEEDS
    cpu: bool = True                 # within reach of two CPU cores
    note: str = ""
    profile: str = "cpu"             # the presets' profile: cpu (digits) or fashion (Fashion-MNIST)

    def configs(self) -> list[SearchConfig]:
        return [preset(self.preset, self.profile, seed=s, **self.overrides) for s in self.seeds]

    def command(self) -> str:
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.overrides.items())
        profile = f" --profile {self.profile}" if self.profile != "cpu" else ""
        return f"python -m nas_core search --preset {self.preset}{profile} {flags} --seed SEED".replace("  ", " ")


#: The seed of each of the authors' scripts (Analysis/snas/train.sh: 6; Analysis/darts/cnn/train_darts.sh: 2).
AUTHORS_SEEDS = {"dsnas": 6, "darts": 2}
FULL = {"cell": "full"}

#: Fixed before any Fashion-MNIST bi-level run (the study chapter states it): if the mean
#: generalisation gap of "Fashion-MNIST bi-level DARTS" over seeds 0-4 is below FASHION_GAP_MIN,
#: a rung with FASHION_SMALL_CLEAN clean train images is added, and the held-out seeds run on
#: whichever of the two the gap chose.
FASHION_GAP_MIN, FASHION_SMALL_CLEAN = 0.05, 1000


def _epochs_for_steps_of(name: str, profile: str, **overrides) -> int:
    """The epochs at which a run with ``overrides`` makes as many weight steps as preset ``name``."""
    return round(weight_steps(preset(name, profile)) / steps_per_epoch(preset(name, profile, **overrides)))


# The rule chose (seeds 0-4 of "Fashion-MNIST bi-level DARTS": see the bi-level chapter): the
# 30k rung's 13k steps on FASHION_SMALL_CLEAN clean train images (1,195 epochs of 11 steps), its
# single-level control on as many images of the whole training set, and the held-out seeds there.
_SMALL = {"train_size": FASHION_SMALL_CLEAN,
          "epochs": _epochs_for_steps_of("bilevel", "fashion", train_size=FASHION_SMALL_CLEAN)}

RUNGS: tuple[Rung, ...] = (
    # the faithful presets, on the choice seeds and on the held-out seeds
    Rung("faithful DSNAS", "ladder", "growing", note="4 cells, C=8, batch 32, 8.7k steps"),
    Rung("faithful DSNAS, held-out seeds", "heldout", "growing", seeds=HELDOUT_SEEDS),
    Rung("faithful bi-level DARTS", "ladder", "bilevel", note="3 cells, 128 clean train images, 1.6k steps"),
    Rung("faithful single-level control", "ladder", "bilevel-control"),
    Rung("faithful bi-level DARTS, held-out seeds", "heldout", "bilevel", seeds=HELDOUT_SEEDS),
    Rung("faithful single-level control, held-out seeds", "heldout", "bilevel-control", seeds=HELDOUT_SEEDS),
    # the full cell (4 steps, multiplier 4), which the authors' README runs first
    Rung("full cell DSNAS", "ladder", "growing", FULL, note="14 edges, 8.7k steps"),
    Rung("full cell DSNAS, held-out seeds", "heldout", "growing", FULL, seeds=HELDOUT_SEEDS),
    Rung("full cell bi-level DARTS", "ladder", "bilevel", FULL, note="14 edges, 1.6k steps"),
    Rung("full cell bi-level DARTS, held-out seeds", "heldout", "bilevel", FULL, seeds=HELDOUT_SEEDS),
    # the authors' own seeds, reported apart from seeds 0-9 (the same runs where a seed is shared)
    *(Rung(f"authors' seed, {name}", "authors", p, o, seeds=(AUTHORS_SEEDS[preset(p).algorithm],))
      for name, p, o in (("DSNAS", "growing", {}), ("DSNAS, full cell", "growing", FULL),
                         ("bi-level DARTS", "bilevel", {}), ("bi-level DARTS, full cell", "bilevel", FULL))),
    # the ablation: one departure of the first calibration at a time
    *(Rung(name, "ablation", "growing", overrides) for name, overrides in DEPARTURES.items() if overrides),
    # further up the ladder
    Rung("DSNAS 20k steps", "ladder", "growing", {"epochs": 690}, note="2.3x the faithful preset's steps"),
    Rung("bi-level DARTS, 256 clean images", "ladder", "bilevel", {"train_size": 256},
         note="a smaller generalisation gap"),
    Rung("DSNAS 78k steps", "ladder", "growing", {"epochs": 2690}, cpu=False,
         note="the paper's steps"),
    Rung("DSNAS, the paper's network", "ladder", "growing", {"cells": 8, "channels": 16, "batch_size": 96,
                                                             "epochs": 870}, cpu=False,
         note="8 cells, C=16, batch 96, 8.7k steps"),
    Rung("bi-level DARTS 13k steps", "ladder", "bilevel", {"epochs": 3250},
         note="the paper's bi-level steps"),
    Rung("single-level control 13k steps", "ladder", "bilevel-control", {"epochs": 3250},
         note="the control at the same steps"),
    # Fashion-MNIST (profile "fashion": 14x14, batch 96, 625 steps per epoch)
    Rung("Fashion-MNIST DSNAS", "ladder", "growing", profile="fashion",
         note="14x14, 4 cells, C=8, the paper's 78k steps"),
    Rung("Fashion-MNIST DSNAS, held-out seeds", "heldout", "growing", profile="fashion", seeds=HELDOUT_SEEDS),
    Rung("Fashion-MNIST DSNAS 28x28", "ladder", "growing", {"resolution": 28, "epochs": 32}, profile="fashion",
         note="full size, 20k steps"),
    Rung("Fashion-MNIST full cell DSNAS", "ladder", "growing", {"cell": "full", "epochs": 32}, profile="fashion",
         note="14x14, 14 edges, 20k steps"),
    Rung("Fashion-MNIST bi-level DARTS", "ladder", "bilevel", profile="fashion",
         note="14x14, 3 cells, 30k / 30k, the paper's 13k steps"),
    Rung("Fashion-MNIST single-level control", "ladder", "bilevel-control", profile="fashion",
         note="the control on 30k training images, 13k steps"),
    Rung("Fashion-MNIST bi-level DARTS, 1,000 clean images", "ladder", "bilevel", _SMALL, profile="fashion",
         note="14x14, 3 cells, 1,000 clean / 30k, 13k steps: the gap rule's rung"),
    Rung("Fashion-MNIST single-level control, 1,000 images", "ladder", "bilevel-control", _SMALL,
         profile="fashion", note="the control on 1,000 training images, 13k steps"),
    Rung("Fashion-MNIST bi-level DARTS, 1,000 clean images, held-out seeds", "heldout", "bilevel", _SMALL,
         profile="fashion", seeds=HELDOUT_SEEDS),
    # the two departures of the first calibration that move alpha most, put back alone on Fashion-MNIST
    *(Rung(f"Fashion-MNIST {name}", "ladder", "growing", DEPARTURES[name], profile="fashion",
           note="14x14, 78k steps, one departure put back alone") for name in ("logit scale x20", "arch lr x33")),
)

#: The Fashion-MNIST rungs each pattern chapter shows beside its digits rungs.
FASHION_RUNGS = {
    "growing": ("Fashion-MNIST DSNAS", "Fashion-MNIST DSNAS, held-out seeds", "Fashion-MNIST DSNAS 28x28",
                "Fashion-MNIST full cell DSNAS"),
    "bilevel": ("Fashion-MNIST bi-level DARTS", "Fashion-MNIST single-level control",
                "Fashion-MNIST bi-level DARTS, 1,000 clean images", "Fashion-MNIST single-level control, 1,000 images",
                "Fashion-MNIST bi-level DARTS, 1,000 clean images, held-out seeds"),
}
FASHION_RUNGS["width"] = FASHION_RUNGS["growing"]


def rung(name: str) -> Rung:
    for r in RUNGS:
        if r.name == name:
            return r
    raise ValueError(f"unknown rung {name!r}; rungs are: {', '.join(r.name for r in RUNGS)}")


# ---- the tables ------------------------------------------------------------------
TABLE_DIR = Path(__file__).resolve().parents[2] / "study"
#: Where the committed tables are looked for: the repository's, then the working
#: directory's or its parent's (a notebook in ``book/``).
TABLE_FOLDERS = (TABLE_DIR, Path("study"), Path("../study"))
RUNS_TABLE, CURVES_TABLE = "runs.csv", "curves.csv"
# where a notebook without the repository (Colab) reads the committed tables ($NAS_STUDY_URL overrides)
REPOSITORY_TABLES = "https://raw.githubusercontent.com/wiring-nas/wiring-nas/main/study"
STATISTICS = ("growing", "growing_decisive", "width", "width_decisive", "bilevel", "bilevel_decisive")
CURVE_POINTS = 150   # at most this many epochs per run in the curves table (evenly spaced, last one kept)




def _winners(r: dict, cell_type: str = "normal") -> str:
    """Each edge's argmax op at one epoch (``none`` counted), e.g. 'skip|none|...'."""
    return "|".join(record.derived(r, cell_type))


def _conv_cost_by_kind(records: list[dict], split: str, config: SearchConfig, cell_type: str) -> dict:
    """The mean parametric-op cost (``record.edge_costs``) over ``records`` and over
    the input edges, and over the deep edges; NaN where none was computed."""
    costs = [m for m in (record.edge_costs(r, split, config, "parametric", cell_type) for r in records)
             if m is not None]
    top, out = config.topology, {}
    for part, edges in (("input", top.input_edges), ("deep", top.deep_edges)):
        vals = [m[e] for m in costs for e in edges if np.isfinite(m[e])]
        out[part] = float(np.mean(vals)) if vals else np.nan
    return out


def run_row(rung: Rung, h: History, cell_type: str = "normal") -> dict:
    """One row of the runs table: the rung, the seed, the statistics (the
    paper's and the tie-aware ones), accuracy and gap, early and late winners,
    how long the train output cost stayed positive, and the runtime."""
    c, recs = h.config, h.records
    last10 = recs[-max(1, len(recs) // 10):]
    train_acc = float(np.mean([record.accuracy(r, "train") for r in last10]))
    held_acc = float(np.mean([record.accuracy(r, "heldout") for r in last10]))
    positive = [record.output_cost(r, "train") > 0 for r in recs]
    first_negative = positive.index(False) if False in positive else len(positive)
    p_none = record.p_none(recs[-1], cell_type)
    made_by = read_provenance(h.path) if h.path else {}
    row = {"rung": rung.name, "group": rung.group, "seed": c.seed, "heldout_seed": c.seed in HELDOUT_SEEDS,
           "run": h.path.name if h.path else None,
           "code": f"v{made_by.get('code_version', '?')}@{made_by.get('commit', 'unknown')}",
           "machine": made_by.get("machine", "not recorded"),
           "epochs": len(recs), "steps": len(recs) * steps_per_epoch(h.config),
           "minutes": sum(record.seconds(r) for r in recs) / 60,
           "train_acc": train_acc, "heldout_acc": held_acc, "gap": train_acc - held_acc,
           "final_selected": record.wiring(recs[-1], "n_selected", cell_type),
           "early_winners": _winners(recs[max(0, math.ceil(len(recs) / 10) - 1)], cell_type),
           "late_winners": _winners(recs[-1], cell_type),
           "positive_output_cost_steps": first_negative * steps_per_epoch(h.config),
           **{f"p_none_e{e}": float(v) for e, v in enumerate(p_none)},
           # by how much each edge is selected (> 0) or lost to none (< 0) at the end: a statistic's margin
           **{f"margin_e{e}": float(v) for e, v in enumerate(patterns.edge_margins(record.probs(recs[-1], cell_type)))}}
    stats = patterns.statistics(h, cell_type)
    for name in STATISTICS:
        row[f"{name}.holds"] = stats[name]["holds"]
    for split in ("train", "heldout"):  # the mean conv cost of the last tenth of the epochs, per kind of edge
        for part, value in _conv_cost_by_kind(last10, split, c, cell_type).items():
            row[f"late_conv_cost_{split}_{part}"] = value
    row["empty_phase.holds"] = patterns.empty_phase(h, cell_type)["holds"]
    row["deep_avoided.holds"] = patterns.deep_avoided(h, cell_type)["holds"]
    first_p = np.mean(record.p_none(recs[0], cell_type))
    row["p_none_rise"] = float(np.mean(p_none) - first_p)   # mean over edges, last epoch minus first
    # how far α moved while the train output cost was positive (from epoch 0 to the phase's last epoch):
    # `none` can gain an edge only in that phase
    end = recs[first_negative - 1] if first_negative else h.initial
    row["alpha_moved_positive_phase"] = float(np.abs(record.alpha(end, cell_type)
                                                     - record.alpha(h.initial, cell_type)).max())
    row["p_none_gain_positive_phase"] = float((record.p_none(end, cell_type)
                                               - record.p_none(h.initial, cell_type)).max())
    row["growing.early_min_fraction"] = stats["growing"]["early_min_fraction"]
    row["width.input_edges_fraction"] = stats["width"]["input_edges_fraction"]
    row["width.deep_edges_selected"] = stats["width"]["deep_edges_selected"]
    row["width_decisive.undecided"] = stats["width_decisive"]["undecided"]
    return row


def curve_rows(rung: Rung, h: History, cell_type: str = "normal") -> list[dict]:
    """Per epoch (thinned to CURVE_POINTS): edges selected (argmax and
    decisively), p(none) per edge, accuracies, the train output cost, and the
    mean conv cost of the input edges and of the deep edges on each split."""
    recs = h.records
    keep = sorted(set(np.linspace(0, len(recs) - 1, min(CURVE_POINTS, len(recs))).round().astype(int)))
    rows = []
    for i in keep:
        r = recs[i]
        dec = patterns.edge_decisions(record.probs(r, cell_type))
        row = {"rung": rung.name, "seed": h.config.seed, "epoch": record.epoch(r),
               "step": record.epoch(r) * steps_per_epoch(h.config),
               "selected": record.wiring(r, "n_selected", cell_type),
               "decisively_selected": dec.count(patterns.SELECTED), "undecided": dec.count(patterns.UNDECIDED),
               "train_acc": record.accuracy(r, "train"), "heldout_acc": record.accuracy(r, "heldout"),
               "train_output_cost": record.output_cost(r, "train"),
               **{f"p_none_e{e}": float(v) for e, v in enumerate(record.p_none(r, cell_type))}}
        for split in ("train", "heldout"):
            for part, value in _conv_cost_by_kind([r], split, h.config, cell_type).items():
                row[f"conv_cost_{split}_{part}"] = value
        rows.append(row)
    return rows


def rungs(cpu_only: bool = True) -> list[Rung]:
    return [r for r in RUNGS if r.cpu or not cpu_only]


def run_study(workers: int = 2, cache_dir=None, names=None) -> dict[str, list[History]]:
    """Run (or load from the run cache) every rung within reach; rung name -> histories."""
    chosen = [rung(n) for n in names] if names else rungs()
    configs = [c for r in chosen for c in r.configs()]
    histories = run_all(configs, workers=workers, cache_dir=cache_dir)
    out, i = {}, 0
    for r in chosen:
        out[r.name] = histories[i:i + len(r.seeds)]
        i += len(r.seeds)
    return out


def finished(cache_dir=None, names=None) -> dict[str, list[History]]:
    """The rungs' runs that have finished in the run cache, computing nothing
    (to write the tables while a study is still running)."""
    out = {}
    for r in ([rung(n) for n in names] if names else rungs()):
        hs = []
        for c in r.configs():
            try:
                h = load(run_dir_for(c, cache_dir))
            except (RunError, OSError):
                continue
            if h.config.key() == c.key() and h.finished:
                hs.append(History(c, h.records[: c.epochs], h.path))
        if hs:
            out[r.name] = hs
    return out


def tables(histories: dict[str, list[History]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table and the curves table of finished rungs."""
    runs, curves = [], []
    for name, hs in histories.items():
        r = rung(name)
        for h in hs:
            runs.append(run_row(r, h))
            curves.extend(curve_rows(r, h))
    return pd.DataFrame(runs), pd.DataFrame(curves)


def _kept(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` with the rows of ``old`` whose (rung, seed) it lacks: a run
    tabulated before (on another machine, whose run cache is gone) stays in the
    table until a run of the same rung and seed replaces it."""
    fresh = set(zip(new["rung"], new["seed"])) if not new.empty else set()
    old = old[[(r, s) not in fresh for r, s in zip(old["rung"], old["seed"])]]
    parts = [f for f in (old, new) if not f.empty]   # pandas warns on concatenating an empty frame
    return pd.concat(parts, ignore_index=True) if parts else new


def _in_rung_order(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    """``frame``'s rows in the order of RUNGS, then by seed and ``keys``."""
    if frame.empty:
        return frame
    order = {r.name: i for i, r in enumerate(RUNGS)}
    return frame.sort_values(["rung", "seed", *keys], key=lambda c: c.map(order) if c.name == "rung" else c,
                             kind="stable", ignore_index=True)


def write_tables(histories, out: str | Path = TABLE_DIR) -> tuple[Path, Path]:
    """Write the tables of ``histories`` to ``out``, keeping the rows already
    there of every (rung, seed) that ``histories`` does not hold (rungs no
    longer in RUNGS are dropped)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, curves = tables(histories)
    if all((out / n).is_file() for n in (RUNS_TABLE, CURVES_TABLE)):
        known = {r.name for r in RUNGS}
        try:
            old_runs, old_curves = (t[t["rung"].isin(known)] for t in load_tables(out))
        except (ValueError, KeyError) as err:   # pandas' parser errors are ValueErrors; KeyError: no rung column
            raise ValueError(f"{out}: the study tables there are unreadable ({err!r}); restore them "
                             f"(git checkout {out}) or move them away to write new ones") from None
        runs, curves = _kept(old_runs, runs), _kept(old_curves, curves)
    runs, curves = _in_rung_order(runs), _in_rung_order(curves, "epoch")
    paths = []
    for frame, name in ((runs, RUNS_TABLE), (curves, CURVES_TABLE)):
        write_atomic(out / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False, float_format="%.6g"))
        paths.append(out / name)
    return tuple(paths)


def load_tables(out: str | Path | None = None, version: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The committed study tables (``make study`` writes them): ``study/`` of the
    repository, or of the working directory or its parent (a notebook in ``book/``);
    ``version`` names a subfolder (``"v1"``: the runs of code version 1, before the fidelity fixes)."""
    if out is None:
        found = [d / version for d in TABLE_FOLDERS if (d / version / RUNS_TABLE).is_file()]
        if not found and os.environ.get("NAS_STUDY_URL", REPOSITORY_TABLES):
            # an installed package without the repository (Colab): the committed tables online
            url = "/".join(p for p in (os.environ.get("NAS_STUDY_URL", REPOSITORY_TABLES).rstrip("/"), version) if p)
            try:
                return pd.read_csv(f"{url}/{RUNS_TABLE}"), pd.read_csv(f"{url}/{CURVES_TABLE}")
            except OSError as err:
                raise FileNotFoundError(f"no study tables here and none at {url} ({err}); run the chapter in "
                                        f"a clone of the repository, or `make study`") from None
        out = found[0] if found else TABLE_DIR / version
    out = Path(out)
    missing = [n for n in (RUNS_TABLE, CURVES_TABLE) if not (out / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: no {', '.join(missing)}; run `make study` to compute the study")
    return pd.read_csv(out / RUNS_TABLE), pd.read_csv(out / CURVES_TABLE)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per rung: on how many seeds each statistic holds (paper's and tie-aware),
    the mean gap and accuracies, and the mean runtime."""
    cols = [f"{s}.holds" for s in STATISTICS]
    g = runs.groupby("rung", sort=False)
    out = g[cols].sum().astype(int)
    out.insert(0, "seeds", g.size())
    out["train_acc"] = g["train_acc"].mean()
    out["heldout_acc"] = g["heldout_acc"].mean()
    out["gap"] = g["gap"].mean()
    out["minutes"] = g["minutes"].mean()
    return out


# the config fields that set the cost of one step; epochs, seeds and the learning rates do not. The steps
# per epoch do (still_to_run's key): each epoch ends with the held-out evaluation, which at 11 steps per
# epoch (the 1,000-image rungs) takes a third of the run and at 625 a small fraction
STEP_COST_FIELDS = ("data", "resolution", "algorithm", "level", "order", "cell", "network", "cells",
                    "channels", "batch_size", "eval_size")


def still_to_run(runs: pd.DataFrame) -> pd.DataFrame:
    """Every rung with seeds missing from ``runs`` (those `make study` leaves out,
    ``cpu=False``, included): the seeds, the steps of one seed, the command of one seed and the
    minutes one seed is expected to take on one core: its steps times the mean measured
    minutes per step of the finished runs whose steps cost the same (the same
    ``STEP_COST_FIELDS`` and steps per epoch; NaN where none has run), with the fastest and
    slowest of those runs' rates (the study's machines differ)."""
    def cost_key(r: Rung) -> tuple:
        c = r.configs()[0]
        return (*(getattr(c, f) for f in STEP_COST_FIELDS), steps_per_epoch(c))

    per_step: dict[tuple, list[float]] = {}
    for r in RUNGS:
        sub = runs[runs.rung == r.name]
        per_step.setdefault(cost_key(r), []).extend(sub.minutes / sub.steps)
    rows = []
    for r in RUNGS:
        missing = sorted(set(r.seeds) - set(runs[runs.rung == r.name].seed))
        if not missing:
            continue
        c = r.configs()[0]
        steps = weight_steps(c)
        measured = per_step.get(cost_key(r), [])
        fastest, mean, slowest = (steps * float(f(measured)) if measured else np.nan for f in (np.min, np.mean, np.max))
        rows.append({"rung": r.name, "seeds missing": " ".join(map(str, missing)), "steps per seed": steps,
                     "minutes per seed": mean, "fastest": fastest, "slowest": slowest,
                     "make study runs it": r.cpu, "command": r.command()})
    columns = ["rung", "seeds missing", "steps per seed", "minutes per seed", "fastest", "slowest",
               "make study runs it", "command"]
    return pd.DataFrame(rows, columns=columns).set_index("rung")


def main(args) -> int:
    """``python -m nas_core study``: run what is missing, write the tables, print
    the summary and the rungs still to run (:func:`still_to_run`)."""
    names = args.rung or None
    if not args.tables_only:
        run_study(workers=args.workers, names=names)
    histories = finished()   # every finished rung: running one rung must not drop the others' rows
    if not histories:
        print("no rung has a finished run yet: nothing to tabulate (run `make study`)", file=sys.stderr)
        return 1
    paths = write_tables(histories, args.out)
    runs, _ = load_tables(args.out)
    print(summary(runs).to_string())
    print(f"\ntables: {paths[0]}, {paths[1]}")
    todo = still_to_run(runs)
    if len(todo):
        print("\nstill to run (one command per seed; minutes per seed estimated from the measured step time):",
              file=sys.stderr)
        for name, t in todo.iterrows():
            print(f"  {to_run_line(name, t)}", file=sys.stderr)
    return 0


def to_run_line(name: str, t: pd.Series) -> str:
    """One row of :func:`still_to_run` as the command line prints it: the seeds, the minutes
    per seed (the fastest and slowest rates where they differ) and the command."""
    low, high = f"{t.fastest:.0f}", f"{t.slowest:.0f}"
    minutes = "time per seed not measured yet" if np.isnan(t["minutes per seed"]) else \
        f"~{t['minutes per seed']:.0f} min per seed" + (f", {low}-{high} on the study's machines" if low != high else "")
    reach = "" if t["make study runs it"] else ", beyond what make study runs"
    return f"{name}, seeds {t['seeds missing']} ({minutes}{reach}): {t.command}"
