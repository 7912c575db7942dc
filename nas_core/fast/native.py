"""The fast path's compiled CPU kernels (nas_core/fast/kernels/, whose kernels.c
says why they exist), built by :mod:`nas_core.fast.build` the first time a fast
forward on a CPU asks for them, and called through ctypes.

Nothing here is required: without a compiler, when the build fails (a warning
says so once), or with ``NAS_CORE_NATIVE=0`` (or inside ``native_kernels(False)``),
the fast path runs PyTorch's own kernels, which compute the same sums.
tests/test_fast_native.py checks every kernel against PyTorch's.
"""
from __future__ import annotations

import ctypes
import warnings
from contextlib import contextmanager

import torch

from . import flags
from .build import NativeBuildError, build

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_INDEX = {torch.float32: torch.int32, torch.float64: torch.int64}  # a max pool's taps, as wide as its values
_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
# name -> its arguments' C types (tensors' data pointers, then sizes)
_KERNELS = {"dw_forward": [_P] * 3 + [_I] * 13, "dw_weight_grad": [_P] * 3 + [_I] * 12,
            "dw_input_grad": [_P] * 3 + [_I] * 12, "pw_forward": [_P] * 3 + [_I] * 5,
            "pw_weight_grad": [_P] * 3 + [_I] * 4,
            "bn_blocks_forward": [_P, _P, _I] + [_P] * 7 + [_I] + [_D] * 2,
            "bn_blocks_backward": [_P, _P, _I] + [_P] * 6 + [_I],
            "bn_parts_forward": [_P, _P, _I, _I] + [_P] * 9 + [_I] + [_D] * 2,
            "bn_parts_backward": [_P, _P, _I, _I] + [_P] * 7 + [_I],
            "max_pool": [_P] * 3 + [_I] * 7, "max_pool_backward": [_P] * 3 + [_I] * 7, "avg_pool": [_P] * 2 + [_I] * 8}

_enabled = flags.on(flags.NATIVE)
_lib = None  # the loaded library: None until the first fast forward on a CPU asks for it
_failure: str | None = None


@contextmanager
def native_kernels(enabled: bool = True):
    """Within the block the fast path uses the compiled kernels if ``enabled`` (and
    they build), else PyTorch's."""
    global _enabled
    old, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = old


def _load():
    """The loaded library with its functions' signatures, or None (warned once)."""
    global _lib, _failure
    if _lib is not None or _failure is not None:
        return _lib
    try:
        lib = ctypes.CDLL(str(build()))
    except (NativeBuildError, OSError) as err:
        _failure = str(err)
        warnings.warn(f"nas_core could not build its C kernels ({_failure}); the fast path uses PyTorch's "
                      f"kernels instead (the same sums, slower on small inputs). Install a C compiler "
                      f"(e.g. apt-get install gcc), or set {flags.NATIVE}=0 to skip them.",
                      RuntimeWarning, stacklevel=3)
        return None
    for name, argtypes in _KERNELS.items():
        for suffix in _SUFFIX.values():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
    _lib = lib
    return lib


def usable(x: torch.Tensor) -> bool:
    """Whether the compiled kernels are on and can take x (a float or double CPU tensor)."""
    return _enabled and x.device.type == "cpu" and x.dtype in _SUFFIX and _load() is not None


def _call(name, dtype, tensors, *sizes):
    """Kernel ``name`` for ``dtype`` on the tensors' data (None: a null pointer) and sizes."""
    lib = _lib or _load()
    if lib is None:
        raise NativeBuildError(f"nas_core's C kernels are not available: {_failure}")
    if getattr(lib, f"{name}_{_SUFFIX[dtype]}")(*_data(*tensors), *sizes) != 0:
        raise MemoryError(f"nas_core.fast.native.{name}: out of memory")


def out_size(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def depthwise_forward(x, w, stride: int, padding: tuple, dilation: int, flip: bool = False):
    """The depthwise conv of channels-last x (N, C, H, W) with w (C, 1, KH, KW) (``flip``:
    the kernel rotated by 180 degrees)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    oh, ow = out_size(h, kh, stride, padding[0], dilation), out_size(wd, kw, stride, padding[1], dilation)
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    _call("dw_forward", x.dtype, (x, w.contiguous(), y), n, h, wd, c, oh, ow, kh, kw, stride, *padding, dilation,
          int(flip))
    return y


def depthwise_weight_grad(x, g, w_shape, stride: int, padding: tuple, dilation: int):
    """dL/dw (C, 1, KH, KW) from channels-last x and g = dL/dy."""
    n, c, h, wd = x.shape
    kh, kw = w_shape[-2:]
    gw = torch.empty((c, 1, kh, kw), dtype=x.dtype)
    _call("dw_weight_grad", x.dtype, (x, g, gw), n, h, wd, c, g.shape[2], g.shape[3], kh, kw, stride, *padding,
          dilation)
    return gw


def depthwise_input_grad(w, g, x_shape, stride: int, padding: tuple, dilation: int):
    """dL/dx (channels-last, ``x_shape``) from w and g = dL/dy."""
    n, c, h, wd = x_shape
    kh, kw = w.shape[-2:]
    if stride == 1 and dilation * (kh - 1) >= padding[0] and dilation * (kw - 1) >= padding[1]:
        # a stride-1 conv's input gradient is the forward conv of g with the flipped kernel
        flipped = (dilation * (kh - 1) - padding[0], dilation * (kw - 1) - padding[1])
        return depthwise_forward(g, w, 1, flipped, dilation, flip=True)
    gx = torch.empty((n, c, h, wd), dtype=g.dtype, memory_format=torch.channels_last)
    _call("dw_input_grad", g.dtype, (w.contiguous(), g, gx), n, h, wd, c, g.shape[2], g.shape[3], kh, kw, stride,
          *padding, dilation)
    return gx


def _pointwise(x, w, groups: int, ci: int, co: int, transposed: bool):
    """y (N, groups * co, H, W) = the grouped 1x1 sum of channels-last x with w, read as
    (groups, co, ci), or as (groups, ci, co) if ``transposed``."""
    n, _, h, wd = x.shape
    y = torch.empty((n, groups * co, h, wd), dtype=x.dtype, memory_format=torch.channels_last)
    _call("pw_forward", x.dtype, (x, w.contiguous(), y), n * h * wd, groups, ci, co, int(transposed))
    return y


def pointwise_forward(x, w, groups: int):
    """The grouped 1x1 conv of channels-last x (N, groups * Ci, H, W) with w (groups * Co, Ci, 1, 1)."""
    return _pointwise(x, w, groups, w.shape[1], w.shape[0] // groups, transposed=False)


def pointwise_input_grad(w, g, groups: int):
    """dL/dx of :func:`pointwise_forward` from g = dL/dy (channels-last): the same sum with
    the roles of Ci and Co swapped, w (groups, Co, Ci) read as that sum's (groups, Ci', Co')."""
    return _pointwise(g, w, groups, w.shape[0] // groups, w.shape[1], transposed=True)


def pointwise_weight_grad(x, g, w_shape, groups: int):
    """dL/dw (groups * Co, Ci, 1, 1) of :func:`pointwise_forward` from x and g = dL/dy."""
    n, _, h, wd = x.shape
    co, ci = w_shape[0] // groups, w_shape[1]
    gw = torch.empty(w_shape, dtype=x.dtype)
    _call("pw_weight_grad", x.dtype, (x, g, gw), n * h * wd, groups, ci, co)
    return gw


def _data(*tensors):
    """The tensors' data pointers (None: a null pointer)."""
    return [None if t is None else t.data_ptr() for t in tensors]


def _pointers(tensors):
    """A C array of the tensors' data pointers (kept alive by the caller during the call)."""
    return (ctypes.c_void_p * len(tensors))(*_data(*tensors))


def _sizes(blocks):
    """A C array of the blocks' channel counts."""
    return (ctypes.c_int64 * len(blocks))(*[b.shape[1] for b in blocks])


def _running(running, channels: int):
    """C arrays for ``running``, (means, variances): one tensor of each per BN module, together
    the channels in order (None: not kept): the means' and variances' pointers and their lengths.
    The kernels move them in place, so no concatenation of them is made (nor split back)."""
    if running is None:
        return None, None, None
    means, variances = running
    lengths = [m.shape[0] for m in means]
    if sum(lengths) != channels or [v.shape[0] for v in variances] != lengths:
        raise ValueError(f"running statistics of {lengths} channels for a BN of {channels}")
    return _pointers(means), _pointers(variances), _int64s(lengths)


def _addresses(*arrays):
    return [None if a is None else ctypes.addressof(a) for a in arrays]


def batch_norm(blocks, weight, running, momentum: float, eps: float):
    """BN with batch statistics of channels-last ``blocks`` (N, C_b, H, W), together the channels
    of the output (N, sum C_b, H, W) in that order, times ``weight`` (or None); the running
    statistics ``running`` (see :func:`_running`; None: not kept) move in place, as in
    ``F.batch_norm(..., training=True)`` of the blocks' concatenation (which is never made).
    Returns y, and the mean and 1/std for the backward."""
    x = blocks[0]
    n, _, h, w = x.shape
    if n * h * w == 1:  # as F.batch_norm: one value per channel has no batch statistics
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    xs, sizes = _pointers(blocks), _sizes(blocks)
    c = sum(sizes)
    y = torch.empty((n, c, h, w), dtype=x.dtype, memory_format=torch.channels_last)
    mean, invstd = torch.empty(c, dtype=x.dtype), torch.empty(c, dtype=x.dtype)
    rms, rvs, rns = _running(running, c)
    _call("bn_blocks_forward", x.dtype, (), ctypes.addressof(xs), ctypes.addressof(sizes), len(blocks),
          *_data(weight, y, mean, invstd), *_addresses(rms, rvs, rns), n * h * w, eps, momentum)
    return y, mean, invstd


def _bn_grads(blocks, input_grads, weight_grad: bool):
    """Empty buffers for a BN backward's gradients: one per block where ``input_grads`` wants
    it (channels-last), and one for the weight (all the blocks' channels) if ``weight_grad``."""
    gxs = [torch.empty_like(b, memory_format=torch.channels_last) if want else None
           for b, want in zip(blocks, input_grads)]
    gw = torch.empty(sum(b.shape[1] for b in blocks), dtype=blocks[0].dtype) if weight_grad else None
    return gxs, gw


def batch_norm_backward(blocks, weight, g, mean, invstd, input_grads, weight_grad: bool):
    """dL/d(each block) (None where ``input_grads`` says not wanted) and dL/dweight (None
    unless ``weight_grad``) of :func:`batch_norm` from channels-last g = dL/dy."""
    x = blocks[0]
    n, _, h, w = x.shape
    gxs, gw = _bn_grads(blocks, input_grads, weight_grad)
    xs, sizes, gp = _pointers(blocks), _sizes(blocks), _pointers(gxs)
    _call("bn_blocks_backward", x.dtype, (), ctypes.addressof(xs), ctypes.addressof(sizes), len(blocks),
          *_data(weight, g, mean, invstd), ctypes.addressof(gp), *_data(gw), n * h * w)
    return gxs, gw


def _int64s(values):
    """A C array of int64 values."""
    return (ctypes.c_int64 * len(values))(*values)


def _part_rows(outs, slots, c):
    """Per part (its output's index, its slot there): a pointer to its first channel in that output,
    and the output's row length (channels per pixel)."""
    size = outs[0].element_size()
    ptrs = [outs[o].data_ptr() + s * c * size for o, s in slots]
    return (ctypes.c_void_p * len(ptrs))(*ptrs), _int64s([outs[o].shape[1] for o, _ in slots])


def batch_norm_parts(blocks, weight, running, momentum: float, eps: float, c: int, slots, n_slots):
    """:func:`batch_norm` whose output, by parts of c channels, goes where it is used instead of into one
    tensor: part q (channels q c .. q c + c - 1 of the blocks' concatenation) to ``slots[q]`` = (o, s),
    slot s of output o, an (N, n_slots[o] c, H, W) channels-last tensor; parts sharing a slot are added.
    Returns the outputs, and the mean and 1/std for the backward."""
    x = blocks[0]
    n, _, h, w = x.shape
    if n * h * w == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    xs, sizes = _pointers(blocks), _sizes(blocks)
    total = sum(sizes)
    outs = [torch.empty((n, k * c, h, w), dtype=x.dtype, memory_format=torch.channels_last) for k in n_slots]
    seen, acc = set(), []
    for slot in slots:  # the first part into a slot writes it, the others add
        acc.append(int(slot in seen))
        seen.add(slot)
    if len(seen) != sum(n_slots):
        raise ValueError("batch_norm_parts: every slot of every output must receive a part")
    ptrs, rows = _part_rows(outs, slots, c)
    flags = _int64s(acc)
    mean, invstd = torch.empty(total, dtype=x.dtype), torch.empty(total, dtype=x.dtype)
    rms, rvs, rns = _running(running, total)
    _call("bn_parts_forward", x.dtype, (), ctypes.addressof(xs), ctypes.addressof(sizes), len(blocks), c,
          *_data(weight), ctypes.addressof(ptrs), ctypes.addressof(rows), ctypes.addressof(flags),
          *_data(mean, invstd), *_addresses(rms, rvs, rns), n * h * w, eps, momentum)
    return outs, mean, invstd


def batch_norm_parts_backward(blocks, weight, grads, c: int, slots, mean, invstd, input_grads, weight_grad: bool):
    """dL/d(each block) and dL/dweight of :func:`batch_norm_parts` from ``grads``, dL/d(each output)
    (channels-last), as :func:`batch_norm_backward`."""
    x = blocks[0]
    n, _, h, w = x.shape
    gxs, gw = _bn_grads(blocks, input_grads, weight_grad)
    xs, sizes, gp = _pointers(blocks), _sizes(blocks), _pointers(gxs)
    ptrs, rows = _part_rows(grads, slots, c)
    _call("bn_parts_backward", x.dtype, (), ctypes.addressof(xs), ctypes.addressof(sizes), len(blocks), c,
          *_data(weight), ctypes.addressof(ptrs), ctypes.addressof(rows), *_data(mean, invstd),
          ctypes.addressof(gp), *_data(gw), n * h * w)
    return gxs, gw


def _pooled(x_shape, stride: int):
    n, c, h, w = x_shape
    return n, c, h, w, out_size(h, 3, stride, 1, 1), out_size(w, 3, stride, 1, 1)


def max_pool(x, stride: int):
    """3x3 max pooling (padding 1) of channels-last x, as ``F.max_pool2d(x, 3, stride, 1)``;
    returns y and, per output, the tap (0..8) its maximum came from (for the backward)."""
    n, c, h, w, oh, ow = _pooled(x.shape, stride)
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    idx = torch.empty((n, c, oh, ow), dtype=_INDEX[x.dtype], memory_format=torch.channels_last)
    _call("max_pool", x.dtype, (x, y, idx), n, h, w, c, oh, ow, stride)
    return y, idx


def max_pool_backward(g, idx, x_shape, stride: int):
    """dL/dx of :func:`max_pool` from channels-last g = dL/dy."""
    n, c, h, w, oh, ow = _pooled(x_shape, stride)
    gx = torch.empty((n, c, h, w), dtype=g.dtype, memory_format=torch.channels_last)
    _call("max_pool_backward", g.dtype, (g, idx, gx), n, h, w, c, oh, ow, stride)
    return gx


def avg_pool(x, stride: int):
    """3x3 average pooling (padding 1, not counted) of channels-last x, as
    ``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)``."""
    n, c, h, w, oh, ow = _pooled(x.shape, stride)
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    _call("avg_pool", x.dtype, (x, y), n, h, w, c, oh, ow, stride, 0)
    return y


def avg_pool_backward(g, x_shape, stride: int):
    """dL/dx of :func:`avg_pool` from channels-last g = dL/dy."""
    n, c, h, w, oh, ow = _pooled(x_shape, stride)
    gx = torch.empty((n, c, h, w), dtype=g.dtype, memory_format=torch.channels_last)
    _call("avg_pool", g.dtype, (g, gx), n, h, w, c, oh, ow, stride, 1)
    return gx
