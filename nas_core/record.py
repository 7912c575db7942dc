"""The epoch record: what :meth:`~nas_core.search.Search.run_epoch` returns and
``history.jsonl`` stores, one JSON object per epoch, read here and nowhere else.

Per cell type (``normal``; ``reduce`` in the standard network), a record holds
``alpha``, ``probs`` (p = softmax(alpha), edges x ops), ``p_none`` (edges),
``derived`` (the argmax op per edge, ``none`` counted), ``derived_darts``,
``selected_edges``, ``n_selected``, ``width`` and ``depth``. Per split it holds
``cost[split]`` = {"mean", "var", "count"}, nested lists (cells in network
order, edges, ops) with ``null`` where an op was never computed in the epoch,
and ``output_cost[split]`` (output cost, loss, entropy and accuracy, overall
and for correctly and wrongly classified samples). Splits: ``train``,
``heldout`` (bi-level only) and the probes ``probe_train``, ``probe_heldout``.

The cells of one type share one alpha, so "the cost alpha sees" is the cost
summed over those cells (:func:`summed_costs`); :func:`edge_cost` reduces it
over the ops in one of :data:`EDGE_COSTS` ways. Cell types come from
:func:`nas_core.space.cell_types`. A run's records, with its config, are a
:class:`History`.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from .config import SearchConfig
from .ops import NONE, OPS, PARAMETRIC
from .space import cell_types

#: The cost splits a record may hold, in the order figures list them.
SPLITS = ("train", "heldout", "probe_train", "probe_heldout")

#: How :func:`edge_cost` reduces an edge's op costs to one number.
EDGE_COSTS = {
    "parametric": "mean cost of the parametric ops",   # the four convolutions
    "ops": "mean cost of the ops other than none",
    "weighted": "p-weighted cost Σₖ pₖ·Cₖ",             # over the computed ops, none's C = 0
}

PARAMETRIC_INDEX = [OPS.index(o) for o in PARAMETRIC]


@contextlib.contextmanager
def quiet_nan():
    """No RuntimeWarning for means over all-NaN slices (ops never computed)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def epoch(record: dict) -> int:
    """The record's epoch: 1 for the first epoch's (0 for :attr:`History.initial`)."""
    return int(record["epoch"])


def types(record: dict) -> list[str]:
    """The cell types the record holds (``normal``, and ``reduce`` in the standard
    network), in the order the search lists them."""
    return list(record["derived"])


#: The splits whose accuracy and loss every record holds (:func:`accuracy`, :func:`loss`).
TOTALS = ("train", "heldout")


def _total(record: dict, split: str, what: str) -> float:
    if split not in TOTALS:
        raise ValueError(f"split must be one of {', '.join(TOTALS)}, got {split!r}")
    return record[f"{split}_{what}"]


def accuracy(record: dict, split: str = "train") -> float:
    """The epoch's accuracy on ``split`` (``train``: over the epoch's training
    steps; ``heldout``: the held-out data at the end of the epoch)."""
    return _total(record, split, "acc")


def loss(record: dict, split: str = "train") -> float:
    """The epoch's mean loss on ``split`` (as :func:`accuracy`)."""
    return _total(record, split, "loss")


def seconds(record: dict) -> float:
    """The epoch's wall-clock time."""
    return record["seconds"]


def cell_indices(config, cell_type: str = "normal") -> list[int]:
    """Network positions of the cells of ``cell_type`` in a run of ``config``
    (the cells that share one alpha)."""
    idx = [i for i, t in enumerate(cell_types(config.network, config.cells)) if t == cell_type]
    if not idx:
        raise ValueError(f"a {config.network} network of {config.cells} cells has no {cell_type!r} cells")
    return idx


def _stat(record: dict, split: str, key: str, config, cell_type: str, dtype):
    stats = (record.get("cost") or {}).get(split)
    if not stats:
        return None
    a = np.array(stats[key], dtype=dtype)  # cells, edges, ops; None -> NaN
    return a[cell_indices(config, cell_type)]


def costs(record: dict, split: str, config, cell_type: str = "normal") -> np.ndarray | None:
    """Mean cost per (cell of ``cell_type``, edge, op) over the epoch's steps on
    ``split``, float, NaN where the op was never computed; None if the record
    has no costs on ``split``. ``config`` is the run's (it says which cells are
    of which type)."""
    return _stat(record, split, "mean", config, cell_type, float)


def counts(record: dict, split: str, config, cell_type: str = "normal") -> np.ndarray | None:
    """How many steps computed each (cell of ``cell_type``, edge, op) on ``split``."""
    return _stat(record, split, "count", config, cell_type, np.int64)


def summed_costs(record: dict, split: str, config, cell_type: str = "normal",
                 cell: int | None = None) -> np.ndarray | None:
    """Edges x ops: the cost alpha of ``cell_type`` sees, the mean cost summed
    over the cells of that type (or of one of them, ``cell``: its index among
    them); NaN where no such cell computed the op."""
    mean = costs(record, split, config, cell_type)
    if mean is None:
        return None
    if cell is not None:
        mean = mean[[cell]]
    return np.where(np.isnan(mean).all(0), np.nan, np.nansum(mean, 0))


def edge_cost(matrix, how: str = "parametric", probs=None) -> np.ndarray:
    """The cost of each edge from a (..., edges, ops) cost array, one of
    :data:`EDGE_COSTS`: ``parametric``, ``ops``, or ``weighted`` (needs
    ``probs``, p per edge and op; the quantity whose sign decides whether
    none's logit grows). Ops never computed (NaN) are left out; an edge with
    none of the ops computed is NaN."""
    m = np.asarray(matrix, dtype=float)
    with quiet_nan():
        if how == "parametric":
            return np.nanmean(m[..., PARAMETRIC_INDEX], -1)
        if how == "ops":
            return np.nanmean(np.delete(m, NONE, axis=-1), -1)
        if how == "weighted":
            if probs is None:
                raise ValueError("how='weighted' needs probs")
            p = np.broadcast_to(np.asarray(probs, dtype=float), m.shape)
            known = ~np.isnan(m)
            return np.where(known, p * m, 0).sum(-1) / np.where(known, p, 0).sum(-1)
    raise ValueError(f"how must be one of {', '.join(EDGE_COSTS)}, got {how!r}")


def edge_costs(record: dict, split: str, config, how: str = "parametric", cell_type: str = "normal",
               cell: int | None = None) -> np.ndarray | None:
    """Per edge: :func:`edge_cost` of :func:`summed_costs` (p from the same
    record for ``weighted``); None if the record has no costs on ``split``."""
    m = summed_costs(record, split, config, cell_type, cell)
    return None if m is None else edge_cost(m, how, probs(record, cell_type))


def probs(record: dict, cell_type: str = "normal") -> np.ndarray:
    """p = softmax(alpha) at the end of the epoch, edges x ops."""
    return np.asarray(record["probs"][cell_type], dtype=float)


def alpha(record: dict, cell_type: str = "normal") -> np.ndarray:
    """alpha at the end of the epoch, edges x ops."""
    return np.asarray(record["alpha"][cell_type], dtype=float)


def p_none(record: dict, cell_type: str = "normal") -> np.ndarray:
    """p(none) per edge."""
    return np.asarray(record["p_none"][cell_type], dtype=float)


#: The record's per-cell-type wiring of the derived cell (``none`` counted).
WIRING = ("n_selected", "selected_edges", "width", "depth")


def wiring(record: dict, key: str, cell_type: str = "normal"):
    """One of :data:`WIRING` for ``cell_type``: how many edges are selected, which,
    and the cell's width and depth (:func:`nas_core.space.width_depth`)."""
    if key not in WIRING:
        raise ValueError(f"key must be one of {', '.join(WIRING)}, got {key!r}")
    return record[key][cell_type]


def derived(record: dict, cell_type: str = "normal") -> list[str]:
    """The derived cell: each edge's argmax op, ``none`` counted."""
    return list(record["derived"][cell_type])


def best_other(record: dict, cell_type: str = "normal") -> np.ndarray:
    """Per edge, the index of its most probable op other than ``none``."""
    p = probs(record, cell_type)
    return np.where(np.arange(p.shape[-1]) == NONE, -np.inf, p).argmax(-1)


def outputs(record: dict, split: str) -> dict | None:
    """The output-cost summary of ``split`` (keys ``output_cost``, ``loss``,
    ``accuracy``, and ``correct`` / ``wrong`` with ``n``, ``output_cost``,
    ``loss``, ``entropy``); None if not recorded."""
    return (record.get("output_cost") or {}).get(split) or None


def output_cost(record: dict, split: str = "train") -> float:
    """The mean output cost (loss − entropy) of the epoch's samples on ``split``."""
    return float(record["output_cost"][split]["output_cost"])


class History:
    """A run's config and its per-epoch records (:func:`nas_core.runs.load` and
    :func:`nas_core.runs.run` return one; ``path`` is its run directory)."""

    def __init__(self, config: SearchConfig, records: list[dict], path: Path | None = None):
        self.config, self.records, self.path = config, records, path

    def __len__(self):
        return len(self.records)

    @property
    def finished(self) -> bool:
        """True when the run has all ``config.epochs`` records."""
        return len(self.records) >= self.config.epochs

    @property
    def initial(self) -> dict:
        """The record of epoch 0: the architecture before any step (the authors log
        the derived cell at the start of every epoch, epoch 0 included); a function
        of the config, so every run has it (computed by :mod:`nas_core.search`,
        which writes records: imported on first use, as reading a run needs no
        search)."""
        from .search import initial_record

        return initial_record(self.config)

    @property
    def last(self) -> dict:
        """The last epoch's record."""
        return self.records[-1]

    def series(self, key: str, cell_type: str | None = None) -> list:
        """One field per epoch, e.g. ``series('n_selected', 'normal')``."""
        return [r[key][cell_type] if cell_type else r[key] for r in self.records]

    def __repr__(self):
        return f"History({self.config.algorithm}, {len(self)}/{self.config.epochs} epochs, {self.path})"
