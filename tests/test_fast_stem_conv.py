"""nas_core.fast.stem_conv: the stem's conv as a product of patches against
PyTorch's convolution, in float64."""
from __future__ import annotations

import pytest
import torch

from nas_core.fast.stem_conv import stem_conv


@pytest.mark.parametrize("c_in,c_out,h,w", [(1, 24, 8, 8), (3, 48, 5, 7)])
def test_the_stem_as_a_product_of_patches_equals_its_conv_in_float64(c_in, c_out, h, w):
    """nas_core.fast.stem_conv: output (channels-last) and the gradients of the input and the kernel."""
    g = torch.Generator().manual_seed(c_in)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False).double()
    x = torch.randn(3, c_in, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    want, got = conv(x), stem_conv(conv, x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (want - got).abs().max() < 1e-12
    dy = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(want, (x, conv.weight), dy), torch.autograd.grad(got, (x, conv.weight), dy)):
        assert (a - b).abs().max() < 1e-10 * a.abs().max()
