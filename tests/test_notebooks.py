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
    """Execute ``notebook`` (a name in book/, or a path) in book/, with the run cache in tmp_path."""
    monkeypatch.setenv("NAS_RUNS_DIR", str(tmp_path / "runs"))  # the kernel inherits it: no run lands in runs/
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    source = BOOK / notebook
    out = tmp_path / f"out-{source.name}"
    papermill.execute_notebook(str(source), str(out), parameters=parameters, cwd=str(BOOK),
                               progress_bar=False, kernel_name="python3")
    return nbformat.read(out, as_version=4)


TINY_GROWING = dict(seeds=[3], epochs=4, cells=2, channels=4, batch_size=64)


def test_injected_parameters_reach_the_runs(tmp_path, monkeypatch):
    """A tiny growing search: the injected sizes are the runs' config and every
    cell runs without an error, the final check too (on the cpu profile it
    checks the chapter against the study's committed tables, not these runs)."""
    nb = _execute(tmp_path, monkeypatch, "growing.ipynb", **TINY_GROWING)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 4" in injected[0].source
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    config = json.loads((runs[0] / "config.json").read_text())
    assert {k: config[k] for k in ("epochs", "cells", "channels", "batch_size", "seed")} == \
        {"epochs": 4, "cells": 2, "channels": 4, "batch_size": 64, "seed": 3}
    assert sum(1 for _ in open(runs[0] / "history.jsonl")) == 4
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [c.source[:60] for c in code if any(o.output_type == "error" for o in c.outputs)]
    assert "check = checks.study_check(" in code[-1].source and code[-1].outputs  # the check ran and reported
    figure = next(c for c in code if "plots.selection_figure(" in c.source)
    assert "plotly" in json.dumps(figure.outputs)  # the selection figure was drawn


def test_the_check_cell_fails_when_the_study_disagrees(tmp_path, monkeypatch):
    """The chapter's last cell is a real check: in a copy whose study table has
    lost its rows, the check fails there, with its own message, and no cell before it does."""
    nb = nbformat.read(BOOK / "growing.ipynb", as_version=4)
    check = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "\ncheck = checks.study_check(" in check.source
    check.source = check.source.replace(  # the study ran nothing
        "\ncheck = ", "\nstudy_runs = study_runs.iloc[:0]\ncheck = ", 1)
    copy = tmp_path / "growing-no-study.ipynb"
    nbformat.write(nb, copy)
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _execute(tmp_path, monkeypatch, copy, **TINY_GROWING)
    assert info.value.ename == "AssertionError" and "growing: the study finds" in info.value.evalue
    out = nbformat.read(tmp_path / f"out-{copy.name}", as_version=4)
    code = [c for c in out.cells if c.cell_type == "code"]
    failing = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert failing == [len(code) - 1], failing


def test_the_check_cell_fails_when_the_runs_do_not_reproduce_the_study(tmp_path, monkeypatch):
    """The chapter's check compares the runs it has just executed with the study's
    committed rows: in a copy whose committed row of its run differs by more than the
    tolerance in one margin, the check fails, naming that margin and the seed."""
    nb = nbformat.read(BOOK / "width.ipynb", as_version=4)
    check = [c for c in nb.cells if c.cell_type == "code"][-1]
    call = "reproduction.reproduction_check(runs)"
    assert check.source.startswith(f"reproduced = {call}")
    check.source = check.source.replace(call, (  # the committed row, as this run made it, then shifted
        "reproduction.reproduction_check(runs, committed)"), 1)
    check.source = ("committed = study.tables({'faithful DSNAS': runs})[0]\n"
                    "committed.loc[0, 'margin_e2'] += 2 * reproduction.TOLERANCE\n" + check.source)
    copy = tmp_path / "width-drifted.ipynb"
    nbformat.write(nb, copy)
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _execute(tmp_path, monkeypatch, copy, **TINY_GROWING)
    assert info.value.ename == "AssertionError" and "seed 3 ('faithful DSNAS'): margin_e2" in info.value.evalue


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
