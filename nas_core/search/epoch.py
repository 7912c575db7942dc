"""One epoch: the loop over the training batches (single- or bi-level), the
held-out evaluation, the optional probe, and the epoch record that
:mod:`nas_core.record` reads (its architecture part: :func:`architecture`)."""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import data as datasets
from ..cost import CostStats, OutputCostStats
from ..ops import NONE, OPS
from ..relax import Darts, probabilities
from ..space import cell_types, derive, derive_darts, selected_edges, width_depth
from .bilevel import BilevelAlphaStep
from .passes import CostPasses
from .state import SearchState, epoch_generator, initial_alpha, kept_buffers
from .step import SingleLevelStep


class EpochLoop:
    """The epochs of a search (its :class:`SearchState`), as DARTS' ``train_search.py``
    runs them: per training batch the held-out alpha step (bi-level) and then the
    training step; afterwards the held-out evaluation and the optional probe."""

    def __init__(self, state: SearchState, passes: CostPasses, train_step: SingleLevelStep,
                 heldout_alpha_step: BilevelAlphaStep):
        self.state, self.passes = state, passes
        self.train_step, self.heldout_alpha_step = train_step, heldout_alpha_step

    def run_epoch(self) -> dict:
        """Train one epoch and return its history record."""
        st, start = self.state, time.perf_counter()
        c = st.config
        lr = st.lr_at(st.epoch)
        for group in st.w_opt.param_groups:
            group["lr"] = lr
        g = epoch_generator(c.seed, st.epoch)
        stats, outs = self.new_cost_stats(("train", "heldout")), self.new_output_stats(("train",))
        update_alpha = c.alpha_updated_on is not None
        s = st.splits
        st.net.train()
        for i, (x, y) in enumerate(datasets.batches(s.train_x, s.train_y, c.batch_size, g)):
            st.step = i + 1  # named by a DivergenceError
            x = self.view(x, g)
            if c.level == "bi" and update_alpha:
                xv, yv = datasets.random_batch(s.heldout_x, s.heldout_y, c.batch_size, g)
                xv = self.view(xv, g)
                self.heldout_alpha_step(xv, yv, g, stats, train_batch=(x, y))
            self.train_step(x, y, g, stats, outs, update_weights=c.update_weights,
                            update_alpha=update_alpha and c.level == "single")
        cost = {k: v.summary() for k, v in stats.items() if v.count.any()}
        output = {k: v.summary() for k, v in outs.items()}
        output["heldout"] = self.evaluate(g).summary()
        if c.probe_batches:
            pstats, pouts = self.probe(c.probe_batches, epoch_generator(c.seed, st.epoch, stream=1))
            cost.update({k: v.summary() for k, v in pstats.items()})
            output.update({k: v.summary() for k, v in pouts.items()})
        st.epoch += 1
        return {
            "epoch": st.epoch,
            **architecture(st.alpha, st.allowed, st.topology),
            "cost": cost,
            "output_cost": output,
            "train_acc": output["train"]["accuracy"],
            "train_loss": output["train"]["loss"],
            "heldout_acc": output["heldout"]["accuracy"],
            "heldout_loss": output["heldout"]["loss"],
            "lr": lr,
            "temperature": st.temperature_at(st.epoch - 1),
            "seconds": time.perf_counter() - start,
        }

    def view(self, x, generator):
        """The batch as training sees it: a fresh augmented view when
        ``augment_shift`` is set (both splits, as the authors augment both halves)."""
        c, s = self.state.config, self.state.splits
        if not c.augment_shift:
            return x
        return datasets.augment(x, c.augment_shift, s.flip_ok, generator, s.border)

    def new_cost_stats(self, splits) -> dict:
        """Empty cost statistics, one per named split, laid out (cells, edges, ops)."""
        st = self.state
        return {s: CostStats(len(st.cell_index), st.topology.n_edges, len(OPS)) for s in splits}

    @staticmethod
    def new_output_stats(splits) -> dict:
        """Empty output statistics (output cost, loss, accuracy), one per named split."""
        return {s: OutputCostStats() for s in splits}

    # ---- measuring without learning --------------------------------------------
    @torch.no_grad()
    def evaluate(self, generator) -> OutputCostStats:
        """Held-out output cost and accuracy on the first ``eval_size`` held-out
        images, Z drawn as in training, BN with batch statistics as in training and
        in the cost measurements (with few steps per epoch the running statistics
        lag far behind the weights). No graph is built: nothing is backpropagated."""
        st = self.state
        outs = OutputCostStats()
        n = st.config.eval_size or len(st.splits.heldout_y)
        with kept_buffers(st.net), torch.no_grad():
            for x, y in datasets.batches(st.splits.heldout_x[:n], st.splits.heldout_y[:n], 256, generator):
                samples = self.passes.draw(generator)
                z = st.z_for_cells({t: s.z for t, s in samples.items()})
                outs.add(st.net(x, z, {t: s.active for t, s in samples.items()}), y)
        return outs

    def probe(self, n_batches: int, generator) -> tuple[dict, dict]:
        """All ops' costs at the current alpha (Z = softmax(alpha), every allowed op
        runs) on ``n_batches`` train and held-out batches, BN in train mode; nothing
        is updated (BN running statistics are restored afterwards)."""
        st, passes = self.state, self.passes
        splits = ("probe_train", "probe_heldout")
        stats, outs = self.new_cost_stats(splits), self.new_output_stats(splits)
        s = st.splits
        with kept_buffers(st.net):
            for split, (x_all, y_all) in (("probe_train", (s.train_x, s.train_y)),
                                          ("probe_heldout", (s.heldout_x, s.heldout_y))):
                done = 0
                while done < n_batches:
                    for x, y in datasets.batches(x_all, y_all, st.config.batch_size, generator):
                        samples = passes.draw(generator, relax=Darts())
                        _, logits, z = passes.forward_backward(x, y, samples, weight_grads=False)
                        outs[split].add(logits.detach(), y)
                        stats[split].add(*passes.cost_tensors(z, samples))
                        done += 1
                        if done == n_batches:
                            break
        st.zero_grad()
        return stats, outs


def architecture(alpha: dict, allowed: dict, topology) -> dict:
    """The architecture part of an epoch record for ``alpha`` ({cell type: tensor}):
    alpha, p, the derived cells (``none`` counted, and DARTS' top-2) and their
    wiring metrics, per cell type."""
    rec = {k: {} for k in ("alpha", "probs", "p_none", "derived", "derived_darts",
                           "selected_edges", "n_selected", "width", "depth")}
    for t, a in alpha.items():
        mask = allowed[t].cpu().numpy()
        p = probabilities(a.detach(), allowed[t]).double().cpu().numpy()
        derived = derive(p, mask)
        rec["alpha"][t] = np.round(a.detach().double().cpu().numpy(), 6).tolist()
        rec["probs"][t] = np.round(p, 6).tolist()
        rec["p_none"][t] = np.round(p[:, NONE], 6).tolist()
        rec["derived"][t] = derived
        rec["derived_darts"][t] = derive_darts(p, topology, mask)
        rec["selected_edges"][t] = selected_edges(derived)
        rec["n_selected"][t] = len(rec["selected_edges"][t])
        rec["width"][t], rec["depth"][t] = width_depth(derived, topology)
    return rec


def initial_record(config) -> dict:
    """The record of epoch 0, the architecture before any step, as the authors log
    the derived cell at the start of every epoch, epoch 0 included. It holds the
    architecture fields only (no costs or accuracies: nothing has run)."""
    types = sorted(set(cell_types(config.network, config.cells)), key=["normal", "reduce"].index)
    mask = config.intervention.allowed(config.topology.n_edges)
    return {"epoch": 0, **architecture(initial_alpha(config, types), {t: mask for t in types}, config.topology)}
