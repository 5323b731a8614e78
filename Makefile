# The two commands of the README. Each creates the virtual environment and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash recipes/run_table.sh --corpus demo --out demo_out

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow and not training"
