"""What a run does when its numbers or its files go wrong.

* :class:`DivergenceError`: a loss, alpha or the weights' gradient norm stopped
  being finite; the search stops at that step and keeps its last finished epoch.
* Strict JSON: every file is written with ``allow_nan=False``, and a reader that
  meets ``NaN`` / ``Infinity`` (which :func:`json.loads` accepts by default) says
  which line of which file is bad. :func:`finite_or_none` writes an undefined
  statistic as ``null``, as :mod:`nas_core.cost` does.
* Checksums: each history line and each checkpoint carries a digest of its own
  content, so a flipped byte is found instead of returned as a result.
* Fault injection for the tests: ``NAS_FAULT=POINT@EPOCH`` makes a run's writers
  stop the process (``os._exit``) at that point, e.g. half-way through a file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re


class DivergenceError(RuntimeError):
    """The search diverged (a non-finite loss, alpha or gradient norm)."""


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


def nonfinite_path(obj, path: str = "") -> str | None:
    """Where the first non-finite float of a nested structure is, as ``a.b[2]``."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "the value")
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for where, v in items:
        found = nonfinite_path(v, where)
        if found:
            return found
    return None


# ---- checksummed JSON lines ---------------------------------------------------------

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


# ---- checkpoint digests -------------------------------------------------------------

def state_digest(state) -> str:
    """A digest of a checkpoint's whole content: every tensor's dtype, shape and
    bytes and every other value, in order (a flipped byte anywhere changes it)."""
    import torch

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


# ---- fault injection (tests) --------------------------------------------------------

FAULT_ENV = "NAS_FAULT"


def injected(point: str, epoch: int) -> bool:
    """Whether ``NAS_FAULT`` asks the writer to stop at ``point`` of ``epoch``."""
    return os.environ.get(FAULT_ENV) == f"{point}@{epoch}"


def die():
    """Stop the process at once, as ``kill -9`` would (no cleanup, no flush)."""
    os._exit(137)
