# Every target creates .venv itself, so a newcomer types exactly one command.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LINT_PATHS := vpp workers adapters sim
PYTEST_ARGS ?=

.PHONY: demo test check openapi venv clean test-web

# uv (from PyPI) installs the same packages as pip in a fifth of the time (15 against 80 s from a fresh clone with
# no cache: a minute of `make demo`'s wall time); where uv cannot be installed or fails, pip does it as before.
# Both compile the packages' bytecode (pip does by default, uv with --compile-bytecode), and ours is compiled too:
# without it every process of a simulation compiled the whole service from source at each start wherever bytecode
# is not written (PYTHONDONTWRITEBYTECODE), 11.5 s of CPU for the simulation's imports instead of 4.5 s.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install --quiet uv && \
	  $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python --upgrade pip -e '.[dev]' ) || \
	( $(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet -e '.[dev]' )
	$(BIN)/python -m compileall -q $(LINT_PATHS)
	touch $(STAMP)

venv: $(STAMP)

# Two more processes take the simulated CPOs' OCPI pushes, so the service works on both cores (docs/scenarios.md,
# "Speed": 545 s of simulation instead of 653 s on a quiet 2-core machine, the same KPIs within the demo's noise).
demo: $(STAMP)
	VPP_SIM_INTAKE_PROCESSES=$${VPP_SIM_INTAKE_PROCESSES:-2} $(BIN)/vpp simulate --scenario demo --out var/demo

# pytest-xdist: one worker per core (at most 4), each test file whole on one worker (its module fixtures built once);
# each worker has its own PostgreSQL databases and Redis database (tests/conftest.py). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

# The web view in headless Chromium (apt-get install chromium chromium-driver); screenshots in test-artifacts/web.
test-web: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e/test_web_ui.py

# lint-imports checks the layering contracts in .importlinter (docs/ARCHITECTURE.md).
check: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS) tests
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy --strict $(LINT_PATHS)

openapi: $(STAMP)
	$(BIN)/vpp openapi --out openapi/vpp.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache var
