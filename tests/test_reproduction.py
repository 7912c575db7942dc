"""A chapter's runs against the study's committed rows (nas_core.chapters.reproduction):
the promise that a change to nas_core which alters the search fails the chapter's check."""
from __future__ import annotations

import pandas as pd
import pytest
import torch.nn as nn
from conftest import TINY as BASE

from nas_core import ops, patterns, run
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
    assert set(check.table[check.table.asserted].quantity) == set(reproduction.FINAL_CELL_VERDICTS)
    assert set(check.summary().asserted) == {f"5 of {len(reproduction.VERDICTS)} verdicts"}
    unrecorded = elsewhere.drop(columns="machine")                  # rows made before machines were recorded
    assert reproduction.reproduction_check(hs, unrecorded).passed
    unrecorded.loc[1, "width.holds"] = not unrecorded.loc[1, "width.holds"]
    check = reproduction.reproduction_check(hs, unrecorded)
    assert list(check.changed.quantity) == ["width.holds"] and "not recorded" in check.sentence()


def test_across_machines_the_check_asserts_exactly_the_verdicts_rounding_cannot_flip(committed, tmp_path):
    """With the deep edge's margin within reach of 0 (argmax could keep it) and the
    input edges' within reach of the tie margin, every final-cell verdict of another
    machine's row is flipped: those out of reach fail the check, the others are reported."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    rows = _elsewhere(committed).assign(margin_e4=-0.03, margin_e0=0.05, margin_e1=0.05)
    held = reproduction.asserted_elsewhere(rows.iloc[0])
    assert held and held != set(reproduction.FINAL_CELL_VERDICTS)   # some asserted, some not
    flipped = rows.copy()
    for verdict in reproduction.FINAL_CELL_VERDICTS:
        flipped.loc[0, verdict] = not flipped.loc[0, verdict]
    check = reproduction.reproduction_check(hs, flipped)
    assert set(check.changed.quantity) == held
    assert set(reproduction.FINAL_CELL_VERDICTS) - held <= set(check.differs_elsewhere.quantity)


def _row(rung: str, margins) -> pd.Series:
    """A committed row of ``rung`` whose cell ended with ``margins``, its verdicts decided
    from them."""
    config = study.rung(rung).configs()[0]
    return pd.Series({"rung": rung, **{f"margin_e{e}": m for e, m in enumerate(margins)},
                      **patterns.final_cell_verdicts(margins, config.topology, config.level)})


REACH = reproduction.ROUNDING_REACH


@pytest.mark.parametrize("verdict, threshold", [("width.holds", 0.0), ("deep_avoided.holds", 0.0),
                                                ("width_decisive.holds", -patterns.TIE_MARGIN)])
def test_a_verdict_is_asserted_exactly_when_a_move_within_reach_cannot_flip_it(verdict, threshold):
    """Width holds with the deep edge's margin just beyond the reach below the threshold
    its decision reads; just inside, rounding could keep the deep edge."""
    for factor, asserted in ((1.01, True), (0.99, False)):
        row = _row("faithful DSNAS", [0.3, 0.3, 0.3, 0.3, threshold - factor * REACH])
        assert row[verdict]
        assert (verdict in reproduction.asserted_elsewhere(row)) is asserted, factor


def test_a_margin_within_reach_whose_edge_cannot_change_the_verdict_leaves_it_asserted():
    """Width needs 3 of 4 input edges: one input edge within reach of 0 cannot flip it,
    two can. A bi-level run's empty cell is flipped by any edge within reach of 0."""
    one = _row("faithful DSNAS", [0.01, 0.3, 0.3, 0.3, -0.3])
    two = _row("faithful DSNAS", [0.01, 0.01, 0.3, 0.3, -0.3])
    assert one["width.holds"] and two["width.holds"]
    assert "width.holds" in reproduction.asserted_elsewhere(one)
    assert "width.holds" not in reproduction.asserted_elsewhere(two)
    empty = [-0.3, -0.3, -0.3, -0.3, -0.3]
    assert "bilevel.holds" in reproduction.asserted_elsewhere(_row("faithful bi-level DARTS", empty))
    assert "bilevel.holds" not in reproduction.asserted_elsewhere(_row("faithful bi-level DARTS", empty[:4] + [-0.03]))
    assert not reproduction.asserted_elsewhere(pd.Series({**one, "margin_e2": float("nan")}))  # unknown: nothing


@pytest.mark.parametrize("rung", ["faithful DSNAS", "faithful bi-level DARTS"])
def test_the_two_extremes_decide_as_every_move_within_reach(rung):
    """asserted_elsewhere moves all margins by the reach towards a verdict and against
    it; since each verdict is monotone in every margin, that agrees with trying every
    decision each edge can reach (a point of each class its interval meets)."""
    import itertools

    import numpy as np
    config = study.rung(rung).configs()[0]
    points = (-0.02, -0.01, 0.0, 0.01, 0.02)   # with an interval's ends: a point of each class it meets
    rng = np.random.default_rng(0)
    for _ in range(12):
        margins = rng.uniform(-0.09, 0.09, 5)
        row = _row(rung, margins)
        reach = [[m - REACH, m + REACH, *(t for t in points if m - REACH <= t <= m + REACH)] for m in margins]
        seen = {v: set() for v in reproduction.FINAL_CELL_VERDICTS}
        for moved in itertools.product(*reach):
            for v, holds in patterns.final_cell_verdicts(moved, config.topology, config.level).items():
                seen[v].add(holds)
        assert reproduction.asserted_elsewhere(row) == {v for v, s in seen.items() if len(s) == 1}, margins


def test_the_verdicts_decided_from_the_margins_are_the_runs_own():
    """patterns.final_cell_verdicts, which decides from the committed margins alone, gives
    every committed row's final-cell verdicts as the run's own history did."""
    runs, _ = study.load_tables()
    for _, row in runs.iterrows():
        config = study.rung(row.rung).configs()[0]
        margins = [row[f"margin_e{e}"] for e in range(config.topology.n_edges)]
        decided = patterns.final_cell_verdicts(margins, config.topology, config.level)
        assert decided == {v: bool(row[v]) for v in decided}, (row.rung, row.seed)


def test_the_rounding_reach_table_counts_per_rung():
    runs = pd.DataFrame([_row("faithful DSNAS", [0.01, 0.01, 0.3, 0.3, -0.3]),
                         _row("faithful DSNAS", [0.3, 0.3, 0.3, 0.3, -0.3])]).assign(seed=[0, 1])
    table = reproduction.rounding_reach(runs)
    assert table.loc["faithful DSNAS", "seeds"] == 2
    assert table.loc["faithful DSNAS", "width"] == "2/2 (1)"
    assert table.loc["faithful DSNAS", "width_decisive"] == "1/2 (1)"
    from nas_core.chapters import study_figures
    shown = study_figures.rounding_table(runs)   # the study chapter's labels
    assert list(shown.columns) == ["seeds", "width", "width (tie-aware)", "deep avoided", "no edge / control",
                                   "no edge / control (tie-aware)"]
    assert shown.loc["faithful DSNAS", "width (tie-aware)"] == "1/2 (1)"


def test_across_machines_the_trajectory_verdicts_are_reported_and_here_asserted(committed, tmp_path):
    """Growing and the empty phase read the first epochs, where p is near uniform and an
    argmax moves with rounding: another machine's row is not held to them; this one's is."""
    hs = [run(c, cache_dir=tmp_path / "again", progress=False) for c in RUNG.configs()]
    trajectory = ["growing.holds", "growing_decisive.holds", "empty_phase.holds"]
    assert not set(trajectory) & set(reproduction.FINAL_CELL_VERDICTS)
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
