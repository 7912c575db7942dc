"""The top rung of the study on one GPU: DSNAS and bi-level DARTS on the paper's
network (8 all-normal cells, C=16, batch 96), the faithful settings otherwise,
on Fashion-MNIST at full size (28x28) by default, five seeds each, as many steps
as fit the time budget (the paper's 78k / 13k if they fit), all runs side by
side on the one device.

    python study/gpu_top_rung.py --minutes 10 --seeds 0-4            # on a GPU machine
    python study/gpu_top_rung.py --data digits                       # the digits presets instead
    python study/gpu_top_rung.py --smoke                             # a short check on a CPU

Fashion-MNIST is read as everywhere in nas_core (``--data-dir``, ``$NAS_DATA_DIR``,
Debian's ``dataset-fashion-mnist``, torchvision's folder). The script times a
few steps of each algorithm first, fixes each run's epochs from that (so the
config is fixed before the run), runs everything in the run cache, and writes
``gpu_runs.csv`` and ``gpu_curves.csv`` (``--out``, default this folder), the
study's table format with the device named in every row.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nas_core.chapters.study import Rung, curve_rows, run_row
from nas_core.data import steps_per_epoch
from nas_core.presets import preset
from nas_core.runs import run_all
from nas_core.search import Search

HERE = Path(__file__).resolve().parent
PAPER_NET = dict(cells=8, channels=16, batch_size=96)
PAPER_STEPS = {"growing": 78_000, "bilevel": 13_000}
#: the presets' profile and overrides of each dataset: Fashion-MNIST at its full 28x28
DATA = {"fashion_mnist": ("fashion", {"resolution": 28, "augment_shift": 4}), "digits": ("cpu", {})}


def steps_per_second(config, n: int = 10) -> float:
    """Weight steps (with the held-out alpha step, bi-level) per second of ``config``
    alone on its device, after 3 warm-up steps."""
    s = Search(config)
    x, y = s.examples("train", 0, config.batch_size)
    cuda = config.device.startswith("cuda")
    g = torch.Generator().manual_seed(0)
    for i in range(n + 3):
        if i == 3:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        if config.level == "bi":
            s.heldout_alpha_step(x, y, g, train_batch=(x, y))
        s.train_step(x, y, g)
    if cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget for all runs together")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", choices=sorted(DATA), default="fashion_mnist")
    ap.add_argument("--data-dir", default=None, help="where the dataset's files are (else nas_core's search order)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder of gpu_runs.csv and gpu_curves.csv")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny network for a few steps on the CPU, to check the script (writes *-smoke.csv)")
    args = ap.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    profile, data = DATA[args.data]
    net = dict(PAPER_NET)
    if args.smoke:
        args.device, net = "cpu", dict(cells=2, channels=4, batch_size=32, eval_size=64)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --smoke to check the script on a CPU")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    fixed = {**net, **data, "data_dir": args.data_dir, "device": args.device}
    configs, rungs = [], {}
    for name in ("growing", "bilevel"):
        base = preset(name, profile, **fixed)
        rate = steps_per_second(base, n=2 if args.smoke else 10)
        # all runs share the device: each gets 1/len(runs) of its throughput, with 20% held back
        n_runs = 2 * len(seeds)
        share = n_runs if args.device == "cpu" else max(1, n_runs / 4)  # a GPU overlaps several small runs
        steps = min(PAPER_STEPS[name], int(0.8 * args.minutes * 60 * rate / share))
        per_epoch = steps_per_epoch(base)
        epochs = 2 if args.smoke else max(1, steps // per_epoch)
        print(f"{name}: {rate:.1f} steps/s alone on {device_name}; {epochs} epochs ({epochs * per_epoch} steps)")
        overrides = {**fixed, "epochs": epochs}
        rungs[name] = Rung(f"{name} on {device_name}, {args.data}", "gpu", name, overrides, tuple(seeds),
                           profile=profile)
        configs += rungs[name].configs()
    histories = iter(run_all(configs, workers=len(configs)))  # side by side, one torch thread each
    import pandas as pd

    rows, curves = [], []
    for r in rungs.values():
        for _ in r.seeds:
            h = next(histories)
            rows.append({**run_row(r, h), "device": device_name})
            curves += [{**row, "device": device_name} for row in curve_rows(r, h)]
    suffix = "-smoke" if args.smoke else ""
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / f"gpu_runs{suffix}.csv", index=False, float_format="%.6g")
    pd.DataFrame(curves).to_csv(args.out / f"gpu_curves{suffix}.csv", index=False, float_format="%.6g")
    print(pd.DataFrame(rows)[["rung", "seed", "steps", "minutes", "gap", "growing.holds", "width.holds",
                              "bilevel.holds"]].to_string())


if __name__ == "__main__":
    main()
