# Every target bootstraps the virtual environment when it is missing or stale.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: run demo test test-full bench lint venv clean check-deps

run: $(STAMP)  ## GRPO on the embedded default: tiny model, synthetic data, CPU, offline
	$(PY) -m bbuqc.train

demo: $(STAMP)  ## the whole lifecycle, measured: summary SFT -> Stage-A -> verdict SFT -> GRPO -> evaluation (outputs/demo/)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m bbuqc.demo

test: $(STAMP)  ## the test suite (without @slow)
	$(PY) -m pytest -m "not slow" -q

test-full: $(STAMP)  ## everything, slow tests included
	$(PY) -m pytest -q

bench: $(STAMP)  ## benchmarks; figures to outputs/bench/
	$(PY) -m benchmarks

faults: $(STAMP)  ## the fault battery: kills + resume, concurrent writers, every bad input of docs/errors.md (~10 min)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m benchmarks.fault_battery

lint: $(STAMP)
	$(PY) -m ruff check bbuqc tests benchmarks scripts

check-deps: $(STAMP)  ## do `.[dev]` and `.[gpu]` still resolve? pip --dry-run against the registry (~2 min; exit 3: network)
	$(PY) scripts/check_deps.py

venv: $(STAMP)

$(STAMP): pyproject.toml setup.cfg setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
