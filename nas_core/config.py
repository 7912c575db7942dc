"""One frozen dataclass holds a run's parameters and validates them before any
compute. Interventions on the cell are data (:class:`Intervention`), not flags."""
from __future__ import annotations

import hashlib
import math
import json
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .ops import NONE, OPS, op_index
from .relax import ALGORITHMS
from .space import CELLS, NETWORKS, Topology

DATASETS = ("digits", "fashion_mnist", "cifar10", "synthetic")


def _edge_map(value) -> tuple:
    """Normalise {edge: value} or [(edge, value)] (or "1=a,2=b") to a sorted tuple."""
    if isinstance(value, str):
        value = [item.split("=", 1) for item in value.split(",") if item.strip()]
    items = value.items() if isinstance(value, dict) else value
    out = []
    for item in items:
        e, v = item
        v = tuple(sorted(v)) if isinstance(v, (list, tuple)) else v
        out.append((int(e), v))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Intervention:
    """Changes to the search space, given as data.

    ``delete_edges``: edges forced to ``none`` (they never compute);
    ``fix``: {edge: op} edges that always use one op (alpha is not learnt there);
    ``exclude``: {edge: [ops]} ops an edge may not use.
    """

    delete_edges: tuple[int, ...] = ()
    fix: tuple[tuple[int, str], ...] = ()
    exclude: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def __post_init__(self):
        normalise = {
            "delete_edges": lambda v: tuple(sorted(int(e) for e in v)),
            "fix": _edge_map,
            "exclude": lambda v: tuple((e, (o,) if isinstance(o, str) else o) for e, o in _edge_map(v)),
        }
        for name, fn in normalise.items():
            try:
                object.__setattr__(self, name, fn(getattr(self, name)))
            except (TypeError, ValueError) as err:
                raise ValueError(f"invalid intervention {name}={getattr(self, name)!r} ({err}); expected e.g. "
                                 f"delete_edges=[0, 2], fix={{1: 'sep_conv_3x3'}}, "
                                 f"exclude={{4: ['skip_connect']}}") from None

    def validate(self, topology: Topology):
        """Check the edges and ops named against ``topology``; returns None, raises
        ValueError naming the bad entry."""
        def check_edge(e, what):
            if not 0 <= e < topology.n_edges:
                raise ValueError(f"{what}: edge {e} out of range; this cell has edges 0..{topology.n_edges - 1}")

        def check_op(op, what, e):
            try:
                op_index(op)
            except ValueError as err:
                raise ValueError(f"{what}: edge {e}: {err}") from None

        for e in self.delete_edges:
            check_edge(e, "delete_edges")
        for what, items in (("fix", self.fix), ("exclude", self.exclude)):
            edges = [e for e, _ in items]
            if len(set(edges)) < len(edges):
                dup = sorted({e for e in edges if edges.count(e) > 1})
                raise ValueError(f"{what}: edge {dup[0]} is listed more than once; give each edge once")
        for e, op in self.fix:
            check_edge(e, "fix")
            check_op(op, "fix", e)
            if e in self.delete_edges:
                raise ValueError(f"edge {e} is both deleted and fixed to {op!r}; choose one")
        for e, ops in self.exclude:
            check_edge(e, "exclude")
            for op in ops:
                check_op(op, "exclude", e)
            if set(ops) >= set(OPS):
                raise ValueError(f"exclude: edge {e} excludes every op; delete the edge instead")
            if dict(self.fix).get(e) in ops:
                raise ValueError(f"edge {e} is fixed to an op it also excludes")

    def allowed(self, n_edges: int) -> torch.Tensor:
        """Boolean mask (edges x ops) of the ops each edge may use."""
        mask = torch.ones(n_edges, len(OPS), dtype=torch.bool)
        for e, ops in self.exclude:
            for op in ops:
                mask[e, op_index(op)] = False
        for e, op in self.fix:
            mask[e] = False
            mask[e, op_index(op)] = True
        for e in self.delete_edges:
            mask[e] = False
            mask[e, NONE] = True
        return mask


def _intervention(value) -> Intervention:
    """An Intervention, or one built from a dict (JSON, YAML, papermill) with its keys checked."""
    if isinstance(value, Intervention):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"invalid intervention={value!r}: give an Intervention or a dict with keys "
                         f"delete_edges, fix, exclude")
    return _built(Intervention, value, "intervention")


def _built(cls, d: dict, what: str):
    """``cls(**d)``, with unknown keys named (and the valid ones listed) rather than a bare TypeError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(d) - known))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; valid fields are {', '.join(sorted(known))}")
    return cls(**d)


def parse_cell(cell: str) -> Topology:
    """'minimal', 'full' or 'STEPS/MULTIPLIER' such as '3/3'."""
    if cell in CELLS:
        return Topology.named(cell)
    try:
        steps, multiplier = (int(x) for x in cell.split("/"))
    except ValueError:
        raise ValueError(f"cell must be one of {', '.join(CELLS)} or 'STEPS/MULTIPLIER', got {cell!r}") from None
    try:
        return Topology(steps, multiplier)
    except ValueError as err:
        raise ValueError(f"invalid cell={cell!r}: {err}") from None


@dataclass(frozen=True)
class SearchConfig:
    """Every parameter of a search run. Field names are the CLI flags and the
    notebooks' papermill parameters."""

    algorithm: str = "dsnas"
    level: str = "single"            # single: alpha on the train split; bi: alpha on held-out
    order: int = 1                   # 2: DARTS' unrolled second-order (bi-level only)
    cell: str = "minimal"            # minimal | full | STEPS/MULTIPLIER
    network: str = "all_normal"      # all_normal | standard
    cells: int = 4
    channels: int = 8
    stem_multiplier: int = 3
    logit_scale: float = 1.0         # multiplies the classifier's initial weights
    batch_size: int = 64
    epochs: int = 30
    seed: int = 0
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    arch_beta1: float = 0.5
    alpha_init: float = 1e-3         # std of alpha's initial values
    alpha_mean: float = 0.0          # mean of alpha's initial values (the authors' DSNAS: 1; p is unchanged)
    arch_grad_clip: float | None = None   # clip alpha's gradient to this norm per cell type (authors' DSNAS: 10)
    temperature: float = 1.0         # SNAS / GDAS
    temperature_min: float | None = None  # anneal exponentially to this by the last epoch
    dsnas_estimator: str = "standard"     # standard | authors
    dsnas_reward_clamp: float | None = None  # clamp each edge's reward (its cost) to [-c, c] (authors: 5)
    intervention: Intervention = field(default_factory=Intervention)
    random_sample: bool = False      # alpha frozen, ops sampled uniformly
    update_alpha: bool = True
    update_weights: bool = True
    probe_batches: int = 0           # per epoch: all ops' costs on N train and N held-out batches
    record_costs: bool = True
    data: str = "digits"
    data_dir: str | None = None
    resolution: int | None = None    # area-downsample the images to this size (e.g. 14 for Fashion-MNIST)
    noise: float = 0.0               # std of additive Gaussian pixel noise (inputs standardised)
    shift: int = 0                   # max random translation in pixels, drawn once at load (a fixed set)
    augment_shift: int = 0           # max random translation in pixels, drawn afresh for every batch
    label_noise: float = 0.0         # fraction of train labels replaced at random
    train_size: int | None = None    # subset of the train split
    eval_size: int | None = None     # held-out accuracy per epoch on this fixed subset (None: the whole split)
    device: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "intervention", _intervention(self.intervention))
        self._coerce()
        self.validate()

    def _coerce(self):
        """Give numeric fields their declared type (10 -> 10.0 for a float), so that
        equal configs have equal keys whatever the source (CLI, YAML, papermill)."""
        for name, hint in typing.get_type_hints(SearchConfig).items():
            value = getattr(self, name)
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            if value is None:
                if type(None) not in typing.get_args(hint):
                    raise ValueError(f"invalid {name}=None: must be given ({getattr(base, '__name__', base)})")
                continue
            if base is bool and not isinstance(value, bool):
                raise ValueError(f"invalid {name}={value!r}: must be True or False")
            if base is str and not isinstance(value, str):
                raise ValueError(f"invalid {name}={value!r}: must be a string")
            if base not in (int, float):
                continue
            if isinstance(value, bool):
                raise ValueError(f"invalid {name}={value!r}: must be a number ({base.__name__}), not a bool")
            try:
                converted = base(value)
            except (TypeError, ValueError):
                raise ValueError(f"invalid {name}={value!r}: must be a number ({base.__name__})") from None
            except OverflowError:
                raise ValueError(f"invalid {name}={value!r}: must be a finite number") from None
            if base is int and converted != value:
                raise ValueError(f"invalid {name}={value!r}: must be a whole number")
            if base is float and not math.isfinite(converted):
                raise ValueError(f"invalid {name}={value!r}: must be a finite number")
            object.__setattr__(self, name, converted)

    def _fail(self, name, message):
        raise ValueError(f"invalid {name}={getattr(self, name)!r}: {message}")

    def validate(self):
        """Check every field (choices, ranges, combinations); returns None, raises
        ValueError naming the field. Run on construction."""
        choices = {
            "algorithm": ALGORITHMS, "level": ("single", "bi"), "network": NETWORKS,
            "dsnas_estimator": ("standard", "authors"), "data": DATASETS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                self._fail(name, f"choose one of {', '.join(allowed)}")
        if self.order not in (1, 2):
            self._fail("order", "choose 1 or 2")
        if self.order == 2 and (self.algorithm != "darts" or self.level != "bi"):
            self._fail("order", "second order is DARTS' unrolled bi-level update: use --algorithm darts --level bi")
        positive = ("cells", "channels", "stem_multiplier", "lr", "temperature")
        for name in positive:
            if not getattr(self, name) > 0:
                self._fail(name, "must be positive")
        if self.epochs < 1:
            self._fail("epochs", "must be at least 1")
        if not 0 <= self.seed < 2**32:
            self._fail("seed", "must be in [0, 2**32)")
        non_negative = ("lr_min", "momentum", "weight_decay", "grad_clip", "arch_lr",
                        "arch_weight_decay", "alpha_init", "probe_batches", "noise", "shift", "logit_scale",
                        "augment_shift")
        for name in non_negative:
            if getattr(self, name) < 0:
                self._fail(name, "must not be negative")
        for name in ("arch_grad_clip", "dsnas_reward_clamp"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                self._fail(name, "must be positive, or None for no clip")
        if not math.isfinite(self.alpha_mean):
            self._fail("alpha_mean", "must be a finite number")
        if self.batch_size < 2:
            self._fail("batch_size", "must be at least 2 (BatchNorm needs 2 samples; smaller batches are skipped)")
        if not 0 <= self.arch_beta1 < 1:
            self._fail("arch_beta1", "must be in [0, 1)")
        if not 0 <= self.label_noise <= 1:
            self._fail("label_noise", "must be a fraction in [0, 1]")
        if self.eval_size is not None and self.eval_size < 2:
            self._fail("eval_size", "must be at least 2 (BatchNorm needs 2 samples), or None for the whole split")
        if self.resolution is not None and self.resolution < 4:
            self._fail("resolution", "must be at least 4 pixels, or None for the dataset's own size")
        if self.train_size is not None and self.train_size < 2:
            self._fail("train_size", "must be at least 2 (one batch for BatchNorm), or None for the whole split")
        if self.temperature_min is not None and not 0 < self.temperature_min <= self.temperature:
            self._fail("temperature_min", "must be in (0, temperature]")
        if self.device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:[0-9]+)?", self.device):
            self._fail("device", "choose auto, cpu or cuda[:N]")
        if self.network == "standard" and self.cells < 3:
            self._fail("cells", "a standard network needs at least 3 cells (reductions at 1/3 and 2/3)")
        try:
            self.intervention.validate(self.topology)
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid intervention: {err}") from None

    @property
    def topology(self) -> Topology:
        """The cell's :class:`~nas_core.space.Topology` (nodes and edges), from ``cell``."""
        return parse_cell(self.cell)

    @property
    def alpha_updated_on(self) -> str | None:
        """Which data alpha's gradient comes from: ``"train"`` (single-level),
        ``"heldout"`` (bi-level), or None when alpha does not move (random
        sampling or ``update_alpha=False``)."""
        if self.random_sample or not self.update_alpha:
            return None
        return "heldout" if self.level == "bi" else "train"

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict of its fields (JSON-ready; ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        """The config built (and validated) from a dict of fields, as :meth:`to_dict`
        writes it; unknown fields raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a mapping of field names to values, got {type(d).__name__}")
        return _built(cls, d, "config")

    def replace(self, **changes) -> "SearchConfig":
        """A new, validated config with ``changes`` applied (this one when none)."""
        return self.from_dict({**self.to_dict(), **changes}) if changes else self

    def key(self) -> str:
        """A short hash of the config's result-relevant fields (device excluded:
        runs are identical on CPU; a cache hit from GPU is accepted)."""
        d = self.to_dict()
        d.pop("device")
        for name in KEY_OMITTED_AT_DEFAULT:  # fields added later: runs from before them keep their keys
            if d[name] == _DEFAULTS[name]:
                d.pop(name)
        d["code"] = CODE_VERSION
        return hashlib.sha1(json.dumps(d, sort_keys=True, allow_nan=False).encode()).hexdigest()[:12]

    def resolved_device(self) -> torch.device:
        """The device to run on; ValueError if the one asked for is not there."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"invalid device={self.device!r}: cuda requested but torch.cuda.is_available() is "
                                 f"False; use --device cpu or auto")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ValueError(f"invalid device={self.device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                 f"device(s); use --device cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or auto")
        return device


# Fields added after runs were cached: left out of the key at their default, so
# that adding them kept every earlier run's key (a new field goes here too).
KEY_OMITTED_AT_DEFAULT = ("eval_size", "resolution")
# The version of the search's maths, part of every key: a change that alters what
# a config computes bumps it, so no cached run of older code is taken for a new one.
# 2: the authors' code matched difference by difference (the fidelity page).
CODE_VERSION = 2
_DEFAULTS = {f.name: f.default for f in fields(SearchConfig) if f.name in KEY_OMITTED_AT_DEFAULT}
