"""The one worker pool (nas_core.runs.parallel): run_all side by side gives what
run() gives one after the other; the pool reports each item's result or error
and each worker's exit code; one thread per worker, restored afterwards."""
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest
import torch
from conftest import TINY, without_time

import nas_core
from nas_core import SearchConfig, run
from nas_core.runs import parallel


def test_run_all_runs_side_by_side_as_run_does(tmp_path):
    """Parallel runs (one process and one thread each) give the histories that
    run() gives one after the other, in the order asked, and load finished runs."""
    configs = [SearchConfig(**{**TINY, "algorithm": "dsnas", "seed": s}) for s in (0, 1)]
    configs.append(configs[0])  # a repeated config runs once
    together = nas_core.run_all(configs, workers=2, cache_dir=tmp_path / "pool")
    alone = [run(c, cache_dir=tmp_path / "alone", progress=False) for c in configs[:2]]
    assert [h.config.seed for h in together] == [0, 1, 0]
    for a, b in zip(together, alone):
        assert without_time(a.records) == without_time(b.records)
    before = {p.name: (p / "history.jsonl").stat().st_mtime_ns for p in (tmp_path / "pool").iterdir()}
    assert len(before) == 2
    nas_core.run_all(configs, workers=2, cache_dir=tmp_path / "pool")
    assert before == {p.name: (p / "history.jsonl").stat().st_mtime_ns for p in (tmp_path / "pool").iterdir()}
    with pytest.raises(ValueError, match="train_size"):  # a failing run raises, with its message
        nas_core.run_all([configs[0], configs[0].replace(train_size=10_000, seed=5)], workers=2,
                         cache_dir=tmp_path / "bad")


def _threads(x):
    """In a worker: its torch threads and environment, or a failure, or a death."""
    if x == "raise":
        raise KeyError("raised on purpose")
    if x == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.getpid()


@pytest.fixture
def two_threads():
    """Two torch threads here, so that a worker's one thread is its pool's doing."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_in_pool_reports_results_errors_and_exit_codes(monkeypatch, two_threads):
    monkeypatch.setattr(parallel, "START_METHOD", "fork")  # workers start in milliseconds
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    results = {}
    codes = parallel.in_pool(_threads, [1, 2, "raise"], 2, lambda x, fut: results.setdefault(x, fut.exception()
                                                                                             or fut.result()))
    assert os.environ["OMP_NUM_THREADS"] == "7"  # the pool's setting is restored here
    assert results[1][:2] == results[2][:2] == (1, "1")  # one torch and BLAS thread in every worker
    assert isinstance(results["raise"], KeyError) and "on purpose" in str(results["raise"])
    assert {results[1][2], results[2][2]} <= set(codes) and set(codes.values()) == {0}  # stopped cleanly

    results.clear()
    codes = parallel.in_pool(_threads, ["die"], 2, lambda x, fut: results.setdefault(x, fut.exception()))
    assert isinstance(results["die"], BrokenProcessPool)
    assert -signal.SIGKILL in codes.values()  # the exit code says the worker was killed


def test_single_thread_is_restored(two_threads):
    before = torch.get_num_threads(), os.environ.get("MKL_NUM_THREADS")
    with parallel.single_thread():
        assert torch.get_num_threads() == 1 and os.environ["MKL_NUM_THREADS"] == "1"
    assert (torch.get_num_threads(), os.environ.get("MKL_NUM_THREADS")) == before
    assert parallel.workers_for(None, 3) == min(os.cpu_count(), 3) and parallel.workers_for(8, 0) == 1
