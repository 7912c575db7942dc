"""A sweep's failures on both backends, the local process pool and Ray (a local
instance started by tests/conftest.py, 2 CPUs): a failing trial is a row with
its error and the others still finish; a worker killed in the middle of a trial
is a failed row, not a hung or aborted sweep; and a rerun runs only the trials
that did not finish, and completes.

The trials are tests/assets/fault_notebook.ipynb, which succeeds, raises, or
kills its kernel's parent (the worker running the trial) once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY

from nas_core.runs import sweep

ASSETS = Path(__file__).parent / "assets"
FAULTS = ASSETS / "fault_notebook.ipynb"
MISSING_CIFAR = {"data": "cifar10", "data_dir": "/nonexistent/cifar"}


@pytest.fixture(params=["local", "ray"])
def backend(request):
    if request.param == "ray":
        request.getfixturevalue("ray_local")
    return request.param


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")}


def _by_outcome(table) -> dict:
    return {row["outcome"]: row for _, row in table.iterrows()}


def test_failing_search_trial(tmp_path, backend):
    grid = {"base": TINY, "grid": {"data": ["synthetic", MISSING_CIFAR]}}
    out = tmp_path / "sw"
    table = sweep.run_sweep("search", grid, "0", out, workers=2, backend=backend)
    assert list(table.status) == ["ok", "failed"]
    assert table["width.holds"].notna().iloc[0] and "CIFAR-10 not found" in table.error.iloc[1]
    m = json.loads((out / "trials" / table.trial_id.iloc[1] / "metrics.json").read_text())
    assert m["status"] == "failed" and "Traceback" in m["traceback"]
    before = _mtimes(out)
    again = sweep.run_sweep("search", grid, "0", out, workers=2, backend=backend)
    after = _mtimes(out)
    assert list(again.status) == ["ok", "failed"]
    assert after[table.trial_id.iloc[0]] == before[table.trial_id.iloc[0]]  # the finished trial did not rerun
    assert after[table.trial_id.iloc[1]] != before[table.trial_id.iloc[1]]  # the failed one did


def test_killed_worker_and_a_rerun_that_completes(tmp_path, backend):
    grid = {"grid": {"case": [{"outcome": "ok"},
                              {"outcome": "raise", "once": str(tmp_path / "raised")},
                              {"outcome": "kill", "once": str(tmp_path / "killed")}]}}
    out = tmp_path / "sw"
    first = _by_outcome(sweep.run_sweep(str(FAULTS), grid, "0", out, workers=2, backend=backend))
    assert (tmp_path / "killed").exists() and (tmp_path / "raised").exists()  # both faults happened
    killed = first["kill"]
    assert killed.status == "failed" and "crashed" in killed.error, killed.error
    raised = first["raise"]
    if raised.status == "ok":
        # A local pool: the kill broke the pool while the raising trial's worker was still handing back its
        # failure, so that trial went round again in a new pool, where its once-only fault had already happened.
        assert backend == "local", raised
    else:
        assert raised.status == "failed"
        if backend == "ray" or "crashed" not in raised.error:
            # (a local pool may lose a trial that shared it with the killed worker)
            assert "RuntimeError: trial failed on purpose" in raised.error, raised.error
    if backend == "ray":  # a task whose worker survived keeps its result
        assert first["ok"].status == "ok"
    before = _mtimes(out)

    again = sweep.run_sweep(str(FAULTS), grid, "0", out, workers=2, backend=backend)
    assert list(again.status) == ["ok", "ok", "ok"], again[["trial_id", "status", "error"]]
    assert sweep.load_table(out).status.tolist() == ["ok", "ok", "ok"]
    for outcome, row in first.items():
        if row.status == "ok":  # finished trials are not rerun
            assert _mtimes(out)[row.trial_id] == before[row.trial_id], outcome
    for _, row in again.iterrows():
        assert json.loads((out / "trials" / row.trial_id / "metrics.json").read_text())["status"] == "ok"
