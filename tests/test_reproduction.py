"""A chapter's runs against the study's committed rows (nas_core.chapters.reproduction):
the promise that a change to nas_core which alters the search fails the chapter's check."""
from __future__ import annotations

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


def test_a_row_of_another_machine_asserts_the_verdicts_and_reports_the_rest(committed, tmp_path):
    """A run repeats bit for bit only on the kind of machine that made the row: a row of
    another kind (or of none recorded) is held to its verdicts; its values are reported."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    assert set(committed.machine) == {reproduction.machine()}   # the rows record where they were made
    elsewhere = committed.assign(machine="another CPU, AVX2, torch 2.13.0+cpu, 0123abcd")
    elsewhere.loc[0, "margin_e2"] += 0.05
    elsewhere.loc[0, "late_winners"] = "none|none|none|none|none"
    check = reproduction.reproduction_check(hs, elsewhere)
    assert check.passed, check.message
    assert set(check.differs_elsewhere.quantity) == {"margin_e2", "late_winners"}
    assert "another kind of machine" in check.sentence() and "0123abcd" in check.sentence()
    unrecorded = elsewhere.drop(columns="machine")                  # rows made before machines were recorded
    assert reproduction.reproduction_check(hs, unrecorded).passed
    unrecorded.loc[1, "width.holds"] = not unrecorded.loc[1, "width.holds"]
    check = reproduction.reproduction_check(hs, unrecorded)
    assert list(check.changed.quantity) == ["width.holds"] and "not recorded" in check.sentence()
