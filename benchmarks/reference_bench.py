"""nas_core's DARTS step against a textbook DARTS supernet (benchmarks/reference.py),
and DSNAS steps per second against an older nas_core.

``python benchmarks/reference_bench.py`` (run by ``make bench`` after run.py):

* **reference ratio**: per network (``all_normal``, ``standard``), cell (minimal,
  full) and input (8x8 digits, 1 channel; 32x32 random, 3 channels), 8 cells,
  C=16, batch 64: one nas_core single-level DARTS step (``Search.train_step``:
  forward, backward, cost recording, alpha and weight steps) and one reference
  step (forward, backward, SGD + Adam), same batch, alternating in one process
  (one subprocess per configuration, 1 torch thread); ratio = median over rounds
  of t(nas_core) / t(reference). Target <= 0.5. The last line printed is
  ``reference ratio: X.XX``, the worst over the configurations measured.
* **bi-level DARTS time**: the faithful ``bilevel`` preset (DARTS, first order, 3
  cells, C=8, batch 32, 128 clean training images, held-out accuracy on 256 images
  every epoch) run for whole epochs in a subprocess with 1 torch thread; the wall
  time per iteration (held-out alpha step, training step, the epoch's share of the
  evaluation and record), extrapolated to 13k steps. Target: at most 15 minutes.
* **DSNAS steps/s** at the faithful growing preset's network and learning rates (4 cells, C=8,
  batch 32, 8x8 digits, arch lr 3e-4, logit scale 1):
  this checkout against ``--old REF`` (default 0e96e4d, checked out in a temporary
  git worktree, removed afterwards), each in its own subprocess, alternating;
  ``--old ''`` skips it. Target: at least 2x.

``--quick``: 8x8 minimal cell, both networks, few rounds. Tables are appended to
``benchmarks/results.md`` (quick: ``results-quick.md``) as a section that replaces
the previous one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import cpu_name  # benchmarks/run.py, beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELLS, CHANNELS, BATCH = 8, 16, 64
TARGET = 0.5
DSNAS_TARGET = 2.0
BILEVEL_STEPS, BILEVEL_TARGET_MIN = 13_000, 15.0
SECTION = "# Reference: nas_core's DARTS step against a textbook DARTS supernet"


# ---------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------
def child_ratio(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from reference import ReferenceSearch, SearchNetwork

    from nas_core import data as datasets
    from nas_core.config import SearchConfig
    from nas_core.search import Search

    size, cell, network = spec["size"], spec["cell"], spec["network"]
    cfg = SearchConfig(algorithm="darts", level="single", cell=cell, cells=CELLS, channels=CHANNELS,
                       batch_size=BATCH, network=network, data="digits" if size == 8 else "synthetic",
                       device="cpu", seed=0)
    if size == 8:
        splits = datasets.load(cfg)
    else:
        g = torch.Generator().manual_seed(0)
        n = 2 * BATCH
        splits = datasets.Splits(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g),
                                 torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g), 10)
    s = Search(cfg, splits=splits)
    x, y = s.splits.train_x[:BATCH], s.splits.train_y[:BATCH]
    torch.manual_seed(0)
    ref = ReferenceSearch(SearchNetwork(cell, CELLS, CHANNELS, x.shape[1], splits.n_classes, network))
    stats, outs = s._new_stats(("train", "heldout")), s._new_outs(("train",))
    s.net.train()
    ref.net.train()

    def t_nas(i):
        g = torch.Generator().manual_seed(10_000 + i)
        t = time.perf_counter()
        s.train_step(x, y, g, stats, outs)
        return time.perf_counter() - t

    def t_ref(i):
        t = time.perf_counter()
        ref.step(x, y)
        return time.perf_counter() - t

    times = {"nas_core": [], "reference": []}
    t0 = time.perf_counter()
    for i in range(spec["warmup"]):
        t_nas(i), t_ref(i)
    i = 0
    while i < spec["min_rounds"] or (time.perf_counter() - t0 < spec["budget_s"] and i < spec["max_rounds"]):
        pair = [("nas_core", t_nas), ("reference", t_ref)]
        for k, f in (pair if i % 2 == 0 else pair[::-1]):  # alternate who goes first
            times[k].append(f(i))
        i += 1
    return {"times": times, "seconds": time.perf_counter() - t0}


def child_dsnas(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    import nas_core
    from nas_core.config import SearchConfig
    from nas_core.search import Search

    # the faithful growing preset's network, batch and learning rates; its DSNAS options (the authors'
    # estimator, reward clamp, alpha clipping and initialisation) are fields the older code lacks
    cfg = SearchConfig(algorithm="dsnas", cells=4, channels=8, batch_size=32, data="digits", device="cpu", seed=0,
                       logit_scale=1.0, arch_lr=3e-4)
    s = Search(cfg)
    x, y = s.splits.train_x[:32], s.splits.train_y[:32]
    stats, outs = s._new_stats(("train", "heldout")), s._new_outs(("train",))
    s.net.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(spec["warmup"]):
        s.train_step(x, y, g, stats, outs)
    t = time.perf_counter()
    for _ in range(spec["steps"]):
        s.train_step(x, y, g, stats, outs)
    dt = time.perf_counter() - t
    return {"steps_per_s": spec["steps"] / dt, "module": nas_core.__file__}


def child_bilevel(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from nas_core.presets import preset
    from nas_core.search import Search

    s = Search(preset("bilevel", seed=0))
    s.run_epoch()  # warm-up
    t = time.perf_counter()
    for _ in range(spec["epochs"]):
        s.run_epoch()
    dt = time.perf_counter() - t
    steps = spec["epochs"] * s.step  # run_epoch leaves the number of iterations of an epoch in .step
    return {"ms_per_step": 1e3 * dt / steps, "epochs": spec["epochs"], "steps": steps}


# ---------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------
def launch(kind: str, spec: dict, pythonpath: str, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    try:
        # cwd outside the checkout: the package comes from PYTHONPATH alone
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), f"--child-{kind}", json.dumps(spec)],
                              cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"ran past {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paired_ratio(a, b):
    return statistics.median(x / y for x, y in zip(a, b))


def dsnas_compare(old_ref: str, rounds: int, steps: int, timeout: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="nas-old-"))
    old = tmp / "old"
    try:
        subprocess.run(["git", "worktree", "add", "--detach", str(old), old_ref], cwd=ROOT, check=True,
                       capture_output=True, text=True)
    except subprocess.CalledProcessError as err:
        return {"error": f"git worktree add {old_ref} failed: {err.stderr.strip()[:200]}"}
    try:
        spec = {"warmup": 10, "steps": steps}
        res = {"new": [], "old": []}
        for r in range(rounds):
            order = [("new", str(ROOT)), ("old", str(old))]
            for k, path in (order if r % 2 == 0 else order[::-1]):
                out = launch("dsnas", spec, path, timeout)
                if "error" in out:
                    return {"error": f"{k}: {out['error']}"}
                res[k].append(out["steps_per_s"])
                print(f"  DSNAS round {r}: {k} {out['steps_per_s']:.1f} steps/s ({out['module']})", flush=True)
        return res
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
        tmp.rmdir() if tmp.exists() and not any(tmp.iterdir()) else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8x8 minimal cell only, few rounds")
    p.add_argument("--sizes", default=None, help="input sizes (default 8,32)")
    p.add_argument("--cells", default=None, help="default minimal,full")
    p.add_argument("--networks", default="all_normal,standard")
    p.add_argument("--skip", default="32:full",
                   help="SIZE:CELL pairs not measured (default 32:full: DARTS keeps every op of every edge "
                        "for backward, about 20 GB per network at batch 64, more than this machine holds)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per configuration")
    p.add_argument("--min-rounds", type=int, default=None)
    p.add_argument("--max-rounds", type=int, default=None)
    p.add_argument("--old", default="0e96e4d", help="git ref the DSNAS steps/s are compared with ('' skips it)")
    p.add_argument("--bilevel-epochs", type=int, default=None, help="epochs timed (0 skips it)")
    p.add_argument("--dsnas-rounds", type=int, default=None, help="fresh-subprocess rounds of each code (default 5)")
    p.add_argument("--dsnas-steps", type=int, default=None)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", default=None)
    p.add_argument("--child-ratio", help=argparse.SUPPRESS)
    p.add_argument("--child-dsnas", help=argparse.SUPPRESS)
    p.add_argument("--child-bilevel", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_ratio:
        print(json.dumps(child_ratio(json.loads(args.child_ratio))))
        return 0
    if args.child_dsnas:
        print(json.dumps(child_dsnas(json.loads(args.child_dsnas))))
        return 0
    if args.child_bilevel:
        print(json.dumps(child_bilevel(json.loads(args.child_bilevel))))
        return 0

    quick = args.quick
    sizes = [int(s) for s in (args.sizes or ("8" if quick else "8,32")).split(",")]
    cells = (args.cells or ("minimal" if quick else "minimal,full")).split(",")
    networks = args.networks.split(",")
    skip = {tuple(x.split(":")) for x in args.skip.split(",") if x}
    spec0 = {"warmup": 1, "budget_s": args.budget if args.budget is not None else (3.0 if quick else 10.0),
             "min_rounds": args.min_rounds or (2 if quick else 3),
             "max_rounds": args.max_rounds or (5 if quick else 15)}
    started = time.monotonic()
    load0 = os.getloadavg()
    rows = []
    for size in sizes:
        for cell in cells:
            for network in networks:
                label = f"{size}x{size} {cell:7s} {network:10s}"
                if (str(size), cell) in skip:
                    rows.append((size, cell, network, {"skipped": "skipped (--skip): DARTS at 32x32 with the full "
                                                       "cell needs ~20 GB per network at batch 64"}))
                    print(f"{label} {rows[-1][3]['skipped']}", flush=True)
                    continue
                spec = dict(spec0, size=size, cell=cell, network=network)
                if size >= 32:  # steps of seconds: fewer rounds
                    spec.update(min_rounds=2, max_rounds=3, budget_s=spec0["budget_s"] / 2)
                t = time.monotonic()
                r = launch("ratio", spec, str(ROOT), args.timeout)
                rows.append((size, cell, network, r))
                if "times" in r:
                    ratio = paired_ratio(r["times"]["nas_core"], r["times"]["reference"])
                    print(f"{label} nas_core {1e3 * statistics.median(r['times']['nas_core']):8.1f} ms, reference "
                          f"{1e3 * statistics.median(r['times']['reference']):8.1f} ms, ratio {ratio:.3f} "
                          f"(n={len(r['times']['nas_core'])})  [{time.monotonic() - t:.0f} s]", flush=True)
                else:
                    print(f"{label} {r['error']}", flush=True)
    dsnas = None
    if args.old:
        dsnas = dsnas_compare(args.old, args.dsnas_rounds or (2 if quick else 5),
                              args.dsnas_steps or (100 if quick else 200), args.timeout)
    epochs = args.bilevel_epochs if args.bilevel_epochs is not None else (5 if quick else 40)
    bilevel = launch("bilevel", {"epochs": epochs}, str(ROOT), args.timeout) if epochs else None
    if bilevel and "ms_per_step" in bilevel:
        bilevel["minutes"] = bilevel["ms_per_step"] * BILEVEL_STEPS / 6e4
        print(f"bi-level DARTS (faithful preset): {bilevel['ms_per_step']:.1f} ms per iteration, "
              f"{bilevel['minutes']:.1f} min for {BILEVEL_STEPS} steps", flush=True)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu_name(),
            "load": (load0, os.getloadavg()),
            "wall": time.monotonic() - started,
            "command": " ".join(["python benchmarks/reference_bench.py", *(sys.argv[1:] if argv is None else argv)])}
    import torch

    meta["torch"] = torch.__version__
    text, worst = report(rows, dsnas, bilevel, meta, args.old)
    out = Path(args.out) if args.out else HERE / ("results-quick.md" if quick else "results.md")
    old_text = out.read_text() if out.exists() else ""
    if SECTION in old_text:  # replace our previous section
        old_text = old_text[: old_text.index(SECTION)].rstrip() + "\n"
    out.write_text((old_text + "\n" if old_text else "") + text)
    print()
    print(text)
    print(f"written to {out}")
    print(f"reference ratio: {worst:.2f}" if worst is not None else "reference ratio: nan")
    return 0


def report(rows, dsnas, bilevel, meta, old_ref):
    lines = [SECTION, "",
             f"- date: {meta['date']}; {meta['cpu']}; torch {meta['torch']}, Python {meta['python']}; 1 torch thread "
             f"(machine has {meta['cpus']} CPUs); load average at start / end {meta['load'][0][0]:.2f} / "
             f"{meta['load'][1][0]:.2f}",
             f"- {CELLS} cells, C={CHANNELS}, batch {BATCH}; 8x8 = digits (1 channel), 32x32 = random 3x32x32; "
             "one fixed batch",
             f"- command: `{meta['command']}`; wall time {meta['wall'] / 60:.1f} min",
             "",
             "nas_core step = `Search.train_step` (single-level DARTS: forward, backward, cost recording, alpha "
             "and weight steps); reference step = `benchmarks/reference.py` (textbook DARTS: every op, `none` "
             "included, its own module, `sum_k w_k op_k(x)` per edge; forward, backward, SGD + Adam). The two "
             "alternate in one process; ratio = median over rounds of t(nas_core) / t(reference). "
             f"Target <= {TARGET}.", "",
             "| input | cell | network | nas_core (ms) | reference (ms) | rounds | ratio |",
             "|---|---|---|---:|---:|---:|---:|"]
    ratios = []
    for size, cell, network, r in rows:
        if "times" not in r:
            lines.append(f"| {size}x{size} | {cell} | {network} | {r.get('skipped') or r.get('error')} | | | |")
            continue
        ratio = paired_ratio(r["times"]["nas_core"], r["times"]["reference"])
        ratios.append(ratio)
        lines.append(f"| {size}x{size} | {cell} | {network} | {1e3 * statistics.median(r['times']['nas_core']):.1f} | "
                     f"{1e3 * statistics.median(r['times']['reference']):.1f} | {len(r['times']['nas_core'])} | "
                     f"{ratio:.3f} |")
    worst = max(ratios) if ratios else None
    verdict = []
    if worst is not None:
        verdict.append(f"- reference ratio (worst over the configurations measured): **{worst:.3f}** "
                       f"(target <= {TARGET}): **{'PASS' if worst <= TARGET else 'FAIL'}**")
    if dsnas is not None:
        lines += ["", "## DSNAS steps per second against an older nas_core", "",
                  f"The faithful growing preset's network (4 cells, C=8, batch 32, 8x8 digits, arch lr 3e-4, logit scale 1; "
                  f"its DSNAS options are fields the older code lacks), DSNAS `train_step` on one fixed batch; this checkout and "
                  f"`{old_ref}` (a git worktree) each in a fresh subprocess, alternating.", ""]
        if "error" in dsnas:
            lines.append(f"not measured: {dsnas['error']}")
        else:
            new, old = statistics.median(dsnas["new"]), statistics.median(dsnas["old"])
            lines += ["| code | steps/s (median) | runs |", "|---|---:|---|",
                      f"| this checkout | {new:.1f} | {', '.join(f'{v:.1f}' for v in dsnas['new'])} |",
                      f"| {old_ref} | {old:.1f} | {', '.join(f'{v:.1f}' for v in dsnas['old'])} |"]
            speedup = new / old
            verdict.append(f"- DSNAS steps/s against `{old_ref}`: **{speedup:.2f}x** (target >= {DSNAS_TARGET}x): "
                           f"**{'PASS' if speedup >= DSNAS_TARGET else 'FAIL'}**")
    if bilevel is not None:
        lines += ["", "## Bi-level DARTS at the faithful preset", "",
                  "`preset(\"bilevel\")` (DARTS first order, 3 cells, C=8, batch 32, 128 clean training images, "
                  "4 iterations per epoch, held-out accuracy on 256 images every epoch), whole epochs in a fresh "
                  "subprocess, 1 torch thread; wall time per iteration including the epoch's evaluation and record.", ""]
        if "error" in bilevel:
            lines.append(f"not measured: {bilevel['error']}")
        else:
            minutes = bilevel["minutes"]
            lines += ["| epochs timed | iterations | ms per iteration | minutes for 13k steps |", "|---:|---:|---:|---:|",
                      f"| {bilevel['epochs']} | {bilevel['steps']} | {bilevel['ms_per_step']:.1f} | {minutes:.1f} |"]
            verdict.append(f"- a {BILEVEL_STEPS // 1000}k-step bi-level DARTS run at the faithful preset: "
                           f"**{minutes:.1f} min** on one core (target <= {BILEVEL_TARGET_MIN:.0f}): "
                           f"**{'PASS' if minutes <= BILEVEL_TARGET_MIN else 'FAIL'}**")
    lines += ["", "## Verdict (reference)", ""] + verdict + [""]
    return "\n".join(lines), worst


if __name__ == "__main__":
    sys.exit(main())
