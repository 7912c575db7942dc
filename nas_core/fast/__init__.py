"""The CPU fast path: the supernet's forward with the same maths as
:mod:`nas_core.supernet`, arranged for small inputs on a CPU, where a step is
dominated by the fixed cost of each of its many tiny kernels.

:func:`network` is where the path is chosen, and the only place: it builds a
:class:`~nas_core.fast.network.FastNetwork` (the same modules, parameters and
state_dict keys as :class:`nas_core.supernet.Network`, another forward) unless
``NAS_CORE_FAST=0`` or ``fast_path(False)`` asks for the plain network; the search
builds its network with it (nas_core.search.state). A fast network takes the plain
forward while one of its modules has a hook (nas_core.fast.network).

Inside: :mod:`~nas_core.fast.network` (channels-last, the preprocessing shared
across cells) and :mod:`~nas_core.fast.waves` (a cell's edges in fused waves)
compose the kernels: :mod:`~nas_core.fast.depthwise_conv`,
:mod:`~nas_core.fast.pointwise_conv`, :mod:`~nas_core.fast.pooling`,
:mod:`~nas_core.fast.batch_norm`, :mod:`~nas_core.fast.stem_conv`, with gradients kept
channels-last by :mod:`~nas_core.fast.channels_last`. On a CPU, small inputs run
compiled C kernels (nas_core/fast/kernels/, built by :mod:`~nas_core.fast.build` and
loaded by :mod:`~nas_core.fast.native` the first time a fast forward on a CPU needs
them; ``import nas_core`` compiles and loads nothing). :mod:`~nas_core.fast.memory`
keeps freed memory for reuse in a CPU search; :mod:`~nas_core.fast.flags` reads the
environment. tests/test_fast_network.py checks that both paths give the same losses,
gradients and costs to 1e-10 in float64.
"""
from __future__ import annotations

import contextlib

from ..supernet import Network
from . import flags
from .network import FastNetwork

_FAST = flags.on(flags.FAST)


@contextlib.contextmanager
def fast_path(enabled: bool = True):
    """Within the block, :func:`network` builds fast networks if ``enabled``, else
    plain ones (outside it: the environment, ``NAS_CORE_FAST``)."""
    global _FAST
    old, _FAST = _FAST, bool(enabled)
    try:
        yield
    finally:
        _FAST = old


def network(*args, fast: bool | None = None, **kwargs) -> Network:
    """The supernet ``Network(*args, **kwargs)``: a :class:`FastNetwork` if ``fast``
    (None: as :func:`fast_path` and ``NAS_CORE_FAST`` say, on by default), else the
    plain :class:`nas_core.supernet.Network`."""
    return (FastNetwork if (_FAST if fast is None else fast) else Network)(*args, **kwargs)


__all__ = ["FastNetwork", "fast_path", "network"]
