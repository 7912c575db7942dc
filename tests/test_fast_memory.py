"""nas_core.fast.memory: with freed memory kept, a large block freed and allocated
again faults in no new pages; NAS_CORE_KEEP_MEMORY=0 leaves glibc as it was.
Each case runs in a fresh interpreter (the setting is per process)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

PROBE = """
import json, resource, sys
from nas_core.fast.memory import keep_freed_memory
kept = keep_freed_memory()
assert keep_freed_memory() == kept  # once per process, the same answer
def touch():  # 64 MB written page by page: above glibc's largest mmap threshold (32 MB)
    b = bytearray(64 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    return b
b = touch(); del b
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = touch()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(keep: str) -> dict:
    env = dict(os.environ, NAS_CORE_KEEP_MEMORY=keep)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_kept_memory_is_reused_without_page_faults():
    on, off = _probe("1"), _probe("0")
    assert on["kept"] is True and off["kept"] is False
    pages = (64 << 20) // 4096
    assert off["faults"] >= pages // 2  # glibc maps a fresh, untouched block again
    assert on["faults"] < pages // 20  # the freed block, its pages already in
