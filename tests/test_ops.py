"""The candidate ops: every name builds, keeps the channel count, halves the
map at stride 2, and the ops ending in batch-statistics BN are invariant to
the scale of their input (the book's scale-invariance argument)."""
from __future__ import annotations

import pytest
import torch

from nas_core.ops import OPS, PARAMETRIC, make_op


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", OPS)
def test_every_op_keeps_channels_and_strides(name, stride):
    torch.manual_seed(0)
    y = make_op(name, 4, stride)(torch.randn(3, 4, 8, 8))
    assert y.shape == (3, 4, 8 // stride, 8 // stride)
    if name == "none":
        assert not y.any()


@pytest.mark.parametrize("name", [*PARAMETRIC, "max_pool_3x3", "avg_pool_3x3"])
def test_ops_ending_in_bn_ignore_the_input_scale(name):
    torch.manual_seed(0)
    op = make_op(name, 4, 1).double().train()
    for m in op.modules():   # exact only as BN's epsilon goes to 0 (it breaks it by ~eps / var)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-30
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(op(7.0 * x), op(x), rtol=1e-10, atol=1e-10)


def test_unknown_op_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown op 'conv_7x7'.*sep_conv_3x3"):
        make_op("conv_7x7", 4, 1)
