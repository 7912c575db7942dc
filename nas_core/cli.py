"""Command line: ``python -m nas_core {search,show,stats,sweep,calibrate}``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

import numpy as np
import torch

from . import __version__, presets, record
from .config import Intervention, SearchConfig
from .faults import DivergenceError
from .ops import SHORT
from .runs import RunError, load, run, sweep
from .runs.io import finite_or_none
from .patterns import statistics

_SPECIAL = {"intervention"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(p: argparse.ArgumentParser):
    """One flag per config field, defaulting to None so that only the flags
    given override a preset or the defaults."""
    hints = typing.get_type_hints(SearchConfig)
    for f in dataclasses.fields(SearchConfig):
        if f.name in _SPECIAL:
            continue
        hint = hints[f.name]
        if hint is bool:
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None)
            continue
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        p.add_argument(_flag(f.name), type=base, default=None, metavar=base.__name__.upper(),
                       help=f"default: {f.default if f.default is not dataclasses.MISSING else '...'}")
    p.add_argument("--delete-edges", default=None, metavar="E,E", help="edges forced to none, e.g. 0,2")
    p.add_argument("--fix-op", action="append", default=None, metavar="E=OP",
                   help="fix an op on an edge, e.g. 1=sep_conv_3x3")
    p.add_argument("--exclude-op", action="append", default=None, metavar="E=OP[+OP]",
                   help="exclude ops on an edge, e.g. 4=skip_connect+max_pool_3x3")


def config_from_args(args) -> SearchConfig:
    fields = {f.name for f in dataclasses.fields(SearchConfig)} - _SPECIAL
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    profile = getattr(args, "profile", "cpu") or "cpu"
    if profile not in presets.PROFILES:
        raise SystemExit(f"unknown --profile {profile!r}; choose one of {', '.join(presets.PROFILES)}")
    if args.preset and args.preset not in presets.PROFILES[profile]:
        raise SystemExit(f"--preset {args.preset} has no {profile!r} profile; choose one of "
                         f"{', '.join(presets.PROFILES[profile])}")
    base = presets.PROFILES[profile][args.preset] if args.preset else {}
    d = {**base, **given}
    if args.delete_edges or args.fix_op or args.exclude_op:
        try:
            d["intervention"] = Intervention(
                delete_edges=[int(e) for e in args.delete_edges.split(",")] if args.delete_edges else (),
                fix=[tuple(x.split("=", 1)) for x in args.fix_op or []],
                exclude=[(e, ops.split("+")) for e, ops in (x.split("=", 1) for x in args.exclude_op or [])],
            )
        except ValueError as err:
            raise ValueError(f"bad intervention flag: {err} (expected --delete-edges 0,2 --fix-op 1=OP "
                             f"--exclude-op 4=OP[+OP])") from None
    return SearchConfig.from_dict(d)


def _abbrev(op: str) -> str:
    """The op's short name (:data:`nas_core.ops.SHORT`), ``-`` for ``none``: a gap
    reads faster than a word in the table."""
    return "-" if op == "none" else SHORT[op]


def show(path, out=None):
    """A readable summary of a run: derived cell per epoch, selected edges, costs;
    written to ``out`` (default: the ``sys.stdout`` of the call, not of the import)."""
    out = out or sys.stdout
    h = load(path)
    c = h.config
    top = c.topology
    print(f"{path}: {c.algorithm} level={c.level} order={c.order} cell={c.cell} cells={c.cells} "
          f"C={c.channels} data={c.data} seed={c.seed}; {len(h)}/{c.epochs} epochs", file=out)
    print("edges: " + ", ".join(top.edge_name(e) for e in range(top.n_edges)), file=out)
    for t in (record.types(h.records[0]) if h.records else []):
        print(f"\n[{t} cells]  derived cell with `none` counted ('-' = none); train cost per edge "
              f"({record.EDGE_COSTS['ops']}, summed over the {t} cells)", file=out)
        print(f"{'epoch':>5} {'derived':<{7 * top.n_edges}} {'#sel':>4} {'p(none)':>7} {'train':>6} {'held':>6}  cost",
              file=out)
        for r in h.records:
            derived = " ".join(f"{_abbrev(op):<6}" for op in record.derived(r, t))
            per_edge = record.edge_costs(r, "train", c, "ops", t)
            costs = "" if per_edge is None else " ".join(f"{v:+.3f}" for v in per_edge)
            print(f"{record.epoch(r):>5} {derived} {record.wiring(r, 'n_selected', t):>4} "
                  f"{np.mean(record.p_none(r, t)):>7.3f} "
                  f"{record.accuracy(r, 'train'):>6.3f} {record.accuracy(r, 'heldout'):>6.3f}  {costs}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nas_core", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nas_core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("search", help="run (or resume) one search")
    ps.add_argument("--preset", choices=sorted(presets.PRESETS), default=None,
                    help="calibrated CPU defaults; other flags override them")
    ps.add_argument("--profile", choices=sorted(presets.PROFILES), default="cpu",
                    help="the preset's profile: cpu (digits), fashion (Fashion-MNIST 14x14), paper (CIFAR-10)")
    ps.add_argument("--out", default=None, help="run directory (default: the run cache, keyed by the config)")
    ps.add_argument("--overwrite", action="store_true", help="replace a run directory holding another config")
    ps.add_argument("--threads", type=int, default=None, metavar="N",
                    help="torch threads (default on the CPU: 1; runs side by side each get a core)")
    ps.add_argument("--restart", action="store_true",
                    help="discard the checkpoint and history of this config's run directory and start over")
    ps.add_argument("--no-progress", action="store_true")
    _add_config_flags(ps)
    sh = sub.add_parser("show", help="summarise a run directory")
    sh.add_argument("run_dir")
    st = sub.add_parser("stats", help="print a run's pattern statistics as JSON")
    st.add_argument("run_dir")
    st.add_argument("--cell-type", default="normal")
    sw = sub.add_parser("sweep", help="run a grid of trials (see nas_core.runs.sweep)")
    sw.add_argument("target", help="a notebook path, or 'search'")
    sw.add_argument("--grid", required=True)
    sw.add_argument("--seeds", default="0")
    sw.add_argument("--out", required=True)
    sw.add_argument("--workers", type=int, default=1)
    sw.add_argument("--backend", choices=("local", "ray"), default="local")
    sw.add_argument("--runs-dir", default=None,
                    help="search trials run in this run cache (e.g. runs, shared with the book) instead of OUT/trials")
    ca = sub.add_parser("calibrate", help="rerun the calibration study (see nas_core.chapters.calibration)")
    ca.add_argument("--specs", default="sweeps", help="directory of the studies' sweep specs")
    ca.add_argument("--table", default="sweeps/calibration.csv")
    ca.add_argument("--workers", type=int, default=2)
    sy = sub.add_parser("study", help="run the faithful-replication study (see nas_core.chapters.study)")
    sy.add_argument("--workers", type=int, default=2)
    sy.add_argument("--out", default="study", help="directory of the study's tables")
    sy.add_argument("--rung", action="append", help="run only this rung (repeatable)")
    sy.add_argument("--tables-only", action="store_true", help="write the tables of what has finished; run nothing")
    rp = sub.add_parser("reproduction", help="remake the chapters' runs here as this machine's reference rows "
                                             "(see nas_core.chapters.reproduction)")
    rp.add_argument("--workers", type=int, default=2)
    rp.add_argument("--out", default="study", help="directory of the study's tables")
    args = parser.parse_args(argv)
    try:
        if args.command == "search":
            config = config_from_args(args)
            if args.threads is not None or config.resolved_device().type == "cpu":
                torch.set_num_threads(args.threads or 1)
            h = run(config, args.out, overwrite=args.overwrite, restart=args.restart,
                    progress=not args.no_progress)
            final = (f"; final derived cell {({t: record.derived(h.last, t) for t in record.types(h.last)})}"
                     if h.records else "")
            print(f"{h.path}: {len(h)} epochs{final}")
        elif args.command == "show":
            show(args.run_dir)
        elif args.command == "stats":
            print(json.dumps(finite_or_none(statistics(load(args.run_dir), args.cell_type)), indent=1, allow_nan=False))
        elif args.command == "sweep":
            return sweep.main(args)
        elif args.command == "study":
            from .chapters import study  # the chapters (and their figures) load only for their commands

            return study.main(args)
        elif args.command == "reproduction":
            from .chapters import reproduction

            return reproduction.main(args)
        elif args.command == "calibrate":
            from .chapters import calibration

            return calibration.main(args)
    except (ValueError, RunError, DivergenceError, FileNotFoundError) as err:  # one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
