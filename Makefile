# `make demo` runs the project's main job, `make test` the whole test suite; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: install install-dev demo test lint clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

# jax2onnx (the ONNX export) pins an older orbax-checkpoint that it never imports: it is installed without its
# declared dependencies, the ones it uses come from requirements-export.txt (docs/export.md, Installing).
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-export.txt
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps jax2onnx==0.17.1
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) -m xclip_jax.main --config configs/demo.py --workdir runs/demo

# Two pytest workers (pytest-xdist), each taking whole test files: most tests wait on subprocesses or on one-threaded
# compiles, so a second worker uses the idle core (timings: README). PYTEST_ARGS="-n 0" runs them in one process.
test: install-dev
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS) tests

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
