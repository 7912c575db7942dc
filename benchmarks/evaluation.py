"""The held-out evaluation of a search at the Fashion-MNIST 1,000-image rungs' size.

``python benchmarks/evaluation.py`` (run by ``make bench``): the network of
``Fashion-MNIST bi-level DARTS, 1,000 clean images`` (DARTS, 3 cells, C=8, 14x14,
batch 96; random inputs of that shape, so nothing is read from disk), whose 1,195
epochs each end with ``EpochLoop.evaluate``: 2,000 held-out images forward at batch 256,
BN with batch statistics, no graph. In one process, alternating:

* **evaluation ratio**: the evaluation with the BN kernels that a forward with no graph
  takes at any size (``nas_core.fast.batch_norm``) against the same evaluation with the
  rule a forward with a graph follows (PyTorch's BN above ``NATIVE_MAX_ELEMENTS``); the
  median over rounds of t(kernels) / t(PyTorch's). Target <= 0.85.
* the evaluation's share of one epoch (11 bi-level iterations and the evaluation).

Both evaluations give the same accuracy and loss to float32 rounding (checked). The
section ``## Held-out evaluation`` of ``benchmarks/results.md`` is replaced.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import torch

from nas_core import data as datasets
from nas_core.chapters.study import rung
from nas_core.fast import batch_norm
from nas_core.search.search import Search
from nas_core.search.state import epoch_generator
from run import cpu_name  # benchmarks/run.py, beside this script

HERE = Path(__file__).resolve().parent
RUNG = "Fashion-MNIST bi-level DARTS, 1,000 clean images"
TARGET = 0.85
SECTION = "## Held-out evaluation"


def random_splits(config) -> datasets.Splits:
    """Inputs of the rung's shape: 1,000 train and 30,000 held-out 1x14x14 images, 10 classes."""
    g = torch.Generator().manual_seed(0)
    side = config.resolution

    def images(n):
        return torch.randn(n, 1, side, side, generator=g), torch.randint(0, 10, (n,), generator=g)

    return datasets.Splits(*images(config.train_size), *images(30_000), 10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = rung(RUNG).configs()[0]
    search = Search(config, random_splits(config))
    kernels_rule = batch_norm._native_ok

    def with_graph_rule(blocks, training):   # the kernels only up to the limit, as with a graph
        return kernels_rule(blocks, training, graph=True)

    def evaluate(rule):
        batch_norm._native_ok = rule
        try:
            start = time.perf_counter()
            out = search.epochs.evaluate(epoch_generator(config.seed, 0)).summary()
            return time.perf_counter() - start, out
        finally:
            batch_norm._native_ok = kernels_rule

    search.run_epoch()   # the warm-up (kernels built and loaded)
    start = time.perf_counter()
    search.run_epoch()
    epoch = time.perf_counter() - start
    ratios, times = [], {"kernels": [], "graph rule": []}
    for i in range(args.rounds):
        order = [("kernels", kernels_rule), ("graph rule", with_graph_rule)][:: 1 if i % 2 else -1]
        got = {name: evaluate(rule) for name, rule in order}
        for name, (t, _) in got.items():
            times[name].append(t)
        ratios.append(got["kernels"][0] / got["graph rule"][0])
        a, b = got["kernels"][1], got["graph rule"][1]
        assert a["accuracy"] == b["accuracy"] and abs(a["loss"] - b["loss"]) < 1e-5 * abs(b["loss"]), (a, b)
    ratio = statistics.median(ratios)
    share = statistics.median(times["kernels"]) / epoch
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    lines = [
        SECTION, "",
        f"{datetime.date.today()}, torch {torch.__version__}, {cpu_name()}, 1 thread. `{RUNG}`'s network "
        f"(3 cells, C=8, 14x14, random inputs): `EpochLoop.evaluate` ({config.eval_size:,} held-out images "
        "at batch 256, BN with batch statistics, no graph), the BN kernels at any size against the rule a "
        f"forward with a graph follows (PyTorch's BN above {batch_norm.NATIVE_MAX_ELEMENTS:,} elements), "
        f"alternating, {args.rounds} rounds; the same accuracy and loss to float32 rounding.", "",
        "| BN in the evaluation | seconds (median) |", "|---|---:|",
        *(f"| {name} | {statistics.median(t):.2f} |" for name, t in times.items()), "",
        f"- evaluation ratio (median over rounds): **{ratio:.2f}** (target <= {TARGET}): **{verdict}**",
        f"- the evaluation is {share:.0%} of the epoch it ends (11 bi-level iterations and the "
        f"evaluation, the second epoch timed: {epoch:.1f} s)", "",
    ]
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    if SECTION in text:   # replace our previous section, up to the next one
        head, rest = text.split(SECTION, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head.rstrip("\n") + "\n\n" + "\n".join(lines) + tail.lstrip("\n")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + "\n".join(lines)
    out.write_text(text)
    print("\n".join(lines))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
