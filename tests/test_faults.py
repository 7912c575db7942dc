"""Fault injection: a search killed (kill -9) at random moments and inside every
write, checkpoints / history / config cut short or corrupted at random (seeded)
offsets, a sweep worker killed mid-trial, NaNs, a full disk, bad input. Each
fault ends in the uninterrupted run's history or in a clear error that leaves
every finished epoch in place; the tally is printed at the end of the session
(tests/conftest.py): ``faults injected: N, survived: M, finished epochs lost: 0``.
Everything is tiny (synthetic data, 2 cells of 4 channels, 4 epochs)."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY as BASE
from conftest import Stop, stop_after, without_time

from nas_core import DivergenceError, RunError, SearchConfig, load, run
from nas_core.cli import main as cli_main
from nas_core.runs import history as hist
from nas_core.runs import io as runio
from nas_core.runs import parallel, sweep, sweep_backends
from nas_core.search import CostPasses, Search, SearchState

ROOT = Path(__file__).resolve().parents[1]
# 4 epochs (kills and corruptions land before, between and after checkpoints), batches of 32
# (half the steps of BASE: the many kills and resumes stay quick), DSNAS (its alpha moves every step)
TINY = {**BASE, "batch_size": 32, "epochs": 4, "algorithm": "dsnas", "arch_lr": 0.05}
CONFIG = SearchConfig(**TINY)
TALLY = {"injected": 0, "survived": 0, "lost": 0}  # printed by tests/conftest.py


def tally(survived: bool, lost: int = 0):
    TALLY["injected"] += 1
    TALLY["survived"] += bool(survived)
    TALLY["lost"] += lost


def lost_epochs(before: int, after: list[dict], reference: list[dict]) -> int:
    """Finished epochs (the first ``before`` of the reference) missing or changed afterwards."""
    return sum(1 for i in range(before) if i >= len(after) or without_time([after[i]]) != without_time([reference[i]]))


def finished_lines(d: Path) -> int:
    try:
        return len(hist._read_records(d))
    except (RunError, OSError):
        return 0


def files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, a finished directory and one interrupted after epoch 3."""
    base = tmp_path_factory.mktemp("reference")
    full = run(CONFIG, base / "full", progress=False)
    with pytest.raises(Stop):
        run(CONFIG, base / "partial", progress=False, callback=stop_after(3))
    return full, base / "full", base / "partial"


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def resume(d: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return run(CONFIG, d, progress=False)


# ---- kill -9 -------------------------------------------------------------------------

def _fork_run(out: Path, fault: str | None = None) -> int:
    """A child process (forked: no second import of torch) running the search; its pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.environ.pop("NAS_FAULT", None)
            if fault:
                os.environ["NAS_FAULT"] = fault
            run(CONFIG, out, progress=False)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    return pid


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _check_resume(d: Path, full, before: int):
    resumed = resume(d)
    lost = lost_epochs(before, resumed.records, full.records)
    same = without_time(resumed.records) == without_time(full.records)
    tally(same, lost)
    assert same and lost == 0
    assert without_time(load(d).records) == without_time(full.records)


WRITER_FAULTS = ["config-torn@0", "history-torn@2", "history@2", "checkpoint-torn@3", "checkpoint-rotated@3",
                 "checkpoint@3"]


def test_kill_inside_every_write_then_resume(tmp_path, reference):
    """The writers stop the process (os._exit) half-way through a file, between a
    history line and its checkpoint, between keeping the old checkpoint and
    renaming the new one: each resume gives the uninterrupted history."""
    full = reference[0]
    for fault in WRITER_FAULTS:
        d = tmp_path / fault.replace("@", "-")
        assert _wait(_fork_run(d, fault)) == 137, fault
        _check_resume(d, full, finished_lines(d))


def test_kill_9_at_random_moments_then_resume(tmp_path, reference):
    """SIGKILL at seeded random moments after the k-th epoch's line appears (mid-epoch,
    mid-write); resuming (sometimes twice, killed again) gives the uninterrupted history."""
    full = reference[0]
    rng = random.Random(12)
    for i in range(5):
        d = tmp_path / f"kill{i}"
        for attempt in range(1 + (i % 2)):  # odd cases are killed twice
            pid = _fork_run(d)
            target = rng.randint(0, CONFIG.epochs - 1)
            deadline, reaped = time.time() + 120, False
            while finished_lines(d) < target and time.time() < deadline and not reaped:
                reaped = os.waitpid(pid, os.WNOHANG)[0] == pid
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.1))
            if not reaped:  # (a child that already finished was reaped by the poll)
                os.kill(pid, signal.SIGKILL)
                _wait(pid)
        _check_resume(d, full, finished_lines(d))


# ---- corrupted files ---------------------------------------------------------------------

def _corrupt(file: Path, rng: random.Random, mode: str):
    data = bytearray(file.read_bytes())
    at = rng.randrange(len(data))
    if mode == "truncate":
        del data[at:]
    else:
        data[at] = (data[at] + rng.randrange(1, 256)) % 256
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["checkpoint.pt", "checkpoint.prev.pt", "history.jsonl", "config.json"])
def test_corrupted_files_are_detected_or_fallen_back_from(tmp_path, reference, name):
    """Cut short or a byte changed at seeded random offsets, in a finished and in an
    interrupted run: run() returns the uninterrupted history or raises RunError and
    changes nothing; never a wrong result."""
    full, finished, partial = reference
    rng = random.Random(name)
    outcomes = []
    for base in (finished, partial):
        for mode in ("truncate", "flip"):
            d = copy(base, tmp_path / f"{base.name}-{mode}-{len(outcomes)}")
            before = finished_lines(d)
            _corrupt(d / name, rng, mode)
            snapshot = files(d)
            try:
                h = resume(d)
            except RunError as err:
                assert files(d) == snapshot, "a failed resume changed the directory"
                assert str(d) in str(err) or name in str(err), err
                outcomes.append("error")
                tally(True)
                continue
            same = without_time(h.records) == without_time(full.records)
            tally(same, lost_epochs(before, h.records, full.records))
            assert same, f"{name} {mode}: a wrong result was returned"
            outcomes.append("recovered")
    assert outcomes  # (which of the two depends on where the offset falls)


def test_cut_short_checkpoint_falls_back_or_says_restart(tmp_path, reference, capsys):
    """Issue 2: a truncated checkpoint used to end in a raw zip-reader RuntimeError."""
    full, _, partial = reference
    d = copy(partial, tmp_path / "p")
    ckpt = d / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match=r"checkpoint.pt is unreadable.*resuming from checkpoint.prev.pt"):
        h = run(CONFIG, d, progress=False)
    assert without_time(h.records) == without_time(full.records)
    tally(True)

    d = copy(partial, tmp_path / "q")
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (d / name).write_bytes((d / name).read_bytes()[:100])
    snapshot = files(d)
    with pytest.raises(RunError, match=r"no usable checkpoint.*--restart"):
        run(CONFIG, d, progress=False)
    assert files(d) == snapshot
    args = ["search", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in TINY.items()), []), "--out", str(d),
            "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--restart" in err and "Traceback" not in err
    assert cli_main([*args, "--restart"]) == 0
    assert without_time(load(d).records) == without_time(full.records)
    tally(True)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_cannot_run_code(tmp_path, reference):
    """Issue 3: checkpoints were loaded with weights_only=False: a crafted one ran code."""
    full, finished, partial = reference
    marker = tmp_path / "pwned"
    d = copy(partial, tmp_path / "p")
    torch.save({"epoch": 3, "evil": Evil(marker)}, d / "checkpoint.pt")
    h = resume(d)  # refused, and the previous checkpoint is used
    assert not marker.exists()
    assert without_time(h.records) == without_time(full.records)
    tally(True)
    # loading a finished run's last weights into a Search
    from nas_core.runs import checkpoint_of

    def load_search(h):
        s = Search(h.config)
        checkpoint_of(h, s)
        return s

    d = copy(finished, tmp_path / "f")
    assert load_search(load(d)).epoch == CONFIG.epochs
    torch.save({"epoch": 4, "evil": Evil(marker)}, d / "checkpoint.pt")
    with pytest.raises(RunError, match="checkpoint"):
        load_search(load(d))
    assert not marker.exists()
    tally(True)


def test_no_torch_load_without_weights_only_in_the_package():
    for f in (ROOT / "nas_core").rglob("*.py"):
        text = f.read_text()
        assert "weights_only=False" not in text, f
        for part in text.split("torch.load(")[1:]:
            assert "weights_only=True" in part.split("\n")[0], f


# ---- divergence --------------------------------------------------------------------------

NAN = dict(TINY, algorithm="darts", lr=1e6, epochs=3)


def test_divergence_stops_the_run_keeping_finished_epochs(tmp_path, capsys):
    """Issue 1: lr=1e6 gave NaN from epoch 2, a history of NaN, a run marked finished and exit 0."""
    config = SearchConfig(**NAN)
    d = tmp_path / "nan"
    with pytest.raises(DivergenceError, match=r"epoch 2, step \d+: .* is nan.*--lr, now 1e\+06.*--arch-lr") as err:
        run(config, d, progress=False)
    assert "1 finished epoch(s) before it are kept" in str(err.value)
    h = load(d)
    assert len(h) == 1 and not h.finished  # not finished, so never taken from the run cache
    lines = (d / "history.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "NaN" not in lines[0]
    json.loads(lines[0], parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert torch.load(d / "checkpoint.pt", weights_only=True)["epoch"] == 1
    before = files(d)
    with pytest.raises(DivergenceError):  # deterministic: resuming diverges again, and keeps epoch 1
        run(config, d, progress=False)
    assert files(d)["history.jsonl"] == before["history.jsonl"]
    tally(True)

    flags = ["search", "--algorithm", "darts", "--lr", "1e6", "--epochs", "3", "--data", "synthetic", "--cells", "2",
             "--channels", "4", "--batch-size", "32", "--out", str(tmp_path / "cli"), "--no-progress"]
    assert cli_main(flags) == 2
    captured = capsys.readouterr().err
    assert captured.startswith("error: the search diverged") and captured.count("\n") == 1
    tally(True)


@pytest.mark.parametrize("where, quantity", [("weights", "the weights' gradient norm"),
                                             ("loss", "the train loss"), ("alpha", r"alpha \(normal\)")])
def test_injected_nan_names_epoch_step_and_quantity(tmp_path, monkeypatch, where, quantity):
    config = SearchConfig(**TINY)
    real_weights, real_alpha, real_forward = SearchState.update_weights, SearchState.update_alpha, CostPasses.forward
    poisoned = {"epoch": 1, "step": 2}  # 0-based epoch, 1-based step

    def hit(state):
        return state.epoch == poisoned["epoch"] and state.step == poisoned["step"]

    if where == "weights":
        monkeypatch.setattr(SearchState, "update_weights",
                            lambda self: torch.tensor(float("nan")) if hit(self) else real_weights(self))
    elif where == "alpha":
        def update_alpha(self, samples, cost):
            real_alpha(self, samples, cost)
            if hit(self):
                self.alpha["normal"].data[0, 0] = float("inf")
        monkeypatch.setattr(SearchState, "update_alpha", update_alpha)
    else:
        def forward(self, x, samples):
            logits, z = real_forward(self, x, samples)
            return (logits * float("nan") if hit(self.state) else logits), z
        monkeypatch.setattr(CostPasses, "forward", forward)
    with pytest.raises(DivergenceError, match=rf"epoch 2, step 2: {quantity} is (nan|inf)"):
        run(config, tmp_path / "r", progress=False)
    assert len(load(tmp_path / "r")) == 1
    tally(True)


def test_a_diverged_sweep_trial_is_failed_with_the_message(tmp_path):
    """3 epochs: the first two train at a huge rate (the last at lr_min, the cosine stepped at each epoch's start)."""
    table = sweep.run_sweep("search", {"base": dict(NAN, epochs=3), "grid": {"lr": [1e6, 0.025]}}, "0",
                            tmp_path / "sw")
    bad, good = table.iloc[0], table.iloc[1]
    assert bad.status == "failed" and "DivergenceError: the search diverged at epoch 2" in bad.error
    assert "--lr" in bad.error and good.status == "ok"
    tally(True)


# ---- a sweep worker killed -----------------------------------------------------------------

def test_killed_sweep_worker_fails_its_trial_only_and_a_rerun_completes(tmp_path, monkeypatch, reference):
    monkeypatch.setattr(parallel, "START_METHOD", "fork")  # workers start in milliseconds (torch is imported)
    grid = {"base": TINY, "grid": {"algorithm": ["dsnas", "darts"]}}
    out = tmp_path / "sw"
    trials, _ = sweep.plan("search", grid, "0", out)
    victim = Path(trials[0].dir)
    assert SearchConfig.from_dict(trials[0].params) == CONFIG
    killed = {}

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            try:
                pid = int((victim / sweep_backends.WORKER_FILE).read_text())
                if finished_lines(victim / "run") >= 1:  # mid-trial
                    os.kill(pid, signal.SIGKILL)
                    killed["pid"] = pid
            except (OSError, ValueError):
                pass
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    table = sweep.run_sweep("search", grid, "0", out, workers=2)
    thread.join()
    assert killed, "the worker was never killed"
    status = dict(zip(table.trial_id, table.status))
    assert status[trials[0].trial_id] == "failed"
    assert "killed by SIGKILL" in table.set_index("trial_id").error[trials[0].trial_id]
    assert [status[t.trial_id] for t in trials[1:]] == ["ok"]  # the other one finished
    done_before = finished_lines(victim / "run")
    again = sweep.run_sweep("search", grid, "0", out, workers=2)
    assert list(again.status) == ["ok", "ok"]
    h = load(victim / "run")
    same = without_time(h.records) == without_time(reference[0].records)
    tally(same, lost_epochs(done_before, h.records, reference[0].records))
    assert same


# ---- a failed write ------------------------------------------------------------------------

def test_full_disk_is_a_clear_error_and_loses_nothing(tmp_path, reference, monkeypatch):
    full = reference[0]
    real_write, real_append = runio._write_file, runio.append

    for target in ("_write_file", "append"):
        d = tmp_path / target
        calls = {"n": 0}

        def failing(*args, _real={"_write_file": real_write, "append": real_append}[target]):
            calls["n"] += 1
            if calls["n"] == 4:  # config, then epochs 1-2 (checkpoints or lines), then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return _real(*args)

        monkeypatch.setattr(runio, target, failing)
        with pytest.raises(RunError, match=r"No space left on device.*finished epochs before it are intact"):
            run(CONFIG, d, progress=False)
        monkeypatch.setattr(runio, target, {"_write_file": real_write, "append": real_append}[target])
        before = finished_lines(d)
        assert before >= 2
        assert not list(d.glob("*.tmp"))
        _check_resume(d, full, before)

    d = tmp_path / "readonly"
    monkeypatch.setattr(runio, "_write_file", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(RunError, match="Permission denied"):
        run(CONFIG, d, progress=False)
    tally(True)


# ---- bad input -------------------------------------------------------------------------------

def test_missing_cuda_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """Issue 4: --device cuda without CUDA ended in 'AssertionError: Torch not compiled with CUDA enabled'."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"cuda requested but torch.cuda.is_available\(\) is False; use --device cpu"):
        SearchConfig(**TINY, device="cuda").resolved_device()
    assert cli_main(["search", "--device", "cuda", "--data", "synthetic", "--out", str(tmp_path / "c"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cuda requested" in err and "Traceback" not in err and not (tmp_path / "c").exists()
    tally(True)


def test_zero_epochs_is_refused(tmp_path):
    """Issue 5: --epochs 0 'finished' an empty run."""
    with pytest.raises(ValueError, match="invalid epochs=0: must be at least 1"):
        SearchConfig(**{**TINY, "epochs": 0})
    assert cli_main(["search", "--epochs", "0", "--data", "synthetic", "--out", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "z").exists()
    tally(True)


def test_non_strict_history_names_file_and_line(tmp_path, reference):
    """A history written by an older version with NaN in it is named, line and file."""
    d = copy(reference[1], tmp_path / "d")
    lines = (d / "history.jsonl").read_text().splitlines()
    old = json.loads(lines[1])
    old.pop("digest")
    old["train_loss"] = float("nan")
    lines[1] = json.dumps(old)  # allow_nan: what the old code wrote
    (d / "history.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=r"history.jsonl: line 2 holds NaN.*1 epochs before it are intact"):
        load(d)
    (d / "config.json").write_text((d / "config.json").read_text().replace('"lr": 0.025', '"lr": NaN'))
    with pytest.raises(RunError, match=r"config.json: line \d+ holds NaN"):
        load(d)
    tally(True)
