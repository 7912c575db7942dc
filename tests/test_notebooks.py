"""The book's notebooks as papermill runs them: injected parameters reach the
runs, bad ones fail in the first cell after the parameters with a clear
message, and the notebooks are stored without outputs (except cells whose
output nbval checks)."""
import json
from pathlib import Path

import nbformat
import papermill
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHECKED = "# NBVAL_CHECK_OUTPUT"


def _execute(tmp_path, monkeypatch, notebook, **parameters):
    monkeypatch.setenv("NAS_RUNS_DIR", str(tmp_path / "runs"))  # the kernel inherits it: no run lands in runs/
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / f"out-{notebook}"
    papermill.execute_notebook(str(BOOK / notebook), str(out), parameters=parameters, cwd=str(BOOK),
                               progress_bar=False, kernel_name="python3")
    return nbformat.read(out, as_version=4)


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
        parts.append(o.get("evalue", ""))
    return "\n".join(parts)


def test_injected_parameters_reach_the_runs(tmp_path, monkeypatch):
    """A tiny growing search: the injected sizes are the runs' config, every
    figure cell ran, and only the final check may fail (the pattern need not
    appear in four epochs), with the check's own message."""
    params = dict(seeds=[3], epochs=4, cells=2, channels=4, batch_size=64)
    try:
        nb = _execute(tmp_path, monkeypatch, "growing.ipynb", **params)
        failed = None
    except papermill.PapermillExecutionError as err:
        failed = err
        nb = nbformat.read(tmp_path / "out-growing.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 4" in injected[0].source
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    config = json.loads((runs[0] / "config.json").read_text())
    assert {k: config[k] for k in ("epochs", "cells", "channels", "batch_size", "seed")} == \
        {"epochs": 4, "cells": 2, "channels": 4, "batch_size": 64, "seed": 3}
    assert sum(1 for _ in open(runs[0] / "history.jsonl")) == 4
    code = [c for c in nb.cells if c.cell_type == "code"]
    if failed is not None:
        assert failed.ename == "AssertionError" and "check" in code[-1].source, failed
        assert code[-1].outputs and code[-1].outputs[-1].output_type == "error"
        assert all(not any(o.output_type == "error" for o in c.outputs) for c in code[:-1])
    figure = next(c for c in code if "plots.selection_figure(" in c.source)
    assert "plotly" in json.dumps(figure.outputs)  # the selection figure was drawn


@pytest.mark.parametrize("parameters, message", [
    (dict(seeds=3), "seeds must be a non-empty list"),
    (dict(epochs=-1), "epochs"),
    (dict(algorithm="adam"), "algorithm"),
])
def test_bad_parameters_fail_first(tmp_path, monkeypatch, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _execute(tmp_path, monkeypatch, "bilevel.ipynb", **parameters)
    assert message in str(info.value.evalue)
    nb = nbformat.read(tmp_path / "out-bilevel.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failing = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    after_parameters = 1 + max(i for i, c in enumerate(code) if "parameters" in " ".join(c.metadata.get("tags", [])))
    assert failing == [after_parameters], failing
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_without_outputs(path):
    """The build executes the notebooks; only cells whose outputs nbval checks keep them."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.lstrip().startswith(CHECKED):
            assert not cell.outputs and cell.execution_count is None, (path.name, cell.source[:80])


# About the characters of code the book's text column shows at a laptop width
# (1280 px, book/_static/wide.css); longer lines scroll out of sight.
CODE_WIDTH = 95


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.ipynb")), ids=lambda p: p.name)
def test_code_fits_the_column(path):
    nb = nbformat.read(path, as_version=4)
    long = [line for cell in nb.cells if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert not long, f"{path.name}: code lines over {CODE_WIDTH} characters: {long}"
