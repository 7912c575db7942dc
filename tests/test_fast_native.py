"""nas_core.fast.native and nas_core.fast.build: float32 to rounding, where the
kernels run and where PyTorch's do, the cached build, what happens when they
cannot be built, and that importing nas_core builds and loads nothing (each
kernel family against PyTorch's: tests/test_fast_depthwise_conv.py, ...)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from nas_core.fast import depthwise_conv, native, pointwise_conv

CL = torch.channels_last


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


def test_float32_agrees_to_rounding():
    x = torch.randn(32, 8, 8, 8).contiguous(memory_format=CL)
    w = torch.randn(8, 1, 5, 5)
    assert _rel(F.conv2d(x, w, None, 1, 2, 1, 8), native.depthwise_forward(x, w, 1, (2, 2), 1)) < 1e-5
    w1 = torch.randn(24, 4, 1, 1)
    x1 = torch.randn(32, 8, 8, 8).contiguous(memory_format=CL)
    assert _rel(F.conv2d(x1, w1, None, 1, 0, 1, 2), native.pointwise_forward(x1, w1, 2)) < 1e-5



def test_large_inputs_cuda_other_dtypes_and_native_off_use_pytorch(monkeypatch):
    conv = torch.nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False)
    for name in ("depthwise_forward", "pointwise_forward"):
        monkeypatch.setattr(native, name, lambda *a, **k: pytest.fail("native kernel called"))
    big = torch.randn(1, 4, 1, depthwise_conv.NATIVE_MAX_ELEMENTS // 4 + 1).contiguous(memory_format=CL)
    depthwise_conv.depthwise(big, conv)
    pointwise_conv.pointwise(torch.randn(1, 4, 1, pointwise_conv.NATIVE_MAX_ELEMENTS // 4 + 1), torch.randn(4, 4, 1, 1))
    with native.native_kernels(False):
        assert not native.usable(torch.zeros(1))
        depthwise_conv.depthwise(torch.randn(2, 4, 8, 8), conv)
    assert not native.usable(torch.zeros(1, dtype=torch.float16))
    assert native.usable(torch.zeros(1)) and native.usable(torch.zeros(1, dtype=torch.float64))



def test_a_build_is_cached_and_a_failed_build_says_what_to_do(tmp_path, monkeypatch):
    lib = native.build(directory=tmp_path)
    stamp = lib.stat().st_mtime_ns
    assert native.build(directory=tmp_path) == lib and lib.stat().st_mtime_ns == stamp  # not compiled again
    with pytest.raises(native.NativeBuildError, match="could not run"):
        native.build(directory=tmp_path / "b", compiler=str(tmp_path / "no-such-compiler"))
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    with pytest.raises(native.NativeBuildError, match="bad.c"):
        native.build(bad, directory=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.so"))  # nothing half-written left behind

    # a machine that cannot build: one warning, then PyTorch's kernels, with the same result
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_failure", None)
    monkeypatch.setattr(native, "build", lambda: (_ for _ in ()).throw(native.NativeBuildError("cc: not found")))
    with pytest.warns(RuntimeWarning, match="apt-get install gcc"):
        assert not native.usable(torch.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.usable(torch.zeros(1))  # warned once, not on every call
    conv = torch.nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL)
    assert _rel(F.conv2d(x, conv.weight, None, 1, 1, 1, 4), depthwise_conv.depthwise(x, conv)) < 1e-6


LOADED = """
import json, os, sys
import nas_core, nas_core.search, nas_core.fast
from nas_core.fast import native

def state():
    built = os.listdir(sys.argv[1]) if os.path.isdir(sys.argv[1]) else []
    with open("/proc/self/maps") as maps:
        mapped = [line for line in maps if sys.argv[1] in line]
    return {"loaded": native._lib is not None, "built": built, "mapped": bool(mapped)}

after_import = state()
import torch
net = nas_core.fast.network(nas_core.Topology.named("minimal"), 1, 4, 1, 10)
net(torch.randn(2, 1, 8, 8), {"normal": torch.rand(1, 5, 8)}, {"normal": [[4]] * 5})
print(json.dumps({"import": after_import, "forward": state()}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings")
def test_importing_nas_core_builds_and_loads_nothing_and_a_fast_cpu_forward_does(tmp_path):
    """In a fresh interpreter with an empty kernel cache: after ``import nas_core`` (and its
    search and fast path) no library is built, loaded or mapped; the first fast forward on
    the CPU builds and loads it."""
    cache = tmp_path / "kernels"
    out = subprocess.run([sys.executable, "-c", LOADED, str(cache)], capture_output=True, text=True, check=True,
                         env={**os.environ, "NAS_CORE_NATIVE_DIR": str(cache), "NAS_CORE_NATIVE": "1"})
    seen = json.loads(out.stdout)
    assert seen["import"] == {"loaded": False, "built": [], "mapped": False}
    assert seen["forward"]["loaded"] and seen["forward"]["mapped"]
    assert [name for name in seen["forward"]["built"] if name.endswith(".so")]


def test_the_cache_key_covers_the_included_files_and_an_error_names_its_line(tmp_path):
    """A change in any file of kernels/ (not only kernels.c) builds a new library; a compiler
    error in an included family's file is reported at that file's line."""
    import shutil

    from nas_core.fast import build

    src = tmp_path / "kernels"
    shutil.copytree(build.SOURCE.parent, src)
    first = build.build(src / "kernels.c", directory=tmp_path / "cache")
    with open(src / "pooling.inc", "a") as f:
        f.write("/* a comment: the same code, another file */\n")
    assert build.build(src / "kernels.c", directory=tmp_path / "cache") != first
    lines = (src / "batch_norm.inc").read_text().splitlines()
    (src / "batch_norm.inc").write_text("\n".join(lines[:3] + ["this is not C;"] + lines[3:]) + "\n")
    with pytest.raises(build.NativeBuildError, match=r"batch_norm\.inc:4:"):
        build.build(src / "kernels.c", directory=tmp_path / "other")
