"""Autograd functions of the fast path (nas_core.fast) that
control the memory layout of gradients.

On the CPU a BatchNorm or concatenation whose input is channels-last but whose
gradient arrives in NCHW order takes a slow path (8x for a BN backward at 32x32,
15x for a cat): every gradient that the fast path produces must stay channels-last.
"""
from __future__ import annotations

import torch

CL = torch.channels_last


class GlobalMean(torch.autograd.Function):
    """The mean over height and width of a channels-last (N, C, H, W) tensor, whose
    gradient is materialised channels-last (autograd's own mean backward is an
    expanded view, which every op behind it copies into NCHW order)."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean(dim=(2, 3))

    @staticmethod
    def backward(ctx, g):
        n, c, h, w = ctx.shape
        out = torch.empty(ctx.shape, dtype=g.dtype, device=g.device, memory_format=CL)
        out.copy_((g / (h * w))[:, :, None, None].expand(n, c, h, w))
        return out


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(dim=(2, 3))`` with a channels-last gradient (see :class:`GlobalMean`)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=CL) and torch.is_grad_enabled() and x.requires_grad:
        return GlobalMean.apply(x)
    return x.mean(dim=(2, 3))


class CatChannels(torch.autograd.Function):
    """``torch.cat(parts, dim=1)`` whose backward gives each part a dense
    channels-last gradient (autograd's gives channel slices of one tensor, which
    are dense in no layout, and the BN, conv or pool behind each part copies them
    into NCHW order)."""

    @staticmethod
    def forward(ctx, *parts):
        ctx.sizes = [p.shape[1] for p in parts]
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, g):
        return tuple(p.contiguous(memory_format=CL) for p in g.split(ctx.sizes, dim=1))


def cat_channels(parts) -> torch.Tensor:
    """The channel concatenation of channels-last (N, C, H, W) tensors, with dense
    channels-last gradients (see :class:`CatChannels`)."""
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    if torch.is_grad_enabled() and any(p.requires_grad for p in parts):
        return CatChannels.apply(*parts)
    return torch.cat(parts, dim=1)


class SplitChannels(torch.autograd.Function):
    """``x.split(sizes, dim=1)`` as dense channels-last copies (a channel slice of a
    channels-last tensor is dense in no layout, and every op that reads it would
    copy it first), whose backward concatenates the gradients."""

    @staticmethod
    def forward(ctx, x, sizes):
        ctx.sizes = sizes
        return tuple(p.contiguous(memory_format=CL) for p in x.split(sizes, dim=1))

    @staticmethod
    def backward(ctx, *grads):
        ref = next(g for g in grads if g is not None)
        parts = [g if g is not None else ref.new_zeros(ref.shape[0], s, *ref.shape[2:]).contiguous(memory_format=CL)
                 for g, s in zip(grads, ctx.sizes)]
        return torch.cat(parts, dim=1), None


def split_channels(x: torch.Tensor, sizes) -> tuple:
    """The channel blocks of a channels-last tensor, each dense channels-last (see
    :class:`SplitChannels`)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return SplitChannels.apply(x, list(sizes))
    return tuple(p.contiguous(memory_format=CL) for p in x.split(list(sizes), dim=1))
