# Every target bootstraps the virtual environment when it is missing or stale.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: run demo test test-full bench lint venv clean check-deps gpu-check wheelhouse

run: $(STAMP)  ## GRPO on the embedded default: tiny model, synthetic data, CPU, offline
	$(PY) -m bbuqc.train

demo: $(STAMP)  ## the whole lifecycle, measured: summary SFT -> Stage-A -> verdict SFT -> GRPO -> evaluation (outputs/demo/)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m bbuqc.demo

test: $(STAMP)  ## the test suite (without @slow)
	$(PY) -m pytest -m "not slow" -q --durations=25

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

# `make gpu-check`: every GPU path on one GPU (<= 8 min), figures to outputs/bench/gpu.json; no GPU: skipped.
# WHEELHOUSE=<dir> (an air-gapped node): a fresh venv on the node's python3 (its CUDA torch) from that folder.
WHEELHOUSE ?=
NODE_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check: $(if $(WHEELHOUSE),,$(STAMP))  ## the GPU acceptance run (docs/gpu.md); WHEELHOUSE=<dir> on an air-gapped node
	$(if $(WHEELHOUSE),$(NODE_PYTHON) scripts/gpu_check.py --wheelhouse $(WHEELHOUSE),$(PY) scripts/gpu_check.py) $(GPU_CHECK_ARGS)

# `make wheelhouse` (needs the registry): bbuqc + what the node lacks, without torch, into one folder <= 60 MiB.
# NODE_HAS=<the node's pip list --format=freeze> (default: the lent GPU machine's image); PYTHON_VERSION: the node's.
NODE_HAS ?= scripts/lent_gpu_node.txt
PYTHON_VERSION ?= 3.12
wheelhouse: $(STAMP)  ## bbuqc and its dependencies for an air-gapped GPU node, into $(or $(WHEELHOUSE),wheelhouse)/
	$(PY) scripts/wheelhouse.py --out $(or $(WHEELHOUSE),wheelhouse) --python-version $(PYTHON_VERSION) $(if $(NODE_HAS),--node-has $(NODE_HAS))

venv: $(STAMP)

$(STAMP): pyproject.toml setup.cfg setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
