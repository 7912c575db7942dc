"""Open every page of the built book in headless Chromium, as a reader would.

Needs ``_build/html`` (``jupyter-book build .``), Debian's ``/usr/bin/chromium``
and the npm files that ``make setup`` unpacks into ``node_modules``.  Outside
``make test`` the test skips when those are missing; ``make test`` sets
``WIRING_NAS_BROWSER_TEST=required`` so that a missing piece fails instead.

The machine has no internet, so nothing may come from a CDN.  Every request
that leaves the local server is intercepted:

* plotly.js (``cdn.plot.ly``) is answered with the ``plotly.min.js`` shipped
  inside the installed plotly package (the same bytes: the page checks them
  against an SRI hash);
* ``cdn.jsdelivr.net/npm/<package>@<version>/<file>`` is answered from
  ``node_modules/<package>/<file>`` when that package is unpacked there at that
  version (require.js and the ipywidgets html-manager embed script, see
  ``nb_ipywidgets_js`` in ``_config.yml``; MathJax, see ``mathjax_path``; and
  the Makefile);
* everything else (web fonts, ...) is aborted and recorded.

Per page it asserts: the page loads, every plotly figure drew its SVG, every
figure and output table fits the text column, MathJax typeset every formula, and
there is no uncaught JavaScript exception and no console error, except the
"failed to load resource" errors of the requests this test aborted itself.  A full-page
screenshot of each page goes to ``_build/screenshots/<page>.png``.
"""

from __future__ import annotations

import functools
import http.server
import json
import mimetypes
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
NODE_MODULES = ROOT / "node_modules"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("WIRING_NAS_BROWSER_TEST") == "required"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 120_000
FIGURE_TIMEOUT_MS = 60_000  # for all figures of a page to draw, after load
JS_HEADERS = {"Access-Control-Allow-Origin": "*"}  # scripts load with crossorigin=anonymous

PLOTLY_CDN = re.compile(r"^/plotly-(?P<version>[0-9][^/]*?)\.min(\.js)?$")
REDIRECT = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=(?P<target>[^"#?]+)', re.I)
JSDELIVR_NPM = re.compile(r"^/npm/(?P<package>(@[^/@]+/)?[^/@]+)@(?P<version>[^/]+)/(?P<file>.+)$")


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def _pages() -> list[str]:
    """Every HTML page of the book, relative to _build/html (Sphinx's own
    folders such as _static and _sources hold no pages)."""
    if not HTML.is_dir():
        return []
    return sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(HTML).parts[:-1])
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        _missing(f"{HTML} is not built: run `jupyter-book build .` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -r requirements.txt)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _npm_file(package: str, version: str, file: str) -> Path | None:
    """The file of an npm package unpacked in node_modules, or None."""
    pkg_dir = NODE_MODULES / package
    manifest = pkg_dir / "package.json"
    if not manifest.is_file():
        return None
    installed = json.loads(manifest.read_text())["version"]
    assert installed == version, (
        f"the book asks for {package}@{version} but node_modules has {installed}: "
        "keep the Makefile's versions and _config.yml's nb_ipywidgets_js in step"
    )
    path = (pkg_dir / file).resolve()
    return path if path.is_file() and pkg_dir.resolve() in path.parents else None


def _local_asset(url: str) -> Path | None:
    """The local file that stands in for a CDN URL, or None."""
    parts = urlsplit(url)
    if parts.hostname == "cdn.plot.ly" and PLOTLY_CDN.match(parts.path):
        return _plotly_js()
    match = JSDELIVR_NPM.match(parts.path)
    if parts.hostname == "cdn.jsdelivr.net" and match:
        return _npm_file(match["package"], match["version"], match["file"])
    return None


@pytest.mark.parametrize("page_path", _pages() or ["<no pages>"])
def test_page_renders(page_path, server, browser):
    if page_path == "<no pages>":
        _missing(f"no HTML pages under {HTML}")
    redirect = REDIRECT.search((HTML / page_path).read_text(errors="replace"))
    if redirect:  # e.g. index.html -> the root page: check the target, open that instead
        target = (HTML / page_path).parent / redirect["target"]
        assert target.is_file(), f"{page_path} redirects to a missing page: {redirect['target']}"
        return

    aborted: set[str] = set()
    errors: list[str] = []

    def route(route):
        url = route.request.url
        if url.startswith(server):
            route.continue_()
            return
        try:
            asset = _local_asset(url)
        except AssertionError as exc:  # a version mismatch: report it, don't hang
            errors.append(str(exc))
            asset = None
        if asset is None:
            aborted.add(url)
            route.abort()
        else:
            kind = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
            route.fulfill(path=str(asset), content_type=kind, headers=JS_HEADERS)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", route)
    page = context.new_page()

    def on_console(msg):
        if msg.type != "error":
            return
        source = (msg.location or {}).get("url", "")
        # The one kind of error tolerated: a resource this test aborted itself
        # (MathJax, web fonts, any other CDN file we do not serve) fails to
        # load.  Everything else, including errors in scripts we served, counts.
        if source in aborted and msg.text.startswith("Failed to load resource"):
            return
        errors.append(f"console error: {msg.text} ({source})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught exception: {exc}"))

    try:
        response = page.goto(f"{server}/{page_path}", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        assert response is not None and response.ok, f"{page_path}: HTTP {response and response.status}"

        n_figures = page.locator(".plotly-graph-div").count()
        if n_figures:
            try:
                page.wait_for_function(
                    """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                              .every(div => div.querySelector('svg.main-svg'))""",
                    timeout=FIGURE_TIMEOUT_MS,
                )
            except Exception:
                pass  # reported just below, with the count of figures that did not draw
        undrawn = page.evaluate(
            """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                      .filter(div => !div.querySelector('svg.main-svg')).map(div => div.id)"""
        )
        # Every formula typeset by MathJax (not left as raw TeX).
        untypeset = page.evaluate(
            """async () => {
                const maths = Array.from(document.querySelectorAll('.math'));
                if (!maths.length) return [];
                for (let i = 0; i < 600 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
                    await new Promise(r => setTimeout(r, 100));
                if (!(window.MathJax && MathJax.startup)) return ['MathJax did not load'];
                await MathJax.startup.promise;
                return maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
            }"""
        )
        page.wait_for_timeout(500)  # let late console messages arrive before the screenshot
        # A figure or a cell's output table wider than the text column is cut off
        # for the reader.
        too_wide = page.evaluate(
            """() => {
                const article = document.querySelector('.bd-article');
                if (!article) return [];
                const column = article.getBoundingClientRect();
                const name = el => {
                    const figure = el.closest('.plotly-graph-div');
                    if (figure) return `figure ${figure.id}`;
                    const head = el.querySelector('tr');
                    return `table '${head ? head.textContent.trim().replace(/\\s+/g, ' ').slice(0, 60) : ''}'`;
                };
                return Array.from(document.querySelectorAll(
                        '.plotly-graph-div svg.main-svg:first-of-type, .cell_output table'))
                    .map(el => [name(el), el.getBoundingClientRect()])
                    .filter(([, box]) => box.right > column.right + 2 || box.left < column.left - 2)
                    .map(([what, box]) => `${what}: ${Math.round(box.left)}-${Math.round(box.right)} px, `
                                          + `column ${Math.round(column.left)}-${Math.round(column.right)} px`);
            }"""
        )

        shot = SCREENSHOTS / Path(page_path).with_suffix(".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    assert not undrawn, f"{page_path}: {len(undrawn)} of {n_figures} plotly figures did not draw: {undrawn}"
    assert not too_wide, f"{page_path}: wider than the text column: {too_wide}"
    assert not untypeset, f"{page_path}: {len(untypeset)} formulas not typeset, e.g. {untypeset[:3]}"
    assert not errors, f"{page_path}:\n" + "\n".join(errors)


# The public API that book/api.md documents (autodoc ids: module.name).
API_NAMES = [
    "nas_core.__version__", "nas_core.SearchConfig", "nas_core.SearchConfig.from_dict", "nas_core.Intervention",
    "nas_core.search.Search", "nas_core.search.Search.run_epoch", "nas_core.run", "nas_core.run_all",
    "nas_core.load", "nas_core.History", "nas_core.History.series", "nas_core.patterns.statistics",
    "nas_core.patterns.growing", "nas_core.patterns.width", "nas_core.patterns.bilevel",
    "nas_core.presets.preset", "nas_core.presets.seed_configs", "nas_core.runs.sweep.run_sweep",
    "nas_core.runs.sweep.load_table", "nas_core.runs.sweep.plan", "nas_core.search.Search.measure",
    "nas_core.record.costs", "nas_core.record.summed_costs", "nas_core.record.edge_cost",
    "nas_core.plots.style.setup_plotly", "nas_core.plots.frames.cost_frame", "nas_core.plots.figures.cost_figure",
    "nas_core.plots.cells.cell_figure",
]


def test_api_page_documents_the_public_api(server, browser):
    """The API reference lists every documented name, each with its docstring
    (autodoc imported nas_core during the build), at the package's version."""
    from nas_core import __version__

    page_path = "book/api.html"
    if not (HTML / page_path).is_file():
        _missing(f"{HTML / page_path} is not built")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                  else route.abort())
    page = context.new_page()
    try:
        page.goto(f"{server}/{page_path}", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        documented = page.evaluate(
            """() => Object.fromEntries(Array.from(document.querySelectorAll('dl.py > dt.sig[id]'))
                    .map(dt => [dt.id, (dt.nextElementSibling ? dt.nextElementSibling.innerText : '').trim()]))"""
        )
        version = page.evaluate("() => document.getElementById('nas_core.__version__')?.innerText || ''")
    finally:
        context.close()
    missing = [name for name in API_NAMES if name not in documented]
    assert not missing, f"{page_path} does not document {missing}; it has {sorted(documented)}"
    undocumented = [name for name in API_NAMES if name != "nas_core.__version__" and not documented[name]]
    assert not undocumented, f"{page_path}: no docstring shown for {undocumented}"
    assert __version__ in version, version
