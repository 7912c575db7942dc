"""The study's rungs, tables and the chapters' checks (nas_core.chapters)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY as BASE

from nas_core import record, run
from nas_core.data import steps_per_epoch, weight_steps
from nas_core.chapters import checks, study, study_figures
from nas_core.presets import DEPARTURES, preset

TINY = {**BASE, "epochs": 3}  # the patterns read the first third of the epochs: one whole epoch of three


def test_rungs_are_data_and_their_configs_are_valid():
    names = [r.name for r in study.RUNGS]
    assert len(names) == len(set(names))
    for r in study.RUNGS:
        assert r.configs() and all(c.seed in r.seeds for c in r.configs())
    # the held-out seeds never appear in a rung that chooses (the authors' own seeds,
    # 6 and 2, are reported apart and choose nothing)
    for r in study.RUNGS:
        if r.group == "authors":
            continue
        assert set(r.seeds) <= set(study.HELDOUT_SEEDS) if r.group == "heldout" else \
            not set(r.seeds) & set(study.HELDOUT_SEEDS)
    assert {r.name for r in study.RUNGS if r.group == "ablation"} == {k for k, v in DEPARTURES.items() if v}
    with pytest.raises(ValueError, match="unknown rung"):
        study.rung("nope")
    assert "--epochs 2690" in study.rung("DSNAS 78k steps").command()


def test_the_paper_scale_page_gives_each_out_of_reach_rung_s_command():
    """book/paper_scale.md types the commands of the rungs beyond two cores: they
    must be the ones the study would run (a change of steps per epoch changes them)."""
    page = (study.TABLE_DIR.parent / "book" / "paper_scale.md").read_text()
    far = [r for r in study.RUNGS if not r.cpu]
    assert far and all(f"`{r.command()}`" in page for r in far)


def test_tables_from_executed_runs(tmp_path, monkeypatch):
    tiny = study.Rung("tiny", "ladder", "growing", TINY, seeds=(0, 5))
    monkeypatch.setattr(study, "RUNGS", (tiny,))
    hs = [run(c, cache_dir=tmp_path, progress=False) for c in tiny.configs()]
    assert study.finished(cache_dir=tmp_path)["tiny"][0].records == hs[0].records
    runs, curves = study.tables({"tiny": hs})
    assert list(runs.seed) == [0, 5] and list(runs.heldout_seed) == [False, True]
    assert (runs.steps == 3 * (96 // TINY["batch_size"])).all() and (runs.epochs == 3).all()  # 96 train images
    for stat in study.STATISTICS:
        assert runs[f"{stat}.holds"].dtype == bool
    assert len(curves) == 6 and {"p_none_e4", "conv_cost_train_deep", "decisively_selected"} <= set(curves)
    # the convolutions' costs are nas_core.record's parametric edge cost, NaN where none ran
    h = hs[0]
    per_epoch = [record.edge_costs(r, "train", h.config, "parametric") for r in h.records]
    inputs = [np.nanmean(c[list(h.config.topology.input_edges)]) for c in per_epoch]
    assert list(curves.conv_cost_train_input[:3]) == pytest.approx(inputs, nan_ok=True)
    assert runs.late_conv_cost_train_input[0] == pytest.approx(inputs[-1], nan_ok=True)
    assert np.isfinite(inputs).all() and runs.late_conv_cost_heldout_input.isna().all()   # single-level
    paths = study.write_tables({"tiny": hs}, tmp_path / "tables")
    again, _ = study.load_tables(tmp_path / "tables")
    assert list(again.run) == list(runs.run) and all(p.is_file() for p in paths)
    # the study chapter's tables accept what is there and show what is not
    table = study_figures.rung_table(again, ["tiny", "never run"])
    assert table.loc["seeds", "never run"] == "0" and table.loc["seeds", "tiny"] == "2"
    positive = again.positive_output_cost_steps.mean()
    assert table.loc["output cost > 0 (steps)", "tiny"] == f"{positive:,.0f}"
    assert table.loc["held-out acc", "tiny"] == f"{again.heldout_acc.mean():.3f}"
    minutes = again.minutes.mean()
    assert table.loc["min per run", "tiny"] == (f"{minutes:.1f}" if minutes < 10 else f"{minutes:,.0f}")
    assert table.loc["train acc", "tiny"] == f"{again.train_acc.mean():.3f}"
    assert len(study_figures.winners(again, ["tiny"])) == 2


def test_rung_table_counts_only_the_statistics_that_judge_each_rung():
    row = {"seed": 0, "steps": 100, "train_acc": 1.0, "heldout_acc": 0.9, "gap": 0.1, "final_selected": 4,
           "positive_output_cost_steps": 2, "minutes": 1.0, **{f"{s}.holds": True for s in study.STATISTICS}}
    runs = pd.DataFrame([{**row, "rung": "faithful DSNAS"}, {**row, "rung": "faithful single-level control"}])
    both = study_figures.rung_table(runs, ["faithful DSNAS", "faithful single-level control"])
    assert list(both["faithful DSNAS"][["width", "no edge / control"]]) == ["1", "–"]
    assert list(both["faithful single-level control"][["width", "no edge / control"]]) == ["–", "1"]
    dsnas = study_figures.rung_table(runs, ["faithful DSNAS"])
    assert "growing" in dsnas.index and "no edge / control" not in dsnas.index
    assert study_figures.rung_table(runs, ["faithful single-level control"]).index[-1].startswith("no edge")


def test_still_to_run_estimates_a_seed_s_minutes_from_runs_of_the_same_step_cost(monkeypatch):
    short = study.Rung("short", "ladder", "growing", TINY, seeds=(0, 1))
    longer = study.Rung("longer", "ladder", "growing", {**TINY, "epochs": 30, "arch_lr": 0.01}, cpu=False)
    wider = study.Rung("wider", "ladder", "growing", {**TINY, "channels": 8})
    # fewer steps per epoch: more held-out evaluations per step
    fewer = study.Rung("fewer images", "ladder", "growing", {**TINY, "train_size": TINY["batch_size"]})
    monkeypatch.setattr(study, "RUNGS", (short, longer, wider, fewer))
    per_epoch = 96 // TINY["batch_size"]
    runs = pd.DataFrame({"rung": ["short", "short", "longer"], "seed": [0, 1, 2],
                         "steps": [3 * per_epoch] * 3, "minutes": [0.6, 1.2, 0.3]})
    todo = study.still_to_run(runs)
    assert list(todo.index) == ["longer", "wider", "fewer images"]   # short has all its seeds
    assert todo.loc["longer", "seeds missing"] == "0 1 3 4"
    assert todo.loc["longer", "steps per seed"] == 30 * per_epoch
    # the mean minutes per step of the three runs that cost the same (the learning rate does not)
    assert todo.loc["longer", "minutes per seed"] == pytest.approx(30 * per_epoch * (0.6 + 1.2 + 0.3) / 3
                                                                    / (3 * per_epoch))
    assert todo.loc["longer", "fastest"] == pytest.approx(30 * per_epoch * 0.3 / (3 * per_epoch))
    assert todo.loc["longer", "slowest"] == pytest.approx(30 * per_epoch * 1.2 / (3 * per_epoch))
    assert np.isnan(todo.loc["wider", "minutes per seed"])   # more channels: nothing measured
    assert np.isnan(todo.loc["fewer images", "minutes per seed"])   # nor at fewer steps per epoch
    assert todo.loc["longer", "command"] == longer.command() and not todo.loc["longer", "make study runs it"]
    shown = study_figures.to_run_table(runs)
    assert list(shown["minutes per seed"]) == ["7 (3–12)", "not measured yet", "not measured yet"]
    assert "fastest" not in shown and shown.loc["longer", "steps per seed"] == f"{30 * per_epoch:,}"
    assert list(shown["make study runs it"]) == ["no", "yes", "yes"]
    lines = [study.to_run_line(name, t) for name, t in todo.iterrows()]
    assert "(~7 min per seed, 3-12 on the study's machines, beyond what make study runs)" in lines[0]
    assert "(time per seed not measured yet)" in lines[1]
    one_rate = todo.iloc[0].copy()
    one_rate[["fastest", "slowest"]] = 7.2, 6.8   # the same whole minutes: no range
    assert "(~7 min per seed, beyond what make study runs)" in study.to_run_line("longer", one_rate)


def test_load_tables_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make study"):
        study.load_tables(tmp_path)


def table_with(holds: dict[str, list[bool]], stat="width") -> pd.DataFrame:
    rows = []
    for rung, values in holds.items():
        for seed, v in enumerate(values):
            rows.append({"rung": rung, "seed": seed, f"{stat}.holds": v, f"{stat}_decisive.holds": False})
    return pd.DataFrame(rows)


def test_study_check_finds_the_first_rung_with_four_of_five(monkeypatch):
    low, high = checks.LADDER["width"][:2]
    monkeypatch.setitem(checks.STATED, "width", {"rung": high, "heldout": 4})
    monkeypatch.setitem(checks.CLAIMS, "width", [])
    t = table_with({low: [True, True, True, False, False], high: [True] * 4 + [False],
                    checks.HELDOUT["width"]: [True] * 4 + [False]})
    c = checks.study_check("width", t)
    assert (c.rung, c.heldout) == (high, 4) and c.agrees
    t = table_with({low: [True] * 4 + [False], high: [True] * 5})
    c = checks.study_check("width", t)
    assert c.rung == low and c.heldout is None and not c.agrees and "STATED" in c.message
    # four of four seeds is not four of five: a rung needs five seeds
    assert checks.study_check("width", table_with({low: [True] * 4})).rung is None
    with pytest.raises(ValueError):
        checks.study_check("nope", t)


def test_study_check_names_the_rungs_where_it_holds_and_where_not(monkeypatch):
    low, high = checks.LADDER["width"][:2]
    monkeypatch.setitem(checks.CLAIMS, "width", [])
    c = checks.study_check("width", table_with({low: [True] * 5, high: [True] + [False] * 4}))
    assert (c.rung, c.holding, c.not_holding) == (low, (low,), (high,))
    assert f"at '{low}', and not at '{high}'" in c.sentence()
    c = checks.study_check("width", table_with({low: [False] * 5, high: [True] * 4}))  # high: 4 seeds only
    assert (c.rung, c.holding, c.not_holding) == (None, (), (low,))
    assert f"none of the rungs reached ('{low}')" in c.sentence()


def test_settings_table_reads_the_presets():
    t = study_figures.settings_table()
    assert t.loc["faithful DSNAS", "arch lr / weight lr"] == "0.0003 / 0.025"
    assert t.loc["first calibration, DSNAS", "classifier init"] == "x20"
    # 898 training images at batch 32: 28 full batches and the last one of 2, kept as the authors' loader keeps it
    assert t.loc["faithful DSNAS", "steps"] == preset("growing").epochs * 29


def test_claims_are_checked_on_every_seed_or_the_mean(monkeypatch):
    low = checks.LADDER["width"][0]
    t = pd.DataFrame({"rung": [low] * 3, "seed": [0, 1, 2], "gap": [0.1, 0.2, 0.3],
                      "width.holds": [True] * 3, "width_decisive.holds": [False] * 3})
    monkeypatch.setitem(checks.CLAIMS, "width", [
        ("every gap at least 0.1", low, "gap", ">=", 0.1, "all"),
        ("every gap at least 0.2", low, "gap", ">=", 0.2, "all"),
        ("mean gap at least 0.2", low, "gap", ">=", 0.2, "mean"),
        ("a rung never run", "never run", "gap", ">=", 0.0, "all"),
        ("a column never recorded", low, "nope", ">=", 0.0, "all")])
    table = checks.claims_table("width", t)
    assert list(table["holds"]) == [True, False, True, False, False]
    monkeypatch.setitem(checks.STATED, "width", {"rung": None, "heldout": None})
    c = checks.study_check("width", t)
    assert not c.agrees and "every gap at least 0.2" in c.message


def test_claims_are_read_from_their_file(tmp_path):
    assert set(checks.CLAIMS) == {"growing", "width", "bilevel", "study"}
    assert ("but does not reach the empty cell (an edge remains on every seed)", "faithful bi-level DARTS",
            "final_selected", ">=", 1, "all") in checks.CLAIMS["bilevel"]
    # a statement about every seed covers the held-out seeds too: each rung it names has its held-out twin
    for pattern, claims in checks.CLAIMS.items():
        rungs = {c[1] for c in claims}
        twins = {f"{r}, held-out seeds" for r in rungs} & {r.name for r in study.RUNGS}
        assert twins <= rungs, pattern
    bad = tmp_path / "claims.yaml"
    bad.write_text("width:\n  - claim: x\n    rung: r\n    check: gap => 0.1\n")
    with pytest.raises(ValueError, match="'gap => 0.1' is not 'column comparison value'"):
        checks.load_claims(bad)
    bad.write_text("width:\n  - claim: x\n    rung: r\n    check: gap >= 0.1\n    over: mean\n")
    assert checks.load_claims(bad) == {"width": [("x", "r", "gap", ">=", 0.1, "mean")]}


def test_write_tables_keeps_the_rows_of_runs_it_was_not_given(tmp_path, monkeypatch):
    tiny = study.Rung("tiny", "ladder", "growing", TINY, seeds=(0,))
    other = study.Rung("other", "ladder", "growing", TINY, seeds=(1,))
    monkeypatch.setattr(study, "RUNGS", (other, tiny))
    hs = {r.name: [run(c, cache_dir=tmp_path, progress=False) for c in r.configs()] for r in (tiny, other)}
    study.write_tables(hs, tmp_path / "t")
    before, before_curves = study.load_tables(tmp_path / "t")
    study.write_tables({"tiny": hs["tiny"]}, tmp_path / "t")   # a new machine: only tiny's run in its cache
    after, after_curves = study.load_tables(tmp_path / "t")
    assert list(after.rung) == ["other", "tiny"] and list(after.run) == list(before.run)
    assert len(after_curves) == len(before_curves)
    (tmp_path / "t" / study.RUNS_TABLE).write_text('rung,seed\n"broken')
    with pytest.raises(ValueError, match="unreadable"):
        study.write_tables({"tiny": hs["tiny"]}, tmp_path / "t")
    (tmp_path / "t" / study.RUNS_TABLE).write_text("seed\n0\n")   # no rung column
    with pytest.raises(ValueError, match="unreadable"):
        study.write_tables({"tiny": hs["tiny"]}, tmp_path / "t")


def test_the_study_chapter_states_the_fashion_gap_rule_the_code_applies():
    text = (study.TABLE_DIR.parent / "book" / "study.ipynb").read_text()
    assert f"is below {100 * study.FASHION_GAP_MIN:g} points, a rung with {study.FASHION_SMALL_CLEAN:,} clean" in text


def test_the_fashion_small_rungs_make_the_30k_rung_s_weight_steps():
    """The 1,000-image rungs run as many weight steps as the 30k bi-level rung (within one epoch of
    11 steps), and their epochs stay those of the runs already in the study (1,195)."""
    reference = study.rung("Fashion-MNIST bi-level DARTS").configs()[0]
    for name in ("Fashion-MNIST bi-level DARTS, 1,000 clean images", "Fashion-MNIST single-level control, 1,000 images"):
        small = study.rung(name).configs()[0]
        assert small.epochs == 1195 and steps_per_epoch(small) == 11
        assert abs(weight_steps(small) - weight_steps(reference)) <= 11
