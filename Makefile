# Two commands set everything up on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export QT_QPA_PLATFORM ?= offscreen

.PHONY: run test lint contracts pytest bench demo clean

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
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint contracts pytest

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

demo: $(STAMP)
	$(VENV)/bin/inspector demo build

clean:
	rm -rf $(VENV) build dist *.egg-info
