"""nas_core.chapters.calibration: the studies run into the shared run cache, and the table
pairs each bi-level run with the control of its seed."""
import pandas as pd
import pytest
import yaml
from conftest import TINY as BASE

from nas_core import cli, load, patterns
from nas_core.chapters import calibration

# the levers presets take 128 train images, more than the synthetic data holds (bi-level: 48 in its first half)
TINY = {**BASE, "train_size": 32}


@pytest.fixture
def specs(tmp_path, monkeypatch):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "bi.yaml").write_text(yaml.safe_dump({"base": {"preset": "levers-bilevel", **TINY}}))
    (d / "control.yaml").write_text(yaml.safe_dump({"base": {"preset": "levers-bilevel-control", **TINY}}))
    (d / "levers.yaml").write_text(yaml.safe_dump({"base": {"preset": "levers-dsnas", **TINY},
                                                   "grid": {"arch_lr": [0.01, 0.03]}}))
    monkeypatch.setattr(calibration, "STUDIES", {"bi.yaml": ("bilevel", "4-5"),
                                                 "control.yaml": ("bilevel-control", "4-5"),
                                                 "levers.yaml": ("levers", "0")})
    monkeypatch.setenv("NAS_RUNS_DIR", str(tmp_path / "runs"))
    return d


def test_study_table(specs, tmp_path):
    outs = calibration.run_study(specs, workers=1, progress=False)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 6  # every run in the shared cache, none under the sweep outputs
    assert not list(specs.glob("out/*/trials/*/run"))
    table = calibration.collect(outs)
    assert len(table) == 6 and set(table.run) == {r.name for r in runs}
    assert table.groupby("study").size().to_dict() == {"bilevel": 2, "bilevel-control": 2, "levers": 2}
    # seeds 0-4 chose the presets; levers were all looked at
    seen = table.set_index(["study", "seed"]).seen_while_choosing
    assert seen[("bilevel", 4)] and not seen[("bilevel", 5)] and seen[("levers", 0)].all()
    bi = table[table.study == "bilevel"].set_index("seed")
    control = table[table.study == "bilevel-control"].set_index("seed")
    for seed in (4, 5):  # pruning pairs a bi-level run with the control of its own seed
        assert bi.loc[seed, "pruning.control_final_fraction"] == control.loc[seed, "bilevel.final_fraction"]
        assert bi.loc[seed, "pruning.bilevel_final_fraction"] == bi.loc[seed, "bilevel.final_fraction"]
    assert table[table.study != "bilevel"]["pruning.holds"].isna().all()
    assert {"empty_phase.holds", "deep_avoided.chance", "growing.holds", "seconds"} <= set(table.columns)

    # each row holds its run's statistics, computed here again from the run directory
    for _, row in table.iterrows():
        h = load(tmp_path / "runs" / row.run)
        assert (row.seed, row.epochs_done) == (h.config.seed, len(h))
        stats = patterns.flatten({**patterns.statistics(h), "empty_phase": patterns.empty_phase(h, "normal")})
        assert row["growing.holds"] == stats["growing.holds"] and row["empty_phase.holds"] == stats["empty_phase.holds"]
        for col in ("bilevel.final_fraction", "width.width"):
            assert row[col] == pytest.approx(stats[col]), col

    # a rerun computes nothing
    before = {r.name: (r / "history.jsonl").stat().st_mtime_ns for r in runs}
    calibration.collect(calibration.run_study(specs, workers=1, progress=False))
    assert before == {r.name: (r / "history.jsonl").stat().st_mtime_ns for r in runs}


def test_a_run_shared_by_two_sweeps_of_a_study_is_one_row(specs, monkeypatch):
    (specs / "corner.yaml").write_text(yaml.safe_dump({"base": {"preset": "levers-dsnas", **TINY, "arch_lr": 0.03},
                                                       "grid": {"logit_scale": [20.0, 5.0]}}))
    monkeypatch.setattr(calibration, "STUDIES", {"levers.yaml": ("levers", "0"), "corner.yaml": ("levers", "0")})
    table = calibration.collect(calibration.run_study(specs, workers=1, progress=False))
    # arch lr 3e-2 at logit scale 20 (the preset's) is in both sweeps
    assert len(table) == 3 and table.run.is_unique


def test_cli_writes_the_table(specs, tmp_path):
    out = tmp_path / "calibration.csv"
    assert cli.main(["calibrate", "--specs", str(specs), "--table", str(out), "--workers", "1"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 6
    curves = pd.read_csv(tmp_path / "calibration_curves.csv")
    assert len(curves) == 6 * 2 and set(curves.run) == set(table.run)  # two epochs per run
    bi = curves[curves.study == "bilevel"]
    assert bi.conv_cost_heldout.notna().all() and curves[curves.study == "levers"].conv_cost_heldout.isna().all()
    assert curves.selected_fraction.between(0, 1).all() and curves.p_none.between(0, 1).all()


def test_failed_trials_are_reported(specs, tmp_path, capsys):
    (specs / "control.yaml").write_text(yaml.safe_dump({"base": {"preset": "levers-bilevel-control", **TINY,
                                                                 "train_size": 10_000}}))
    out = tmp_path / "calibration.csv"
    assert cli.main(["calibrate", "--specs", str(specs), "--table", str(out), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "2 trial(s) failed" in err and "train_size=10000 exceeds the train split" in err
    table = pd.read_csv(out)  # what finished is still written
    assert len(table) == 4 and "bilevel-control" not in set(table.study)


def test_missing_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(calibration, "STUDIES", {"nope.yaml": ("levers", "0")})
    assert cli.main(["calibrate", "--specs", str(tmp_path), "--table", str(tmp_path / "t.csv")]) == 2
    assert "missing sweep spec(s) nope.yaml" in capsys.readouterr().err
