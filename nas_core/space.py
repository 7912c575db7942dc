"""Cell topology, deriving a cell from alpha, and the width and depth of a cell.

A cell has two input nodes (states 0 and 1) and ``steps`` intermediate nodes
(states 2 .. steps+1). Intermediate node j sums one mixed edge from every
earlier state; edges are numbered node by node, in order of their source, as
in DARTS. The cell output concatenates the last ``multiplier`` nodes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .ops import NONE, OPS

CELLS = {"minimal": (2, 2), "full": (4, 4)}
#: The networks :func:`cell_types` knows.
NETWORKS = ("all_normal", "standard")


@dataclass(frozen=True)
class Topology:
    steps: int
    multiplier: int

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"a cell needs at least one intermediate node, got steps={self.steps}")
        if not 1 <= self.multiplier <= self.steps:
            raise ValueError(f"multiplier must be in 1..steps={self.steps}, got {self.multiplier}")

    @classmethod
    def named(cls, name: str) -> "Topology":
        if name not in CELLS:
            raise ValueError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}")
        return cls(*CELLS[name])

    @cached_property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(source state, target state) per edge, in DARTS order."""
        return tuple((i, j + 2) for j in range(self.steps) for i in range(j + 2))

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @cached_property
    def input_edges(self) -> tuple[int, ...]:
        """Edges whose source is one of the two cell inputs (the 'wide' edges)."""
        return tuple(e for e, (i, _) in enumerate(self.edges) if i < 2)

    @cached_property
    def deep_edges(self) -> tuple[int, ...]:
        """Edges between intermediate nodes: the only way a cell gets deeper."""
        return tuple(e for e, (i, _) in enumerate(self.edges) if i >= 2)

    def edge_name(self, e: int) -> str:
        i, j = self.edges[e]
        src = f"x{i}" if i < 2 else f"n{i - 2}"
        return f"e{e}: {src}->n{j - 2}"

    @property
    def output_nodes(self) -> tuple[int, ...]:
        return tuple(range(2 + self.steps - self.multiplier, 2 + self.steps))


def cell_types(network: str, n_cells: int) -> list[str]:
    """The type of each cell of a network, in order: ``all_normal`` (the
    authors' analysis network) has only normal cells; ``standard`` (DARTS') has
    reduction cells at 1/3 and 2/3 of the depth. The one place this rule lives."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    reductions = {n_cells // 3, 2 * n_cells // 3} if network == "standard" else set()
    return ["reduce" if i in reductions else "normal" for i in range(n_cells)]


def derive(probs, allowed=None) -> list[str]:
    """Argmax op per edge with ``none`` counted and every edge kept (the paper's view).

    ``allowed`` is an optional boolean mask (edges x ops) of ops the search may use.
    """
    p = np.asarray(probs, dtype=float)
    if allowed is not None:
        p = np.where(np.asarray(allowed, dtype=bool), p, -np.inf)
    return [OPS[k] for k in p.argmax(axis=1)]


def derive_darts(probs, topology: Topology, allowed=None, k: int = 2) -> list[str]:
    """DARTS' derivation: per node keep the top-``k`` incoming edges ranked by their
    best non-``none`` probability, each with that op; other edges get ``none``."""
    p = np.asarray(probs, dtype=float).copy()
    if allowed is not None:
        p = np.where(np.asarray(allowed, dtype=bool), p, -np.inf)
    p[:, NONE] = -np.inf
    out = ["none"] * topology.n_edges
    for j in range(2, 2 + topology.steps):
        incoming = [e for e, (_, t) in enumerate(topology.edges) if t == j]
        incoming = [e for e in incoming if np.isfinite(p[e].max())]
        for e in sorted(incoming, key=lambda e: -p[e].max())[:k]:
            out[e] = OPS[int(p[e].argmax())]
    return out


def selected_edges(derived: list[str]) -> list[int]:
    return [e for e, op in enumerate(derived) if op != "none"]


def width_depth(derived: list[str], topology: Topology) -> tuple[int, int]:
    """Width and depth of a derived cell, after Shu et al. (ICLR 2020).

    Convention (ours, stated exactly): only edges whose op is not ``none`` exist.
    A node is *connected* if a path of existing edges reaches it from an input.
    **Depth** is the number of connections on the longest path from an input to
    the cell output, counting the final connection of an output node to the
    concatenation (so a cell whose nodes all read the inputs directly has depth 2;
    an empty cell has depth 0). **Width** is the summed width of the intermediate
    nodes that an existing edge joins directly to an input, in units of the
    node width C (all intermediate nodes have C channels).
    """
    exists = [op != "none" for op in derived]
    longest = {0: 0, 1: 0}  # edges from an input to each connected state
    for j in range(2, 2 + topology.steps):
        paths = [longest[i] + 1 for e, (i, t) in enumerate(topology.edges) if t == j and exists[e] and i in longest]
        if paths:
            longest[j] = max(paths)
    ends = [longest[j] + 1 for j in topology.output_nodes if j in longest]
    depth = max(ends, default=0)
    width = len({t for e, (i, t) in enumerate(topology.edges) if i < 2 and exists[e]})
    return width, depth


def random_width_depth(n_selected: int, topology: Topology, samples: int = 2000, seed: int = 0):
    """Mean width and depth of random cells with ``n_selected`` existing edges:
    the baseline against which a derived cell's wiring is compared."""
    rng = random.Random(seed)
    ws, ds = [], []
    for _ in range(samples):
        chosen = set(rng.sample(range(topology.n_edges), n_selected))
        w, d = width_depth(["x" if e in chosen else "none" for e in range(topology.n_edges)], topology)
        ws.append(w)
        ds.append(d)
    return float(np.mean(ws)), float(np.mean(ds))
