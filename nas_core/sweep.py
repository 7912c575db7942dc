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

``--workers N``: the local backend runs N trials at once in a spawned process
pool (N=1: one after the other in this process; 0: one per CPU), each with one
torch thread and OMP/MKL_NUM_THREADS=1 (inherited by a notebook's kernel).
``--backend ray`` runs the trials as Ray tasks (num_cpus=1 each, at most N in
flight; 0: no cap) on the cluster at $RAY_ADDRESS, else on a local instance
with N CPUs; it needs ``pip install -e .[ray]``.

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

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable

from . import faults, presets
from .config import SearchConfig
from .history import THREAD_ENV, init_worker

TRIAL_FILE = "trial.json"
METRICS_FILE = "metrics.json"
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
        import yaml

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
        return faults.dumps(faults.finite_or_none(value), sort_keys=True, separators=(",", ":"))
    return str(value)


def _digest(obj) -> str:
    return hashlib.sha1(faults.dumps(faults.finite_or_none(obj), sort_keys=True, default=str).encode()).hexdigest()[:8]


def trial_id(fields: dict, seed: int) -> str:
    """Readable and stable: ``algorithm=darts_arch_lr=0.003_seed=0``; unsafe
    characters become '-', and a long id is cut and ends with a hash."""
    text = "_".join(f"{k}={_format(v)}" for k, v in {**fields, "seed": seed}.items())
    text = re.sub(r"[^A-Za-z0-9_=.+-]+", "-", text).strip("-")
    if len(text) > _MAX_ID:
        text = f"{text[:_MAX_ID - 9].rstrip('-_')}-{_digest([fields, seed])}"
    return text


@dataclasses.dataclass
class Trial:
    trial_id: str
    fields: dict      # the grid's fields for this trial (the table's columns)
    seed: int
    kind: str         # "search" or "notebook"
    params: dict      # search: the full config dict; notebook: the injected parameters
    target: str       # "search" or the notebook's absolute path
    dir: str          # OUT/trials/<trial_id>
    runs_dir: str | None = None  # search: the run cache to share (None: the run lives in dir/run)

    def record(self) -> dict:
        """The trial as ``trial.json`` stores it (a dict)."""
        return {"trial_id": self.trial_id, "fields": self.fields, "seed": self.seed, "kind": self.kind,
                "target": self.target, "params": self.params}


def _jsonable(x):
    try:
        return json.loads(faults.dumps(x, default=str))
    except ValueError:
        raise ValueError(f"{x!r} holds NaN or infinity, which a JSON file cannot hold") from None


def _notebook_parameters(path: Path) -> dict:
    import papermill

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


# --------------------------------------------------------------------------- one trial


def _write_json(path: Path, obj):
    """Strict JSON (an undefined statistic, NaN, is written as null), whole or not at all."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(faults.dumps(faults.finite_or_none(obj), indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return faults.loads(path.read_text(), path)
    except ValueError as err:
        raise ValueError(f"{path} is unreadable ({err}); delete it (or its trial directory) to run it again") from None


def read_metrics(trial_dir: str | Path) -> dict | None:
    """A trial's ``metrics.json`` as a dict, or None when it is missing or unreadable."""
    try:
        return faults.loads((Path(trial_dir) / METRICS_FILE).read_text())
    except (FileNotFoundError, ValueError):  # a torn or non-strict file: the trial runs again
        return None


def is_finished(trial_dir: str | Path) -> bool:
    """True when the trial's ``metrics.json`` says ``ok`` (a rerun skips it)."""
    m = read_metrics(trial_dir)
    return bool(m) and m.get("status") == "ok"


@contextlib.contextmanager
def _thread_env():
    """OMP/MKL/OpenBLAS = 1 thread in the environment (a notebook's kernel and
    a spawned worker inherit it); the old values are restored."""
    old_env = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _single_thread():
    """One torch intra-op thread and :func:`_thread_env`; restored afterwards."""
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _thread_env():
            yield
    finally:
        torch.set_num_threads(old_threads)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _run_search(trial: Trial) -> dict:
    from .history import run, run_dir_for
    from .patterns import statistics

    config = SearchConfig.from_dict(trial.params)
    out = run_dir_for(config, trial.runs_dir) if trial.runs_dir else Path(trial.dir) / "run"
    h = run(config, out=out, progress=False)
    return {"run_dir": str(h.path), "statistics": statistics(h)}


def _run_notebook(trial: Trial) -> dict:
    import papermill

    out_nb = Path(trial.dir) / "notebook.ipynb"
    metrics_dir = trial.params.get("metrics_dir")
    if metrics_dir:
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        (Path(metrics_dir) / METRICS_FILE).unlink(missing_ok=True)
    papermill.execute_notebook(trial.target, str(out_nb), parameters=trial.params, progress_bar=False,
                               log_output=False, cwd=str(Path(trial.target).parent))
    result: dict[str, Any] = {"notebook": str(out_nb)}
    if metrics_dir and (Path(metrics_dir) / METRICS_FILE).is_file():
        result["statistics"] = _read_json(Path(metrics_dir) / METRICS_FILE)
    return result


def run_trial(trial: Trial) -> dict:
    """Run one trial and write its ``metrics.json``; a failure is recorded, not raised.

    Returns the metrics (a dict, as written)."""
    d = Path(trial.dir)
    d.mkdir(parents=True, exist_ok=True)
    _write_json(d / TRIAL_FILE, trial.record())
    (d / METRICS_FILE).unlink(missing_ok=True)
    start = time.time()
    metrics: dict[str, Any] = {"trial_id": trial.trial_id, "fields": trial.fields, "seed": trial.seed}
    try:
        with _single_thread():
            result = _run_search(trial) if trial.kind == "search" else _run_notebook(trial)
        metrics.update(status="ok", seconds=round(time.time() - start, 3), **result)
    except Exception as err:  # noqa: BLE001 - every failure is recorded and the sweep goes on
        tb = traceback.format_exc()
        message = f"{type(err).__name__}: {err}"
        if type(err).__name__ == "PapermillExecutionError":  # the cell's own error and traceback
            message = _ANSI.sub("", f"{err.ename}: {err.evalue} (notebook cell {err.exec_count})")
            tb = _ANSI.sub("", "\n".join(err.traceback)) + "\n\n" + tb
            metrics["notebook"] = str(d / "notebook.ipynb")
        metrics.update(status="failed", seconds=round(time.time() - start, 3), error=message, traceback=tb)
    _write_json(d / METRICS_FILE, metrics)
    return metrics


WORKER_FILE = "worker.pid"
_START_METHOD = "spawn"  # of the local pool's workers (tests use fork: no second import of torch)


def _run_in_worker(trial: Trial) -> dict:
    """A trial in a pool worker; ``worker.pid`` in its directory says which
    worker runs it (if that one dies, the sweep knows whose trial was lost)."""
    marker = Path(trial.dir) / WORKER_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    try:
        return run_trial(trial)
    finally:
        marker.unlink(missing_ok=True)


# --------------------------------------------------------------------------- backends


def _local(trials: list[Trial], workers: int, report):
    if workers <= 0:
        workers = os.cpu_count() or 1
    if workers == 1 or len(trials) <= 1:
        for t in trials:
            report(t, run_trial(t))
        return
    import multiprocessing

    # spawn: no fork of a process that may hold torch threads; the workers inherit _thread_env
    context = multiprocessing.get_context(_START_METHOD)
    todo, stalls = list(trials), 0
    while todo:  # a worker that dies takes its pool down: the others' trials go on in a new pool
        again = _pool(todo, workers, context, report)
        stalls = stalls + 1 if len(again) == len(todo) else 0
        if stalls == 3:  # pools that break before any trial ends: never loop
            for t in again:
                report(t, _crashed(t, RuntimeError("the process pool broke three times before any trial ended")))
            return
        todo = again


def _pool(trials: list[Trial], workers: int, context, report) -> list[Trial]:
    """Run trials in one process pool; return those to run again because another
    worker's death broke the pool under them. A trial whose own worker died is
    reported failed (a rerun of the sweep resumes it)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    processes, broken = {}, []
    with _thread_env(), ProcessPoolExecutor(min(workers, len(trials)), context, initializer=init_worker) as pool:
        futures = {}
        for t in trials:
            (Path(t.dir) / WORKER_FILE).unlink(missing_ok=True)
            futures[pool.submit(_run_in_worker, t)] = t
            processes.update(getattr(pool, "_processes", None) or {})  # to read their exit codes afterwards
        try:
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    metrics = fut.result()
                except BrokenProcessPool as err:
                    broken.append((t, err))
                    continue
                except Exception as err:  # noqa: BLE001 - e.g. a result that cannot be sent back
                    metrics = _crashed(t, err)
                report(t, metrics)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    # the pool is shut down and its workers joined: each one's exit code says whether it died or was stopped
    again = []
    for t, err in broken:
        if is_finished(t.dir):  # finished just before the pool broke
            report(t, read_metrics(t.dir))
            continue
        try:
            pid = int((Path(t.dir) / WORKER_FILE).read_text())
        except (OSError, ValueError):
            again.append(t)  # it never started
            continue
        code = getattr(processes.get(pid), "exitcode", None)
        if code == -signal.SIGTERM:  # stopped by the pool because another worker died
            again.append(t)
        else:
            how = f"killed by {signal.Signals(-code).name}" if code and code < 0 and -code in signal.valid_signals() \
                else f"exit code {code}"
            report(t, _crashed(t, err, f"its worker (pid {pid}) died, {how} (e.g. out of memory); rerun the sweep "
                                        f"to resume it"))
    return again


def _crashed(t: Trial, err: BaseException, why: str | None = None) -> dict:
    why = why or f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
    metrics = {"trial_id": t.trial_id, "fields": t.fields, "seed": t.seed, "status": "failed", "seconds": None,
               "error": f"worker crashed: {why}", "traceback": "".join(traceback.format_exception(err))}
    Path(t.dir).mkdir(parents=True, exist_ok=True)
    _write_json(Path(t.dir) / METRICS_FILE, metrics)
    return metrics


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--backend ray needs ray: pip install -e .[ray]") from None
    return ray


def _ray(trials: list[Trial], workers: int, report):
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address="auto")
        else:
            # "local": a new instance even if a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=workers if workers > 0 else None, include_dashboard=False)
        started_here = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_in_worker)
        limit = workers if workers > 0 else len(trials)
        pending, todo = {}, list(trials)
        while todo or pending:
            while todo and len(pending) < limit:
                t = todo.pop(0)
                pending[remote.remote(t)] = t
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                t = pending.pop(ref)
                try:
                    metrics = ray.get(ref)
                except Exception as err:  # the task's worker died
                    metrics = _crashed(t, err)
                report(t, metrics)
    finally:
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------- table


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = faults.dumps(faults.finite_or_none(v))
        else:
            out[key] = v
    return out


def _row(t: Trial, metrics: dict | None, fields: list[str]) -> dict:
    metrics = metrics or {"status": "missing"}
    row = {"trial_id": t.trial_id}
    for f in fields:
        v = t.fields.get(f)
        row[f] = faults.dumps(faults.finite_or_none(v)) if isinstance(v, (dict, list)) else v
    row.update(seed=t.seed, status=metrics.get("status"), seconds=metrics.get("seconds"),
               error=metrics.get("error"))
    stats = metrics.get("statistics")
    if isinstance(stats, dict):
        row.update(_flatten(stats))
    return row


def _table(trials: list[Trial], metrics: dict[str, dict | None]):
    import pandas as pd

    fields = list(dict.fromkeys(f for t in trials for f in t.fields))
    return pd.DataFrame([_row(t, metrics.get(t.trial_id), fields) for t in trials])


def load_table(out: str | Path):
    """The sweep's table: ``OUT/results.csv``, or, for a sweep cut off before
    writing it, one built from the trials' ``metrics.json``."""
    import pandas as pd

    out = Path(out)
    if (out / RESULTS_FILE).is_file():
        return pd.read_csv(out / RESULTS_FILE)
    trials, metrics = [], {}
    for f in sorted(out.glob(f"trials/*/{TRIAL_FILE}")):
        r = _read_json(f)
        trials.append(Trial(r["trial_id"], r["fields"], r["seed"], r["kind"], r["params"], r["target"], str(f.parent)))
        metrics[r["trial_id"]] = read_metrics(f.parent)
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
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "ray":
        _import_ray()
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
            old = _read_json(f)
            if old.get("params") != t.params or old.get("target") != t.target:
                raise ValueError(f"{t.dir} holds trial {t.trial_id} with other parameters (the base or the target "
                                 f"changed?); choose another --out or delete that directory")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / SWEEP_FILE, meta)

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
            (_ray if backend == "ray" else _local)(todo, workers, report)
    finally:  # the table holds whatever finished, even after an interruption
        table = _table(trials, metrics)
        tmp = out / (RESULTS_FILE + ".tmp")
        table.to_csv(tmp, index=False)
        os.replace(tmp, out / RESULTS_FILE)
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
