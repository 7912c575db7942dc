"""Files that are whole or absent, in strict JSON, with digests.

* :func:`write_atomic`: every file of a run directory, a sweep and a study
  table is written to a temporary file, fsynced and renamed over the old one,
  so a reader sees the old file or the new one, never a part.
* Strict JSON: :func:`dumps` refuses NaN and infinities, and :func:`loads`
  (which, unlike :func:`json.loads`, refuses ``NaN`` / ``Infinity``) says which
  line of which file is bad. :func:`finite_or_none` writes an undefined
  statistic as ``null``.
* Digests: each history line (:func:`line_with_digest`) and each checkpoint
  (:func:`state_digest`) carries a digest of its own content, so a flipped byte
  is found instead of returned as a result.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Callable

import torch

from .. import faults

# ---- strict JSON ------------------------------------------------------------------------


class NonStrictJSON(ValueError):
    """A file holds NaN or Infinity, which is not JSON."""


def dumps(obj, **kw) -> str:
    """``json.dumps`` that refuses NaN and infinities."""
    return json.dumps(obj, allow_nan=False, **kw)


def _reject_constant(token):
    raise NonStrictJSON(token)


_CONSTANT = re.compile(r"(?<=[:\[,])\s*(-?Infinity|NaN)\b")


def loads(text: str, source=None, first_line: int = 1):
    """``json.loads`` that refuses NaN and infinities; the error names ``source``
    and the line (counted from ``first_line``) holding the bad token."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except NonStrictJSON as err:
        m = _CONSTANT.search(text)
        line = first_line + (text.count("\n", 0, m.start(1)) if m else 0)
        raise NonStrictJSON(f"{source or '<json>'}: line {line} holds {err.args[0]}, which is not valid JSON "
                            f"(a non-finite number, e.g. from a run that diverged)") from None


def finite_or_none(obj):
    """A copy of a nested structure with NaN and infinities replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def read_json(path: Path, remedy: str = ""):
    """A strict JSON file's content; ValueError naming the file (and ``remedy``,
    what to do about it) if it is not strict JSON."""
    try:
        return loads(Path(path).read_text(), path)
    except ValueError as err:
        raise ValueError(f"{path} is unreadable ({err}){'; ' + remedy if remedy else ''}") from None


def write_json(path: Path, obj, **kw):
    """``obj`` as strict JSON (an undefined statistic, NaN, written as null; keyword
    arguments go to :func:`json.dumps`), whole or not at all."""
    write_atomic(Path(path), dumps(finite_or_none(obj), **{"indent": 1, "default": str, **kw}).encode())


# ---- writing: every file whole or not at all ---------------------------------------------

def _write_file(file: Path, data: bytes):
    """Write and fsync (tests replace this to simulate a full disk)."""
    with open(file, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def append(fh, text: str):
    """Append to an open file and fsync (tests replace this to simulate a full disk)."""
    fh.write(text)
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(file: Path, data: bytes | Callable[[Path], None], previous: Path | None = None,
                 fault: tuple[str, int] | None = None):
    """Replace ``file`` by ``data`` (bytes, or a function writing a path, e.g.
    ``lambda p: table.to_csv(p)``) so that a reader sees the old file or the new
    one, never a part; with ``previous``, the old file is kept there. ``fault``:
    the (point, epoch) of the fault-injection hooks (:mod:`nas_core.faults`).

    Returns None."""
    file = Path(file)
    tmp = file.with_name(file.name + ".tmp")
    try:
        if callable(data):
            data(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        elif fault and faults.injected(f"{fault[0]}-torn", fault[1]):
            _write_file(tmp, data[: len(data) // 2])
            faults.die()
        else:
            _write_file(tmp, data)
        if previous is not None and file.exists():
            os.replace(file, previous)
            if fault and faults.injected(f"{fault[0]}-rotated", fault[1]):
                faults.die()
        os.replace(tmp, file)
        _fsync_dir(file.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- checksummed JSON lines ---------------------------------------------------------------

_PREFIX = '{"digest": "'
_DIGEST_LEN = 16
_HEAD = len(_PREFIX) + _DIGEST_LEN + len('", ')


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_LEN // 2).hexdigest()


def line_with_digest(record: dict) -> str:
    """One JSON line (no newline) whose first key is a digest of the rest."""
    body = dumps(record)
    if body == "{}":
        return _PREFIX + _digest(body) + '"}'
    return f'{_PREFIX}{_digest(body)}", {body[1:]}'


def parse_line(line: str) -> dict:
    """A line of :func:`line_with_digest` as its record (a history line of an
    older version, without a digest, is taken as it is). ValueError: not JSON, not strict
    JSON, or a digest that does not match (the line was changed)."""
    record = loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if "digest" not in record:
        if line.startswith('{"epoch": '):  # a history line of an older version: no digest
            return record
        raise ValueError("its digest is missing (the line was changed)")
    digest = record.pop("digest")
    body = "{}" if line == f'{_PREFIX}{digest}"}}' else "{" + line[_HEAD:]
    if not (line.startswith(f'{_PREFIX}{digest}"') and isinstance(digest, str) and _digest(body) == digest):
        raise ValueError("its digest does not match its content (the line was changed)")
    return record


# ---- checkpoint digests -------------------------------------------------------------------

def state_digest(state) -> str:
    """A digest of a checkpoint's whole content: every tensor's dtype, shape and
    bytes and every other value, in order (a flipped byte anywhere changes it)."""
    h = hashlib.blake2b(digest_size=16)

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)}".encode())
            for k, v in obj.items():
                h.update(repr(k).encode())
                walk(v)
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}".encode())
            for v in obj:
                walk(v)
        else:
            h.update(f"V{obj!r}".encode())

    walk(state)
    return h.hexdigest()
