"""Sweeps: a grid of trials (plain searches or notebook executions) times
seeds, run in parallel, resumable, collected into one tidy table.

Command line::

    python -m nas_core sweep search --grid GRID.yaml --seeds 0-4 --out sweeps/NAME --workers 2
    python -m nas_core sweep book/growing.ipynb --grid GRID.yaml --seeds 0,1 --out sweeps/NAME [--backend ray]

GRID.yaml::

    base:                 # fields every trial shares (optional)
      preset: growing     # optional: a named preset (nas_core.presets), its fields first
      epochs: 20
    grid:                 # the cartesian product of these axes (optional: no grid = one trial per seed)
      algorithm: [darts, dsnas]
      arch_lr: [0.003, 0.03]
      setting:            # an axis whose values are dicts changes several fields together
        - {level: single}
        - {level: bi, train_size: 256}

A grid value that is a dict sets each of its fields (the axis name is then
only a label), except on the axis ``intervention`` (and, for a notebook, a
parameter whose default is a dict), whose values are dicts themselves. Seeds
come from ``--seeds`` ("0-4", "0,2,5", "0-2,7"), not from the grid.

For ``search`` each trial is ``nas_core.run(config, out=OUT/trials/ID/run)``, or,
with ``--runs-dir DIR``, a run in that run cache (``--runs-dir runs`` shares
finished runs with the book);
for a notebook, papermill executes it into ``OUT/trials/ID/notebook.ipynb``
with the trial's fields injected as parameters, plus ``seeds=[seed]`` if the
notebook takes ``seeds`` (else ``seed=seed``) and ``metrics_dir`` (where it
may write ``metrics.json`` with its statistics) if it takes ``metrics_dir``.
A notebook without a ``preset`` parameter cannot take ``base: {preset: ...}``
(``profile`` is passed on to a notebook as a parameter; for ``search`` it picks
the preset table, cpu or paper). A notebook's parameters named like config
fields are also checked as a ``SearchConfig`` (on the defaults for the rest).

``--workers N`` trials run at once (N=1: one after the other in this process;
0: one per CPU), each with one torch and BLAS thread, in the package's worker
pool or, with ``--backend ray`` (``pip install -e .[ray]``), as Ray tasks: see
:mod:`nas_core.runs.sweep_backends`.

Every trial's config (or parameters) is checked before anything runs. Each
trial directory holds ``trial.json`` (its parameters) and ``metrics.json``
(status ``ok`` or ``failed``, seconds, the pattern statistics, and for a
failure the error and traceback). A rerun skips trials whose ``metrics.json``
says ``ok`` and reruns the others (a search resumes from its checkpoint). The
table ``OUT/results.csv`` has one row per trial: ``trial_id``, the grid's
fields, ``seed``, ``status``, ``seconds``, ``error``, then the statistics
flattened (``growing.holds``, ``width.holds``, ``bilevel.final_selected``, ...).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from .. import presets
from ..config import SearchConfig
from ..patterns import flatten
from . import io as files
from .sweep_backends import (BACKENDS, METRICS_FILE, REMOVE_TO_RERUN, TRIAL_FILE, Trial, import_ray, is_finished,
                             read_metrics)

RESULTS_FILE = "results.csv"
SWEEP_FILE = "sweep.json"
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SearchConfig)}
_DICT_VALUED = {"intervention"}
_MAX_ID = 100


# --------------------------------------------------------------------------- grid


def parse_seeds(seeds: str | int | Iterable[int]) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2,5"; "0-2,7"; an int or a list of ints."""
    if isinstance(seeds, int):
        return [seeds]
    if not isinstance(seeds, str):
        out = [int(s) for s in seeds]
    else:
        out = []
        for part in seeds.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(f"bad --seeds {seeds!r}: expected e.g. 0-4, 0,2,5 or 0-2,7")
            lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
            if hi < lo:
                raise ValueError(f"bad --seeds {seeds!r}: range {part} is empty")
            out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("no seeds given")
    if len(set(out)) != len(out):
        raise ValueError(f"--seeds {seeds!r} repeats a seed")
    return out


def load_grid(grid: str | Path | dict) -> dict:
    """A grid spec (a YAML path or a dict) as {"base": {...}, "grid": {...}}."""
    if not isinstance(grid, dict):
        path = Path(grid)
        if not path.is_file():
            raise FileNotFoundError(f"grid file {path} not found")
        try:
            grid = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(grid, dict):
            raise ValueError(f"{path}: expected a mapping with 'base:' and 'grid:'")
    unknown = sorted(set(grid) - {"base", "grid"})
    if unknown:
        raise ValueError(f"grid spec: unknown top-level key(s) {', '.join(unknown)}; expected base: and grid:")
    base, axes = grid.get("base") or {}, grid.get("grid") or {}
    if not isinstance(base, dict):
        raise ValueError("grid spec: 'base:' must be a mapping of fields (optionally with preset: NAME)")
    if not isinstance(axes, dict):
        raise ValueError("grid spec: 'grid:' must be a mapping of field -> list of values")
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid spec: axis {name!r} must be a non-empty list of values, got {values!r}")
    return {"base": dict(base), "grid": dict(axes)}


def expand(axes: dict, dict_valued: Iterable[str] = _DICT_VALUED) -> list[dict]:
    """The cartesian product of the axes as a list of field dicts (in the
    axes' order). A dict value sets several fields, except on a dict-valued axis."""
    dict_valued = set(dict_valued)
    trials = []
    for combo in itertools.product(*axes.values()):
        fields: dict[str, Any] = {}
        for axis, value in zip(axes, combo):
            part = value if isinstance(value, dict) and axis not in dict_valued else {axis: value}
            clash = sorted(set(part) & set(fields))
            if clash:
                raise ValueError(f"grid spec: axis {axis!r} sets {', '.join(clash)}, which another axis also sets")
            fields.update(part)
        trials.append(fields)
    return trials


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return files.dumps(files.finite_or_none(value), sort_keys=True, separators=(",", ":"))
    return str(value)


def _digest(obj) -> str:
    return hashlib.sha1(files.dumps(files.finite_or_none(obj), sort_keys=True, default=str).encode()).hexdigest()[:8]


def trial_id(fields: dict, seed: int) -> str:
    """Readable and stable: ``algorithm=darts_arch_lr=0.003_seed=0``; unsafe
    characters become '-', and a long id is cut and ends with a hash."""
    text = "_".join(f"{k}={_format(v)}" for k, v in {**fields, "seed": seed}.items())
    text = re.sub(r"[^A-Za-z0-9_=.+-]+", "-", text).strip("-")
    if len(text) > _MAX_ID:
        text = f"{text[:_MAX_ID - 9].rstrip('-_')}-{_digest([fields, seed])}"
    return text


def _jsonable(x):
    try:
        return json.loads(files.dumps(x, default=str))
    except ValueError:
        raise ValueError(f"{x!r} holds NaN or infinity, which a JSON file cannot hold") from None


def _notebook_parameters(path: Path) -> dict:
    import papermill  # the [notebooks] extra: only a notebook sweep needs it

    return papermill.inspect_notebook(str(path))


def plan(target: str, grid: str | Path | dict, seeds, out: str | Path) -> tuple[list[Trial], dict]:
    """Every trial of the sweep, each checked (config built, or notebook
    parameters matched) before anything runs; a ValueError names the bad trials.

    Returns ``(trials, meta)``: the :class:`Trial` list and the sweep's description (``sweep.json``)."""
    spec = load_grid(grid)
    seeds = parse_seeds(seeds)
    out = Path(out).resolve()
    base = dict(spec["base"])
    preset_name = base.pop("preset", None)
    profile = base.pop("profile", None) if target == "search" else None  # a notebook may take profile

    if target == "search":
        kind, target_str, nb_params = "search", "search", {}
        if profile is not None and preset_name is None:
            raise ValueError("grid spec: base sets profile without preset")
        try:
            preset_fields = dict({"cpu": presets.PRESETS, "paper": presets.PAPER}[profile or "cpu"][preset_name]) \
                if preset_name else {}
        except KeyError:
            raise ValueError(f"grid spec: unknown preset {preset_name!r} (profile {profile or 'cpu'}); choose one of "
                             f"{', '.join(presets.PRESETS)} (profile cpu or paper)") from None
        dict_valued = _DICT_VALUED
    else:
        path = Path(target)
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"sweep target {target!r} is neither 'search' nor an existing .ipynb notebook")
        kind, target_str = "notebook", str(path.resolve())
        nb_params = _notebook_parameters(path)
        if preset_name is not None:
            if "preset" not in nb_params:
                raise ValueError(f"{target} has no 'preset' parameter, so base: preset: {preset_name} cannot be "
                                 f"applied; list the fields in base: instead")
            base["preset"] = preset_name
        preset_fields = {}
        dict_valued = _DICT_VALUED | {n for n, p in nb_params.items()
                                      if p.get("inferred_type_name", "").startswith("dict")
                                      or str(p.get("default", "")).lstrip().startswith("{")}

    combos = expand(spec["grid"], dict_valued)
    for where, fields in [("base", base)] + [("grid", c) for c in combos]:
        for f in ("seed", "seeds", "metrics_dir"):
            if f in fields:
                raise ValueError(f"grid spec: {where} sets {f!r}; "
                                 + ("seeds come from --seeds" if f != "metrics_dir" else "the sweep sets it"))
    trials, errors = [], []
    for fields in combos:
        for seed in seeds:
            tid = trial_id(fields, seed)
            try:
                if kind == "search":
                    config = SearchConfig.from_dict({**preset_fields, **base, **fields, "seed": seed})
                    params = _jsonable(config.to_dict())
                else:
                    params = _notebook_trial_params(target, nb_params, {**base, **fields}, seed, seeds,
                                                    out / "trials" / tid)
            except (ValueError, TypeError) as err:
                errors.append(f"trial {tid} ({_format(fields) if fields else 'base'}, seed {seed}): {err}")
                continue
            trials.append(Trial(tid, _jsonable(fields), seed, kind, params, target_str, str(out / "trials" / tid)))
    if errors:
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ValueError(f"{len(errors)} of {len(combos) * len(seeds)} trials are invalid; nothing was run:\n  "
                         + "\n  ".join(errors[:10]) + more)
    seen: dict[str, Trial] = {}
    for t in trials:
        if t.trial_id in seen:
            if seen[t.trial_id].params == t.params:
                raise ValueError(f"the grid yields trial {t.trial_id} twice (fields {t.fields}); remove the "
                                 f"repeated value")
            t.trial_id = f"{t.trial_id}-{_digest([t.fields, t.seed])}"
            t.dir = str(out / "trials" / t.trial_id)
        seen[t.trial_id] = t
    meta = {"target": target_str, "base": _jsonable(spec["base"]), "grid": _jsonable(spec["grid"]), "seeds": seeds}
    return trials, meta


def _notebook_trial_params(target, nb_params: dict, fields: dict, seed: int, seeds: list[int], trial_dir: Path):
    unknown = sorted(set(fields) - set(nb_params))
    if unknown:
        raise ValueError(f"{target} has no parameter(s) {', '.join(unknown)}; its parameters are "
                         f"{', '.join(nb_params) or 'none (no cell tagged parameters)'}")
    # Fields named like config fields are checked as a config (on the defaults for the rest).
    config_fields = {k: v for k, v in fields.items() if k in _CONFIG_FIELDS and v is not None}
    if config_fields:
        try:
            SearchConfig.from_dict(config_fields)
        except ValueError as err:
            raise ValueError(f"{err} (the parameters named like config fields are checked as a config)") from None
    params = dict(fields)
    if "seeds" in nb_params:
        params["seeds"] = [seed]
    elif "seed" in nb_params:
        params["seed"] = seed
    elif len(seeds) > 1:
        raise ValueError(f"{target} takes neither 'seeds' nor 'seed', so --seeds cannot vary")
    if "metrics_dir" in nb_params:
        params["metrics_dir"] = str(trial_dir / "notebook_metrics")
    return _jsonable(params)


# --------------------------------------------------------------------------- table


def _cell(value):
    """A table cell: a list or dict as strict JSON (a CSV file holds text)."""
    return files.dumps(files.finite_or_none(value)) if isinstance(value, (dict, list, tuple)) else value


def _row(t: Trial, metrics: dict | None, fields: list[str]) -> dict:
    metrics = metrics or {"status": "missing"}
    row = {"trial_id": t.trial_id}
    for f in fields:
        row[f] = _cell(t.fields.get(f))
    row.update(seed=t.seed, status=metrics.get("status"), seconds=metrics.get("seconds"),
               error=metrics.get("error"))
    stats = metrics.get("statistics")
    if isinstance(stats, dict):
        row.update({k: _cell(v) for k, v in flatten(stats).items()})
    return row


def _table(trials: list[Trial], metrics: dict[str, dict | None]):
    fields = list(dict.fromkeys(f for t in trials for f in t.fields))
    return pd.DataFrame([_row(t, metrics.get(t.trial_id), fields) for t in trials])


def load_table(out: str | Path):
    """The sweep's table: ``OUT/results.csv``, or, for a sweep cut off before
    writing it, one built from the trials' ``metrics.json``."""
    out = Path(out)
    if (out / RESULTS_FILE).is_file():
        return pd.read_csv(out / RESULTS_FILE)
    trials = [Trial.from_file(f) for f in sorted(out.glob(f"trials/*/{TRIAL_FILE}"))]
    metrics = {t.trial_id: read_metrics(t.dir) for t in trials}
    if not trials:
        raise FileNotFoundError(f"{out} holds no sweep ({RESULTS_FILE} or trials/*/{TRIAL_FILE})")
    return _table(trials, metrics)


# --------------------------------------------------------------------------- entry points


def run_sweep(target: str, grid: str | Path | dict, seeds=0, out: str | Path = "sweeps/sweep", workers: int = 1,
              backend: str = "local", progress: bool = False, runs_dir: str | Path | None = None):
    """Run (or resume) a sweep and return its table (also written to OUT/results.csv).

    ``target``: "search" or a notebook path; ``grid``: a dict {"base": ..., "grid": ...}
    or a YAML path; ``seeds``: "0-4", "0,2,5", an int or a list. Invalid trials raise
    ValueError before anything runs; failed trials are rows with status "failed".
    ``runs_dir``: search trials run in this run cache (``runs/``: shared with the
    book, so a run already finished there is not recomputed) instead of OUT/trials/ID/run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "ray":
        import_ray()
    out = Path(out).resolve()
    trials, meta = plan(target, grid, seeds, out)
    if runs_dir is not None:
        if target != "search":
            raise ValueError("--runs-dir applies to search trials only (a notebook chooses its own runs)")
        for t in trials:
            t.runs_dir = str(Path(runs_dir).resolve())
    for t in trials:  # a trial directory holding other parameters is never reused silently
        f = Path(t.dir) / TRIAL_FILE
        if f.is_file():
            old = files.read_json(f, REMOVE_TO_RERUN)
            if old.get("params") != t.params or old.get("target") != t.target:
                raise ValueError(f"{t.dir} holds trial {t.trial_id} with other parameters (the base or the target "
                                 f"changed?); choose another --out or delete that directory")
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / SWEEP_FILE, meta)

    metrics = {t.trial_id: read_metrics(t.dir) for t in trials}
    todo = [t for t in trials if not is_finished(t.dir)]
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    say(f"sweep {out}: {len(trials)} trials, {len(trials) - len(todo)} already finished, "
        f"{len(todo)} to run ({backend}, {workers} worker{'s' * (workers != 1)})")
    done = [0]

    def report(t: Trial, m: dict):
        metrics[t.trial_id] = m
        done[0] += 1
        secs = m.get("seconds")
        tail = "" if m.get("status") == "ok" else f": {str(m.get('error'))[:160]}"
        say(f"[{done[0]}/{len(todo)}] {t.trial_id} {m.get('status')}"
            f"{f' {secs:.1f}s' if isinstance(secs, (int, float)) else ''}{tail}")

    try:
        if todo:
            BACKENDS[backend](todo, workers, report)
    finally:  # the table holds whatever finished, even after an interruption
        table = _table(trials, metrics)
        files.write_atomic(out / RESULTS_FILE, lambda tmp: table.to_csv(tmp, index=False))
    return table


def main(args) -> int:
    """The CLI's ``sweep`` subcommand; exit 1 when any trial failed (after the table is written).

    Returns the exit status."""
    try:
        table = run_sweep(args.target, args.grid, args.seeds, args.out, workers=args.workers, backend=args.backend,
                          progress=True, runs_dir=args.runs_dir)
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    failed = table[table["status"] != "ok"]
    cols = [c for c in table.columns if c.endswith(".holds")]
    print(table[["trial_id", "status", "seconds", *cols]].to_string(index=False))
    print(f"\n{len(table) - len(failed)}/{len(table)} trials ok; table: {out / RESULTS_FILE}")
    for _, r in failed.iterrows():
        print(f"failed: {r['trial_id']}: {r['error']} (see {out / 'trials' / r['trial_id'] / METRICS_FILE})",
              file=sys.stderr)
    return 1 if len(failed) else 0
