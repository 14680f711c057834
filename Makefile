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

.PHONY: install test demo bench clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(CONSTRAINTS) -e '.[test]'
	touch $@

# The report test opens the HTML report in headless Chromium; as root, install it (Debian's package).
install: $(VENV)/.installed
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true; }

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/unlearn demo

# The performance benchmarks (items printed and written to bench/results/*.json; README table).
bench: install
	$(PY) bench/step.py --rounds 2
	$(PY) bench/memory.py
	$(PY) bench/generation.py --model smollm2 --out bench/results/generation-smollm2.json
	@# the demo grid's sweep: the one `make demo` left in runs/demo, else a fresh one (about 12 min more)
	if [ -f runs/demo/spec.yaml ]; then $(PY) bench/sweep.py --dir runs/demo; else $(PY) bench/sweep.py --run demo; fi
	$(PY) -m pytest -q tests/test_plan.py

clean:
	rm -rf $(VENV) runs .pytest_cache
