# The two commands of the README: `make demo` and `make test`. Each sets up .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export JAX_PLATFORMS ?= cpu

.PHONY: demo test lint test-floors bench check-recipes clean

# $(call install,PYTHON,ARGS): pip installs uv into PYTHON's venv, then uv installs ARGS there, bytecode
# compiled. 17-22 s for .venv on 2 cores, against 66 s with pip.
install = $(1) -m pip install -q 'uv>=0.13' && $(1) -m uv pip install -q --python $(1) --compile-bytecode $(2)
EXTRAS := test,lint

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install,$(PY),-e '.[$(EXTRAS)]')
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(PY) -m launch.train --config=configs/regression.py:demo --workdir=$(DEMO_DIR)
	$(PY) -m analysis.summary --workdir=$(DEMO_DIR)
	$(PY) -m analysis.run --workdir=$(DEMO_DIR) --out=$(DEMO_DIR)/report

# Two pytest workers (pytest-xdist), each test file on one: the suite is compile-bound, and two
# compilers on 2 cores finish it 1.3x sooner than one. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# ruff's lint rules and formatter, and mypy on the public API (pyproject.toml says which rules and files)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The suite at the oldest versions setup.cfg allows (constraints-floors.txt), in its own venv.
FLOORS_VENV ?= .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed
$(FLOORS_STAMP): setup.cfg pyproject.toml constraints-floors.txt
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(call install,$(FLOORS_VENV)/bin/python,-c constraints-floors.txt -e '.[test]')
	touch $(FLOORS_STAMP)

# FLOORS_SELECT: a pytest -m expression; CI passes 'not processes' (setup.cfg's markers) to fit 15 minutes
FLOORS_SELECT ?=
test-floors: $(FLOORS_STAMP)
	$(FLOORS_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "$(FLOORS_SELECT)" tests

bench: $(STAMP)
	$(PY) -m benchmarks.sweep_speed
	$(PY) -m benchmarks.lm_speed
	$(PY) -m benchmarks.scaling
	$(PY) -m benchmarks.analysis_speed
	$(PY) -m benchmarks.sweep_profile
	$(PY) -m benchmarks.pipeline_speed

check-recipes: $(STAMP)
	$(PY) -m launch.check_recipes

clean:
	rm -rf $(VENV) $(FLOORS_VENV) runs *.egg-info
