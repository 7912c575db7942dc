"""What each pattern chapter asserts, computed from the study's executed runs
(``study/runs.csv``), and what its text states.

A chapter's check computes, per rung of the ladder, on how many seeds the
paper's statistic and its tie-aware version hold, finds the first rung where
the paper's statistic holds on at least 4 of 5 seeds (``MIN_SEEDS``), and
asserts that this is what the chapter's text says (``STATED``). When a rerun
of the study changes a finding, the check fails until the text is updated: the
text is never more optimistic than the runs.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pandas as pd

MIN_SEEDS = 4  # of 5: "a pattern holds at a rung"

# The rungs of the ladder that bear on each pattern, bottom to top, and the
# rung run on the held-out seeds 5-9.
LADDER = {
    "growing": ("faithful DSNAS", "DSNAS 20k steps"),
    "width": ("faithful DSNAS", "DSNAS 20k steps"),
    "bilevel": ("faithful bi-level DARTS", "bi-level DARTS, 256 clean images"),
}
CONTROLS = {"growing": (), "width": (), "bilevel": ("faithful single-level control",)}
HELDOUT = {"growing": "faithful DSNAS, held-out seeds", "width": "faithful DSNAS, held-out seeds",
           "bilevel": "faithful bi-level DARTS, held-out seeds"}

# What the chapters' text says the study found: the first rung where the paper's
# statistic holds on >= MIN_SEEDS of 5 seeds (None: on none of the rungs reached),
# and the count of held-out seeds on which it holds at the faithful preset.
STATED: dict[str, dict] = {
    "growing": {"rung": None, "heldout": 0},
    "width": {"rung": "faithful DSNAS", "heldout": 4},
    "bilevel": {"rung": None, "heldout": 0},
}


# The chapters' other statements about the study, each checked on every seed of
# a rung (``all``) or on the seeds' mean (``mean``): (statement, rung, column,
# comparison, value, over).
F, B = "faithful DSNAS", "faithful bi-level DARTS"
CLAIMS: dict[str, list[tuple]] = {
    "growing": [
        ("the cell keeps at least 4 of its 5 edges through the first third", F,
         "growing.early_min_fraction", ">=", 0.8, "all"),
        ("the train output cost is positive for the first epoch (28 steps) at most", F,
         "positive_output_cost_steps", "<=", 28, "all"),
        ("the mean p(none) over the edges falls", F, "p_none_rise", "<", 0.0, "all"),
    ],
    "width": [
        ("all four input edges are selected at the end", F, "width.input_edges_fraction", "==", 1.0, "all"),
        ("the deep edge's p(none) ends above the uniform 1/8", F, "p_none_e4", ">", 0.125, "all"),
        ("the tie-aware statistic fails because an edge stays undecided", F,
         "width_decisive.undecided", ">=", 1, "all"),
        ("late in the search the input edges' convolutions cost less than 0 (train)", F,
         "late_conv_cost_train_input", "<", 0.0, "all"),
        ("while the deep edge's cost more than 0", F, "late_conv_cost_train_deep", ">", 0.0, "all"),
    ],
    "bilevel": [
        ("the generalisation gap is at least 9 points on every seed", B, "gap", ">=", 0.09, "all"),
        ("the deep edge ends with none", B, "width.deep_edges_selected", "==", 0, "all"),
        ("train accuracy reaches 1.00 (mean over the last tenth)", B, "train_acc", ">=", 0.99, "all"),
        ("the mean p(none) over the edges rises", B, "p_none_rise", ">", 0.0, "all"),
        ("the deep edge's p(none) ends above the uniform 1/8", B, "p_none_e4", ">", 0.125, "all"),
        ("edges remain at the end", B, "final_selected", ">=", 1, "all"),
        ("late in the search the deep edge's convolutions cost more than 0 on the held-out split", B,
         "late_conv_cost_heldout_deep", ">", 0.0, "all"),
        ("and less than 0 on the train split", B, "late_conv_cost_train_deep", "<", 0.0, "all"),
    ],
    "study": [   # the study chapter's statements about the ablation
        ("alpha 33 times faster: the width statistic holds on at least 4 of 5 seeds", "arch lr x33",
         "width.holds", ">=", 0.8, "mean"),
        ("and the deep edge's p(none) ends higher on average than at the faithful preset (above 0.17)",
         "arch lr x33", "p_none_e4", ">", 0.17, "mean"),
        ("logits x20: the train output cost stays positive for over 1,000 steps", "logit scale x20",
         "positive_output_cost_steps", ">", 1000, "all"),
        ("and the cell loses at least 2 of its 5 edges early", "logit scale x20", "growing.early_min_fraction",
         "<=", 0.6, "all"),
        ("the edges come back: at least 4 of 5 at the end", "logit scale x20", "final_selected", ">=", 4, "all"),
        ("but growing does not hold", "logit scale x20",
         "growing.holds", "==", False, "all"),
        ("no augmentation: the deep edge is selected, width fails", "no augmentation",
         "width.deep_edges_selected", ">=", 1, "all"),
        ("and its convolutions end with a train cost below 0.005 (about 0.01 at the faithful preset)", "no augmentation",
         "late_conv_cost_train_deep", "<", 0.005, "all"),
        ("half the labels replaced: the weights cannot fit (train accuracy below 0.55)",
         "128 images, half the labels replaced", "train_acc", "<", 0.55, "all"),
        ("and width still holds", "128 images, half the labels replaced", "width.holds", "==", True, "all"),
    ],
}
_COMPARE = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
            ">": lambda a, b: a > b, "<": lambda a, b: a < b}


def claims_table(pattern: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Each statement of ``CLAIMS[pattern]`` with the value the runs give and
    whether it holds (a rung without runs fails)."""
    rows = []
    for text, rung, column, op, value, over in CLAIMS[pattern]:
        if column not in runs.columns:
            rows.append({"statement": text, "rung": rung, "measured": f"no column {column}", "holds": False})
            continue
        sub = runs.loc[runs.rung == rung, column]
        if not len(sub):
            rows.append({"statement": text, "rung": rung, "measured": "not run", "holds": False})
            continue
        measured = sub.mean() if over == "mean" else (sub.min() if op in (">=", ">") else sub.max())
        ok = bool(_COMPARE[op](sub.mean(), value)) if over == "mean" else bool(_COMPARE[op](sub, value).all())
        rows.append({"statement": text, "rung": rung, "measured": f"{column} {over}: {measured:.4g}",
                     "holds": ok})
    return pd.DataFrame(rows, columns=["statement", "rung", "measured", "holds"])


@dataclass
class StudyCheck:
    pattern: str
    counts: pd.DataFrame          # per rung: seeds, paper's statistic, tie-aware version
    rung: str | None              # first rung where the paper's statistic holds on >= MIN_SEEDS seeds
    heldout: int | None           # held-out seeds on which it holds at the faithful preset (None: not run)
    heldout_seeds: int

    @property
    def stated(self) -> dict:
        return STATED[self.pattern]

    claims: pd.DataFrame = None   # the chapter's other statements, checked (claims_table)

    @property
    def agrees(self) -> bool:
        """The finding and every other statement of the chapter agree with the runs."""
        return self.stated == {"rung": self.rung, "heldout": self.heldout} and bool(self.claims["holds"].all())

    @property
    def message(self) -> str:
        wrong = list(self.claims.loc[~self.claims["holds"], "statement"])
        return (f"{self.pattern}: the study finds rung={self.rung!r}, held-out seeds holding={self.heldout}; "
                f"the chapter states {self.stated} (nas_core.chapters.checks.STATED); statements the runs do "
                f"not support: {wrong or 'none'} (CLAIMS). Update the text, STATED and CLAIMS together.")

    def sentence(self) -> str:
        where = (f"holds on at least {MIN_SEEDS} of 5 seeds from the rung '{self.rung}' on"
                 if self.rung else f"holds on at least {MIN_SEEDS} of 5 seeds on none of the rungs reached")
        held = ("" if self.heldout is None else
                f" On the held-out seeds 5-9 at the faithful preset it holds on {self.heldout} of "
                f"{self.heldout_seeds}.")
        return f"The paper's statistic, nas_core.patterns.{self.pattern}, {where}.{held}"

    def report(self):
        from IPython.display import display

        print(textwrap.fill(self.sentence(), 78))
        display(self.counts)
        if len(self.claims):
            print("The chapter's other statements, checked on the study's runs:")
            display(self.claims.set_index("statement"))


def study_check(pattern: str, runs: pd.DataFrame) -> StudyCheck:
    """The check of ``pattern``'s chapter from the study's runs table."""
    if pattern not in LADDER:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(LADDER)}")
    rows, first = [], None
    for r in (*LADDER[pattern], *CONTROLS[pattern], HELDOUT[pattern]):
        sub = runs[runs.rung == r]
        if not len(sub):
            rows.append({"rung": r, "seeds": 0, "paper's statistic": "not run", "tie-aware": "not run"})
            continue
        paper, strict = int(sub[f"{pattern}.holds"].sum()), int(sub[f"{pattern}_decisive.holds"].sum())
        rows.append({"rung": r, "seeds": len(sub), "paper's statistic": f"{paper} of {len(sub)}",
                     "tie-aware": f"{strict} of {len(sub)}"})
        if r in LADDER[pattern] and first is None and len(sub) >= 5 and paper >= MIN_SEEDS:
            first = r
    held = runs[runs.rung == HELDOUT[pattern]]
    heldout = int(held[f"{pattern}.holds"].sum()) if len(held) else None
    return StudyCheck(pattern, pd.DataFrame(rows).set_index("rung"), first, heldout, len(held),
                      claims_table(pattern, runs))
