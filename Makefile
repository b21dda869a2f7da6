# Two entry points: `make demo` (segment the bundled sample) and `make test` (the whole suite).
# Both create .venv on first use; CI runs `make test` on a clean clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Backend-marked tests run on every backend; the rest (numpy-only code) once, on the first.
BACKENDS := tensorflow torch jax

.PHONY: demo test install-demo install-test docs bench crash-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[tensorflow]"
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[tensorflow,torch,jax,export,volumes,ray,dev,docs]"
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

demo: install-demo
	$(BIN)/segkit demo

# pytest workers per leg: much of a test's time is single-threaded tracing and compiling, so
# two workers keep both cores of a small machine busy. Each worker takes whole files, so a
# file's fixtures are built once. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# TensorFlow runs NCHW (channels_first) convolutions on CPU only with oneDNN, which it enables
# on CPUs with AVX-512; TF_ENABLE_ONEDNN_OPTS=0 imitates the CPUs without it, for these tests.
NO_ONEDNN_TESTS := tests/models tests/test_backend.py

# Every leg runs even when an earlier one fails; the failed legs are listed at the end.
test: install-test
	@failed=""; \
	leg() { name=$$1; shift; echo "== $$name: $$*"; "$$@" || failed="$$failed $$name"; }; \
	leg ruff $(BIN)/ruff check src tests benchmarks tools; \
	leg tensorflow env KERAS_BACKEND=tensorflow $(PYTEST) --durations=25; \
	leg tensorflow-without-onednn env KERAS_BACKEND=tensorflow TF_ENABLE_ONEDNN_OPTS=0 \
		$(PYTEST) $(NO_ONEDNN_TESTS); \
	for backend in $(filter-out tensorflow,$(BACKENDS)); do \
		leg $$backend env KERAS_BACKEND=$$backend $(PYTEST) -m backend --durations=10; \
	done; \
	leg docs env NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi; \
	echo "make test: every leg passed"

docs: install-test
	$(BIN)/mkdocs serve

bench: install-test
	$(BIN)/python -m benchmarks.report

# Kills small training runs at 20 random instants and resumes them (several minutes; by hand).
crash-test: install-test
	KERAS_BACKEND=tensorflow $(BIN)/python tools/crash_test.py --kills 20

clean:
	rm -rf $(VENV) build dist site .pytest_cache .benchmarks
