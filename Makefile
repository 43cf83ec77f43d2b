# Two commands a new user needs: `make report` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT ?= report

.PHONY: report test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps re-run the install when the package metadata changes.
$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(PY) setup.cfg pyproject.toml
	$(PIP) install -q -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

report: $(VENV)/.installed
	$(VENV)/bin/captum-fv report --out $(OUT)

LINTED := captum_fv tests benchmarks tutorials

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_render.py
	$(PY) benchmarks/bench_mining.py
	$(PY) benchmarks/bench_distributed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(OUT)
