"""Run directories: saving, resuming and loading a search, and the run cache.

A run directory holds ``config.json``, ``history.jsonl`` (one JSON object per
finished epoch, each with a digest of itself) and ``checkpoint.pt`` (the state
after the last finished epoch, with a digest; the one before is kept as
``checkpoint.prev.pt``). Every file is written whole (a temporary file, fsync,
rename) and in strict JSON. A history line is written before its checkpoint,
so a run killed at any moment resumes from its checkpoint and recomputes at
most one epoch, identically; an unreadable checkpoint falls back to the
previous one, else is a RunError that says how to go on. A finished run is
never recomputed, and a directory holding another config is never overwritten
unless asked.
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import faults, record
from ..config import CODE_VERSION, SearchConfig
from ..record import History
from ..search import Search
from . import io as files
from . import parallel


class RunError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    """``$NAS_RUNS_DIR``, else ``runs/`` at the repository root (so the book build
    and the notebook tests share finished runs), else ``~/.cache/wiring-nas/runs``."""
    if os.environ.get("NAS_RUNS_DIR"):
        return Path(os.environ["NAS_RUNS_DIR"])
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / "runs"
    return Path.home() / ".cache" / "wiring-nas" / "runs"


def run_dir_for(config: SearchConfig, cache_dir: str | Path | None = None) -> Path:
    """The run cache's directory for ``config``: ``CACHE/ALGORITHM-KEY`` (see
    :meth:`SearchConfig.key`), under :func:`default_cache_dir` by default."""
    return Path(cache_dir or default_cache_dir()) / f"{config.algorithm}-{config.key()}"


CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
PROVENANCE = "provenance.json"
RUN_FILES = ("history.jsonl", CHECKPOINT, PREVIOUS, PROVENANCE)


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """Which code makes a run, and where: the maths' version (``CODE_VERSION``), the
    git commit of the repository nas_core runs from ("+" when nas_core/ has
    uncommitted changes; "unknown" outside a clone) and the machine that starts it
    (:func:`machine`), so that each row of the study's tables names what made it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "nas_core"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        commit += "+" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"code_version": CODE_VERSION, "commit": commit, "machine": machine()}


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """The kind of machine a run is made on: 'CPU model, family/model/stepping, the
    -march the C kernels are built for, torch's CPU kernels, torch version, digest of
    the CPU's instruction sets'. A run repeats bit for bit on one kind; on another,
    rounding differs from the first steps and grows into other draws and other values
    (see :mod:`nas_core.chapters.reproduction`). Two CPUs can share a model name and
    instruction sets and still round differently, hence family, model and stepping."""
    import hashlib

    import torch

    from ..fast.build import cpu_description, cpu_identity, native_march

    cpu = cpu_description()
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")), "CPU")
    digest = hashlib.sha256(cpu.encode()).hexdigest()[:8]
    return (f"{model}, {cpu_identity()}, -march={native_march()}, {torch.backends.cpu.get_cpu_capability()}, "
            f"torch {torch.__version__}, {digest}")


def read_provenance(path: Path) -> dict:
    """The provenance a run directory records ({} for runs made before it was recorded)."""
    try:
        return files.loads((Path(path) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}
_RESTART = "pass --restart (restart=True) to discard this directory's checkpoint and history and start over"


def _read_config(path: Path) -> SearchConfig:
    file = path / "config.json"
    try:
        return SearchConfig.from_dict(files.loads(file.read_text(), file))
    except files.NonStrictJSON as err:
        raise RunError(f"{err}; move the directory aside, or pass --overwrite to replace its run") from None
    except (TypeError, ValueError) as err:
        raise RunError(f"{file} is unreadable ({err}); move the directory aside, or pass --overwrite to replace "
                       f"its run") from err


def _read_records(path: Path) -> list[dict]:
    """History lines, each checked against its digest. A torn last line (no
    newline: a run killed while writing it) is dropped; any other bad line is
    an error that names it."""
    file = path / "history.jsonl"
    if not file.exists():
        return []
    lines = file.read_bytes().split(b"\n")  # the last item is b"" unless the last line is torn
    records = []
    for n, raw in enumerate(lines, 1):
        if n == len(lines):
            break  # b"", or a torn line
        try:
            records.append(files.parse_line(raw.decode()))
        except files.NonStrictJSON as err:
            raise RunError(f"{file}: line {n} holds {str(err).split(' holds ', 1)[-1]}; the {n - 1} epochs before "
                           f"it are intact. Truncate the file to its first {n - 1} lines to resume from there, or "
                           f"{_RESTART}.") from None
        except ValueError as err:
            raise RunError(f"{file}: line {n} is corrupt ({err}); the {n - 1} epochs before it are intact. "
                           f"Truncate the file to its first {n - 1} lines to resume from there (the checkpoint is "
                           f"reloaded only if it matches), or {_RESTART}.") from None
    for i, r in enumerate(records, 1):
        if r.get("epoch") != i:
            raise RunError(f"{file}: line {i} has epoch {r.get('epoch')}, expected {i}; the file is out of order")
    return records


def load(path: str | Path) -> History:
    """Load a run directory (finished or not) without computing anything.

    Returns its :class:`History`; RunError if it is not a run directory."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is not a run directory (no config.json); run a search with --out {path} first")
    return History(_read_config(path), _read_records(path), path)


def save_checkpoint(path: Path, state: dict, epoch: int | None = None):
    """``checkpoint.pt`` (with a digest of its content), the one before kept as ``checkpoint.prev.pt``.

    Returns None."""
    buf = io.BytesIO()
    torch.save({**state, "digest": files.state_digest(state)}, buf)
    files.write_atomic(path / CHECKPOINT, buf.getvalue(), previous=path / PREVIOUS,
                       fault=("checkpoint", epoch) if epoch is not None else None)


def load_checkpoint(file: str | Path, map_location=None) -> dict:
    """A checkpoint, loaded with ``weights_only=True`` (nothing in it can run
    code) and checked against its digest; RunError if unreadable or changed."""
    file = Path(file)
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{file.name} is missing") from None
    except Exception as err:  # noqa: BLE001 - a cut-short or corrupt file fails in many ways
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise RunError(f"{file.name} is unreadable ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise RunError(f"{file.name} is not a checkpoint of a search")
    digest = state.pop("digest", None)  # None: written by an older version
    if digest is not None and digest != files.state_digest(state):
        raise RunError(f"{file.name} is corrupt (its digest does not match its content)")
    return state


def _matches(state: dict, records: list[dict], name: str, epochs: int | None = None):
    """RunError unless the checkpoint is at a finished epoch (``epochs``, if given)
    and its alpha is that epoch's record's."""
    e = state["epoch"]
    if not 1 <= e <= len(records) or (epochs is not None and e != epochs):
        raise RunError(f"{name} is at epoch {e}, history.jsonl holds {len(records)} epochs")
    recorded = records[e - 1].get("alpha", {})
    try:
        same = set(recorded) == set(state["alpha"]) and all(
            np.allclose(np.asarray(recorded[t], dtype=float), a.double().cpu().numpy(), rtol=0, atol=1e-5)
            for t, a in state["alpha"].items())
    except (AttributeError, KeyError, TypeError, ValueError):
        same = False
    if not same:
        raise RunError(f"{name} (epoch {e}) does not match history.jsonl: its alpha is not epoch {e}'s")


def _restore(path: Path, records: list[dict], search, epochs: int | None = None) -> dict:
    """Load into ``search`` the newest checkpoint that is readable and agrees
    with the history, falling back to the previous one with a warning."""
    problems = []
    for name in (CHECKPOINT, PREVIOUS):
        try:
            state = load_checkpoint(path / name, search.device)
            _matches(state, records, name, epochs)
            search.load_state_dict(state)
        except RunError as err:
            problems.append(str(err))
            continue
        except (KeyError, RuntimeError, TypeError, ValueError) as err:  # another network's state
            problems.append(f"{name} does not fit this config ({type(err).__name__}: {str(err)[:120]})")
            continue
        if problems and problems != [f"{CHECKPOINT} is missing"]:
            warnings.warn(f"{path}: {'; '.join(problems)}; resuming from {name} (epoch {state['epoch']})",
                          RuntimeWarning, stacklevel=3)
        return state
    if len(records) == 1 and problems == [f"{CHECKPOINT} is missing", f"{PREVIOUS} is missing"]:
        return search.state_dict()  # killed before the first checkpoint: epoch 1 is recomputed from the start
    raise RunError(f"{path}: no usable checkpoint for the {len(records)} finished epochs of history.jsonl "
                   f"({'; '.join(problems)}). Those epochs are intact (load() and `show` read them); to compute "
                   f"the run again, {_RESTART}.")


def checkpoint_of(history: History, search) -> dict:
    """Load a finished run's last weights (its checkpoint at its last epoch) into ``search``.

    Returns the checkpoint's state (a dict)."""
    return _restore(history.path, history.records, search, epochs=len(history.records))


def _history_line(rec: dict) -> str:
    try:
        return files.line_with_digest(rec) + "\n"
    except ValueError:
        where = faults.nonfinite_path(rec)
        if where is None:
            raise
        raise faults.DivergenceError(f"the search diverged in epoch {rec.get('epoch')}: its record's {where} "
                                     f"is not finite") from None


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def run(config: SearchConfig, out: str | Path | None = None, *, cache_dir: str | Path | None = None,
        overwrite: bool = False, restart: bool = False, progress: bool = True,
        callback: Callable[[dict], None] | None = None, splits=None) -> History:
    """Run (or resume, or just load) the search ``config`` in ``out``
    (default: the run cache, keyed by the config).

    ``callback(record)`` is called after each epoch is saved (notebooks use it
    for live plots; tests use it to interrupt a run). ``restart``: discard the
    checkpoint and history of this config's directory and start over;
    ``overwrite``: the same for a directory holding another config.

    A search that diverges raises :class:`~nas_core.faults.DivergenceError`;
    its finished epochs stay, resumable, and the run is not finished.
    """
    path = Path(out) if out is not None else run_dir_for(config, cache_dir)
    records: list[dict] = []
    if (path / "config.json").exists():
        try:
            existing = _read_config(path)
        except RunError:
            if not overwrite:
                raise
            existing = None
        if existing is not None and existing.key() != config.key() and not overwrite:
            diff = {k: (v, config.to_dict()[k]) for k, v in existing.to_dict().items() if config.to_dict().get(k) != v}
            raise RunError(f"{path} holds a run with another config (differences, stored vs asked: {diff}). "
                           f"Choose another --out, or pass overwrite=True / --overwrite to replace it.")
        if overwrite or restart:
            for name in RUN_FILES:
                (path / name).unlink(missing_ok=True)
        else:
            records = _read_records(path)
    if len(records) >= config.epochs:
        return History(config, records[: config.epochs], path)

    search = Search(config, splits)
    stale: list[dict] = []
    if records:
        state = _restore(path, records, search)
        records, stale = records[: state["epoch"]], records[state["epoch"]:]
    try:
        path.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path / "config.json", files.dumps(config.to_dict(), indent=1).encode(), fault=("config", 0))
        if not (path / PROVENANCE).exists():  # the code that starts a run; a resume keeps it
            files.write_atomic(path / PROVENANCE, files.dumps(provenance()).encode())
        if (path / "history.jsonl").exists():  # without a torn last line or epochs to recompute
            files.write_atomic(path / "history.jsonl", "".join(_history_line(r) for r in records).encode())
    except OSError as err:
        raise RunError(f"{path}: cannot write the run directory ({err}); nothing in it was changed") from err

    bar = None
    if progress:
        bar = tqdm(total=config.epochs, initial=len(records), desc=f"{config.algorithm} {path.name}", leave=False)
    try:
        fh = open(path / "history.jsonl", "a")
    except OSError as err:
        raise RunError(f"{path}: cannot write history.jsonl ({err}); the {len(records)} finished epochs are "
                       f"intact") from err
    try:
        with fh:
            while search.epoch < config.epochs:
                try:
                    rec = search.run_epoch()
                    line = _history_line(rec)
                except faults.DivergenceError as err:
                    kept = (f"the {len(records)} finished epoch(s) before it are kept in {path}, resumable"
                            if records else f"no epoch finished ({path})")
                    raise faults.DivergenceError(f"{err}; {kept}; the run is not finished") from None
                e = record.epoch(rec)
                if stale and _without_time(stale[:1]) != _without_time([rec]):
                    warnings.warn(f"{path}: epoch {e} recomputed differs from its earlier record (another machine or "
                                  f"thread count?); the new one is kept", RuntimeWarning, stacklevel=2)
                stale = stale[1:]
                try:
                    if faults.injected("history-torn", e):
                        fh.write(line[: len(line) // 2])
                        fh.flush()
                        faults.die()
                    files.append(fh, line)
                    if faults.injected("history", e):
                        faults.die()
                    save_checkpoint(path, search.state_dict(), e)
                except OSError as err:
                    raise RunError(f"{path}: cannot save epoch {e} ({err}); the {len(records)} finished epochs "
                                   f"before it are intact: free space or fix permissions, then rerun to "
                                   f"resume") from err
                if faults.injected("checkpoint", e):
                    faults.die()
                records.append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(edges=record.wiring(rec, "n_selected"), acc=f"{record.accuracy(rec):.2f}")
                if callback is not None:
                    callback(rec)
    finally:
        if bar is not None:
            bar.close()
    return History(config, records, path)


def _run_quietly(config: SearchConfig, cache_dir) -> None:
    run(config, cache_dir=cache_dir, progress=False)


def _finished(config: SearchConfig, cache_dir) -> bool:
    path = run_dir_for(config, cache_dir)
    try:
        return _read_config(path).key() == config.key() and len(_read_records(path)) >= config.epochs
    except (OSError, RunError, ValueError):
        return False  # missing or unreadable: run() decides, and says what is wrong


def _raise_failure(config: SearchConfig, future: Future):
    future.result()  # a run that failed in its worker raises here, with its own error


def run_all(configs, *, workers: int | None = None, cache_dir: str | Path | None = None) -> list[History]:
    """Run (or load from the run cache) several configs and return their
    histories in order. Unfinished runs go up to ``workers`` at once (default:
    one per CPU), each in its own process with one torch thread
    (:mod:`nas_core.runs.parallel`): runs side by side finish sooner than one
    after the other. A run that fails raises here."""
    configs = list(configs)
    todo = list({run_dir_for(c, cache_dir): c for c in configs if not _finished(c, cache_dir)}.values())
    if parallel.workers_for(workers, len(todo)) > 1:
        parallel.in_pool(functools.partial(_run_quietly, cache_dir=cache_dir), todo, workers, _raise_failure)
    with parallel.single_thread():  # runs left to this process get one thread too, as in a worker
        return [run(c, cache_dir=cache_dir, progress=False) for c in configs]
