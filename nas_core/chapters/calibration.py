"""The calibration study: the sweeps of ``sweeps/*.yaml`` and the one tidy table
(``sweeps/calibration.csv``) that the book's calibration chapter draws from.

Each study is a sweep spec and the seeds it runs. Its trials run in the shared
run cache (``runs/``), so the presets' seeds the book executes are computed
once, and a rerun of the study recomputes nothing that finished. The table has
one row per run and study: its levers, runtime, every statistic of ``nas_core.patterns``
(the paper's, and the weaker CPU-scale ones: ``empty_phase``, ``deep_avoided``,
and ``pruning``, which pairs each bi-level run with the single-level control of
the same seed), the study it belongs to, and whether its seed was among those the
presets were chosen on.

``calibration_curves.csv`` next to the table holds the per-epoch curves behind
its statistics (see :func:`curves`).

Command line (``make calibrate``)::

    python -m nas_core calibrate [--workers 2] [--specs sweeps] [--table sweeps/calibration.csv]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import patterns, record
from ..runs import default_cache_dir, load
from ..runs.io import read_json, write_atomic
from ..runs.sweep import load_table, run_sweep
from ..runs.sweep_backends import METRICS_FILE

# spec file (in the specs directory) -> (study label, seeds). The presets were
# chosen on seeds 0-4; seeds 5 and 6 check them on seeds never looked at.
STUDIES = {
    "growing.yaml": ("growing+width", "0-6"),
    "bilevel.yaml": ("bilevel", "0-6"),
    "bilevel-control.yaml": ("bilevel-control", "0-6"),
    "levers-dsnas.yaml": ("levers", "0"),
    "levers-bilevel.yaml": ("levers", "0"),
    "levers-bilevel-long.yaml": ("levers", "0"),
    "levers-dsnas-data.yaml": ("levers", "0"),
}
CHOSEN_ON = range(5)


def run_study(specs: str | Path = "sweeps", runs_dir: str | Path | None = None, workers: int = 2,
              progress: bool = True) -> dict[str, Path]:
    """Run (or resume) every study's sweep; returns spec name -> sweep output directory.
    Sweep outputs go to ``SPECS/out/NAME`` and the runs to the run cache."""
    specs = Path(specs)
    missing = [name for name in STUDIES if not (specs / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{specs}: missing sweep spec(s) {', '.join(missing)}")
    outs = {}
    for name, (_, seeds) in STUDIES.items():
        out = specs / "out" / Path(name).stem
        run_sweep("search", specs / name, seeds, out, workers=workers, progress=progress,
                  runs_dir=runs_dir or default_cache_dir())
        outs[name] = out
    return outs


def _finished_runs(sweep_out: Path) -> list:
    """The histories of a sweep's ok trials, in trial order."""
    runs = []
    for f in sorted(Path(sweep_out).glob(f"trials/*/{METRICS_FILE}")):
        m = read_json(f)
        if m.get("status") == "ok" and m.get("run_dir"):
            runs.append(load(m["run_dir"]))
    return runs


def collect(outs: dict[str, Path], cell_type: str = "normal"):
    """One row per run of every study (see the module docstring)."""
    frames, by_study = [], {}
    for name, out in outs.items():
        study = STUDIES[name][0]
        histories = _finished_runs(out)
        if not histories:
            continue
        by_study.setdefault(study, []).extend(histories)
        t = patterns.table(histories, cell_type)
        extra = [patterns.flatten({"empty_phase": patterns.empty_phase(h, cell_type),
                                   "deep_avoided": patterns.deep_avoided(h, cell_type)}) for h in histories]
        t = pd.concat([t, pd.DataFrame(extra)], axis=1)
        t["study"] = study
        t["seen_while_choosing"] = [study == "levers" or h.config.seed in CHOSEN_ON for h in histories]
        frames.append(t)
    if not frames:
        raise FileNotFoundError("no finished run in any study; run `make calibrate` first")
    # A run two sweeps of one study share (a lever map's corner) is one row.
    table = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["run", "study"], ignore_index=True)
    controls = {h.config.seed: h for h in by_study.get("bilevel-control", [])}
    rows = {}
    for h in by_study.get("bilevel", []):
        if h.config.seed in controls:
            rows[h.path.name] = patterns.flatten({"pruning": patterns.pruning(h, controls[h.config.seed], cell_type)})
    pruning = pd.DataFrame.from_dict(rows, orient="index")
    if len(pruning):
        table = table.join(pruning, on="run")
    return table


def curves(outs: dict[str, Path], cell_type: str = "normal"):
    """Per run and epoch, what the table's statistics summarise: the fraction of
    selected edges, the mean p(none) over edges, and the mean cost of a
    convolution (parametric op) on an edge of one cell, per split recorded
    (NaN where a split was not recorded). Small enough to commit, so the book
    draws the study's curves without its runs."""
    rows = []
    for name, out in outs.items():
        for h in _finished_runs(out):
            n_edges = h.config.topology.n_edges
            for r in h.records:
                row = {"run": h.path.name, "study": STUDIES[name][0], "seed": h.config.seed, "epoch": record.epoch(r),
                       "selected_fraction": record.wiring(r, "n_selected", cell_type) / n_edges,
                       "p_none": float(np.mean(record.p_none(r, cell_type)))}
                for split in ("train", "heldout"):
                    mean = record.costs(r, split, h.config, cell_type)
                    m = np.array([np.nan]) if mean is None else mean[..., record.PARAMETRIC_INDEX]
                    row[f"conv_cost_{split}"] = float(np.nanmean(m)) if np.isfinite(m).any() else np.nan
                rows.append(row)
    return pd.DataFrame(rows).drop_duplicates(subset=["run", "epoch"])


def _write_csv(table, path: Path):
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def main(args) -> int:
    """``python -m nas_core calibrate``: run the studies, write the table of what
    finished; exit 1, naming them, when trials failed."""
    outs = run_study(args.specs, workers=args.workers)
    failed = []
    for out in outs.values():
        t = load_table(out)
        failed += [f"{out}/trials/{r.trial_id}: {r.error}" for r in t[t.status != "ok"].itertuples()]
    table = collect(outs)
    _write_csv(table, Path(args.table))
    curves_path = Path(args.table).with_name(Path(args.table).stem + "_curves.csv")
    _write_csv(curves(outs), curves_path)
    held = table[table.study != "levers"].groupby("study")[[c for c in table.columns if c.endswith(".holds")]]
    print(held.sum().T.to_string())
    print(f"\n{len(table)} runs; table: {args.table}, per-epoch curves: {curves_path}")
    if failed:
        print(f"{len(failed)} trial(s) failed and are not in the table:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0

