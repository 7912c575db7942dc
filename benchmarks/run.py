"""Step time and peak memory of every search algorithm, and the cost of recording costs.

``python benchmarks/run.py`` (``make bench``) measures, in one run, for 8 cells,
C=16, batch 64, on 8x8 inputs (digits) and 32x32 inputs (random 3x32x32 tensors),
with the minimal and the full cell:

* per algorithm (DARTS single-level, DARTS bi-level first and second order, SNAS,
  DSNAS, GDAS): the median time of one search iteration on a fixed batch (what
  ``Search.run_epoch`` does per batch: ``heldout_alpha_step`` then ``train_step``
  for bi-level, ``train_step`` alone for single-level), after warm-up; and the peak
  memory (CPU: peak RSS of a fresh subprocess, ``getrusage`` maxrss; CUDA:
  ``torch.cuda.max_memory_allocated``);
* DSNAS step / DARTS (single-level) step, from interleaved steps in one process
  (target <= 0.2);
* the cost-recording overhead, the same step with ``record_costs=True`` vs
  ``False`` on twin searches (same seed, same draws) stepped alternately (target <= 5%),
  for DSNAS and GDAS at 8x8 (``--overhead-sizes``), whose steps are the shortest, where
  a fixed per-step recording cost weighs most and where enough rounds fit to resolve a
  few percent; plus the recording itself (``Search.costs`` and ``CostStats.add``)
  timed alone, at every size.

Every measurement runs in its own subprocess (so that each peak RSS is its own);
inside it, the twin searches step alternately so that load drift from other users of
the machine cancels in the ratios. Measurements whose memory (extrapolated from the
same cell at 8x8) would exceed ``--mem-limit-gb`` are skipped, and a watchdog kills a
subprocess that exceeds it: this is a shared machine.

``--quick``: 8x8 minimal cell only, few repeats (a smoke test; written to
``benchmarks/results-quick.md``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CELLS, CHANNELS, BATCH = 8, 16, 64
DSNAS_RATIO_TARGET = 0.2
OVERHEAD_TARGET = 0.05
DSNAS_DRAWS = 6  # DSNAS steps per DARTS step in the ratio (a DSNAS step's time depends on its draw)

# name -> (algorithm, level, order); "darts" also steps a DSNAS twin for the ratio,
# "dsnas" and "gdas" also step a record_costs=False twin for the overhead.
ALGORITHMS = {
    "darts": ("darts", "single", 1),
    "darts-bi1": ("darts", "bi", 1),
    "darts-bi2": ("darts", "bi", 2),
    "snas": ("snas", "single", 1),
    "dsnas": ("dsnas", "single", 1),
    "gdas": ("gdas", "single", 1),
}
LABELS = {
    "darts": "DARTS single-level",
    "darts-bi1": "DARTS bi-level 1st order",
    "darts-bi2": "DARTS bi-level 2nd order",
    "snas": "SNAS",
    "dsnas": "DSNAS",
    "gdas": "GDAS",
}
OVERHEAD_ALGORITHMS = ("dsnas", "gdas")


# ---------------------------------------------------------------------------------
# child: one measurement in a fresh process
# ---------------------------------------------------------------------------------
def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from nas_core import data as datasets
    from nas_core.config import SearchConfig
    from nas_core.search import Search

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    size, cell, name = spec["size"], spec["cell"], spec["algorithm"]

    def config(algorithm, level="single", order=1, record=True):
        return SearchConfig(algorithm=algorithm, level=level, order=order, cell=cell, cells=CELLS,
                            channels=CHANNELS, batch_size=BATCH, data="digits" if size == 8 else "synthetic",
                            device=str(device), record_costs=record, seed=0)

    if size == 8:
        splits = datasets.load(config("darts"))
    else:
        g = torch.Generator().manual_seed(0)
        n = 2 * BATCH
        splits = datasets.Splits(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g),
                                 torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g), 10)

    algorithm, level, order = ALGORITHMS[name]
    members = {"main": config(algorithm, level, order)}
    if name == "darts":
        members["dsnas"] = config("dsnas")
    if name in OVERHEAD_ALGORITHMS and spec["overhead"]:
        members["norecord"] = config(algorithm, record=False)
    searches = {k: Search(c, splits=splits) for k, c in members.items()}
    # one fixed train and one fixed held-out batch, already on the device
    s0 = searches["main"].splits
    x, y = s0.train_x[:BATCH], s0.train_y[:BATCH]
    xv, yv = s0.heldout_x[:BATCH], s0.heldout_y[:BATCH]
    state = {}
    for k, s in searches.items():
        s.net.train()
        state[k] = (s._new_stats(("train", "heldout")), s._new_outs(("train",)))

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step(k, seed):
        """One search iteration as run_epoch does it, stats and outs passed."""
        s, (stats, outs) = searches[k], state[k]
        bi = s.config.level == "bi"
        g = torch.Generator().manual_seed(seed)
        sync()
        t = time.perf_counter()
        if bi:
            s.heldout_alpha_step(xv, yv, g, stats, train_batch=(x, y))
        s.train_step(x, y, g, stats, outs, update_alpha=not bi)
        sync()
        return time.perf_counter() - t

    order_ = list(searches)

    def round_(i):
        """One step of every member, the same draws for all (the DSNAS twin of DARTS:
        the mean of DSNAS_DRAWS steps, as its step time depends on the ops drawn)."""
        ks = order_ if i % 2 == 0 else order_[::-1]  # alternate who goes first
        out = {}
        for k in ks:
            if k == "dsnas":
                out[k] = statistics.fmean(step(k, 20_000 + DSNAS_DRAWS * i + m) for m in range(DSNAS_DRAWS))
            else:
                out[k] = step(k, 10_000 + i)
        return out

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        gpu0 = torch.cuda.memory_allocated(device)
    t_start = time.perf_counter()
    # warm-up: at least one round, more while cheap
    warm, i = [], 0
    while True:
        t = time.perf_counter()
        round_(i)
        warm.append(time.perf_counter() - t)
        i += 1
        if len(warm) >= spec["warmup"] and (sum(warm) >= spec["warmup_s"] or len(warm) >= spec["warmup"] + 2):
            break
    # timed rounds: at least min_repeats (1 when that many would take longer than
    # slow_s), then more while the time budget lasts, up to max_repeats
    floor = spec["min_repeats"] if warm[-1] * spec["min_repeats"] <= spec["slow_s"] else 1
    times = {k: [] for k in searches}
    t0, j = time.perf_counter(), 0
    while j < floor or (time.perf_counter() - t0 < spec["budget_s"] and j < spec["max_repeats"]):
        for k, t in round_(i + j).items():
            times[k].append(t)
        j += 1
    out = {"times": times, "warmup": warm, "seconds": time.perf_counter() - t_start,
           "rss_base_mb": rss0 / 1024, "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cuda:
        out["gpu_base_mb"] = gpu0 / 2**20
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if name in OVERHEAD_ALGORITHMS:  # the recording alone, cheap: always
        out["record_ms"] = time_recording(searches["main"], x, y, sync)
    return out


def time_recording(s, x, y, sync, n=50):
    """Median time of the recording alone (Search.costs + CostStats.add) after one
    forward / backward, as _record does it."""
    import torch
    import torch.nn.functional as F

    samples = s.draw(torch.Generator().manual_seed(1))
    s.net.zero_grad(set_to_none=True)
    logits, z = s.forward(x, samples)
    s.backward(F.cross_entropy(logits, y), z)
    stats = s._new_stats(("train",))["train"]
    ts = []
    for _ in range(n):
        sync()
        t = time.perf_counter()
        stats.add(*s.costs(z, samples))
        ts.append(time.perf_counter() - t)
    s.net.zero_grad(set_to_none=True)
    return 1e3 * statistics.median(ts)


# ---------------------------------------------------------------------------------
# parent: schedule, guard memory, tabulate
# ---------------------------------------------------------------------------------
def mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def launch(spec: dict, limit_mb: float, timeout_s: float) -> dict:
    """Run one measurement in a fresh interpreter; kill it if its RSS passes limit_mb."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, killed = time.monotonic(), None
    while proc.poll() is None:
        if spec["device"] == "cpu" and rss_mb(proc.pid) > limit_mb:
            killed = f"killed: RSS passed the {limit_mb / 1024:.1f} GB limit"
        elif time.monotonic() - start > timeout_s:
            killed = f"killed: ran past {timeout_s:.0f} s"
        if killed:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if killed:
        return {"error": killed}
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"error": tail[0][:200]}
    return json.loads(stdout.strip().splitlines()[-1])


def median_ms(ts):
    return 1e3 * statistics.median(ts) if ts else float("nan")


def paired_ratio(a, b):
    """Median over interleaved rounds of a_i / b_i."""
    return statistics.median(x / y for x, y in zip(a, b)) if a else float("nan")


def paired_iqr(a, b):
    """Interquartile range of a_i / b_i (None with fewer than 4 rounds)."""
    if len(a) < 4:
        return None
    q = statistics.quantiles([x / y for x, y in zip(a, b)], n=4)
    return q[0], q[2]


def fmt(v, spec=".1f", none="–"):
    return none if v is None or v != v else format(v, spec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8x8 minimal cell only, few repeats (smoke test)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="torch threads per measurement (default 1)")
    p.add_argument("--sizes", default=None, help="input sizes, comma-separated (default 8,32)")
    p.add_argument("--cells", default=None, help="cells, comma-separated (default minimal,full)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS), help=f"subset of {','.join(ALGORITHMS)}")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed rounds per measurement, at least --min-repeats rounds (default 5, "
                        "quick 2; x2 for the overhead twins)")
    p.add_argument("--min-repeats", type=int, default=None, help="default 3 (quick 2); 1 where that many rounds would take longer than --slow")
    p.add_argument("--max-repeats", type=int, default=None, help="default 25 (quick 5)")
    p.add_argument("--overhead-sizes", default="8",
                   help="input sizes at which DSNAS and GDAS also step a record_costs=False twin (default 8: "
                        "the shortest steps, where recording weighs most and enough rounds fit)")
    p.add_argument("--slow", type=float, default=30.0,
                   help="a measurement whose min-repeats would take longer than this many seconds gets 1 repeat")
    p.add_argument("--mem-limit-gb", type=float, default=None,
                   help="skip / kill a CPU measurement above this RSS (default: 60%% of MemAvailable at start)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement before it is killed")
    p.add_argument("--out", default=None, help="markdown file (default benchmarks/results.md; quick: results-quick.md)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    import torch

    if args.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = args.device
    cuda = device.startswith("cuda")
    sizes = [int(s) for s in (args.sizes or ("8" if args.quick else "8,32")).split(",")]
    cells = (args.cells or ("minimal" if args.quick else "minimal,full")).split(",")
    algorithms = args.algorithms.split(",")
    for a in algorithms:
        if a not in ALGORITHMS:
            p.error(f"unknown algorithm {a!r}; choose from {', '.join(ALGORITHMS)}")
    quick = args.quick
    base_spec = {
        "device": device, "threads": args.threads, "warmup": 1, "warmup_s": 0.5 if quick else 2.0,
        "budget_s": args.budget if args.budget is not None else (2.0 if quick else 5.0),
        "min_repeats": args.min_repeats if args.min_repeats is not None else (2 if quick else 3),
        "max_repeats": args.max_repeats if args.max_repeats is not None else (5 if quick else 25),
        "slow_s": args.slow, "overhead": False,
    }
    overhead_sizes = {int(s) for s in args.overhead_sizes.split(",") if s}
    avail0 = mem_available_mb()
    limit_mb = args.mem_limit_gb * 1024 if args.mem_limit_gb else 0.6 * avail0
    if cuda:
        free, total = torch.cuda.mem_get_info(torch.device(device))
        device_name = f"{torch.cuda.get_device_name(torch.device(device))} ({total / 2**30:.0f} GiB)"
        limit_mb = 0.9 * free / 2**20
    else:
        device_name = cpu_name()
    out_path = Path(args.out) if args.out else HERE / ("results-quick.md" if quick else "results.md")

    started = time.monotonic()
    load0 = os.getloadavg()
    print(f"device {device_name}, torch {torch.__version__}, {args.threads} thread(s), "
          f"memory limit {limit_mb / 1024:.1f} GB", flush=True)
    results = {}  # (size, cell, algorithm) -> child output or {"error"/"skipped"}
    for size in sorted(sizes):
        for cell in cells:
            for name in algorithms:
                key = (size, cell, name)
                est = _estimate_mb(results, key, cuda)
                if est is not None and est > limit_mb:
                    results[key] = {"skipped": f"skipped: needs ~{est / 1024:.0f} GB (extrapolated from "
                                               f"{min(sizes)}x{min(sizes)}), limit {limit_mb / 1024:.1f} GB"}
                    print(f"{size}x{size} {cell:7s} {name:10s} {results[key]['skipped']}", flush=True)
                    continue
                t = time.monotonic()
                spec = {**base_spec, "size": size, "cell": cell, "algorithm": name}
                if name in OVERHEAD_ALGORITHMS and size in overhead_sizes:
                    spec["overhead"] = True  # a few-percent difference needs many rounds
                    spec["budget_s"] *= 2
                    spec["max_repeats"] *= 4
                r = launch(spec, limit_mb, args.timeout)
                results[key] = r
                print(f"{size}x{size} {cell:7s} {name:10s} " + _line(r) + f"  [{time.monotonic() - t:.0f} s]",
                      flush=True)
    wall = time.monotonic() - started
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(), "device": device_name,
        "threads": args.threads, "cpus": os.cpu_count(), "wall": wall, "load": (load0, os.getloadavg()),
        "command": " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "limit_mb": limit_mb, "cuda": cuda,
    }
    text, passed = report(results, meta, sizes, cells, algorithms)
    print()
    print(text)
    out_path.write_text(text)
    print(f"written to {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()}"


def _estimate_mb(results, key, cuda):
    """Memory of a measurement extrapolated (by pixel count) from the same cell and
    algorithm at a smaller input size, with a 15% margin; None if not measured yet."""
    size, cell, name = key
    for (s, c, n), r in sorted(results.items()):
        if c == cell and n == name and s < size and "times" in r:
            if cuda:
                base, peak = r["gpu_base_mb"], r["gpu_peak_mb"]
            else:
                base, peak = r["rss_base_mb"], r["rss_peak_mb"]
            return base + 1.15 * (peak - base) * (size / s) ** 2
    return None


def _line(r):
    if "times" not in r:
        return r.get("error") or r.get("skipped")
    t = median_ms(r["times"]["main"])
    extra = ""
    if "dsnas" in r["times"]:
        extra += f", dsnas/darts {paired_ratio(r['times']['dsnas'], r['times']['main']):.3f}"
    if "norecord" in r["times"]:
        extra += f", record overhead {100 * (paired_ratio(r['times']['main'], r['times']['norecord']) - 1):+.1f}%"
    return f"{t:9.1f} ms (n={len(r['times']['main'])}), peak RSS {r['rss_peak_mb']:.0f} MB{extra}"


def report(results, meta, sizes, cells, algorithms):
    cuda = meta["cuda"]
    mem_col = "peak GPU alloc (MB)" if cuda else "peak RSS (MB)"
    lines = [
        "# Benchmark: step time and memory per algorithm",
        "",
        f"- date: {meta['date']}",
        f"- device: {meta['device']}; torch {meta['torch']}, Python {meta['python']}; "
        f"torch threads: {meta['threads']} (machine has {meta['cpus']} CPUs)",
        f"- load average at start / end: {meta['load'][0][0]:.2f} / {meta['load'][1][0]:.2f} "
        "(other users share the CPU: ratios are taken from interleaved steps in one process)",
        f"- network: {CELLS} cells, C={CHANNELS}, batch {BATCH}, `all_normal`; 8x8 = digits, "
        "32x32 = random 3x32x32 tensors; one fixed train (and held-out) batch",
        f"- command: `{meta['command']}`; wall time {meta['wall'] / 60:.1f} min",
        "",
        "Step = one search iteration as `Search.run_epoch` runs it (bi-level: `heldout_alpha_step` + "
        "`train_step`), cost recording on, after warm-up; time = median of n repeats "
        "(min–max in brackets). "
        + ("Memory = `torch.cuda.max_memory_allocated` in a fresh process; Δ = above the allocation "
           "before the first step." if cuda else
           "Memory = peak RSS (`getrusage` maxrss) of a fresh process per row; Δ = above its RSS before "
           "the first step (torch, data and model)."),
        "",
        f"| input | cell | algorithm | step (ms) | n | {mem_col} | Δ (MB) | record overhead |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ratios, overheads = [], []
    for size in sorted(sizes):
        for cell in cells:
            for name in algorithms:
                r = results.get((size, cell, name))
                head = f"| {size}x{size} | {cell} | {LABELS[name]} |"
                if r is None:
                    continue
                if "times" not in r:
                    lines.append(f"{head} {r.get('error') or r.get('skipped')} | | | | |")
                    continue
                ts = r["times"]["main"]
                base, peak = ((r["gpu_base_mb"], r["gpu_peak_mb"]) if cuda else (r["rss_base_mb"], r["rss_peak_mb"]))
                over = "–"
                if "norecord" in r["times"]:
                    o = paired_ratio(ts, r["times"]["norecord"]) - 1
                    overheads.append((size, cell, name, o, r.get("record_ms"), median_ms(ts), len(ts),
                                      paired_iqr(ts, r["times"]["norecord"])))
                    over = f"{100 * o:+.1f}%"
                elif "record_ms" in r:
                    overheads.append((size, cell, name, None, r["record_ms"], median_ms(ts), len(ts), None))
                lines.append(f"{head} {median_ms(ts):.1f} ({1e3 * min(ts):.0f}–{1e3 * max(ts):.0f}) | {len(ts)} | "
                             f"{peak:.0f} | {peak - base:.0f} | {over} |")
                if "dsnas" in r["times"]:
                    ratios.append((size, cell, paired_ratio(r["times"]["dsnas"], ts),
                                   median_ms(r["times"]["dsnas"]), median_ms(ts), len(ts)))
    skipped = [k for k, r in results.items() if "times" not in r]
    lines += ["", "## DSNAS step / DARTS (single-level) step", "",
              "DARTS and a DSNAS twin stepped alternately in one process: each round, one DARTS step and "
              f"{DSNAS_DRAWS} DSNAS steps with different draws (a DSNAS step's time depends on the ops drawn); "
              "ratio = median over rounds of mean DSNAS time / DARTS time. (The DSNAS row of the table above "
              f"is a separate process: the median of single draws.) Target <= {DSNAS_RATIO_TARGET}.", "",
              "| input | cell | DSNAS, mean of draws (ms) | DARTS (ms) | rounds | ratio |", "|---|---|---:|---:|---:|---:|"]
    for size, cell, ratio, td, tD, n in ratios:
        lines.append(f"| {size}x{size} | {cell} | {td:.1f} | {tD:.1f} | {n} | {ratio:.3f} |")
    worst_ratio = max((r[2] for r in ratios), default=None)
    lines += ["", "## Cost-recording overhead", "",
              "Same step with `record_costs=True` vs `False`: twin searches (same seed, same draws) stepped "
              "alternately in one process, both given the stats dicts as `run_epoch` does; overhead = median "
              "over rounds of t(True) / t(False) - 1. Measured for the algorithms with the shortest steps, at the "
              "input sizes in `--overhead-sizes` (a fixed per-step recording cost weighs most there, and "
              "enough rounds fit to resolve a few percent). `record` = `Search.costs` + "
              f"`CostStats.add` timed alone. Target <= {100 * OVERHEAD_TARGET:.0f}%.", "",
              "| input | cell | algorithm | step (ms) | record (ms) | record / step | rounds | measured overhead "
              "(IQR) |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for size, cell, name, o, rec, t, n, iqr in overheads:
        spread = f" ({100 * (iqr[0] - 1):+.1f}% to {100 * (iqr[1] - 1):+.1f}%)" if iqr else ""
        lines.append(f"| {size}x{size} | {cell} | {LABELS[name]} | {t:.1f} | {fmt(rec, '.3f')} | "
                     f"{fmt(100 * rec / t if rec else None, '.3f')}% | {n} | "
                     f"{'not measured (no twin)' if o is None else f'{100 * o:+.1f}%{spread}'} |")
    worst_over = max((o[3] for o in overheads if o[3] is not None), default=None)
    verdict = []
    passed = True
    if worst_ratio is not None:
        ok = worst_ratio <= DSNAS_RATIO_TARGET
        passed &= ok
        verdict.append(f"- DSNAS / DARTS step ratio (worst over the configurations measured): "
                       f"**{worst_ratio:.3f}** (target <= {DSNAS_RATIO_TARGET}): **{'PASS' if ok else 'FAIL'}**")
    if worst_over is not None:
        ok = worst_over <= OVERHEAD_TARGET
        passed &= ok
        verdict.append(f"- cost-recording overhead (worst measured): **{100 * worst_over:+.1f}%** "
                       f"(target <= {100 * OVERHEAD_TARGET:.0f}%): **{'PASS' if ok else 'FAIL'}**")
    direct = [100 * o[4] / o[5] for o in overheads if o[4]]
    if direct:
        verdict.append(f"- the recording alone (`Search.costs` + `CostStats.add`) is at most {max(direct):.3f}% of a "
                       "step: measured overheads beyond that are timing noise (see the IQRs)")
    if skipped:
        verdict.append("- not measured (a GPU, or a machine with more memory and `--mem-limit-gb`, measures them): "
                       + "; ".join(
            f"{s}x{s} {c} {LABELS[n]} ({(results[(s, c, n)].get('error') or results[(s, c, n)].get('skipped'))})"
            for s, c, n in skipped))
    lines += ["", "## Verdict", ""] + verdict + [""]
    return "\n".join(lines), passed


if __name__ == "__main__":
    sys.exit(main())
