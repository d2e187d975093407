# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the fast test suite).
# CI (.ci/run) runs `make ci`: lint, the fast suite, then the slow suite.
PYTHON ?= python3
VENV ?= .venv
# torch first: on the project's machines 2.13.0 is a local CPU build; a plain `torch` would pull CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
THREADS := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

.PHONY: demo test test-slow lint ci install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(THREADS) $(BIN)/ecc demo

# the default suite: pytest's addopts leave out the tests marked `slow`; it runs on PYTEST_WORKERS processes
# (pytest-xdist; 0 = in this process), the slow and timing-sensitive suite below runs serially. pytest's exit code 5
# (no test collected, e.g. a PYTEST_ARGS selection that matches nothing) is not a failure
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || [ $$? -eq 5 ]

# only the slow and timing-sensitive tests
test-slow: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

ci: lint test test-slow

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache build *.egg-info
