""":class:`Search`, composed of its parts: the state it holds, the passes that
read the cost, the single-level step, the bi-level alpha step and the epoch loop.

Read top-down, as DARTS' ``train_search.py`` and ``cnn/architect.py``:
:meth:`Search.run_epoch` (:mod:`.epoch`) takes per batch the held-out alpha step
(:mod:`.bilevel`) and the training step (:mod:`.step`), both through the one
forward/backward pass (:mod:`.passes`), on the state (:mod:`.state`).
"""
from __future__ import annotations

import contextlib

import torch

from .. import data as datasets
from ..config import SearchConfig
from .bilevel import BilevelAlphaStep
from .epoch import EpochLoop, architecture
from .passes import CostPasses
from .state import SearchState, kept_buffers, train_mode
from .step import SingleLevelStep


def _held(name: str, doc: str) -> property:
    """The state's attribute ``name``, read and written through the search."""
    return property(lambda self: getattr(self.state, name), lambda self, value: setattr(self.state, name, value),
                    doc=doc)


class Search:
    """One search: the supernet, alpha per cell type, both optimizers and the data
    splits for ``config``. :meth:`run_epoch` trains one epoch and returns its
    record (costs, alpha, the derived cell); :func:`nas_core.run` drives it,
    with checkpoints and the run cache."""

    def __init__(self, config: SearchConfig, splits: datasets.Splits | None = None):
        #: what the search holds and checkpoints: net, alpha, optimisers, splits, schedules
        self.state = SearchState(config, splits)
        #: the forward/backward passes that read the cost dL/dZ
        self.passes = CostPasses(self.state)
        #: the single-level step, called as ``train_step(x, y, generator, ...)``; returns the loss
        self.train_step = SingleLevelStep(self.state, self.passes)
        #: the bi-level alpha step on a held-out batch, called as ``heldout_alpha_step(x, y, generator, ...)``
        self.heldout_alpha_step = BilevelAlphaStep(self.state, self.passes)
        #: the epoch loop, evaluation and probe
        self.epochs = EpochLoop(self.state, self.passes, self.train_step, self.heldout_alpha_step)

    def run_epoch(self) -> dict:
        """Train one epoch and return its history record (:mod:`nas_core.record`)."""
        return self.epochs.run_epoch()

    def architecture(self) -> dict:
        """alpha, p, the derived cells (``none`` counted, and DARTS' top-2) and
        their wiring metrics, per cell type."""
        return architecture(self.alpha, self.allowed, self.topology)

    # ---- what the search holds (its state) -----------------------------------------
    config = _held("config", "The :class:`~nas_core.SearchConfig` searched.")
    device = _held("device", "The torch device it runs on.")
    topology = _held("topology", "The cell's topology (edges and nodes).")
    types = _held("types", "The cell types, each with its own alpha (``normal``, ``reduce``).")
    net = _held("net", "The supernet (``nas_core.supernet.Network`` or its fast version).")
    alpha = _held("alpha", "{cell type: alpha}, each an (edges x ops) leaf.")
    allowed = _held("allowed", "{cell type: (edges x ops) bool}: the ops the intervention allows.")
    relax = _held("relax", "The relaxation that draws Z from alpha and turns costs into alpha's gradient.")
    splits = _held("splits", "The data splits, on the search's device.")
    params = _held("params", "The supernet's weights, listed once.")
    w_opt = _held("w_opt", "SGD on the weights.")
    a_opt = _held("a_opt", "Adam on alpha.")
    cell_index = _held("cell_index", "Per network cell, (its type, its position among the cells of that type).")
    epoch = _held("epoch", "Epochs done.")

    def lr_at(self, epoch: int) -> float:
        """The weights' learning rate during ``epoch`` (see :meth:`SearchState.lr_at`)."""
        return self.state.lr_at(epoch)

    def temperature_at(self, epoch: int) -> float:
        """The relaxation's temperature at ``epoch`` (see :meth:`SearchState.temperature_at`)."""
        return self.state.temperature_at(epoch)

    def to(self, dtype: torch.dtype) -> "Search":
        """The whole search in ``dtype`` (e.g. float64, for identities checked to the
        last digits); the optimisers start afresh. Returns self."""
        self.state.to(dtype)
        return self

    def zero_grad(self):
        """Zero the weights' gradients, keeping the tensors (see :meth:`SearchState.zero_grad`)."""
        self.state.zero_grad()

    def state_dict(self) -> dict:
        """Everything a resumed run needs (epoch, weights, alpha, both optimizers), as a dict."""
        return self.state.state_dict()

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict` in place; returns None."""
        self.state.load_state_dict(state)

    # ---- one pass, one step ---------------------------------------------------------
    def draw(self, generator, temperature=None, relax=None):
        """One sample of Z per cell type (see :meth:`CostPasses.draw`); returns {cell type: sample}."""
        return self.passes.draw(generator, temperature, relax)

    def forward(self, x, samples):
        """Logits and the per-cell leaf copies of Z whose .grad will be the cost."""
        return self.passes.forward(x, samples)

    def forward_backward(self, x, y, samples, weight_grads: bool = True):
        """The one pass (see :meth:`CostPasses.forward_backward`); returns (loss, logits, z)."""
        return self.passes.forward_backward(x, y, samples, weight_grads)

    def measure(self, x, y, samples, train: bool = True) -> dict:
        """A pass that changes nothing and returns loss, logits, Z and cost (see
        :meth:`CostPasses.measure`, which documents the dict)."""
        return self.passes.measure(x, y, samples, train)

    def evaluate(self, generator):
        """Held-out output cost and accuracy (see :meth:`EpochLoop.evaluate`)."""
        return self.epochs.evaluate(generator)

    def probe(self, n_batches: int, generator) -> tuple[dict, dict]:
        """All ops' costs at the current alpha on ``n_batches`` train and held-out
        batches, nothing updated (see :meth:`EpochLoop.probe`)."""
        return self.epochs.probe(n_batches, generator)

    def view(self, x, generator):
        """The batch as training sees it (augmented when ``augment_shift`` is set)."""
        return self.epochs.view(x, generator)

    # ---- measuring with a chosen batch, Z and ops (the chapters' checks) -------------
    def examples(self, split: str = "train", start: int = 0, n: int | None = None):
        """Images and labels of ``split`` ("train" or "heldout"), ``n`` of them from
        ``start`` (default: to the split's end); returns (x, y)."""
        s = self.splits
        x, y = {"train": (s.train_x, s.train_y), "heldout": (s.heldout_x, s.heldout_y)}[split]
        end = None if n is None else start + n
        return x[start:end], y[start:end]

    def set_alpha(self, alpha: dict):
        """Set alpha's values in place ({cell type: (edges x ops) tensor}); returns None."""
        with torch.no_grad():
            for t, value in alpha.items():
                self.alpha[t].copy_(value)

    def set_batch_norm_eps(self, eps: float):
        """Give every BN layer epsilon ``eps``: BN is exactly scale invariant only as
        eps -> 0, so a tiny one makes the scale identities hold to the last digits."""
        for m in self.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = eps

    def z_for_cells(self, z: dict) -> dict:
        """Each type's one (edges x ops) Z given to every cell of the type:
        {cell type: (cells of the type, edges, ops)}, a view of ``z``."""
        return self.state.z_for_cells(z)

    @contextlib.contextmanager
    def measuring(self, train: bool = True):
        """A block that measures the network without changing it: BN in train mode
        (batch statistics) or eval mode (``train=False``), its running statistics
        and the mode restored afterwards. Backpropagate inside the block (eval-mode
        BN's backward reads the running statistics). Yields nothing."""
        with kept_buffers(self.net), train_mode(self.net, train):
            yield

    def logits(self, x, z: dict, active: dict, nodes: list | None = None):
        """The supernet's logits at an explicit Z ({cell type: (cells of the type,
        edges, ops)}) running the ops ``active`` ({cell type: ops per edge}), graph
        kept. A list ``nodes`` receives each cell's intermediate nodes, gradients
        retained. BN's running statistics move unless inside :meth:`measuring`."""
        return self.net(x, z, active) if nodes is None else self.net(x, z, active, nodes=nodes)

    def estimate_bn_statistics(self, images, z: dict, active: dict):
        """BN's running statistics as their cumulative average over the batches
        ``images`` at Z ``z`` and ops ``active`` (what a trained network carries
        into eval mode); BN's momentum and the mode are restored. Returns None."""
        bns = [m for m in self.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        try:
            with torch.no_grad(), train_mode(self.net):
                for x in images:
                    self.net(x, z, active)
        finally:
            for m, momentum in zip(bns, saved):
                m.momentum = momentum
