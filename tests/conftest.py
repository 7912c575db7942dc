"""Shared settings and fixtures: the one tiny config, one torch thread, a local Ray.

Test modules import the constant (``from conftest import TINY``) or take the
fixture ``tiny`` (a fresh copy to change)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

# The notebooks under assets/ are inputs of tests/test_sweep.py, not tests: keep
# nbval (make unit-nbval collects .ipynb files under tests/) away from them. (One
# conftest only: test modules import this one by name.)
collect_ignore_glob = ["assets/*.ipynb"]

# The machine is shared: oversubscribed BLAS threads make tiny nets 10-100x
# slower. Forked children (tests/test_faults.py) inherit the setting.
torch.set_num_threads(1)

# The smallest search worth running: synthetic data (no download), 2 cells of
# 4 channels, 2 epochs of batches of 16. A test that needs more derives it,
# e.g. ``{**TINY, "epochs": 4}``, and says why.
TINY = dict(data="synthetic", cells=2, channels=4, batch_size=16, epochs=2)


@pytest.fixture
def tiny() -> dict:
    """A copy of :data:`TINY` that a test may change."""
    return dict(TINY)


def without_time(records: list[dict]) -> list[dict]:
    """Records without their wall-clock ``seconds`` (the one field a rerun may change)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class Stop(Exception):
    """Raised by :func:`stop_after` to interrupt a run."""


def stop_after(epoch: int):
    """A ``run(callback=...)`` that interrupts the run once ``epoch`` is saved."""
    def callback(record):
        if record["epoch"] == epoch:
            raise Stop
    return callback

# Ray's environment for a local test instance: no usage-stats report (the
# machine may be offline), no memory monitor (the machine is shared: another
# job's memory must not make Ray's OOM killer take our tiny workers).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0"}


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs, started once per test module and shut
    down at its end; the sweeps' Ray backend (``nas_core.runs.sweep_backends``) uses it (it starts none
    itself when Ray is initialized).  Ray is pinned in requirements.txt, so
    its absence fails rather than skips."""
    try:
        import ray
    except ImportError:
        pytest.fail("ray is pinned in requirements.txt but not installed: make setup")
    old = {k: os.environ.get(k) for k in [*RAY_ENV, "RAY_ADDRESS"]}
    os.environ.update(RAY_ENV)
    os.environ.pop("RAY_ADDRESS", None)  # a local instance, never a cluster
    # its own short temp dir (Ray's socket paths must stay under ~107 characters;
    # other Ray sessions on this machine keep theirs)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024**2, _temp_dir=temp_dir)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pytest_terminal_summary(terminalreporter):
    """The tally of tests/test_faults.py, when it ran."""
    import sys

    module = sys.modules.get("test_faults") or sys.modules.get("tests.test_faults")
    tally = getattr(module, "TALLY", None)
    if tally and tally["injected"]:
        terminalreporter.write_line(f"faults injected: {tally['injected']}, survived: {tally['survived']}, "
                                    f"finished epochs lost: {tally['lost']}")
