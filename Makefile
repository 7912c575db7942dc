# The project's commands; every target installs what it needs first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
SETUP_STAMP := $(VENV)/.setup-done

# npm files the browser test serves in place of the CDN; the versions must be
# those named in _config.yml (sphinx.config.nb_ipywidgets_js and mathjax_path).
HTML_MANAGER_VERSION := 1.0.15
REQUIREJS_VERSION := 2.3.7
MATHJAX_VERSION := 3.2.2
JS_STAMP := node_modules/.setup-html-manager-$(HTML_MANAGER_VERSION)-requirejs-$(REQUIREJS_VERSION)-mathjax-$(MATHJAX_VERSION)

.PHONY: setup system-packages book test unit-nbval browser-test bench calibrate study clean distclean

setup: $(SETUP_STAMP) $(JS_STAMP)

$(SETUP_STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $@

# `npm pack` fetches a package's tarball alone (html-manager's dependency tree
# is large and its dist/ bundle does not need it).
$(JS_STAMP):
	rm -rf node_modules/.pack node_modules/.setup-* && mkdir -p node_modules/.pack
	cd node_modules/.pack && npm pack --silent \
	    @jupyter-widgets/html-manager@$(HTML_MANAGER_VERSION) requirejs@$(REQUIREJS_VERSION) \
	    mathjax@$(MATHJAX_VERSION)
	rm -rf node_modules/@jupyter-widgets/html-manager node_modules/requirejs node_modules/mathjax
	mkdir -p node_modules/@jupyter-widgets/html-manager node_modules/requirejs node_modules/mathjax
	tar -xzf node_modules/.pack/jupyter-widgets-html-manager-$(HTML_MANAGER_VERSION).tgz \
	    --strip-components=1 -C node_modules/@jupyter-widgets/html-manager
	tar -xzf node_modules/.pack/requirejs-$(REQUIREJS_VERSION).tgz \
	    --strip-components=1 -C node_modules/requirejs
	tar -xzf node_modules/.pack/mathjax-$(MATHJAX_VERSION).tgz \
	    --strip-components=1 -C node_modules/mathjax
	rm -rf node_modules/.pack
	touch $@

# Executes the notebooks, cached in _build/.jupyter_cache; a cell error fails
# the build (execute.raise_on_error).  jupyter-cache keys a notebook on its code
# cells alone and Sphinx re-reads only changed pages, so a change to nas_core/ (its .py, .yaml and .c files),
# requirements.txt or the committed tables the chapters read (study/, sweeps/) empties both caches
# (a rebuild with no change re-runs nothing).
book: setup
	$(BUILD_BOOK)

BOOK_INPUTS_HASH = $$(cat requirements.txt $$(find nas_core -name '*.py' -o -name '*.yaml' -o -name '*.c' | LC_ALL=C sort) \
    $$(find study sweeps -name '*.csv' | LC_ALL=C sort) | sha256sum | cut -c1-16)
BUILD_BOOK = @mkdir -p _build; \
    if [ "$$(cat _build/.book-inputs 2>/dev/null)" != "$(BOOK_INPUTS_HASH)" ]; then \
        echo "nas_core, requirements or the tables changed: clearing the notebook cache"; \
        rm -rf _build/.jupyter_cache _build/.doctrees; echo "$(BOOK_INPUTS_HASH)" > _build/.book-inputs; \
    fi; \
    echo "$(JB) build ."; $(JB) build .

# Debian packages the tests use: Chromium and its driver (the browser check) and
# Fashion-MNIST's idx files. Installed with apt-get where this user may (root,
# or sudo without a password); otherwise one line names the command to run.
SYSTEM_PACKAGES := chromium chromium-driver dataset-fashion-mnist
system-packages:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	    else echo "make test needs:$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing >/dev/null || \
	    { DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing >/dev/null; }; \
	fi

# In this order (also under -j): unit tests and every notebook under nbval
# (cells must run; outputs are not compared), then the book, then the built
# book in a browser.
test: setup system-packages
	$(UNIT_NBVAL)
	$(BUILD_BOOK)
	$(BROWSER_TEST)

# Lax: a cell must run, and only cells starting with "# NBVAL_CHECK_OUTPUT" (stored
# with their outputs; deterministic ones) have their outputs compared, after
# tests/nbval_sanitize.cfg replaced plotly's random ids.
UNIT_NBVAL = $(PY) -m pytest tests --ignore=tests/test_browser.py \
    --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg book/*.ipynb
BROWSER_TEST = WIRING_NAS_BROWSER_TEST=required $(PY) -m pytest tests/test_browser.py

unit-nbval: setup
	$(UNIT_NBVAL)

# Needs a built book (make book); fails rather than skips when a piece is missing.
browser-test: setup
	$(BROWSER_TEST)

bench: setup
	$(PY) benchmarks/run.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/reference_bench.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/evaluation.py

# Reruns the calibration study from the sweep specs in sweeps/ (about an hour on
# two cores when nothing is cached; finished runs in runs/ are reused) and
# rewrites sweeps/calibration.csv, which the calibration chapter reads.
calibrate: setup
	$(PY) -m nas_core calibrate --specs sweeps --table sweeps/calibration.csv --workers 2

# Reruns the faithful-replication study (nas_core/chapters/study.py): the
# faithful presets on seeds 0-9, the ablation and the ladder rungs within reach
# of two cores, in the shared run cache (resumable; finished runs are reused),
# and rewrites study/runs.csv and study/curves.csv, which the book draws from.
# Several hours on two cores from scratch.
study: setup
	$(PY) -m nas_core study --workers 2 --out study

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
