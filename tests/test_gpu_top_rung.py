"""study/gpu_top_rung.py, the script a GPU session runs in its few minutes: its
smoke mode on the CPU, on small Fashion-MNIST files the test writes itself."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
from test_idx import make_set

from nas_core.data import steps_per_epoch
from nas_core.presets import preset

SCRIPT = Path(__file__).resolve().parents[1] / "study" / "gpu_top_rung.py"


def test_smoke_runs_both_algorithms_and_writes_the_study_s_tables(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_top_rung", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    make_set(tmp_path / "fm", seed=0)
    monkeypatch.setenv("NAS_RUNS_DIR", str(tmp_path / "runs"))
    script.main(["--smoke", "--seeds", "0", "--data-dir", str(tmp_path / "fm"), "--out", str(tmp_path / "out")])
    runs = pd.read_csv(tmp_path / "out" / "gpu_runs-smoke.csv")
    assert sorted(runs.rung) == ["bilevel on cpu, fashion_mnist", "growing on cpu, fashion_mnist"]
    assert (runs.device == "cpu").all() and (runs.epochs == 2).all()
    for name, row in zip(runs.rung, runs.itertuples()):
        config = preset(name.split()[0], "fashion", cells=2, channels=4, batch_size=32, eval_size=64,
                        resolution=28, augment_shift=4, epochs=2, data_dir=str(tmp_path / "fm"))
        assert config.data == "fashion_mnist" and row.steps == 2 * steps_per_epoch(config)
    assert len(pd.read_csv(tmp_path / "out" / "gpu_curves-smoke.csv")) == 2 * 2   # epochs 1 and 2 of each run
