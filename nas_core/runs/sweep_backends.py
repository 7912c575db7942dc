"""A sweep's trials and the backends that run them (see :mod:`nas_core.runs.sweep`).

A :class:`Trial` is one search or one notebook execution; :func:`run_trial`
runs it and writes its ``metrics.json`` (a failure is recorded, not raised).
The backends run many trials, calling ``report(trial, metrics)`` as each ends:

* :func:`run_local`: one after the other in this process (``workers=1``), else
  in the package's worker pool (:mod:`nas_core.runs.parallel`). A worker that
  dies fails its own trial, named by the pid in the trial's ``worker.pid``; the
  trials that shared the broken pool with it go on in a new one.
* :func:`run_ray`: Ray tasks (``num_cpus=1`` each, at most ``workers`` in
  flight) on the cluster at ``$RAY_ADDRESS``, else on a local instance.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import time
import traceback
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

from ..config import SearchConfig
from ..patterns import statistics
from . import io as files
from . import parallel
from .history import run, run_dir_for

TRIAL_FILE = "trial.json"
METRICS_FILE = "metrics.json"
WORKER_FILE = "worker.pid"
REMOVE_TO_RERUN = "delete it (or its trial directory) to run it again"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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

    @classmethod
    def from_file(cls, file: Path) -> Trial:
        """The trial a ``trial.json`` describes (its directory is the file's)."""
        r = files.read_json(file, REMOVE_TO_RERUN)
        return cls(r["trial_id"], r["fields"], r["seed"], r["kind"], r["params"], r["target"], str(file.parent))


def read_metrics(trial_dir: str | Path) -> dict | None:
    """A trial's ``metrics.json`` as a dict, or None when it is missing or unreadable."""
    try:
        return files.loads((Path(trial_dir) / METRICS_FILE).read_text())
    except (FileNotFoundError, ValueError):  # a torn or non-strict file: the trial runs again
        return None


def is_finished(trial_dir: str | Path) -> bool:
    """True when the trial's ``metrics.json`` says ``ok`` (a rerun skips it)."""
    m = read_metrics(trial_dir)
    return bool(m) and m.get("status") == "ok"


# --------------------------------------------------------------------------- one trial


def _run_search(trial: Trial) -> dict:
    config = SearchConfig.from_dict(trial.params)
    out = run_dir_for(config, trial.runs_dir) if trial.runs_dir else Path(trial.dir) / "run"
    h = run(config, out=out, progress=False)
    return {"run_dir": str(h.path), "statistics": statistics(h)}


def _run_notebook(trial: Trial) -> dict:
    import papermill  # the [notebooks] extra: only a notebook sweep needs it

    out_nb = Path(trial.dir) / "notebook.ipynb"
    metrics_dir = trial.params.get("metrics_dir")
    if metrics_dir:
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        (Path(metrics_dir) / METRICS_FILE).unlink(missing_ok=True)
    papermill.execute_notebook(trial.target, str(out_nb), parameters=trial.params, progress_bar=False,
                               log_output=False, cwd=str(Path(trial.target).parent))
    result: dict[str, Any] = {"notebook": str(out_nb)}
    if metrics_dir and (Path(metrics_dir) / METRICS_FILE).is_file():
        result["statistics"] = files.read_json(Path(metrics_dir) / METRICS_FILE, REMOVE_TO_RERUN)
    return result


def run_trial(trial: Trial) -> dict:
    """Run one trial (one torch and BLAS thread) and write its ``metrics.json``;
    a failure is recorded, not raised.

    Returns the metrics (a dict, as written)."""
    d = Path(trial.dir)
    d.mkdir(parents=True, exist_ok=True)
    files.write_json(d / TRIAL_FILE, trial.record())
    (d / METRICS_FILE).unlink(missing_ok=True)
    start = time.time()
    metrics: dict[str, Any] = {"trial_id": trial.trial_id, "fields": trial.fields, "seed": trial.seed}
    try:
        with parallel.single_thread():
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
    files.write_json(d / METRICS_FILE, metrics)
    return metrics


def _run_in_worker(trial: Trial) -> dict:
    """A trial in a worker; ``worker.pid`` in its directory says which worker
    runs it (if that one dies, the sweep knows whose trial was lost)."""
    marker = Path(trial.dir) / WORKER_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    try:
        return run_trial(trial)
    finally:
        marker.unlink(missing_ok=True)


def _crashed(t: Trial, err: BaseException, why: str | None = None) -> dict:
    why = why or f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
    metrics = {"trial_id": t.trial_id, "fields": t.fields, "seed": t.seed, "status": "failed", "seconds": None,
               "error": f"worker crashed: {why}", "traceback": "".join(traceback.format_exception(err))}
    Path(t.dir).mkdir(parents=True, exist_ok=True)
    files.write_json(Path(t.dir) / METRICS_FILE, metrics)
    return metrics


# --------------------------------------------------------------------------- backends

Report = Callable[[Trial, dict], None]


def run_local(trials: list[Trial], workers: int, report: Report):
    """Run the trials here (``workers`` 1) or ``workers`` at once in the worker pool (0: one per CPU)."""
    workers = parallel.workers_for(workers, len(trials))
    if workers == 1:
        for t in trials:
            report(t, run_trial(t))
        return
    todo, stalls = list(trials), 0
    while todo:  # a worker that dies takes its pool down: the others' trials go on in a new pool
        again = _pool(todo, workers, report)
        stalls = stalls + 1 if len(again) == len(todo) else 0
        if stalls == 3:  # pools that break before any trial ends: never loop
            for t in again:
                report(t, _crashed(t, RuntimeError("the process pool broke three times before any trial ended")))
            return
        todo = again


def _pool(trials: list[Trial], workers: int, report: Report) -> list[Trial]:
    """Run trials in one pool; return those to run again because another
    worker's death broke the pool under them. A trial whose own worker died is
    reported failed (a rerun of the sweep resumes it)."""
    broken = []

    def done(t: Trial, fut: Future):
        try:
            metrics = fut.result()
        except BrokenProcessPool as err:
            broken.append((t, err))
            return
        except Exception as err:  # noqa: BLE001 - e.g. a result that cannot be sent back
            metrics = _crashed(t, err)
        report(t, metrics)

    for t in trials:
        (Path(t.dir) / WORKER_FILE).unlink(missing_ok=True)
    exit_codes = parallel.in_pool(_run_in_worker, trials, workers, done)
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
        code = exit_codes.get(pid)
        if code == -signal.SIGTERM:  # stopped by the pool because another worker died
            again.append(t)
        else:
            how = f"killed by {signal.Signals(-code).name}" if code and code < 0 and -code in signal.valid_signals() \
                else f"exit code {code}"
            report(t, _crashed(t, err, f"its worker (pid {pid}) died, {how} (e.g. out of memory); rerun the sweep "
                                        f"to resume it"))
    return again


def import_ray():
    """The ray module; ImportError saying how to install it."""
    try:
        import ray  # the [ray] extra: only --backend ray needs it
    except ImportError:
        raise ImportError("--backend ray needs ray: pip install -e .[ray]") from None
    return ray


def run_ray(trials: list[Trial], workers: int, report: Report):
    """Run the trials as Ray tasks, at most ``workers`` in flight (0: no cap); a
    Ray instance started here is shut down at the end."""
    ray = import_ray()
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


BACKENDS = {"local": run_local, "ray": run_ray}
