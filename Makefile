# The two commands: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU installs pin torch (and the rest) through constraints-cpu.txt; on a GPU machine the
# constraints are skipped so that pip keeps the CUDA torch you installed.
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lint test test-fast demo perf clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(CONSTRAINTS) -e '.[test]'
	touch $@

# The report test opens the HTML report in headless Chromium; as root, install it (Debian's package).
install: $(VENV)/.installed
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true; }

# The style check (ruff, configured in pyproject.toml); make test runs it first.
lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q --durations=10

# Everything but the Ray sweeps, the browser checks and the slow tests (about two minutes).
test-fast: install
	$(PY) -m pytest -q -m "not ray and not browser and not slow"

demo: install
	$(VENV)/bin/unlearn demo

# The performance benchmarks, items 1-5 and 6's test (perf/all.py: parts, durations, perf.json).
perf: install
	$(PY) perf/all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
