"""The top rung of the study on one GPU: DSNAS and bi-level DARTS on the paper's
network (8 all-normal cells, C=16, batch 96), the faithful settings otherwise,
five seeds each, as many steps as fit the time budget (the paper's 78k / 13k if
they fit), all runs side by side on the one device.

    python study/gpu_top_rung.py --minutes 10 --seeds 0-4            # on a GPU machine
    python study/gpu_top_rung.py --smoke                             # a 1-minute check on a CPU

It times a few steps of each algorithm first, fixes each run's epochs from that
(so the config is fixed before the run), runs everything in the run cache, and
writes ``study/gpu_runs.csv`` (one row per run, the device named in every row)
and ``study/gpu_curves.csv``, the study's table format.
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch

from nas_core.chapters.study import Rung, curve_rows, run_row
from nas_core.presets import preset
from nas_core.runs import run
from nas_core.search import Search

HERE = Path(__file__).resolve().parent
PAPER_NET = dict(cells=8, channels=16, batch_size=96)
PAPER_STEPS = {"growing": 78_000, "bilevel": 13_000}


def steps_per_second(name: str, device: str, overrides: dict, n: int = 10) -> float:
    s = Search(preset(name, device=device, **overrides))
    x, y = s.splits.train_x[:overrides["batch_size"]], s.splits.train_y[:overrides["batch_size"]]
    g = torch.Generator().manual_seed(0)
    for i in range(n + 3):
        if i == 3:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        if s.config.level == "bi":
            s.heldout_alpha_step(x, y, g, train_batch=(x, y))
        s.train_step(x, y, g)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def _run(config):
    torch.set_num_threads(1)
    run(config, progress=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget for all runs together")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny network on the CPU, to check the script")
    args = ap.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    net = dict(PAPER_NET)
    if args.smoke:
        args.device, args.minutes, net = "cpu", 1.0, dict(cells=2, channels=4, batch_size=32)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --smoke to check the script on a CPU")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    configs, rungs = [], {}
    for name in ("growing", "bilevel"):
        rate = steps_per_second(name, args.device, net)
        # all runs share the device: each gets 1/len(runs) of its throughput, with 20% held back
        n_runs = 2 * len(seeds)
        budget_steps = int(0.8 * args.minutes * 60 * rate / n_runs) if args.device == "cpu" else \
            int(0.8 * args.minutes * 60 * rate / max(1, n_runs / 4))  # a GPU overlaps several small runs
        steps = min(PAPER_STEPS[name], budget_steps)
        base = preset(name, **net)
        per_epoch = max(1, min(base.train_size or 898, 898) // base.batch_size)
        epochs = max(1, steps // per_epoch)
        print(f"{name}: {rate:.1f} steps/s alone on {device_name}; {epochs} epochs ({epochs * per_epoch} steps)")
        overrides = {**net, "epochs": epochs}
        rungs[name] = Rung(f"{name} on {device_name}", "gpu", name, overrides, tuple(seeds))
        configs += [preset(name, seed=s, device=args.device, **overrides) for s in seeds]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(configs)) as pool:
        pool.map(_run, configs)
    import pandas as pd

    rows, curves = [], []
    for name, r in rungs.items():
        for c in r.configs():
            h = run(c.replace(device=args.device), progress=False)
            rows.append({**run_row(r, h), "device": device_name})
            curves += [{**row, "device": device_name} for row in curve_rows(r, h)]
    suffix = "-smoke" if args.smoke else ""
    pd.DataFrame(rows).to_csv(HERE / f"gpu_runs{suffix}.csv", index=False, float_format="%.6g")
    pd.DataFrame(curves).to_csv(HERE / f"gpu_curves{suffix}.csv", index=False, float_format="%.6g")
    print(pd.DataFrame(rows)[["rung", "seed", "steps", "minutes", "gap", "growing.holds", "width.holds",
                              "bilevel.holds"]].to_string())


if __name__ == "__main__":
    main()
