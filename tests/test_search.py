"""The search loop's behaviour: interventions honoured in every mode, and run directories that
are deterministic, resume exactly, are never recomputed and never silently overwritten."""
import json

import numpy as np
import pytest
import torch

import nas_core
import nas_core.search as search_module
from nas_core import Intervention, RunError, SearchConfig, load, run
from nas_core.history import run_dir_for
from nas_core.ops import NONE, OPS, op_index
from nas_core.search import Search

torch.set_num_threads(1)  # the machine is shared: oversubscribed BLAS threads make tiny nets 10-100x slower

TINY = dict(data="synthetic", cells=2, channels=4, batch_size=16, epochs=2)
SEP3, SKIP, MAXP = op_index("sep_conv_3x3"), op_index("skip_connect"), op_index("max_pool_3x3")
IV = Intervention(delete_edges=[0, 2], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect", "max_pool_3x3"],
                                                                         3: ["none"]})


# ---- 7. interventions --------------------------------------------------------------------

def count_calls(net):
    """Forward calls per (cell, edge, op), and of the whole network."""
    calls = np.zeros((len(net.cells), net.topology.n_edges, len(OPS)), dtype=int)
    passes = [0]
    for c, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                op.register_forward_hook(lambda *_, c=c, e=e, k=k: calls.__setitem__((c, e, k), calls[c, e, k] + 1))
    net.register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    return calls, passes


@pytest.mark.parametrize("kw", [
    dict(algorithm="darts", probe_batches=1),
    dict(algorithm="snas"),
    dict(algorithm="dsnas"),
    dict(algorithm="gdas"),
    dict(algorithm="darts", level="bi", order=2),
    dict(random_sample=True),
], ids=["darts-probe", "snas", "dsnas", "gdas", "darts-bi-2nd", "random"])
def test_interventions_are_honoured(kw):
    s = Search(SearchConfig(**{**TINY, "arch_lr": 0.3, "intervention": IV, **kw}))
    calls, passes = count_calls(s.net)
    rec = s.run_epoch()
    assert passes[0] > 3
    # deleted edges never compute
    assert calls[:, [0, 2]].sum() == 0
    # the fixed edge runs its op in every forward pass of every cell, and nothing else
    assert np.all(calls[:, 1, SEP3] == passes[0])
    assert calls[:, 1].sum() == calls[:, 1, SEP3].sum()
    # excluded ops never run; the free edges do compute
    assert calls[:, 4, [SKIP, MAXP]].sum() == 0 and calls[:, 4].sum() > 0 and calls[:, 3].sum() > 0
    # probabilities: exact 1 / 0 where the intervention decides
    p = np.array(rec["probs"]["normal"])
    assert p[0, NONE] == p[2, NONE] == 1.0 and p[1, SEP3] == 1.0
    assert p[[0, 1, 2]].sum() == 3.0
    assert p[4, SKIP] == p[4, MAXP] == p[3, NONE] == 0.0
    assert rec["p_none"]["normal"][0] == rec["p_none"]["normal"][2] == 1.0
    # the derived cells respect it
    for derived in (rec["derived"]["normal"], rec["derived_darts"]["normal"]):
        assert derived[0] == derived[2] == "none" and derived[1] == "sep_conv_3x3"
        assert derived[4] not in ("skip_connect", "max_pool_3x3")
    assert rec["derived"]["normal"][3] != "none"  # none is excluded there
    assert 1 in rec["selected_edges"]["normal"] and 0 not in rec["selected_edges"]["normal"]
    # no cost is recorded for ops that never ran
    for split in rec["cost"]:
        count = np.array(rec["cost"][split]["count"])
        assert count[:, [0, 2], 1:].sum() == 0 and count[:, 4, [SKIP, MAXP]].sum() == 0
        mean = np.array(rec["cost"][split]["mean"], dtype=float)
        assert np.all(np.isnan(mean[:, [0, 2], 1:]))
        assert np.all(np.isfinite(mean[:, 1, SEP3]))


def test_intervention_probabilities_survive_alpha_updates():
    """Many large alpha steps (Adam, weight decay) move the free logits but never the
    intervention's exact 0 / 1 probabilities."""
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "arch_lr": 0.5, "epochs": 3, "intervention": IV}))
    before = s.architecture()["probs"]["normal"]
    for _ in range(2):
        rec = s.run_epoch()
    p = np.array(rec["probs"]["normal"])
    assert np.abs(p[3:] - np.array(before)[3:]).max() > 1e-2  # alpha did move
    assert p[0, NONE] == p[2, NONE] == p[1, SEP3] == 1.0 and p[4, SKIP] == p[3, NONE] == 0.0


def test_every_edge_deleted_runs_with_zero_cost():
    """A cell with nothing to compute: zero output, zero cost, empty derived cell."""
    s = Search(SearchConfig(**{**TINY, "intervention": Intervention(delete_edges=range(5))}))
    calls, _ = count_calls(s.net)
    rec = s.run_epoch()
    assert calls.sum() == 0
    assert rec["n_selected"]["normal"] == 0 and (rec["width"]["normal"], rec["depth"]["normal"]) == (0, 0)
    mean = np.array(rec["cost"]["train"]["mean"], dtype=float)
    assert np.all(mean[..., NONE] == 0) and np.all(np.isnan(mean[..., 1:]))
    assert rec["train_loss"] == pytest.approx(np.log(4))  # zero features: uniform prediction over 4 classes


# ---- 8. runs -----------------------------------------------------------------------------

def without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class Stop(Exception):
    pass


def stop_after(epoch):
    def callback(record):
        if record["epoch"] == epoch:
            raise Stop
    return callback


@pytest.mark.parametrize("kw", [
    dict(algorithm="dsnas", probe_batches=1),
    dict(algorithm="snas", temperature_min=0.5, label_noise=0.2, noise=0.1, shift=1),
    dict(algorithm="darts", level="bi", order=2, batch_size=32),
    dict(random_sample=True, train_size=40),
], ids=["dsnas", "snas-anneal-noisy", "darts-bi-2nd", "random"])
def test_same_config_gives_identical_records(tmp_path, kw):
    c = SearchConfig(**{**TINY, "arch_lr": 0.05, **kw})
    a = run(c, tmp_path / "a", progress=False)
    b = run(c, tmp_path / "b", progress=False)
    assert len(a) == c.epochs and a.finished
    assert without_time(a.records) == without_time(b.records)
    # the records are not trivially equal: the weights learnt, and alpha moved unless frozen
    assert a.records[0]["cost"]["train"]["mean"] != a.records[1]["cost"]["train"]["mean"]
    if c.alpha_updated_on:
        assert a.records[0]["alpha"] != a.records[1]["alpha"]
    # another seed gives another run
    other = run(c.replace(seed=1), tmp_path / "other", progress=False)
    assert without_time(other.records) != without_time(a.records)


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


def test_epoch_generator_fixes_the_random_stream():
    a = search_module.epoch_generator(0, 3)
    b = search_module.epoch_generator(0, 3)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert not torch.equal(torch.rand(5, generator=search_module.epoch_generator(0, 4)),
                           torch.rand(5, generator=search_module.epoch_generator(0, 3)))
    assert not torch.equal(torch.rand(5, generator=search_module.epoch_generator(1, 3)),
                           torch.rand(5, generator=search_module.epoch_generator(0, 3)))


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
