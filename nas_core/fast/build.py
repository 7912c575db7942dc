"""The fast path's C kernels built into a shared library with the machine's C
compiler, the first time they are needed, and kept in a cache directory.

The library's name is a digest of everything that makes it: the source and the
files beside it that it includes, the compiler and its flags, the CPU (``-march=native``
builds for its instruction sets) and the machine; a change in any of them builds a
new one. A build is written under a temporary name and renamed, so concurrent
builds are safe.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from . import flags

SOURCE = Path(__file__).with_name("kernels") / "kernels.c"  # it includes the other files of kernels/
FLAGS = [["-O3", "-march=native"], ["-O3"]]  # the second where the compiler knows no -march=native
INCLUDED = (".h", ".inc")  # the suffixes of the files beside a source that it may include


class NativeBuildError(RuntimeError):
    """The C kernels could not be compiled."""


def cache_dir() -> Path:
    """Where built libraries are kept: $NAS_CORE_NATIVE_DIR, else the user's cache."""
    if os.environ.get(flags.NATIVE_DIR):
        return Path(os.environ[flags.NATIVE_DIR])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas_core" / "native"


def _cpuinfo() -> list[str] | None:
    """The lines of /proc/cpuinfo (None where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None


def cpu_description() -> str:
    """The CPU's description and instruction sets (-march=native builds for them)."""
    lines = _cpuinfo()
    if lines is None:
        return platform.processor()
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("flags", "model name", "Features"))}))


def cpu_identity() -> str:
    """'family F model M stepping S' from /proc/cpuinfo ('' where it lacks them)."""
    fields = {}
    for ln in _cpuinfo() or []:
        key, _, value = ln.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return " ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)


def native_march(compiler: str | None = None) -> str:
    """The -march that -march=native resolves to for the C compiler ('unknown' where
    it cannot say): two machines round alike only if the kernels are built alike."""
    compiler = compiler or os.environ.get("CC", "cc")
    try:
        out = subprocess.run([compiler, "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return next((ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("-march=")
                 and len(ln.split()) > 1), "unknown")


def _code(source: Path) -> bytes:
    """The source's text, then each file beside it that it may include (by name)."""
    included = sorted(p for p in source.parent.iterdir() if p.suffix in INCLUDED and p.is_file())
    return b"\0".join([source.read_bytes(), *(p.name.encode() + b"\0" + p.read_bytes() for p in included)])


def _first_error(stderr: str) -> str:
    """The compiler's first error line (its file and line), else its last line."""
    lines = stderr.strip().splitlines() or ["failed"]
    return next((ln for ln in lines if "error" in ln), lines[-1])


def build(source: Path = SOURCE, directory: Path | None = None, compiler: str | None = None) -> Path:
    """The shared library built from ``source`` (compiled only if the cache lacks it).
    Raises NativeBuildError with the compiler's message."""
    compiler = compiler or os.environ.get("CC", "cc")
    directory = Path(directory or cache_dir())
    code = _code(source)
    errors = []
    for options in FLAGS:
        key = hashlib.sha256(b"\0".join([code, " ".join([compiler, *options]).encode(), cpu_description().encode(),
                                         platform.machine().encode()])).hexdigest()[:20]
        lib = directory / f"native-{key}.so"
        if lib.exists():
            return lib
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(fd)
        cmd = [compiler, *options, "-std=c11", "-shared", "-fPIC", "-o", tmp, str(source), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            os.unlink(tmp)
            raise NativeBuildError(f"{compiler} could not run: {err}") from None
        if proc.returncode == 0:
            os.replace(tmp, lib)
            return lib
        os.unlink(tmp)
        errors.append(f"{' '.join(cmd)}: {_first_error(proc.stderr)}")
    raise NativeBuildError("; ".join(errors))
