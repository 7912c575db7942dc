"""Run directories (nas_core.runs.history): they round-trip, resume exactly after an
interruption, are never recomputed once finished, are never silently overwritten, and say
what is wrong when a file is corrupt (kill -9 and corrupted files: tests/test_faults.py)."""
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, Stop, stop_after, without_time

from nas_core import Intervention, RunError, SearchConfig, load, run
from nas_core.runs import default_cache_dir, run_dir_for
from nas_core.search import Search

IV = Intervention(delete_edges=[0, 2], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect", "max_pool_3x3"],
                                                                         3: ["none"]})


@pytest.mark.parametrize("kw", [
    dict(algorithm="dsnas", probe_batches=1),
    dict(algorithm="snas", temperature_min=0.5, label_noise=0.2, noise=0.1, shift=1),
    dict(algorithm="darts", level="bi", order=2, batch_size=32),
    dict(random_sample=True, train_size=40),
], ids=["dsnas", "snas-anneal-noisy", "darts-bi-2nd", "random"])
def test_a_run_resumed_in_every_mode_equals_the_uninterrupted_one(tmp_path, kw):
    """The checkpoint holds every state an epoch depends on (weights, alpha,
    optimisers, the temperature schedule, the sampling streams) in each mode:
    a run stopped after epoch 1 and resumed gives the uninterrupted history."""
    c = SearchConfig(**{**TINY, "arch_lr": 0.05, **kw})
    full = run(c, tmp_path / "full", progress=False)
    with pytest.raises(Stop):
        run(c, tmp_path / "resumed", progress=False, callback=stop_after(1))
    assert len(load(tmp_path / "resumed")) == 1
    resumed = run(c, tmp_path / "resumed", progress=False)
    assert len(full) == c.epochs and full.finished and resumed.finished
    assert without_time(resumed.records) == without_time(full.records)
    # the records are not trivially equal: the weights learnt, and alpha moved unless frozen
    assert full.records[0]["cost"]["train"]["mean"] != full.records[1]["cost"]["train"]["mean"]
    if c.alpha_updated_on:
        assert full.records[0]["alpha"] != full.records[1]["alpha"]
    # a config that differs in one field (the seed) gives another run
    other = run(c.replace(seed=1), tmp_path / "other", progress=False)
    assert without_time(other.records) != without_time(full.records)


def test_history_file_and_config_round_trip(tmp_path):
    c = SearchConfig(**{**TINY, "intervention": IV})
    h = run(c, tmp_path, progress=False)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    # each line is strict JSON, the record plus a digest of itself
    assert [{k: v for k, v in json.loads(line).items() if k != "digest"} for line in lines] \
        == json.loads(json.dumps(h.records))
    assert SearchConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == c
    loaded = load(tmp_path)
    assert loaded.config == c and loaded.config.key() == c.key()
    assert without_time(loaded.records) == without_time(json.loads(json.dumps(h.records)))
    assert loaded.series("n_selected", "normal") == [r["n_selected"]["normal"] for r in h.records]
    assert len(loaded.series("train_acc")) == c.epochs


@pytest.fixture(scope="module")
def four_epochs(tmp_path_factory):
    c = SearchConfig(**{**TINY, "algorithm": "dsnas", "epochs": 4, "probe_batches": 1, "arch_lr": 0.05})
    return c, run(c, tmp_path_factory.mktemp("full"), progress=False)


def test_resume_after_interruption_equals_uninterrupted(tmp_path, four_epochs, monkeypatch):
    c, full = four_epochs
    with pytest.raises(Stop):
        run(c, tmp_path, progress=False, callback=stop_after(2))
    partial = load(tmp_path)
    assert len(partial) == 2 and not partial.finished
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    computed = []
    original = Search.run_epoch
    monkeypatch.setattr(Search, "run_epoch", lambda self: computed.append(self.epoch) or original(self))
    resumed = run(c, tmp_path, progress=False)
    assert computed == [2, 3]  # only the missing epochs (0-based) are computed
    assert without_time(resumed.records) == without_time(full.records)
    assert without_time(load(tmp_path).records) == without_time(full.records)


def test_torn_last_line_is_recovered(tmp_path, four_epochs):
    c, full = four_epochs
    with pytest.raises(Stop):
        run(c, tmp_path, progress=False, callback=stop_after(2))
    with open(tmp_path / "history.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "alpha": {"normal": [[0.1')  # killed while writing epoch 3
    assert len(load(tmp_path)) == 2
    resumed = run(c, tmp_path, progress=False)
    assert without_time(resumed.records) == without_time(full.records)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_history_ahead_of_checkpoint_is_recomputed(tmp_path, four_epochs):
    """Killed after writing epoch 3's line but before its checkpoint: epoch 3 is redone."""
    c, full = four_epochs
    with pytest.raises(Stop):
        run(c, tmp_path, progress=False, callback=stop_after(2))
    fake = {**full.records[2], "train_acc": -1.0}
    with open(tmp_path / "history.jsonl", "a") as fh:
        fh.write(json.dumps(fake) + "\n")
    with pytest.warns(RuntimeWarning, match="epoch 3 recomputed differs from its earlier record"):  # never silent
        resumed = run(c, tmp_path, progress=False)
    assert without_time(resumed.records) == without_time(full.records)


def test_finished_run_is_loaded_without_compute(tmp_path, four_epochs, monkeypatch):
    c, _ = four_epochs
    small = c.replace(epochs=2, probe_batches=0)
    first = run(small, tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(Search, "run_epoch", boom)
    monkeypatch.setattr(Search, "__init__", boom)
    again = run(small, tmp_path, progress=False)
    assert again.records == json.loads(json.dumps(first.records))
    # the same through the run cache (default location keyed by the config)
    monkeypatch.undo()
    cached = run(small, cache_dir=tmp_path / "cache", progress=False)
    assert cached.path == run_dir_for(small, tmp_path / "cache") and cached.path.name.startswith("dsnas-")
    monkeypatch.setattr(Search, "run_epoch", boom)
    assert without_time(run(small, cache_dir=tmp_path / "cache", progress=False).records) == without_time(first.records)


def test_run_cache_names_are_stable(tmp_path):
    """A run's cache directory is named by its config's key: stored values, since
    a changed key orphans every finished run in runs/ (on purpose only when the
    code's maths changes: config.CODE_VERSION)."""
    c = SearchConfig(**TINY)
    assert run_dir_for(c, tmp_path) == tmp_path / "dsnas-43a961137efd"
    assert run_dir_for(c.replace(algorithm="darts", seed=3), tmp_path).name == "darts-603f8562913e"


def test_the_code_version_is_part_of_the_key(monkeypatch):
    """Runs of older maths are never taken from the cache for the new code."""
    from nas_core import config as config_module
    c = SearchConfig(**TINY)
    before = c.key()
    monkeypatch.setattr(config_module, "CODE_VERSION", config_module.CODE_VERSION - 1)
    assert c.key() != before


def test_another_config_is_refused_unless_overwrite(tmp_path, monkeypatch):
    c = SearchConfig(**TINY)
    first = run(c, tmp_path, progress=False)
    before = (tmp_path / "history.jsonl").read_text()
    with pytest.raises(RunError, match="another config") as err:
        run(c.replace(seed=3), tmp_path, progress=False)
    assert "seed" in str(err.value)
    # an unfinished run in the directory is protected just the same
    with pytest.raises(RunError, match="another config"):
        run(c.replace(epochs=5), tmp_path, progress=False)
    assert (tmp_path / "history.jsonl").read_text() == before
    assert load(tmp_path).config == c
    replaced = run(c.replace(seed=3), tmp_path, progress=False, overwrite=True)
    assert replaced.config.seed == 3 and len(replaced) == 2
    assert load(tmp_path).config.seed == 3
    assert without_time(load(tmp_path).records) != without_time(first.records)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 2


def test_corrupt_history_and_missing_run_give_clear_errors(tmp_path):
    c = SearchConfig(**{**TINY, "epochs": 3})
    run(c, tmp_path / "r", progress=False)
    lines = (tmp_path / "r" / "history.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (tmp_path / "r" / "history.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match="line 2 is corrupt"):
        load(tmp_path / "r")
    with pytest.raises(RunError, match="not a run directory"):
        load(tmp_path / "nothing")
    (tmp_path / "r" / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="config.json"):
        load(tmp_path / "r")


def test_the_default_cache_is_the_repositorys_runs_directory(monkeypatch):
    """In a checkout, runs go to ``runs/`` at its root, which the book build and the
    notebook tests share (a package move once sent them to ~/.cache instead)."""
    monkeypatch.delenv("NAS_RUNS_DIR", raising=False)
    assert default_cache_dir() == Path(__file__).resolve().parents[1] / "runs"
    monkeypatch.setenv("NAS_RUNS_DIR", "/tmp/elsewhere")
    assert default_cache_dir() == Path("/tmp/elsewhere")
