# acestream-orchestrator: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install docker images sidecar-image lint types unit integration sidecar test run demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

docker:
	bash scripts/ensure-docker.sh

images: docker
	bash testbed/build-images.sh

# The daemon's own image (Dockerfile) FROM a Python base made locally with debootstrap, and
# docker-compose to validate compose/: what tests/sidecar runs against.
sidecar-image: docker
	bash testbed/build-sidecar-image.sh

lint: install
	$(BIN)/ruff check orchestrator reconcilers tests docker $(wildcard bench)

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

integration: install images
	$(BIN)/pytest -q tests/integration

sidecar: install images sidecar-image
	$(BIN)/pytest -q tests/sidecar

# Everything CI runs, from a fresh machine: Docker engine, stand-in images, the daemon's image,
# venv, lint, types, tests.
test: install images sidecar-image
	$(BIN)/ruff check orchestrator reconcilers tests docker $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider tests

run: install
	$(BIN)/acestream-orchestrator --config $(or $(CONFIG),config.example.yaml)

# The daemon on the local Docker engine with stand-in engines and VPNs: no VPN account needed.
demo: install images
	bash scripts/demo.sh $(or $(MODE),none)

# Figures for the README's Performance section; results land in bench/results/*.json.
bench: install images
	command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/python bench/hide_latency.py --flips 20
	$(BIN)/python bench/vpn_recovery.py --rounds 5
	$(BIN)/python bench/pool_timings.py --idle-seconds 60
	$(BIN)/python bench/http_load.py

clean:
	bash testbed/cleanup.sh acestream-orchestrator-demo=1 || true
	bash testbed/cleanup.sh || true
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
