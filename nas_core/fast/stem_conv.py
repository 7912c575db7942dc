"""The stem's 3x3 convolution on the fast path (nas_core.fast.network), on a CPU: one
matrix product of the input's 3x3 patches (``F.unfold``) with the kernel, whose
output is channels-last as it comes. The same sums as ``F.conv2d``; measured
forward and backward at one torch thread, about twice as fast as PyTorch's
(oneDNN's) conv for the digits stem (1 -> 24 channels, 8x8, batch 32 and 256) and
for CIFAR-10's (3 -> 48 channels, 32x32, batch 64)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _patches_apply(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dim() == 4 and conv.bias is None and conv.groups == 1
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple))


def stem_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, channels-last: on a CPU (no bias, stride 1, no dilation or groups) as
    the product of x's patches with the kernel, else ``conv`` itself made channels-last."""
    if not _patches_apply(conv, x):
        return conv(x).contiguous(memory_format=torch.channels_last)
    n, _, h, w = x.shape
    w2 = conv.weight.reshape(conv.out_channels, -1)
    cols = F.unfold(x, conv.kernel_size, padding=conv.padding)  # (n, C_in kh kw, oh ow)
    oh = h + 2 * conv.padding[0] - conv.kernel_size[0] + 1
    ow = w + 2 * conv.padding[1] - conv.kernel_size[1] + 1
    y = cols.transpose(1, 2).reshape(n * oh * ow, w2.shape[1]) @ w2.t()  # (n oh ow, C_out): (n, h, w, c)
    return y.view(n, oh, ow, conv.out_channels).permute(0, 3, 1, 2)
