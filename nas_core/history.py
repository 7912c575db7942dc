"""Run directories: saving, resuming and loading a search, and the run cache.

A run directory holds ``config.json``, ``history.jsonl`` (one JSON object per
finished epoch) and ``checkpoint.pt`` (the state after the last finished epoch).
A history line is written before its checkpoint, so a run killed at any moment
resumes from its checkpoint and recomputes at most one epoch, identically.
A finished run is never recomputed, and a directory holding another config is
never overwritten unless asked.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from .config import SearchConfig


class RunError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    """``$NAS_RUNS_DIR``, else ``runs/`` at the repository root (so the book build
    and the notebook tests share finished runs), else ``~/.cache/wiring-nas/runs``."""
    if os.environ.get("NAS_RUNS_DIR"):
        return Path(os.environ["NAS_RUNS_DIR"])
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return root / "runs"
    return Path.home() / ".cache" / "wiring-nas" / "runs"


def run_dir_for(config: SearchConfig, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{config.algorithm}-{config.key()}"


class History:
    """A run's config and its per-epoch records."""

    def __init__(self, config: SearchConfig, records: list[dict], path: Path | None = None):
        self.config, self.records, self.path = config, records, path

    def __len__(self):
        return len(self.records)

    @property
    def finished(self) -> bool:
        return len(self.records) >= self.config.epochs

    @property
    def last(self) -> dict:
        return self.records[-1]

    def series(self, key: str, cell_type: str | None = None) -> list:
        """One field per epoch, e.g. ``series('n_selected', 'normal')``."""
        return [r[key][cell_type] if cell_type else r[key] for r in self.records]

    def __repr__(self):
        return f"History({self.config.algorithm}, {len(self)}/{self.config.epochs} epochs, {self.path})"


def _read_config(path: Path) -> SearchConfig:
    try:
        return SearchConfig.from_dict(json.loads((path / "config.json").read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise RunError(f"{path / 'config.json'} is unreadable ({err}); move the directory aside or "
                       f"delete it to start again") from err


def _read_records(path: Path) -> list[dict]:
    """History lines; a torn last line (a run killed while writing) is dropped,
    a corrupt line elsewhere is an error that names it."""
    file = path / "history.jsonl"
    if not file.exists():
        return []
    lines = file.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise RunError(f"{file}: line {n} is corrupt; the epochs before it are intact. Truncate the file to "
                           f"its first {n - 1} lines to resume from there (the checkpoint is reloaded only if it "
                           f"matches), or delete the run directory.") from None
    for i, r in enumerate(records, 1):
        if r.get("epoch") != i:
            raise RunError(f"{file}: line {i} has epoch {r.get('epoch')}, expected {i}; the file is out of order")
    return records


def load(path: str | Path) -> History:
    """Load a run directory (finished or not) without computing anything."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is not a run directory (no config.json); run a search with --out {path} first")
    return History(_read_config(path), _read_records(path), path)


def _write_atomic(file: Path, write: Callable[[Path], None]):
    tmp = file.with_suffix(file.suffix + ".tmp")
    write(tmp)
    os.replace(tmp, file)


def run(config: SearchConfig, out: str | Path | None = None, *, cache_dir: str | Path | None = None,
        overwrite: bool = False, progress: bool = True, callback: Callable[[dict], None] | None = None,
        splits=None) -> History:
    """Run (or resume, or just load) the search ``config`` in ``out``
    (default: the run cache, keyed by the config).

    ``callback(record)`` is called after each epoch is saved (notebooks use it
    for live plots; tests use it to interrupt a run).
    """
    from .search import Search

    path = Path(out) if out is not None else run_dir_for(config, cache_dir)
    records: list[dict] = []
    if (path / "config.json").exists():
        existing = _read_config(path)
        if existing.key() != config.key() and not overwrite:
            diff = {k: (v, config.to_dict()[k]) for k, v in existing.to_dict().items() if config.to_dict()[k] != v}
            raise RunError(f"{path} holds a run with another config (differences, stored vs asked: {diff}). "
                           f"Choose another --out, or pass overwrite=True / --overwrite to replace it.")
        if overwrite:
            for name in ("history.jsonl", "checkpoint.pt"):
                (path / name).unlink(missing_ok=True)
        else:
            records = _read_records(path)
    if len(records) >= config.epochs:
        return History(config, records[: config.epochs], path)

    search = Search(config, splits)
    if records:
        state = torch.load(path / "checkpoint.pt", map_location=search.device, weights_only=False) \
            if (path / "checkpoint.pt").exists() else None
        if state is None or state["epoch"] > len(records):
            raise RunError(f"{path}: the checkpoint does not match history.jsonl ({len(records)} epochs); "
                           f"delete the directory to start again")
        search.load_state_dict(state)
        records = records[: state["epoch"]]
    path.mkdir(parents=True, exist_ok=True)
    _write_atomic(path / "config.json", lambda f: f.write_text(json.dumps(config.to_dict(), indent=1)))
    _write_atomic(path / "history.jsonl", lambda f: f.write_text("".join(json.dumps(r) + "\n" for r in records)))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=len(records), desc=f"{config.algorithm} {path.name}", leave=False)
    try:
        with open(path / "history.jsonl", "a") as fh:
            while search.epoch < config.epochs:
                record = search.run_epoch()
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                _write_atomic(path / "checkpoint.pt", lambda f: torch.save(search.state_dict(), f))
                records.append(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(edges=record["n_selected"].get("normal"), acc=f"{record['train_acc']:.2f}")
                if callback is not None:
                    callback(record)
    finally:
        if bar is not None:
            bar.close()
    return History(config, records, path)


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def init_worker():
    """Initializer of a worker process that runs searches: one torch and BLAS
    thread, so that N workers share N cores without oversubscribing them."""
    os.environ.update({k: "1" for k in THREAD_ENV})
    torch.set_num_threads(1)


def _run_quietly(config: SearchConfig, cache_dir) -> None:
    run(config, cache_dir=cache_dir, progress=False)


def _finished(config: SearchConfig, cache_dir) -> bool:
    path = run_dir_for(config, cache_dir)
    try:
        return _read_config(path).key() == config.key() and len(_read_records(path)) >= config.epochs
    except (OSError, RunError, ValueError):
        return False  # missing or unreadable: run() decides, and says what is wrong


def run_all(configs, *, workers: int | None = None, cache_dir: str | Path | None = None) -> list[History]:
    """Run (or load from the run cache) several configs and return their
    histories in order. Unfinished runs go up to ``workers`` at once (default:
    one per CPU), each in its own process with one torch thread: the small
    supernets of the CPU presets gain little from intra-op threads, so runs side
    by side finish sooner than one after the other. A run that fails raises here."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    configs = list(configs)
    todo = list({run_dir_for(c, cache_dir): c for c in configs if not _finished(c, cache_dir)}.values())
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        with ProcessPoolExecutor(workers, context, initializer=init_worker) as pool:
            list(pool.map(_run_quietly, todo, [cache_dir] * len(todo)))
    return [run(c, cache_dir=cache_dir, progress=False) for c in configs]
