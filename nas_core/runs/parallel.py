"""The one worker pool of the package, and its one-thread-per-worker setting.

:func:`nas_core.run_all` and a sweep's local backend run their searches in
:func:`in_pool`: spawned processes (no fork of a process holding torch
threads), each with one torch and BLAS thread, so that N workers share N cores
without oversubscribing them (the small supernets of the CPU presets gain
little from intra-op threads). Work left to the calling process runs under
:func:`single_thread`, as in a worker.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Callable, Iterable

import torch

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
START_METHOD = "spawn"  # of the workers (tests use fork: no second import of torch)


def init_worker():
    """Initializer of a worker process that runs searches: one torch and BLAS thread.

    Returns None."""
    os.environ.update({k: "1" for k in THREAD_ENV})
    torch.set_num_threads(1)


@contextlib.contextmanager
def thread_env():
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
def single_thread():
    """One torch intra-op thread and :func:`thread_env` in this process; restored afterwards."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with thread_env():
            yield
    finally:
        torch.set_num_threads(old_threads)


def workers_for(workers: int | None, n_items: int) -> int:
    """``workers`` (None or 0: one per CPU), at most one per item and at least one."""
    return max(1, min(workers or os.cpu_count() or 1, n_items))


def in_pool(fn: Callable, items: Iterable, workers: int, done: Callable[[object, Future], None]) -> dict:
    """Run ``fn(item)`` for every item in one pool of ``workers`` processes.

    ``done(item, future)`` is called in this process as each one ends (in the
    order they end); ``future.result()`` returns ``fn``'s result or raises its
    exception, or ``BrokenProcessPool`` when a worker died and took the pool
    down. An exception raised by ``done`` cancels what has not started and is
    raised here once the running items end.

    Returns each worker's exit code by pid, read after the pool was shut down
    (a negative code: the signal that stopped it)."""
    context = multiprocessing.get_context(START_METHOD)
    items = list(items)
    processes = {}
    with thread_env(), ProcessPoolExecutor(workers_for(workers, len(items)), context,
                                           initializer=init_worker) as pool:
        futures = {}
        for item in items:
            futures[pool.submit(fn, item)] = item
            processes.update(getattr(pool, "_processes", None) or {})  # to read their exit codes afterwards
        try:
            for fut in as_completed(futures):
                done(futures[fut], fut)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return {pid: getattr(p, "exitcode", None) for pid, p in processes.items()}
