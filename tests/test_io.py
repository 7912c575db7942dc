"""nas_core.runs.io: a file is replaced whole or not at all, strict JSON names the
bad line, and digests find a changed line or checkpoint byte (the same files
under kill -9 and random corruption: tests/test_faults.py)."""
import errno
import json

import pytest
import torch

from nas_core.runs import io


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    f = tmp_path / "a.json"
    io.write_atomic(f, b"old")
    io.write_atomic(f, b"new", previous=tmp_path / "a.prev")
    assert f.read_bytes() == b"new" and (tmp_path / "a.prev").read_bytes() == b"old"
    io.write_atomic(f, lambda p: p.write_text("by a writer"))  # e.g. DataFrame.to_csv
    assert f.read_text() == "by a writer"

    def full_disk(file, data):
        file.write_bytes(data[:2])  # a part was written when the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_write_file", full_disk)
    with pytest.raises(OSError, match="No space"):
        io.write_atomic(f, b"never seen")
    assert f.read_text() == "by a writer" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.prev"]


def test_strict_json_refuses_nan_and_names_the_line(tmp_path):
    with pytest.raises(ValueError):
        io.dumps({"x": float("nan")})
    text = '{\n "a": 1,\n "b": [1, NaN]\n}'
    assert json.loads(text)["b"][1] != 0  # the standard library takes it
    with pytest.raises(io.NonStrictJSON, match=r"f.json: line 3 holds NaN"):
        io.loads(text, "f.json")
    (tmp_path / "f.json").write_text(text)
    with pytest.raises(ValueError, match=r"f.json is unreadable .*line 3 holds NaN.*; delete it"):
        io.read_json(tmp_path / "f.json", "delete it")
    io.write_json(tmp_path / "g.json", {"undefined": float("inf"), "ok": [0.5, float("nan")]})
    assert io.read_json(tmp_path / "g.json") == {"undefined": None, "ok": [0.5, None]}
    assert io.finite_or_none((1.0, {"x": float("-inf")})) == [1.0, {"x": None}]


def test_line_digest_finds_a_changed_line():
    record = {"epoch": 3, "train_acc": 0.5, "alpha": {"normal": [[0.1, -0.2]]}}
    line = io.line_with_digest(record)
    assert line.startswith('{"digest": "') and "\n" not in line
    assert json.loads(line)["digest"] == "0ebde34160c0f945"  # the format on disk: finished runs must still load
    assert io.parse_line(line) == record
    assert io.parse_line(io.line_with_digest({})) == {}
    with pytest.raises(ValueError, match="does not match"):
        io.parse_line(line.replace("0.5", "0.6"))
    with pytest.raises(ValueError, match="digest is missing"):
        io.parse_line('{"train_acc": 0.5}')
    assert io.parse_line('{"epoch": 1, "x": 2}') == {"epoch": 1, "x": 2}  # an older version's line


def test_state_digest_changes_with_any_byte():
    state = {"epoch": 2, "weights": torch.arange(6, dtype=torch.float32).reshape(2, 3), "names": ["a", "b"]}
    digest = io.state_digest(state)
    assert digest == "7250b02916a2dd1c40580b4136f2eb6f"  # the format on disk: checkpoints must still load
    flipped = state["weights"].clone()
    flipped.view(-1).view(torch.uint8)[5] ^= 1  # one bit of one float
    assert io.state_digest({**state, "weights": flipped}) != digest
    assert io.state_digest({**state, "weights": state["weights"].double()}) != digest  # the dtype counts
    assert io.state_digest({**state, "epoch": 3}) != digest
