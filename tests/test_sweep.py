"""nas_core.runs.sweep: grid expansion, validation, resume, failure reporting, the
table, process-pool, notebook (papermill) and Ray trials. Trials are tiny."""
import json
import os
from pathlib import Path

import nbformat
import pytest
from conftest import TINY

from nas_core import cli, load, patterns
from nas_core.runs import sweep, sweep_backends

ASSETS = Path(__file__).parent / "assets"
NOTEBOOK = ASSETS / "sweep_notebook.ipynb"
MISSING_CIFAR = {"data": "cifar10", "data_dir": "/nonexistent/cifar"}


def test_parse_seeds():
    assert sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert sweep.parse_seeds("0,2,5") == [0, 2, 5]
    assert sweep.parse_seeds("0-1, 7") == [0, 1, 7]
    assert sweep.parse_seeds(3) == [3]
    assert sweep.parse_seeds([1, 2]) == [1, 2]
    for bad in ("a", "3-1", "0,0", "1-"):
        with pytest.raises(ValueError):
            sweep.parse_seeds(bad)


def test_grid_expansion():
    axes = {"algorithm": ["darts", "dsnas"],
            "setting": [{"level": "single"}, {"level": "bi", "arch_lr": 0.01}],
            "intervention": [{}, {"delete_edges": [0]}]}
    trials = sweep.expand(axes)
    assert len(trials) == 8
    assert trials[0] == {"algorithm": "darts", "level": "single", "intervention": {}}
    assert trials[3] == {"algorithm": "darts", "level": "bi", "arch_lr": 0.01, "intervention": {"delete_edges": [0]}}
    assert sweep.expand({}) == [{}]
    with pytest.raises(ValueError, match="another axis"):
        sweep.expand({"level": ["bi"], "setting": [{"level": "single"}]})

    ids = [sweep.trial_id(f, s) for f in trials for s in (0, 1)]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "algorithm=darts_level=single_intervention=-_seed=0"
    assert sweep.trial_id({"data_dir": "/a b/c"}, 2) == "data_dir=-a-b-c_seed=2"
    # a long id is cut and ends with a hash of the whole: stable (the value a sweep directory holds) and
    # different for fields that differ only past the cut
    long = sweep.trial_id({"x": "y" * 300}, 0)
    assert long == "x=" + "y" * 89 + "-a30eb538" and len(long) <= 100
    assert sweep.trial_id({"x": "y" * 299 + "z"}, 0) != long and sweep.trial_id({"x": "y" * 300}, 1) != long


def test_grid_yaml_and_plan(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("base:\n  preset: growing\n  epochs: 2\n  data: synthetic\n"
                    "grid:\n  algorithm: [darts, snas]\n  setting:\n    - {level: single}\n"
                    "    - {level: bi, arch_lr: 0.01}\n")
    trials, meta = sweep.plan("search", spec, "0-1", tmp_path / "out")
    assert len(trials) == 8 and meta["seeds"] == [0, 1]
    t = trials[3]
    assert t.fields == {"algorithm": "darts", "level": "bi", "arch_lr": 0.01} and t.seed == 1
    assert t.params["augment_shift"] == 1 and t.params["epochs"] == 2 and t.params["seed"] == 1  # preset, base
    assert Path(t.dir) == (tmp_path / "out" / "trials" / t.trial_id).resolve()


def test_every_trial_validated_before_running(tmp_path):
    grid = {"base": TINY, "grid": {"algorithm": ["darts", "nope"], "order": [1, 2]}}
    with pytest.raises(ValueError) as err:
        sweep.run_sweep("search", grid, "0", tmp_path / "out")
    msg = str(err.value)
    assert "3 of 4 trials are invalid" in msg and "algorithm=nope_order=1_seed=0" in msg
    assert "algorithm=darts_order=2_seed=0" in msg and "second order" in msg
    assert not (tmp_path / "out").exists()
    for bad, match in [({"base": TINY, "grid": {"seed": [1]}}, "--seeds"),
                       ({"base": {**TINY, "bogus": 1}}, "bogus"),
                       ({"base": {"preset": "nope"}}, "unknown preset"),
                       ({"bsae": {}}, "top-level"),
                       ({"grid": {"algorithm": "darts"}}, "non-empty list")]:
        with pytest.raises(ValueError, match=match):
            sweep.run_sweep("search", bad, "0", tmp_path / "out")
    with pytest.raises(ValueError, match="neither 'search' nor"):
        sweep.run_sweep("nosuch.ipynb", {"base": TINY}, "0", tmp_path / "out")


def _count_runs(monkeypatch):
    ran = []
    real = sweep_backends.run_trial

    def counting(trial):
        ran.append(trial.trial_id)
        return real(trial)

    monkeypatch.setattr(sweep_backends, "run_trial", counting)
    return ran


def test_search_sweep_failure_table_and_resume(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "grid.yaml"
    spec.write_text(json.dumps({"base": TINY, "grid": {"algorithm": ["darts", "dsnas"],
                                                       "data": ["synthetic", MISSING_CIFAR]}}))
    out = tmp_path / "sw"
    ran = _count_runs(monkeypatch)
    args = ["sweep", "search", "--grid", str(spec), "--seeds", "0", "--out", str(out)]
    assert cli.main(args) == 1  # a trial failed: non-zero, after the table
    assert len(ran) == 4

    table = sweep.load_table(out)
    assert list(table.columns[:7]) == ["trial_id", "algorithm", "data", "data_dir", "seed", "status", "seconds"]
    for col in ("growing.holds", "growing.final_fraction", "width.holds", "width.width", "bilevel.holds",
                "bilevel.final_selected", "bilevel.role", "error"):
        assert col in table.columns
    assert len(table) == 4
    ok = table[table.status == "ok"]
    failed = table[table.status == "failed"]
    assert sorted(ok.trial_id) == ["algorithm=darts_data=synthetic_seed=0", "algorithm=dsnas_data=synthetic_seed=0"]
    assert len(failed) == 2 and failed.error.str.contains("FileNotFoundError: CIFAR-10 not found").all()
    assert failed["growing.holds"].isna().all() and ok["bilevel.final_selected"].notna().all()
    assert (ok.seconds > 0).all()

    trial = out / "trials" / failed.trial_id.iloc[0]
    m = json.loads((trial / "metrics.json").read_text())
    assert m["status"] == "failed" and "Traceback" in m["traceback"] and "_cifar10" in m["traceback"]
    assert json.loads((trial / "trial.json").read_text())["params"]["data_dir"] == "/nonexistent/cifar"
    good = out / "trials" / "algorithm=dsnas_data=synthetic_seed=0"
    m = json.loads((good / "metrics.json").read_text())
    assert m["status"] == "ok" and set(m["statistics"]) == set(patterns.PATTERNS)
    assert (good / "run" / "history.jsonl").read_text().count("\n") == 2
    assert "failed: algorithm=darts_data=cifar10" in capsys.readouterr().err

    # rerun: only the failed trials run again; the finished ones are untouched
    mtime = (good / "metrics.json").stat().st_mtime_ns
    ran.clear()
    assert cli.main(args) == 1
    assert sorted(ran) == sorted(failed.trial_id)
    assert (good / "metrics.json").stat().st_mtime_ns == mtime
    # a table rebuilt from the trial directories agrees with results.csv
    (out / "results.csv").unlink()
    assert sorted(sweep.load_table(out).status) == sorted(table.status)


def test_changed_base_is_not_mixed_into_an_old_sweep(tmp_path):
    import torch

    out = tmp_path / "sw"
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    sweep.run_sweep("search", {"base": TINY}, 0, out)  # in this process (workers=1): one thread, then restored
    assert (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")) == (threads, omp)
    with pytest.raises(ValueError, match="other parameters"):
        sweep.run_sweep("search", {"base": {**TINY, "epochs": 3}}, 0, out)


def test_process_pool(tmp_path):
    out = tmp_path / "sw"
    table = sweep.run_sweep("search", {"base": TINY, "grid": {"algorithm": ["darts", "snas"]}}, "0", out, workers=2)
    assert list(table.status) == ["ok", "ok"] and list(table.algorithm) == ["darts", "snas"]
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")}
    assert len(mtimes) == 2
    sweep.run_sweep("search", {"base": TINY, "grid": {"algorithm": ["darts", "snas"]}}, "0", out, workers=2)
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")} == mtimes
    # the table's statistics are those of the runs the workers left, computed here again
    for _, row in table.iterrows():
        h = load(out / "trials" / row.trial_id / "run")
        assert h.config.algorithm == row.algorithm and h.finished
        stats = patterns.flatten(patterns.statistics(h))
        assert row["growing.final_fraction"] == pytest.approx(stats["growing.final_fraction"])
        assert row["width.holds"] == stats["width.holds"] and row["bilevel.role"] == stats["bilevel.role"]


def test_notebook_sweep(tmp_path):
    out = tmp_path / "nb"
    grid = {"base": {"epochs": 2}, "grid": {"data": ["synthetic", MISSING_CIFAR]}}
    table = sweep.run_sweep(str(NOTEBOOK), grid, "1", out)  # kernels are processes anyway
    ok, failed = (table[table.status == s].iloc[0] for s in ("ok", "failed"))
    assert ok.trial_id == "data=synthetic_seed=1" and ok.seed == 1
    assert ok["bilevel.role"] == "control" and "growing.holds" in table.columns  # written by the notebook
    tdir = out / "trials" / ok.trial_id
    executed = nbformat.read(tdir / "notebook.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "seeds = [1]" in injected.source and f"metrics_dir = \"{tdir / 'notebook_metrics'}\"" in injected.source

    assert "FileNotFoundError: CIFAR-10 not found" in failed.error and "notebook cell" in failed.error
    fdir = out / "trials" / failed.trial_id
    m = json.loads((fdir / "metrics.json").read_text())
    assert m["status"] == "failed" and "nas_core.run(config" in m["traceback"] and "\x1b[" not in m["traceback"]
    kept = nbformat.read(fdir / "notebook.ipynb", as_version=4)  # papermill keeps it, with the error
    errors = [o for c in kept.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors and errors[0].ename == "FileNotFoundError"

    with pytest.raises(ValueError, match="no parameter.*lr.*its parameters are algorithm"):
        sweep.run_sweep(str(NOTEBOOK), {"grid": {"lr": [0.1]}}, "0", tmp_path / "bad")
    with pytest.raises(ValueError, match="no 'preset' parameter"):
        sweep.run_sweep(str(NOTEBOOK), {"base": {"preset": "growing"}}, "0", tmp_path / "bad")
    with pytest.raises(ValueError, match="trial algorithm=nope_seed=0.*invalid algorithm"):
        sweep.run_sweep(str(NOTEBOOK), {"grid": {"algorithm": ["nope"]}}, "0", tmp_path / "bad")


def test_ray_backend(tmp_path, monkeypatch):
    """Search trials as Ray tasks on a local instance that the sweep starts and
    stops itself (tests/test_sweep_backends.py runs the failure tests on Ray)."""
    try:
        import ray
    except ImportError:
        pytest.fail("ray is pinned in requirements.txt but not installed: make setup")
    assert not ray.is_initialized()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local instance, never a cluster
    # this machine is shared: another job's memory must not make Ray's OOM killer take our tiny workers
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no report home (the machine may be offline)
    grid = {"base": TINY, "grid": {"data": ["synthetic", MISSING_CIFAR]}}
    table = sweep.run_sweep("search", grid, "0", tmp_path / "ray", workers=2, backend="ray")
    assert list(table.status) == ["ok", "failed"]
    assert table["width.holds"].notna().iloc[0] and "CIFAR-10" in table.error.iloc[1]
    assert not ray.is_initialized()  # the instance it started is shut down


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install -e \.\[ray\]"):
        sweep.run_sweep("search", {"base": TINY}, 0, tmp_path / "x", backend="ray")
    assert not (tmp_path / "x").exists()
