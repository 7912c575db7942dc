"""The DARTS candidate operations.

Every parametric op is a ReLU-Conv-BN stack and every pooling op is followed by
BN, with ``affine=False`` during search (as in DARTS). Because each op ends in a
BN with batch statistics, its output does not change when its input is scaled:
the book's scale-invariance argument rests on this.
"""
from __future__ import annotations

import torch
from torch import nn

OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NONE = 0
PARAMETRIC = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: Each op's names for people, the one table of them: (label for legends and
#: figures, short name for tables and the command line). The command line's run
#: summary writes ``-`` for ``none`` (:func:`nas_core.cli.show`).
NAMES = {
    "none": ("none", "none"),
    "max_pool_3x3": ("max 3×3", "max"),
    "avg_pool_3x3": ("avg 3×3", "avg"),
    "skip_connect": ("skip", "skip"),
    "sep_conv_3x3": ("sep 3×3", "sep3"),
    "sep_conv_5x5": ("sep 5×5", "sep5"),
    "dil_conv_3x3": ("dil 3×3", "dil3"),
    "dil_conv_5x5": ("dil 5×5", "dil5"),
}
#: Op name -> label for legends and figures (``nas_core.plots.style.OP_LABEL``).
LABEL = {op: label for op, (label, _) in NAMES.items()}
#: Op name -> short name for tables and the command line.
SHORT = {op: short for op, (_, short) in NAMES.items()}


def op_index(name: str) -> int:
    """Index of an op name, with an error that lists the valid names."""
    try:
        return OPS.index(name)
    except ValueError:
        raise ValueError(f"unknown op {name!r}; valid ops are {', '.join(OPS)}") from None


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convolutions, as in DARTS."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        return x.mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 convs (DARTS' skip in reduction cells)."""

    def __init__(self, c_in, c_out, affine):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def halves(self, xr):
        """The two convs' outputs on the ReLU'd input ``xr`` (the second reads it shifted
        by one pixel, zero-padded to the first's size); concatenated, they go into the BN."""
        y = xr[:, :, 1:, 1:] if xr.shape[-1] > 1 else xr
        a, b = self.conv1(xr), self.conv2(y)
        if b.shape[-2:] != a.shape[-2:]:
            b = nn.functional.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        return a, b

    def forward(self, x):
        return self.bn(torch.cat(self.halves(self.relu(x)), dim=1))


def _pool(kind, c, stride, affine):
    pool = (nn.MaxPool2d(3, stride=stride, padding=1) if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=affine))


# op name -> builder(channels, stride, affine); one entry per name in OPS
BUILDERS = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: _pool("max", c, stride, affine),
    "avg_pool_3x3": lambda c, stride, affine: _pool("avg", c, stride, affine),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
assert tuple(BUILDERS) == OPS == tuple(NAMES)


def make_op(name: str, channels: int, stride: int, affine: bool = False) -> nn.Module:
    """Build one candidate op mapping ``channels`` to ``channels`` maps (an
    unknown name raises with the list of valid ones)."""
    return BUILDERS[OPS[op_index(name)]](channels, stride, affine)
