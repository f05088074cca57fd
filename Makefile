# Two commands: `make run` starts the GUI, `make test` runs the linter and the suite.
# Both create .venv when missing and install only what changed since the last install.

PYTHON ?= python3
VENV ?= .venv
# Installed before everything else so that pip never pulls a multi-GB CUDA build.
# Override for a GPU machine, e.g. make run TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test lint install install-test bench clean worker-wheels worker-lock package package-tools

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

# ruff's settings are in pyproject.toml; `ruff check --fix . && ruff format .` fixes most of what this reports.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# One pytest process per core (at most 4: the real-size tests hold a 7 GB model); a test file
# stays in one process, so module fixtures (a real worker, a skeleton) are built once.
# PYTEST_PROCESSES=0 runs everything in this process (e.g. for pdb).
PYTEST_PROCESSES ?= auto
test: lint install-test worker-wheels
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n $(PYTEST_PROCESSES) --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

# Every bench script with small inputs, so that a change that breaks one shows in minutes on
# a CPU (the figures mean little at this size; run a script alone with its defaults for those).
# bench/real_size.py is left out: it writes 9 GB of full-size skeletons and runs SDXL on the CPU
# (tens of minutes); gpu_check.py --smoke runs the same measurements on the tiny models.
BENCH_OUT ?= $(VENV)/bench-out
bench: install-test
	mkdir -p $(BENCH_OUT)
	$(PY) bench/startup.py --runs 2
	$(PY) bench/dataset_scan.py --images 200 --folder $(BENCH_OUT)/dataset-scan
	$(PY) bench/library_index.py --files 50 --runs 1
	$(PY) bench/hub_download.py --mb 4 --runs 1
	$(PY) bench/captioning.py --images 8 --batch 4 --repeats 1
	$(PY) bench/mixing.py --steps 2 --repeats 1
	$(PY) bench/train_step.py --steps 3 --rounds 1
	$(PY) bench/learning.py --steps 4 --seeds 1 --inits gaussian
	$(PY) bench/gpu_check.py --smoke --no-install --out $(BENCH_OUT)

# The worker environment's pinned packages (packaging/worker-requirements.txt), torch aside
# (it comes from the index that fits the GPU). worker-wheels downloads them once, so that
# tests/packaging/test_setup_worker.py builds a worker environment with no index at all.
WORKER_LOCK := packaging/worker-requirements.txt
WORKER_WHEELS := .cache/worker-wheels

$(WORKER_WHEELS)/.done: $(WORKER_LOCK) | $(PY)
	grep -v -E '^(#|torch==)' $(WORKER_LOCK) > $(VENV)/worker-no-torch.txt
	$(PIP) download --quiet --no-deps --only-binary=:all: -d $(WORKER_WHEELS) -r $(VENV)/worker-no-torch.txt
	touch $@

worker-wheels: $(WORKER_WHEELS)/.done

# Re-pin after changing pyproject.toml's dependencies: what `make install` resolved, minus
# the GUI-only and test-only packages.
worker-lock: install
	{ grep '^#' $(WORKER_LOCK); $(PIP) freeze --all --exclude-editable \
	  | grep -v -i -E '^(pip|uv|pytest|pytest-qt|pytest-timeout|iniconfig|pluggy|onnx|ml.dtypes|pyqtgraph|pyside6.essentials|shiboken6|pyinstaller|pyinstaller-hooks-contrib|altgraph)(==| @)' \
	  | sed 's/+[a-z0-9.]*$$//' | sort -f; } > $(WORKER_LOCK).new
	mv $(WORKER_LOCK).new $(WORKER_LOCK)

# The frozen GUI (no torch) in dist/loraloom/: PyInstaller goes into .venv, not the system.
# tests/packaging/test_package.py runs this (only with LORALOOM_PACKAGE_TEST=1).
PYINSTALLER_SPEC ?= pyinstaller>=6.10
$(VENV)/.pyinstaller-installed: $(VENV)/.installed
	$(PIP) install --quiet "$(PYINSTALLER_SPEC)"
	touch $@

package: $(VENV)/.pyinstaller-installed
	$(VENV)/bin/pyinstaller --noconfirm --clean --log-level ERROR --distpath dist --workpath build/pyinstaller packaging/loraloom.spec
	@du -sh dist/loraloom

# The system tools the desktop-file tests validate with (Debian/Ubuntu; CI runs this as root).
package-tools:
	@command -v desktop-file-validate >/dev/null && command -v appstreamcli >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q desktop-file-utils appstream; \
	    else echo "run: sudo apt-get install desktop-file-utils appstream"; fi; }

clean:
	rm -rf $(VENV) build dist *.egg-info
