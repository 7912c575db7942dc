"""The command line end to end, and bi-level steps (first and second order) on
tiny data. The maths is checked in test_unified_view.py, runs in test_search.py,
validation in test_config.py, the cell space in test_space.py."""
import json
import subprocess
import sys

import torch
from conftest import TINY

from nas_core import SearchConfig, patterns
from nas_core.cli import main as cli_main
from nas_core.search import Search


def test_bilevel_and_second_order_steps_move_alpha():
    for order in (1, 2):
        s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "level": "bi", "order": order, "arch_lr": 0.1}))
        before = s.alpha["normal"].detach().clone()
        rec = s.run_epoch()
        assert not torch.equal(before, s.alpha["normal"].detach())
        assert "heldout" in rec["cost"] and "train" in rec["cost"]


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--data", "synthetic", "--cells", "2", "--channels", "4", "--epochs", "2", "--batch-size", "16",
            "--delete-edges", "0", "--fix-op", "1=sep_conv_3x3", "--exclude-op", "4=skip_connect+max_pool_3x3",
            "--out", str(out), "--no-progress"]
    assert cli_main(args) == 0
    assert "epochs; final derived cell {'normal': ['none', 'sep_conv_3x3', " in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["intervention"]["delete_edges"] == [0] and cfg["cells"] == 2
    assert cli_main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "derived cell" in shown
    # one line per epoch: its number, the derived cell in short names (edge 0 deleted: '-', edge 1 fixed: sep3)
    rows = [line.split() for line in shown.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [row[0] for row in rows] == ["1", "2"] and all(row[1:3] == ["-", "sep3"] for row in rows)
    assert cli_main(["stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == set(patterns.PATTERNS) >= {"growing", "width", "bilevel", "width_decisive"} and all("holds" in v for v in stats.values())
    assert cli_main(["search", "--algorithm", "foo", "--out", str(tmp_path / "x")]) == 2
    assert "choose one of" in capsys.readouterr().err
    # --epochs 0 used to "finish" an empty run: now refused before anything runs
    assert cli_main(["search", "--preset", "growing", "--epochs", "0", "--out", str(tmp_path / "p"),
                     "--no-progress", "--data", "synthetic"]) == 2
    assert "invalid epochs=0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_the_command_line_loads_no_chapter_at_start_up():
    code = ("import sys, nas_core.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('nas_core.chapters', 'nas_core.plots'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
