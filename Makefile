# Two entry points: `make demo` (segment the bundled sample) and `make test` (the whole suite).
# Both create .venv on first use; CI runs `make test` on a clean clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Backend-marked tests run on every backend; the rest (numpy-only code) once, on the first.
BACKENDS := tensorflow torch jax

.PHONY: demo test install-demo install-test docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[tensorflow]"
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[tensorflow,torch,jax,export,dev,docs]"
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

demo: install-demo
	$(BIN)/segkit demo

test: install-test
	$(BIN)/ruff check src tests benchmarks tools
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest
	for backend in $(filter-out tensorflow,$(BACKENDS)); do \
		KERAS_BACKEND=$$backend $(BIN)/python -m pytest -m backend || exit 1; \
	done
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

docs: install-test
	$(BIN)/mkdocs serve

bench: install-test
	$(BIN)/python -m benchmarks.report

clean:
	rm -rf $(VENV) build dist site .pytest_cache .benchmarks
