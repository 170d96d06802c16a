# Two commands on a fresh machine: `make up MODEL=deepseek-1.5b` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONTROLLER := $(BIN)/controller
MODEL ?= deepseek-1.5b
SERVICE ?=
DEMO_MODEL ?= tiny-a

.PHONY: catalog-snapshot install up down switch status logs render plan test test-unit test-integration lint demo images tiny-model engine browser clean-test-projects

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the controller

up: install ## Start the stack: make up MODEL=deepseek-1.5b
	$(CONTROLLER) up $(MODEL)

down: install ## Stop the stack (data volumes stay)
	$(CONTROLLER) down

switch: install ## Change the model: make switch MODEL=llama3-8b-gptq
	$(CONTROLLER) switch $(MODEL)

status: install
	$(CONTROLLER) status

logs: install ## make logs SERVICE=vllm
	$(CONTROLLER) logs $(SERVICE)

render: install ## Write compose/docker-compose.yml: make render MODEL=...
	$(CONTROLLER) render $(MODEL)

plan: install ## make plan MODEL=llama3-8b GPU_MEMORY=12GiB
	$(CONTROLLER) plan $(MODEL) $(if $(GPU_MEMORY),--gpu-memory $(GPU_MEMORY),)

browser: ## Debian's Chromium for the browser tests (installs it as root on Debian)
	bash scripts/ensure-browser.sh

engine: ## Docker engine + Compose v2 (installs and starts them as root on Debian)
	bash scripts/ensure-docker.sh

images: engine ## Local vLLM (CPU) and Open WebUI images, built without a registry (cached)
	$(PYTHON) scripts/build_images.py

tiny-model: images ## A tiny random-weight model for the CPU test profiles (cached)
	$(PYTHON) scripts/build_images.py tiny-model

# The images and the tiny model build in the background (about 5 minutes on a fresh machine) while
# Chromium installs and the unit tests run, which come first; the real-stack tests then wait for the
# build on .cache/build-images.lock and report its error if it failed. Two pytest-xdist workers run
# the tests side by side, each module one unit of work (tests/integration/conftest.py), then the
# `serial` tests run alone (they restart the Docker engine and remove the images).
TEST_WORKERS ?= 2
PYTEST_REPORT := --durations=0 --durations-min=5
test: install engine ## Unit, real-stack and browser tests
	@mkdir -p .cache
	$(PYTHON) scripts/build_images.py tiny-model >.cache/build-images.out 2>.cache/build-images.log & \
	builder=$$!; \
	$(MAKE) --no-print-directory browser || { kill $$builder; exit 1; }; \
	$(BIN)/python -m pytest tests/unit tests/integration -m "not serial" -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_REPORT); \
	side_by_side=$$?; \
	$(BIN)/python -m pytest tests -m serial $(PYTEST_REPORT); alone=$$?; \
	wait $$builder; \
	for rc in $$side_by_side $$alone; do \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done

catalog-snapshot: install ## After editing controller/builtin_models.yaml: write the JSON snapshot the package reads
	$(BIN)/python scripts/catalog_snapshot.py

test-unit: install ## Fast tests; no Docker needed
	$(BIN)/python -m pytest tests/unit

test-integration: install engine browser
	$(BIN)/python -m pytest tests/integration

lint: install
	$(BIN)/ruff check controller tests scripts
	$(BIN)/lint-imports
	$(BIN)/ruff format --check controller tests scripts

demo: install tiny-model ## The real stack on a CPU-only machine: tiny-a, then `controller switch tiny-b` works
	$(BIN)/python scripts/demo_env.py
	$(CONTROLLER) up $(DEMO_MODEL)
