"""Publishing, checked offline: the GitHub Actions workflows are valid
(check-jsonschema's schema of workflows) and have no security finding of medium
or high severity (zizmor, offline audits); the book workflow builds on pushes
to main, caches runs/ and the notebook cache, and deploys to GitHub Pages; and
the Binder files (requirements.txt, postBuild) describe the environment that
``make book`` builds.  Running postBuild in a fresh environment is in
test_package.py (it shares that test's virtual environment)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: check-jsonschema and zizmor are pinned in requirements.txt
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: pip install -r requirements.txt (make setup)")
    return str(path)


def _workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"book.yml", "test.yml"}


def test_workflows_match_the_schema():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_finds_nothing(path):
    result = subprocess.run([_tool("zizmor"), "--offline", "--format=json", "--min-severity=medium", str(path)],
                            capture_output=True, text=True, timeout=120)
    findings = json.loads(result.stdout or "[]")
    summary = [(f.get("ident"), f.get("determinations", {}).get("severity"), f.get("desc")) for f in findings]
    assert result.returncode == 0 and not findings, f"{path.name}: {summary}\n{result.stderr[-2000:]}"


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_every_action_is_pinned_by_commit():
    for path in WORKFLOWS:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            for step in _steps(job):
                if "uses" in step:
                    assert SHA.match(step["uses"]), f"{path.name}:{name}: {step['uses']} is not pinned by commit"


def test_book_workflow_builds_caches_and_deploys():
    wf = _workflow("book.yml")
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    assert wf["permissions"] == {}
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    uses = {s["uses"].split("@")[0]: s for s in _steps(build) if "uses" in s}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in _steps(deploy))
    assert any("make book" in s.get("run", "") for s in _steps(build))
    cache = uses["actions/cache"]["with"]
    assert {"runs", "_build/.jupyter_cache", "_build/.book-inputs"} <= set(cache["path"].split())
    for part in ("nas_core/**", "book/**/*.ipynb", "requirements.txt"):
        assert part in cache["key"], cache["key"]


def test_pull_requests_run_make_test():
    wf = _workflow("test.yml")
    on = wf.get("on", wf.get(True))
    assert "pull_request" in on
    runs = [s.get("run", "") for job in wf["jobs"].values() for s in _steps(job)]
    assert any(r.strip() in (".ci/run", "make test") for r in runs), runs


# --------------------------------------------------------------------------- Binder


def _pins() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)  # raises on a line pip would not read
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", f"{line}: not pinned"
            assert canonicalize_name(req.name) not in pins, f"{req.name} pinned twice"
            pins[canonicalize_name(req.name)] = req
    return pins


def _pinned_version(req: Requirement) -> str:
    return next(iter(req.specifier)).version


def test_requirements_pin_every_dependency_within_the_floors():
    """Binder installs requirements.txt, then postBuild installs nas_core with
    --no-deps: so every dependency of the package (its extras too) must be
    pinned there, at a version its floor admits."""
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [Requirement(d) for d in project["dependencies"]]
    deps += [Requirement(d) for extra in project.get("optional-dependencies", {}).values() for d in extra]
    for dep in deps:
        pin = pins.get(canonicalize_name(dep.name))
        assert pin is not None, f"{dep.name} is a dependency of nas_core but not pinned in requirements.txt"
        version = _pinned_version(pin).split("+")[0]
        assert dep.specifier.contains(version, prereleases=True), f"pyproject's {dep} excludes the pin {pin}"


def test_postbuild_installs_the_package_like_make_setup():
    text = (ROOT / "postBuild").read_text()
    assert text.startswith("#!/bin/bash") and (ROOT / "postBuild").stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(ROOT / "postBuild")], check=True)
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -r requirements.txt" in makefile and "pip install -q -e ." in makefile
    assert re.search(r"^pip install --no-deps -e \.$", text, re.M), text


def test_binder_python_is_the_tested_one():
    """repo2docker's default Python is older than the package needs: runtime.txt
    asks for the version the pins are tested with (the Debian CI's 3.11)."""
    runtime = (ROOT / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains(runtime.removeprefix("python-")), (runtime, requires)
    assert runtime == "python-3.11"


def test_launch_buttons_point_at_the_package_home():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    home = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Homepage"]
    assert config["repository"]["url"] == home
    buttons = config["launch_buttons"]
    assert buttons["binderhub_url"] and buttons["colab_url"]
