"""A chapter's runs against the study's committed rows (nas_core.chapters.reproduction):
the promise that a change to nas_core which alters the search fails the chapter's check."""
from __future__ import annotations

import pandas as pd
import pytest
import torch.nn as nn
from conftest import TINY as BASE

from nas_core import ops, run
from nas_core.chapters import reproduction, study
from nas_core.fast import fast_path

TINY = {**BASE, "epochs": 3}  # the patterns read the first third of the epochs: one whole epoch of three
RUNG = study.Rung("tiny", "ladder", "growing", TINY, seeds=(0, 1))


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """The tiny rung run once and tabulated, as the study commits its rows. The
    test runs the plain supernet, whose ops the perturbation below changes (that the
    CPU fast path computes the same is tests/test_fast_network.py's)."""
    monkeypatch.setattr(study, "RUNGS", (RUNG,))
    with fast_path(False):
        hs = [run(c, cache_dir=tmp_path / "study", progress=False) for c in RUNG.configs()]
        yield study.tables({"tiny": hs})[0]


def test_the_same_code_reproduces_every_quantity(committed, tmp_path):
    again = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    check = reproduction.reproduction_check(again, committed)
    assert check.passed, check.message
    assert set(check.table.seed) == {0, 1} and not check.missing and not check.unmatched
    # verdicts, cells and values are all compared
    assert {"width.holds", "late_winners", "margin_e4", "train_acc"} <= set(check.table.quantity)


def test_a_changed_op_fails_and_names_what_changed(committed, tmp_path, monkeypatch):
    def doubled(self, x):  # one op's output changed: twice what the separable convolution gives
        return 2 * nn.Sequential.forward(self, x)

    monkeypatch.setattr(ops.SepConv, "forward", doubled)
    perturbed = [run(c, cache_dir=tmp_path / "perturbed", progress=False) for c in RUNG.configs()]
    check = reproduction.reproduction_check(perturbed, committed)
    assert not check.passed
    changed = set(check.changed.quantity)
    assert changed & {"train_acc", *(f"margin_e{e}" for e in range(5)), *(f"p_none_e{e}" for e in range(5))}
    assert all(f"{q} " in check.message for q in changed)  # each quantity that changed is named
    assert "make study" in check.message


def test_a_value_just_past_the_tolerance_fails_and_a_flipped_verdict_fails(committed, tmp_path):
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    shifted = committed.copy()
    shifted.loc[0, "margin_e2"] += 1.01 * reproduction.TOLERANCE
    assert list(reproduction.reproduction_check(hs, shifted).changed.quantity) == ["margin_e2"]
    shifted = committed.copy()
    shifted.loc[0, "margin_e2"] += 0.99 * reproduction.TOLERANCE
    assert reproduction.reproduction_check(hs, shifted).passed
    flipped = committed.copy()
    flipped.loc[1, "width.holds"] = not flipped.loc[1, "width.holds"]
    check = reproduction.reproduction_check(hs, flipped)
    assert list(check.changed.quantity) == ["width.holds"] and "seed 1" in check.message


def test_a_missing_row_of_a_study_rung_fails_and_another_config_is_only_reported(committed, tmp_path):
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    check = reproduction.reproduction_check(hs, committed[committed.seed == 0])
    assert not check.passed and "seed 1 of 'tiny'" in check.message
    other = run(study.Rung("mine", "ladder", "growing", {**TINY, "arch_lr": 1e-2}).configs()[0],
                cache_dir=tmp_path / "mine", progress=False)
    check = reproduction.reproduction_check([other], committed)
    assert check.passed and len(check.unmatched) == 1 and "no rung of the study" in check.sentence()


def test_the_chapters_seed_zero_runs_have_committed_rows():
    """The configs the pattern chapters run at their defaults are rows of study/runs.csv,
    so that their check compares something."""
    from nas_core import presets
    runs, _ = study.load_tables()
    for name in ("growing", "width", "bilevel", "bilevel-control"):
        config = presets.seed_configs(name, "cpu", [0])[0]
        assert f"{config.algorithm}-{config.key()}" in set(runs.run), name


def _elsewhere(rows, margin=0.3):
    """``rows`` as if another kind of machine made them, with every final margin set to
    ``margin`` (0.3: far from every threshold, so rounding reaches no final-cell verdict)."""
    return rows.assign(machine="another CPU, family 6 model 1 stepping 1, -march=x, AVX2, torch 2.13.0+cpu, 0123abcd",
                       **{f"margin_e{e}": margin for e in range(5)})


def test_a_row_of_another_machine_asserts_the_verdicts_out_of_reach_and_reports_the_rest(committed, tmp_path):
    """A run repeats bit for bit only on the kind of machine that made the row: a row of
    another kind (or of none recorded) is held to the verdicts that rounding cannot flip;
    its values are reported."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    assert set(committed.machine) == {reproduction.machine()}   # the rows record where they were made
    elsewhere = _elsewhere(committed)
    elsewhere.loc[0, "late_winners"] = "none|none|none|none|none"
    check = reproduction.reproduction_check(hs, elsewhere)
    assert check.passed, check.message
    assert {"late_winners", "margin_e2"} <= set(check.differs_elsewhere.quantity)
    assert "another kind of machine" in check.sentence() and "0123abcd" in check.sentence()
    assert set(check.table[check.table.asserted].quantity) == set(reproduction.FINAL_CELL_THRESHOLDS)
    assert set(check.summary().asserted) == {f"5 of {len(reproduction.VERDICTS)} verdicts"}
    unrecorded = elsewhere.drop(columns="machine")                  # rows made before machines were recorded
    assert reproduction.reproduction_check(hs, unrecorded).passed
    unrecorded.loc[1, "width.holds"] = not unrecorded.loc[1, "width.holds"]
    check = reproduction.reproduction_check(hs, unrecorded)
    assert list(check.changed.quantity) == ["width.holds"] and "not recorded" in check.sentence()


@pytest.mark.parametrize("verdict", sorted(reproduction.FINAL_CELL_THRESHOLDS))
def test_across_machines_a_final_cell_verdict_is_asserted_exactly_when_no_margin_is_within_reach(
        committed, tmp_path, verdict):
    """A final-cell verdict of another machine's row is asserted when each committed margin
    lies farther than ROUNDING_REACH from every threshold the verdict's decisions read (0
    for argmax, +-TIE_MARGIN tie-aware), and only reported when one lies within it."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    reach = reproduction.ROUNDING_REACH
    for threshold in reproduction.FINAL_CELL_THRESHOLDS[verdict]:
        for outward in ((1, -1) if threshold == 0 else (1 if threshold > 0 else -1,)):  # away from the others
            cases = ((1.01 * outward, True), (0.99 * outward, False), (-0.99 * outward, False))
            for factor, asserted in cases:
                flipped = _elsewhere(committed)
                flipped.loc[0, "margin_e1"] = threshold + factor * reach
                flipped.loc[0, verdict] = not flipped.loc[0, verdict]
                check = reproduction.reproduction_check(hs, flipped)
                assert check.passed is not asserted, (threshold, factor)
                if asserted:
                    assert list(check.changed.quantity) == [verdict] and "seed 0" in check.message
                else:
                    assert verdict in set(check.differs_elsewhere.quantity)


def test_across_machines_the_trajectory_verdicts_are_reported_and_here_asserted(committed, tmp_path):
    """Growing and the empty phase read the first epochs, where p is near uniform and an
    argmax moves with rounding: another machine's row is not held to them; this one's is."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    trajectory = ["growing.holds", "growing_decisive.holds", "empty_phase.holds"]
    assert not set(trajectory) & set(reproduction.FINAL_CELL_THRESHOLDS)
    for rows, here in ((committed, True), (_elsewhere(committed), False)):
        flipped = rows.copy()
        for verdict in trajectory:
            flipped.loc[1, verdict] = not flipped.loc[1, verdict]
        check = reproduction.reproduction_check(hs, flipped)
        assert check.passed is not here
        assert set((check.changed if here else check.differs_elsewhere).quantity) >= set(trajectory)


def test_the_machine_names_what_decides_the_rounding():
    """Two CPUs can share a model name and instruction sets and round differently: the
    machine's kind names family, model and stepping, and the -march of the C kernels."""
    from nas_core.fast.build import cpu_identity, native_march
    name = reproduction.machine()
    assert f", -march={native_march()}, " in name and cpu_identity() in name
    if cpu_identity():
        assert cpu_identity().startswith("family ") and " model " in cpu_identity()
    assert native_march("no-such-compiler") == "unknown"


def test_this_machines_reference_row_is_held_to_every_quantity(committed, tmp_path, monkeypatch):
    """Where the study's row comes from another kind of machine, the chapters' run remade
    here (study/reproduction.csv) is the row compared, every quantity asserted; a
    reference row of yet another kind is not used."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    monkeypatch.setattr(reproduction, "read_provenance",   # as if the tree were committed
                        lambda path: {"commit": "0123456789ab", "machine": reproduction.machine()})
    path = reproduction.record_references(hs, tmp_path)
    references = reproduction.load_references(tmp_path)
    assert path.name == "reproduction.csv" and len(references) == 2
    assert set(references.machine) == {reproduction.machine()}
    study_rows = _elsewhere(committed)
    check = reproduction.reproduction_check(hs, study_rows, references)
    assert check.passed and not check.elsewhere and check.table.asserted.all(), check.message
    shifted = references.copy()
    shifted.loc[0, "margin_e2"] += 1.01 * reproduction.TOLERANCE  # held to the tolerance, as a study row
    check = reproduction.reproduction_check(hs, study_rows, shifted)
    assert list(check.changed.quantity) == ["margin_e2"]
    other = shifted.assign(machine="yet another CPU")                 # another kind's reference: not used
    check = reproduction.reproduction_check(hs, study_rows, other)
    assert check.passed and len(check.elsewhere) == 2
    # recording again replaces this machine's rows and keeps the other kinds'
    pd.concat([other, references]).to_csv(path, index=False)
    reproduction.record_references(hs, tmp_path)
    again = reproduction.load_references(tmp_path)
    assert sorted(again.machine.value_counts().tolist()) == [2, 2]


def test_a_reference_row_must_come_from_committed_code_on_this_machine(committed, tmp_path, monkeypatch):
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    for made_by in ({"commit": "0123456789ab+", "machine": reproduction.machine()},
                    {"commit": "0123456789ab", "machine": "another CPU"}, {}):
        monkeypatch.setattr(reproduction, "read_provenance", lambda path, made_by=made_by: made_by)
        with pytest.raises(ValueError, match="committed code on this machine"):
            reproduction.record_references(hs, tmp_path)
    assert not (tmp_path / "reproduction.csv").exists()


def test_a_corrupt_reference_table_is_a_clear_error(tmp_path):
    (tmp_path / "reproduction.csv").write_text("rung,seed\nfaithful DSNAS,0\n")
    with pytest.raises(ValueError, match="no column machine, run.*python -m nas_core reproduction"):
        reproduction.load_references(tmp_path)
    (tmp_path / "reproduction.csv").write_text('run,seed,machine\n"a,0\n')
    with pytest.raises(ValueError, match="unreadable"):
        reproduction.load_references(tmp_path)
    assert reproduction.load_references(tmp_path / "none").empty
