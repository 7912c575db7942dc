"""The search: one supernet, one relaxation, single- or bi-level updates, and
the cost instrumentation that every step gets for free.

Each step draws Z from the relaxation, gives every cell its own leaf copy of Z,
runs forward and backward once, and reads the cost dL/dZ off the leaves' .grad.
The weights' gradient comes from the same backward pass; alpha's gradient is
the relaxation's rule applied to the cost summed over the cells sharing alpha.

:class:`Search` (``search``) is composed of its parts, one module each:

- ``state``: :class:`SearchState`, what a search holds (net, alpha, optimisers, data
  splits, schedules), the optimiser updates and the checkpoint;
- ``passes``: :class:`CostPasses`, the one forward/backward pass that reads the cost
  (:meth:`Search.measure` is its public form);
- ``step``: :class:`SingleLevelStep`, the training step;
- ``bilevel``: :class:`BilevelAlphaStep`, the held-out alpha step, first order and
  DARTS' unrolled second order;
- ``epoch``: :class:`EpochLoop`, the loop over one epoch, evaluation, probing and the
  epoch record.
"""
from .bilevel import BilevelAlphaStep
from .epoch import EpochLoop, initial_record
from .passes import CostPasses
from .search import Search
from .state import SearchState, epoch_generator, kept_buffers
from .step import SingleLevelStep

__all__ = ["BilevelAlphaStep", "CostPasses", "EpochLoop", "Search", "SearchState", "SingleLevelStep",
           "epoch_generator", "initial_record", "kept_buffers"]
