"""A textbook DARTS supernet, written from the paper's formulation (Liu, Simonyan
and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019), to measure
``nas_core`` against.

Nothing here is shared with ``nas_core``: every candidate op, ``none`` included,
is its own module; a mixed edge returns ``sum_k w_k * op_k(x)`` over all eight
ops with ``w = softmax(alpha_edge)``; one alpha per cell type (normal, reduce),
shared by the cells of that type; normal and reduction cells as in DARTS. The
ops, channels, stem and classifier are those of ``nas_core`` (same FLOPs; the
``none`` op costs a multiplication by zero here, which nas_core skips).

``ReferenceSearch.step(x, y)`` is one single-level DARTS step: forward, backward,
an SGD step on the weights and an Adam step on alpha, from the same backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
CELL_SHAPES = {"minimal": (2, 2), "full": (4, 4)}  # (intermediate nodes, nodes concatenated)


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x * 0.0
        return x[:, :, ::self.stride, ::self.stride] * 0.0


class Identity(nn.Module):
    def forward(self, x):
        return x


class StdConv(nn.Module):
    """ReLU, convolution, batch norm."""

    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        return self.bn(self.conv(self.relu(x)))


class DilatedSeparable(nn.Module):
    """ReLU, depthwise (possibly dilated) convolution, pointwise convolution, batch norm."""

    def __init__(self, c_in, c_out, k, stride, pad, dilation):
        super().__init__()
        self.relu = nn.ReLU()
        self.depthwise = nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dilation, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(self.relu(x))))


class Separable(nn.Module):
    """The DARTS separable convolution: the dilated-separable unit applied twice
    (dilation 1; only the first one strides)."""

    def __init__(self, c, k, stride, pad):
        super().__init__()
        self.first = DilatedSeparable(c, c, k, stride, pad, 1)
        self.second = DilatedSeparable(c, c, k, 1, pad, 1)

    def forward(self, x):
        return self.second(self.first(x))


class PoolBN(nn.Module):
    def __init__(self, kind, c, stride):
        super().__init__()
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride, 1)
        else:
            self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        self.bn = nn.BatchNorm2d(c, affine=False)

    def forward(self, x):
        return self.bn(self.pool(x))


class HalveResolution(nn.Module):
    """The reduction cell's skip: two 1x1 stride-2 convolutions, the second on
    the input shifted by one pixel, concatenated, then batch norm."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.relu = nn.ReLU()
        self.left = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.right = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        x = self.relu(x)
        a = self.left(x)
        b = self.right(x[:, :, 1:, 1:] if x.shape[-1] > 1 else x)
        if b.shape[-2:] != a.shape[-2:]:  # odd sizes: the shifted branch is one pixel short
            b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        return self.bn(torch.cat([a, b], dim=1))


def build(name, c, stride):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return PoolBN("max", c, stride)
    if name == "avg_pool_3x3":
        return PoolBN("avg", c, stride)
    if name == "skip_connect":
        return Identity() if stride == 1 else HalveResolution(c, c)
    if name == "sep_conv_3x3":
        return Separable(c, 3, stride, 1)
    if name == "sep_conv_5x5":
        return Separable(c, 5, stride, 2)
    if name == "dil_conv_3x3":
        return DilatedSeparable(c, c, 3, stride, 2, 2)
    if name == "dil_conv_5x5":
        return DilatedSeparable(c, c, 5, stride, 4, 2)
    raise ValueError(name)


class MixedOp(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self.candidates = nn.ModuleList([build(name, c, stride) for name in PRIMITIVES])

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self.candidates))


class SearchCell(nn.Module):
    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.steps, self.multiplier, self.reduction = steps, multiplier, reduction
        self.pre0 = HalveResolution(c_pp, c) if reduction_prev else StdConv(c_pp, c, 1, 1, 0)
        self.pre1 = StdConv(c_p, c, 1, 1, 0)
        self.mixed = nn.ModuleList()
        for node in range(steps):
            for source in range(2 + node):
                stride = 2 if reduction and source < 2 else 1
                self.mixed.append(MixedOp(c, stride))

    def forward(self, s0, s1, weights):
        states = [self.pre0(s0), self.pre1(s1)]
        edge = 0
        for _ in range(self.steps):
            total = 0
            for h in states:
                total = total + self.mixed[edge](h, weights[edge])
                edge += 1
            states.append(total)
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """``network="standard"``: reduction cells at 1/3 and 2/3 of the depth;
    ``"all_normal"``: none."""

    def __init__(self, cell="minimal", n_cells=8, c=16, in_channels=3, n_classes=10, network="all_normal",
                 stem_multiplier=3):
        super().__init__()
        steps, multiplier = CELL_SHAPES[cell]
        c_stem = stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        reductions = {n_cells // 3, 2 * n_cells // 3} if network == "standard" else set()
        c_pp, c_p, c_cur = c_stem, c_stem, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(n_cells):
            reduction = i in reductions
            if reduction:
                c_cur *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_cur
        self.classifier = nn.Linear(c_p, n_classes, bias=False)
        n_edges = sum(2 + i for i in range(steps))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(PRIMITIVES)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(PRIMITIVES)))

    def arch_parameters(self):
        return [self.alpha_normal, self.alpha_reduce]

    def weights(self):
        return [p for n, p in self.named_parameters() if not n.startswith("alpha_")]

    def forward(self, x):
        w_normal = F.softmax(self.alpha_normal, dim=-1)
        w_reduce = F.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(s1.mean(dim=(2, 3)))


class ReferenceSearch:
    """Single-level DARTS with the reference network: the weights (SGD with
    momentum, weight decay, gradient clipping) and alpha (Adam) both step on the
    gradient of one training loss."""

    def __init__(self, net: SearchNetwork, lr=0.025, momentum=0.9, weight_decay=3e-4, arch_lr=3e-4, grad_clip=5.0):
        self.net = net
        self.w = net.weights()
        self.w_opt = torch.optim.SGD(self.w, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.a_opt = torch.optim.Adam(net.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        self.grad_clip = grad_clip

    def step(self, x, y) -> float:
        self.w_opt.zero_grad(set_to_none=True)
        self.a_opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.w, self.grad_clip)
        self.w_opt.step()
        self.a_opt.step()
        return loss.item()
