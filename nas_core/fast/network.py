"""The supernet's forward on the fast path: :class:`FastNetwork` is
:class:`nas_core.supernet.Network` (the same modules, parameters and state_dict
keys) with another ``features``: channels-last memory, the stem's conv as one
matrix product (nas_core.fast.stem_conv), the preprocessing ops of the cells that
read the same tensor as one (nas_core.fast.waves.shared_preprocessing), and each
cell's edges in fused waves (nas_core.fast.waves.Waves).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import OPS
from ..supernet import Network, retain_nodes
from .channels_last import cat_channels, global_mean
from .stem_conv import stem_conv
from .waves import Waves, shared_preprocessing


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


class FastNetwork(Network):
    """:class:`nas_core.supernet.Network` whose ``features`` take the fast path. A
    forward in which some module of the network below the network itself has a hook,
    or a global module hook is set, takes the plain path, :meth:`Network.features`:
    a hook sees each module's own call, which the fused kernels never make.

    The waves and the list of modules checked for hooks are made at construction:
    replacing a module of a built network is not supported (build another)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waves = [Waves(cell) for cell in self.cells]
        self.submodules = list(self.modules())[1:]

    def hooked(self) -> bool:
        """Whether a forward now takes the plain path (see the class docstring)."""
        m = nn.modules.module
        if m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks:
            return True
        return any(_hooked(module) for module in self.submodules)

    def features(self, x, z, active, nodes=None):
        if self.hooked():
            return super().features(x, z, active, nodes)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        # per type, Z as one flat vector with a constant 1 after each (cell, edge) row
        zf = {t: F.pad(z[t], (0, 1), value=1.0).reshape(-1) for t in self.types}
        per_cell = self.topology.n_edges * (len(OPS) + 1)
        if x.dim() == 4:
            s0 = s1 = self.stem[1](stem_conv(self.stem[0], x))  # channels-last before its BN
        else:
            s0 = s1 = self.stem(x)
        seen = {t: 0 for t in self.types}
        pre = {}  # (cell, 0 | 1) -> its preprocessed input, computed with the other readers of that input
        self._share(s1, [(0, 0), (0, 1), (1, 0)], pre)
        for k, (cell, t) in enumerate(zip(self.cells, self.cell_types)):
            shared = pre.pop((k, 0), None), pre.pop((k, 1), None)
            states = [cell.pre0(s0) if shared[0] is None else shared[0],
                      cell.pre1(s1) if shared[1] is None else shared[1]]
            self.waves[k].forward(states, zf[t], seen[t] * per_cell, active[t])
            retain_nodes(states, nodes)
            s0, s1 = s1, cat_channels([states[j] for j in self.topology.output_nodes])
            self._share(s1, [(k + 1, 1), (k + 2, 0)], pre)
            seen[t] += 1
        return global_mean(s1)

    def _share(self, x, readers, pre):
        """The preprocessing of every cell among ``readers`` ((cell, 0 | 1): its pre0
        or pre1) that reads x, run at once where it can be (nas_core.fast.waves)."""
        readers = [(k, i) for k, i in readers if k < len(self.cells)]
        modules = [self.cells[k].pre0 if i == 0 else self.cells[k].pre1 for k, i in readers]
        for r, y in zip(readers, shared_preprocessing(x, modules, self.training)):
            if y is not None:
                pre[r] = y
