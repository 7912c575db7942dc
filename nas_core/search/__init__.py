"""The search: one supernet, one relaxation, single- or bi-level updates, and
the cost instrumentation that every step gets for free.

Each step draws Z from the relaxation, gives every cell its own leaf copy of Z,
runs forward and backward once, and reads the cost dL/dZ off the leaves' .grad.
The weights' gradient comes from the same backward pass; alpha's gradient is
the relaxation's rule applied to the cost summed over the cells sharing alpha.

One class, :class:`Search`, built in layers, one module each:

- ``state``: what a search holds (net, alpha, optimisers, schedules) and its checkpoint;
- ``step``: one forward/backward (:meth:`Search.measure` is its public form) and the
  single-level step;
- ``bilevel``: the held-out alpha step, first order and DARTS' unrolled second order;
- ``epoch``: the loop over one epoch, evaluation, probing and the epoch record.
"""
from .epoch import Search, initial_record
from .state import epoch_generator, kept_buffers

__all__ = ["Search", "epoch_generator", "initial_record", "kept_buffers"]
