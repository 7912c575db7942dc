"""The chapters' summaries written from the study's runs (nas_core.chapters.findings):
each number follows the table, and a rung not run is said to be so."""
from __future__ import annotations

import pandas as pd
import pytest

from nas_core.chapters import findings, study


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return study.load_tables()[0]


def test_phrases():
    assert findings.seeds(5, 5) == "every seed" and findings.seeds(0, 5) == "no seed"
    assert findings.seeds(2, 5) == "2 of 5 seeds"
    assert findings.span([0.1234, 0.2]) == "0.123 to 0.200" and findings.span([0.1, 0.1]) == "0.100"
    assert findings.points([0.074, 0.139]) == "7.4 to 13.9 points"


@pytest.mark.parametrize("write", [findings.width, findings.growing, findings.bilevel, findings.ablation,
                                   findings.ladder, findings.headline, findings.rounding])
def test_every_summary_follows_the_table(runs, write):
    """A verdict flipped on one seed changes the summary's text; an empty table says
    that nothing has run, not a number. (Rungs not yet run borrow a run of the same
    preset's family, so that every sentence has numbers.)"""
    borrowed = [runs[runs.rung == ("faithful DSNAS" if r.preset == "growing" else "faithful bi-level DARTS")]
                .assign(rung=r.name) for r in study.RUNGS if r.name not in set(runs.rung)]
    runs = pd.concat([runs, *borrowed], ignore_index=True)
    text = write(runs).data
    assert "nan" not in text
    flipped = runs.copy()
    for column in [c for c in runs.columns if c.endswith(".holds")]:
        flipped[column] = ~runs[column].astype(bool)
    assert write(flipped).data != text
    assert findings.NOT_RUN in write(runs.iloc[:0]).data


def test_width_states_the_table_s_counts_and_margins(runs):
    text = findings.width(runs).data
    faithful = runs[runs.rung == "faithful DSNAS"]
    k = int(faithful["width_decisive.holds"].sum())
    assert f"the tie-aware statistic holds on {k} of the {len(faithful)} seeds that chose the settings" in text
    both = runs[runs.rung.isin(["faithful DSNAS", "faithful DSNAS, held-out seeds"])]
    assert f"a margin of {findings.span(both.margin_e4)}" in text
    shifted = runs.copy()
    shifted.loc[shifted.rung == "faithful DSNAS", "margin_e4"] -= 0.5
    assert findings.width(shifted).data != text


def test_a_rung_part_run_says_how_many_seeds_have_run(runs):
    """A rung with 2 of its 5 seeds is reported as such, in the ladder and in the
    chapters' Fashion-MNIST lines; with all five, the note goes."""
    part = runs[runs.rung == "faithful DSNAS"].head(2).assign(rung="Fashion-MNIST DSNAS")
    table = pd.concat([runs[runs.rung != "Fashion-MNIST DSNAS"], part], ignore_index=True)
    note = "only 2 of the rung's 5 seeds have run so far"
    for write in (findings.ladder, findings.width, findings.growing):
        text = write(table).data
        assert f"*Fashion-MNIST DSNAS*" in text and note in text
    whole = runs[runs.rung == "faithful DSNAS"].assign(rung="Fashion-MNIST DSNAS")
    text = findings.width(pd.concat([runs[runs.rung != "Fashion-MNIST DSNAS"], whole], ignore_index=True)).data
    [line] = [line for line in text.splitlines() if line.startswith("- *Fashion-MNIST DSNAS* (")]
    assert "have run so far" not in line   # the other Fashion-MNIST rungs may still say it of themselves


def test_the_fashion_gap_rule_is_decided_on_seeds_0_to_4_only(runs):
    """The rule fixed before the Fashion-MNIST bi-level runs: undecided until seeds 0-4
    have run, then the mean gap against study.FASHION_GAP_MIN; held-out seeds never count."""
    base = runs[runs.rung == "faithful bi-level DARTS"].assign(rung="Fashion-MNIST bi-level DARTS")
    assert findings._gap_rule(runs[runs.rung != "Fashion-MNIST bi-level DARTS"]) == ""
    two = base.iloc[:2].assign(gap=[0.02, 0.03])
    assert "so far 2.5 points, on 2 of the 5 seeds: not decided yet" in findings._gap_rule(two)
    small = base.assign(gap=study.FASHION_GAP_MIN - 0.001)
    assert "rung with 1,000 clean train images is added" in findings._gap_rule(small)
    held = small.assign(seed=small.seed + 5, gap=0.5)    # held-out seeds: not part of the choice
    assert "is added" in findings._gap_rule(pd.concat([small, held]))
    assert "the rung stays as it is" in findings._gap_rule(base.assign(gap=study.FASHION_GAP_MIN))


def test_the_study_runs_the_rung_the_gap_rule_chose(runs):
    """Once seeds 0-4 of the Fashion-MNIST bi-level rung have decided the rule on the committed
    tables, the study holds the rung it chose, and the held-out seeds run there alone."""
    sub = runs[(runs.rung == "Fashion-MNIST bi-level DARTS") & runs.seed.isin(study.CHOICE_SEEDS)]
    names = {r.name for r in study.RUNGS}
    small = "Fashion-MNIST bi-level DARTS, 1,000 clean images"
    if len(sub) < len(study.CHOICE_SEEDS):
        assert small not in names
    elif sub.gap.mean() < study.FASHION_GAP_MIN:
        assert {small, f"{small}, held-out seeds"} <= names
        assert "Fashion-MNIST bi-level DARTS, held-out seeds" not in names
        assert study.rung(small).configs()[0].train_size == study.FASHION_SMALL_CLEAN
    else:
        assert small not in names


def test_the_fashion_full_cell_line_counts_the_selected_edges(runs):
    """The full cell's width line gives how many of the 8 input and 6 deep edges are selected,
    from the table (thousands separated in the growing line's step counts)."""
    full = runs[runs.rung == "Fashion-MNIST full cell DSNAS"]
    assert len(full)
    changed = runs.copy()
    changed.loc[full.index, ["width.input_edges_fraction", "width.deep_edges_selected"]] = [0.75, 6]
    line = [s for s in findings.width(changed).data.split("\n") if "*Fashion-MNIST full cell" in s][0]
    assert "6 of the 8 input edges and 6 of the 6 deep edges are selected" in line
    changed.loc[full.index, "positive_output_cost_steps"] = 12345
    line = [s for s in findings.growing(changed).data.split("\n") if "*Fashion-MNIST full cell" in s][0]
    assert "positive for 12,345 steps" in line


def test_a_fashion_control_line_says_how_its_statistic_judges_a_control(runs):
    control = runs[runs.rung == "faithful single-level control"].head(1).assign(
        rung="Fashion-MNIST single-level control, 1,000 images")
    text = findings.bilevel(pd.concat([runs, control], ignore_index=True)).data
    [line] = [s for s in text.splitlines() if s.startswith("- *Fashion-MNIST single-level control, 1,000")]
    assert "a control's statistic holds where it keeps at least 75% of its edges" in line
    [line] = [s for s in text.splitlines() if s.startswith("- *Fashion-MNIST bi-level DARTS*")]
    assert "a control's statistic" not in line


def test_rounding_bounds_each_count_by_the_verdicts_rounding_could_flip():
    """Two seeds where width holds tie-aware: one with every margin far from its threshold,
    one with two input edges within the reach of the tie margin (which can flip its width
    and its tie-aware control verdict). Another machine could
    find it on 1 or 2 of them; a bi-level statistic that fails far from its thresholds
    stays at 0."""
    from nas_core import patterns

    def row(rung, seed, margins):
        config = study.rung(rung).configs()[0]
        return {"rung": rung, "seed": seed, **{f"margin_e{e}": m for e, m in enumerate(margins)},
                **patterns.final_cell_verdicts(margins, config.topology, config.level)}

    runs = pd.DataFrame([row("faithful DSNAS", 0, [0.3, 0.3, 0.3, 0.3, -0.3]),
                         row("faithful DSNAS", 1, [0.05, 0.05, 0.3, 0.3, -0.3]),
                         row("faithful bi-level DARTS", 0, [0.3, 0.3, 0.3, 0.3, 0.3])])
    text = findings.rounding(runs).data
    # seed 1's tie-aware width and control verdicts
    assert "Of the study's 15 final-cell verdicts (3 runs, 5 statistics each), 2 could come out" in text
    assert "width over depth: the tie-aware statistic on between 1 and 2 of 2 (here 2); " \
           "the paper's argmax statistic on 2 of 2 (here 2)." in text
    assert "the tie-aware statistic on 0 of 1 (here 0); the paper's argmax statistic on 0 of 1 (here 0)" in text
