"""What each pattern chapter's text states about the study, checked against the
study's executed runs (``study/runs.csv``).

A chapter's check computes, per rung of the ladder, on how many seeds the
paper's statistic and its tie-aware version hold, finds the first rung where
the paper's statistic holds on at least 4 of 5 seeds (``MIN_SEEDS``), and
asserts that this is what the chapter's text says (``STATED``). When a rerun
of the study changes a finding, the check fails until the text is updated: the
text is never more optimistic than the runs.

The numbers of each chapter's summary are computed from the runs where they are
stated (:mod:`nas_core.chapters.findings`); the chapters' own runs are compared
with the study's rows of the same configs (:mod:`nas_core.chapters.reproduction`);
at the paper's scale :func:`pattern_check` applies a pattern's statistic to them.
"""
from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from IPython.display import display

from .. import patterns

MIN_SEEDS = 4  # of 5: "a pattern holds at a rung"

# The rungs of the ladder that bear on each pattern, bottom to top (digits, then
# Fashion-MNIST: a rung counts once its five seeds have run), and the rung run on
# the held-out seeds 5-9.
LADDER = {
    "growing": ("faithful DSNAS", "DSNAS 20k steps", "Fashion-MNIST DSNAS", "Fashion-MNIST DSNAS 28x28"),
    "width": ("faithful DSNAS", "DSNAS 20k steps", "Fashion-MNIST DSNAS", "Fashion-MNIST DSNAS 28x28"),
    "bilevel": ("faithful bi-level DARTS", "bi-level DARTS, 256 clean images", "bi-level DARTS 13k steps",
                "Fashion-MNIST bi-level DARTS", "Fashion-MNIST bi-level DARTS, 1,000 clean images"),
}
CONTROLS = {"growing": (), "width": (), "bilevel": ("faithful single-level control",
                                                "faithful single-level control, held-out seeds",
                                                "single-level control 13k steps",
                                                "Fashion-MNIST single-level control",
                                                "Fashion-MNIST single-level control, 1,000 images")}
HELDOUT = {"growing": "faithful DSNAS, held-out seeds", "width": "faithful DSNAS, held-out seeds",
           "bilevel": "faithful bi-level DARTS, held-out seeds"}

# What the chapters' text says the study found: the first rung where the paper's
# statistic holds on >= MIN_SEEDS of 5 seeds (None: on none of the rungs reached),
# and the count of held-out seeds on which it holds at the faithful preset.
STATED: dict[str, dict] = {
    "growing": {"rung": None, "heldout": 0},
    "width": {"rung": "faithful DSNAS", "heldout": 5},
    "bilevel": {"rung": None, "heldout": 0},
}


# The chapters' other statements about the study, each checked on every seed of
# a rung (``all``) or on the seeds' mean (``mean``): {pattern: [(statement, rung,
# column, comparison, value, over)]}, read from claims.yaml (data, next to this file).
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")


def load_claims(path: Path = CLAIMS_FILE) -> dict[str, list[tuple]]:
    """The statements of ``claims.yaml``: per pattern, (statement, rung, column,
    comparison, value, over) tuples; a check that is not 'column comparison
    value' with a known comparison raises ValueError."""
    claims = {}
    for pattern, items in yaml.safe_load(path.read_text(encoding="utf-8")).items():
        rows = []
        for item in items:
            parts = item["check"].split()
            if len(parts) != 3 or parts[1] not in _COMPARE:
                raise ValueError(f"{path.name}, {pattern}: check {item['check']!r} is not 'column comparison value' "
                                 f"with a comparison in {', '.join(_COMPARE)}")
            column, op, value = parts
            rows.append((item["claim"], item["rung"], column, op, yaml.safe_load(value), item.get("over", "all")))
        claims[pattern] = rows
    return claims


_COMPARE = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
            ">": lambda a, b: a > b, "<": lambda a, b: a < b}
CLAIMS: dict[str, list[tuple]] = load_claims()


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


def _quoted(rungs) -> str:
    return ", ".join(f"'{r}'" for r in rungs)


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
    holding: tuple = ()           # the ladder's rungs (5 seeds run) where it holds on >= MIN_SEEDS
    not_holding: tuple = ()       # and those where it does not

    @property
    def agrees(self) -> bool:
        """The finding and every other statement of the chapter agree with the runs."""
        return self.stated == {"rung": self.rung, "heldout": self.heldout} and bool(self.claims["holds"].all())

    @property
    def message(self) -> str:
        wrong = list(self.claims.loc[~self.claims["holds"], "statement"])
        return (f"{self.pattern}: the study finds rung={self.rung!r}, held-out seeds holding={self.heldout}; "
                f"the chapter states {self.stated} (nas_core.chapters.checks.STATED); statements the runs do "
                f"not support: {wrong or 'none'} (CLAIMS, from claims.yaml). Update the text, STATED and "
                f"claims.yaml together.")

    def sentence(self) -> str:
        where = (f"holds on at least {MIN_SEEDS} of 5 seeds at {_quoted(self.holding)}"
                 + (f", and not at {_quoted(self.not_holding)}" if self.not_holding else "")
                 if self.rung else f"holds on at least {MIN_SEEDS} of 5 seeds on none of the rungs reached "
                                   f"({_quoted(self.not_holding)})")
        held = ("" if self.heldout is None else
                f" On the held-out seeds 5-9 at the faithful preset it holds on {self.heldout} of "
                f"{self.heldout_seeds}.")
        return f"The paper's statistic, nas_core.patterns.{self.pattern}, {where}.{held}"

    def report(self):
        print(textwrap.fill(self.sentence(), 78))
        display(self.counts)
        if len(self.claims):
            print("The chapter's other statements, checked on the study's runs:")
            display(self.claims.set_index("statement"))


def study_check(pattern: str, runs: pd.DataFrame) -> StudyCheck:
    """The check of ``pattern``'s chapter from the study's runs table."""
    if pattern not in LADDER:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(LADDER)}")
    rows, first, holding, not_holding = [], None, [], []
    for r in (*LADDER[pattern], *CONTROLS[pattern], HELDOUT[pattern]):
        sub = runs[runs.rung == r]
        if not len(sub):
            rows.append({"rung": r, "seeds": 0, "paper's statistic": "not run", "tie-aware": "not run"})
            continue
        paper, strict = int(sub[f"{pattern}.holds"].sum()), int(sub[f"{pattern}_decisive.holds"].sum())
        rows.append({"rung": r, "seeds": len(sub), "paper's statistic": f"{paper} of {len(sub)}",
                     "tie-aware": f"{strict} of {len(sub)}"})
        if r in LADDER[pattern] and len(sub) >= 5:
            (holding if paper >= MIN_SEEDS else not_holding).append(r)
            if first is None and paper >= MIN_SEEDS:
                first = r
    held = runs[runs.rung == HELDOUT[pattern]]
    heldout = int(held[f"{pattern}.holds"].sum()) if len(held) else None
    return StudyCheck(pattern, pd.DataFrame(rows).set_index("rung"), first, heldout, len(held),
                      claims_table(pattern, runs), tuple(holding), tuple(not_holding))


# ---------------------------------------------------------------------------
# The pattern notebooks' check at the paper's scale: one statistic per run.
# ---------------------------------------------------------------------------

@dataclass
class PatternCheck:
    """The statistic of each run (``table``, one row per seed, column ``holds``)
    and how many seeds must hold. ``paper`` is the paper's own statistic for
    the same runs when a weaker one is asserted (reported, not asserted)."""

    pattern: str        # the notebook's pattern: growing, width, bilevel
    statistic: str      # the nas_core.patterns function applied to each run
    profile: str
    min_fraction: float
    table: object       # pandas DataFrame
    paper: object = None

    @property
    def holding(self) -> int:
        return int(self.table["holds"].sum())

    @property
    def needed(self) -> int:
        return max(1, math.ceil(self.min_fraction * len(self.table) - 1e-9))

    @property
    def passed(self) -> bool:
        return self.holding >= self.needed

    @property
    def message(self) -> str:
        return (f"{self.pattern}: patterns.{self.statistic} holds on {self.holding} of {len(self.table)} seeds; "
                f"expected at least {self.needed} (min_fraction {self.min_fraction} at profile {self.profile!r})")

    def report(self):
        """Print what is asserted and the per-seed tables."""
        print(textwrap.fill(f"Asserted: nas_core.patterns.{self.statistic} holds on at least {self.needed} of "
                            f"{len(self.table)} seeds (profile {self.profile!r}). It holds on {self.holding}.", 78))
        print("\n" + inspect.getdoc(getattr(patterns, self.statistic)) + "\n")
        display(_for_reading(self.table))
        if self.paper is not None:
            n = int(self.paper["holds"].sum())
            print(textwrap.fill(f"Reported, not asserted at this profile: the paper's statistic, "
                                f"nas_core.patterns.{self.pattern}, holds on {n} of {len(self.paper)} seeds.", 78))
            display(_for_reading(self.paper))


def _for_reading(table):
    """A statistic's per-seed table as shown in the book: indexed by seed, with
    headers that wrap (spaces for underscores) so that it fits the text column."""
    return table.set_index("seed").rename(columns=lambda name: name.replace("_", " "))


def _statistic_table(stat: str, runs, controls) -> pd.DataFrame:
    """The statistic ``stat`` of every run (paired with its control when it compares two runs), one row per seed."""
    fn = getattr(patterns, stat, None)
    if fn is None:
        raise ValueError(f"nas_core.patterns has no statistic {stat!r}")
    paired = sum(p.default is inspect.Parameter.empty for p in inspect.signature(fn).parameters.values()) == 2
    rows = []
    if paired:
        if controls is None or len(controls) != len(runs):
            raise ValueError(f"patterns.{stat} compares each run with its control: pass controls, one per run")
        for h, c in zip(runs, controls):
            if h.config.seed != c.config.seed:
                raise ValueError(f"run and control differ in seed ({h.config.seed} vs {c.config.seed})")
            rows.append({"seed": h.config.seed, **fn(h, c)})
    else:
        rows = [{"seed": h.config.seed, **fn(h)} for h in runs]
    table = pd.DataFrame(rows).round(3)
    return table[[c for c in table.columns if c != "holds"] + ["holds"]]


def pattern_check(pattern: str, runs, profile: str = "cpu", controls=None, statistic: str | None = None,
                  min_fraction: float | None = None) -> PatternCheck:
    """Apply the pattern's statistic (or ``statistic``) to every run, paired with
    the control run of the same seed when the statistic compares two runs
    (``pruning``); it must hold on ``min_fraction`` of them (default MIN_SEEDS of 5)."""
    stat = statistic or pattern
    frac = MIN_SEEDS / 5 if min_fraction is None else min_fraction
    table = _statistic_table(stat, runs, controls)
    paper = _statistic_table(pattern, runs, None) if stat != pattern and pattern in patterns.PATTERNS else None
    return PatternCheck(pattern, stat, profile, frac, table, paper)
