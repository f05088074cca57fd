# Two commands: `make run` starts the GUI, `make test` runs the suite.
# Both create .venv when missing and install only what changed since the last install.

PYTHON ?= python3
VENV ?= .venv
# Installed before everything else so that pip never pulls a multi-GB CUDA build.
# Override for a GPU machine, e.g. make run TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files make a repeated `make test` cost nothing when pyproject.toml is unchanged.
$(VENV)/.torch-installed: $(PY)
	$(PIP) install --quiet $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: $(VENV)/.torch-installed pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	@# Qt's own abort for a missing system library names no package; this names them.
	@$(PY) -m app.ui.qt_check
	$(VENV)/bin/loraloom

test: install-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info
