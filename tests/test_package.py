"""nas_core on its own, outside this checkout's venv: ``python -m build`` makes a
wheel and an sdist; in a fresh virtual environment (no system site-packages,
so no nas_core) the chapters' first cell installs the wheel (NAS_CORE_SOURCE
points it there, so the test runs offline) and the package then runs; ``pip
install`` of the wheel gives a working command line on synthetic and on the
default (digits) data; and Binder's postBuild installs the checkout there.

The fresh environment is made once for this module: the wheel's dependencies
are installed at the versions requirements.txt pins (torch from the local wheel
directory pip is configured with), then nas_core is uninstalled again."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))  # every chapter starts with the cell
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "nas_core" / "__init__.py").read_text(), re.M)[1]
TINY = ["--epochs", "1", "--cells", "2", "--channels", "4", "--no-progress"]


def _run(cmd, *, cwd, env=None, timeout=900) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", **(env or {})}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built from this checkout (without build
    isolation: the venv's setuptools, offline)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=ROOT)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, dist) -> Path:
    """A plain virtual environment holding nas_core's dependencies but not nas_core."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "-c", ROOT / "requirements.txt", dist["wheel"]], cwd=venv.parent)
    _run([python, "-m", "pip", "uninstall", "-y", "-q", "nas_core"], cwd=venv.parent)
    return python


def test_wheel_and_sdist(dist):
    assert dist["wheel"].name == f"nas_core-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        metadata = whl.read(f"nas_core-{VERSION}.dist-info/METADATA").decode()
    assert "nas_core/__main__.py" in names and not any(n.startswith("tests/") for n in names)
    for dep in ("torch", "numpy", "pandas", "scikit-learn", "plotly", "ipywidgets", "pyyaml", "tqdm"):
        assert re.search(rf"^Requires-Dist: {dep}\b", metadata, re.M | re.I), dep
    assert re.search(r'^Requires-Dist: ray.*extra == "ray"', metadata, re.M)
    with tarfile.open(dist["sdist"]) as sdist:
        members = sdist.getnames()
    assert f"nas_core-{VERSION}/pyproject.toml" in members and f"nas_core-{VERSION}/nas_core/cli.py" in members


def _bootstrap() -> str:
    """The lines every chapter's first code cell starts with (up to its first blank line)."""
    blocks = {}
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" not in first.metadata.get("tags", []), name
        blocks[name] = first.source.split("\n\n", 1)[0]
    assert len(set(blocks.values())) == 1, blocks
    block = blocks["intro"]
    assert 'find_spec("nas_core")' in block and "%pip install" in block and "NAS_CORE_SOURCE" in block
    assert "git+https://github.com/wiring-nas/wiring-nas" in block  # pyproject's Homepage
    return block


def test_first_cell_installs_nas_core(fresh, dist, tmp_path):
    """Colab's case: the chapter's first cell, in IPython, installs the package
    where it is missing; then the package runs (a tiny search) from that
    environment, not from this checkout."""
    _run([fresh, "-m", "pip", "uninstall", "-y", "-q", "nas_core"], cwd=tmp_path)
    script = tmp_path / "first_cell.ipy"
    script.write_text(_bootstrap() + "\n\n" + "\n".join([
        "import json, nas_core",
        "h = nas_core.run(nas_core.SearchConfig(data='synthetic', cells=2, channels=4, epochs=1),",
        "                 out='run', progress=False)",
        "print(json.dumps({'version': nas_core.__version__, 'file': nas_core.__file__, 'epochs': len(h)}))",
    ]) + "\n")
    out = _run([fresh, "-m", "IPython", "--quick", "--no-banner", "--colors=nocolor", script], cwd=tmp_path,
               env={"NAS_CORE_SOURCE": str(dist["wheel"]), "NAS_RUNS_DIR": str(tmp_path / "runs")})
    result = json.loads(out.strip().splitlines()[-1])
    assert result["version"] == VERSION and result["epochs"] == 1
    assert Path(result["file"]).is_relative_to(fresh.parent.parent), result["file"]
    # with nas_core present, the cell installs nothing
    again = _run([fresh, "-m", "IPython", "--quick", "--no-banner", script], cwd=tmp_path,
                 env={"NAS_CORE_SOURCE": "/nonexistent.whl"})
    assert "nonexistent" not in again


def test_installed_wheel_command_line(fresh, dist, tmp_path):
    _run([fresh, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", dist["wheel"]], cwd=tmp_path)
    assert _run([fresh, "-m", "nas_core", "--version"], cwd=tmp_path).strip() == f"nas_core {VERSION}"
    _run([fresh, "-m", "nas_core", "search", "--data", "synthetic", *TINY, "--out", tmp_path / "synthetic"],
         cwd=tmp_path)
    # the default data, scikit-learn's digits (bundled with it: no download)
    _run([fresh, "-m", "nas_core", "search", *TINY, "--out", tmp_path / "digits"], cwd=tmp_path)
    for name in ("synthetic", "digits"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["epochs"] == 1 and (tmp_path / name / "history.jsonl").read_text().count("\n") == 1
    assert json.loads((tmp_path / "digits" / "config.json").read_text())["data"] == "digits"
    stats = json.loads(_run([fresh, "-m", "nas_core", "stats", tmp_path / "digits"], cwd=tmp_path))
    assert {"growing", "width", "bilevel"} <= set(stats)
    where = _run([fresh, "-c", "import nas_core; print(nas_core.__file__)"], cwd=tmp_path).strip()
    assert Path(where).is_relative_to(fresh.parent.parent) and "site-packages" in where


def test_binder_postbuild(fresh, tmp_path):
    """Binder runs postBuild after installing requirements.txt: with the
    dependencies in place, it installs this checkout (no other package moves)."""
    before = _run([fresh, "-m", "pip", "freeze", "--exclude", "nas_core"], cwd=tmp_path)
    _run(["bash", ROOT / "postBuild"], cwd=ROOT, env={"PATH": f"{fresh.parent}:{os.environ['PATH']}",
                                                       "VIRTUAL_ENV": str(fresh.parent.parent)})
    assert _run([fresh, "-m", "pip", "freeze", "--exclude", "nas_core"], cwd=tmp_path) == before
    _run([fresh, "-m", "pip", "check"], cwd=tmp_path)
    where = _run([fresh, "-c", "import nas_core; print(nas_core.__file__)"], cwd=tmp_path).strip()
    assert Path(where) == ROOT / "nas_core" / "__init__.py"
