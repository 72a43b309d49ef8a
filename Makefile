# Two commands set everything up on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Offscreen only where nothing should appear on screen (the tests, the bundle's smoke test); `make run` keeps the
# user's display, or the README's first command would start an invisible window.
TEST_QT := QT_QPA_PLATFORM=offscreen

.PHONY: run test check lint contracts pytest pytest-fast bench demo clean dist bundle-smoke

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU torch wheel first, so nothing below pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/inspector $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check inspector tests bench

contracts: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: $(STAMP)
	$(TEST_QT) $(PY) -m pytest -q $(PYTEST_ARGS)

# The tests not marked slow (@pytest.mark.slow: more than a few seconds each).
pytest-fast: $(STAMP)
	$(TEST_QT) $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The whole suite: what CI runs (.ci/run).
test: lint contracts pytest

# The inner loop while editing: ruff, the import contracts and the fast tests, in under two minutes.
check: lint contracts pytest-fast

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

demo: $(STAMP)
	$(VENV)/bin/inspector demo build

# Packaging (README, "Install"): the wheel and sdist in dist/, then the one-folder bundle
# dist/memorization-inspector/ (PyInstaller, CPU torch from the venv). CI does not build the bundle (minutes).
PACKAGING_STAMP := $(VENV)/.packaging-stamp

$(PACKAGING_STAMP): $(STAMP)
	$(PY) -m pip install --quiet build==1.6.1 pyinstaller==6.22.3
	touch $(PACKAGING_STAMP)

dist: $(PACKAGING_STAMP)
	rm -rf dist/memorization_inspector-*
	$(PY) -m build --outdir dist .
	$(VENV)/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
		packaging/memorization-inspector.spec
	du -sh dist/*.whl dist/*.tar.gz dist/memorization-inspector

# Starts the built bundle offscreen with --screenshot (first start, then with the demo index cached) and
# checks the picture; `make dist` first.
bundle-smoke: $(STAMP)
	$(TEST_QT) $(PY) packaging/smoke_test.py

clean:
	rm -rf $(VENV) build dist *.egg-info
