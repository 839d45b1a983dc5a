# acestream-orchestrator: the two commands a newcomer needs are `make demo` and `make test`.
#
#   make check   everything that needs no Docker: lint, format, types, import contracts, the docs
#                site's strict build, and the unit, HTTP and in-memory worker tests (seconds)
#   make test    check and the API's fuzzing (make fuzz), then the Docker suites: the stand-ins'
#                own checks, integration, the fault
#                suite's fast subset, the real Gluetun lane, the daemon's image and compose
#   make soak    the long fault runs (about 30 minutes): kill rounds, churn, fuzzing
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := orchestrator reconcilers tests testkit docker bench
PYTEST := $(BIN)/pytest -q

.PHONY: install packages browser docker images realvpn-images sidecar-image lint format format-check types imports \
	docs fast fuzz check standins integration faults realvpn sidecar alone suites test soak run demo bench \
	bench-realvpn clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# -- no Docker needed ------------------------------------------------------------------------
lint: install
	$(BIN)/ruff check $(SOURCES)

format: install
	$(BIN)/ruff format $(SOURCES)

format-check: install
	$(BIN)/ruff format --check $(SOURCES)

types: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports --no-cache

# The docs site (docs/, mkdocs.yml) into site/: strict, so a broken link or anchor, or a page
# missing from the navigation, fails. No --quiet: with it, mkdocs does not count the warnings.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

# one worker more than there are cores: about half of these tests' time is waiting (timeouts
# running out, a check that nothing happens over a second), which a third worker fills on 2 cores
FAST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

fast: install
	$(PYTEST) -n $(FAST_WORKERS) -m 'not fuzz' tests/unit tests/http tests/workers

# schemathesis against the API, 5 examples a route (`make soak`: 200)
fuzz: install
	$(PYTEST) -m fuzz tests/http

# its parts side by side (on a clean clone mypy and the docs build take seconds of their own)
check: install
	$(MAKE) -j4 --output-sync=target lint format-check types imports docs fast

# -- the Docker engine and what runs on it ---------------------------------------------------
# Every Debian package the suites need, in one apt run: `make test` runs the rest side by side
# (IN_TEST=1), and two apt runs at once fail on apt's lock. Run alone, each target installs what
# it needs itself. IN_TEST=1 also builds the images one at a time (each build prunes the dangling
# images it replaced, which may be another build's layers in flight), beside the suites, the
# daemon's before the real-tunnel lane's (the sidecar suite is the longer of their two).
packages:
	bash scripts/install-test-packages.sh

docker: $(if $(IN_TEST),packages)
	bash scripts/ensure-docker.sh

images: docker
	bash testbed/build-images.sh
	bash testbed/build-socket-proxy-image.sh

# The real-tunnel lane: WireGuard server, target and a Gluetun stand-in with a real tunnel, from
# Debian packages only (debootstrap, installed when missing; about 4 min cold, then a no-op)
realvpn-images: docker $(if $(IN_TEST),images sidecar-image)
	bash testbed/realvpn/build-images.sh

# The daemon's own image (Dockerfile) FROM a Python base made locally with debootstrap, and
# docker-compose to validate compose/: what tests/sidecar runs against.
sidecar-image: docker $(if $(IN_TEST),images)
	bash testbed/build-sidecar-image.sh

# The stand-ins' own checks: each behaves as the real image or release it stands for
# (testbed/engine/README.md, testbed/gluetun/README.md), so the suites below can trust them.
standins: images
	bash testbed/engine/verify.sh
	bash testbed/gluetun/verify.sh

# Debian's chromium, for the status page's browser tests (testkit/cdp.py drives it over
# the DevTools protocol) and bench/status_page.py
browser: $(if $(IN_TEST),packages)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Two pytest workers (pytest-xdist), each taking a whole test file at a time; each worker's daemons
# publish their engines on a host port band of their own (testkit/harness.py: host_port_band).
integration: install images browser
	$(PYTEST) -n 2 --dist loadfile tests/integration -m 'not alone'

# The fault suite's fast subset (tests/faults without the soak-marked runs)
faults: install images
	TEST_HOST_PORT_RANGE=21000-21999 $(PYTEST) tests/faults -m 'not soak'

realvpn: install images realvpn-images
	$(PYTEST) tests/realvpn

sidecar: install images sidecar-image
	$(PYTEST) tests/sidecar

# The tests that stop or restart the Docker engine (marked `alone`): every other container on it
# stops too, so they run by themselves, after the suites.
alone: install images
	$(PYTEST) tests/integration -m alone

# Everything but `alone`, side by side where they share nothing: the checks beside the packages'
# install, each image build beside the suites that do not need it, the suites beside each other
# (each owns its containers, networks and ports). Listed longest path first: make starts jobs in
# this order as their inputs become ready.
suites: integration sidecar realvpn faults standins check fuzz

# Everything CI runs, from a fresh machine: the packages, the Docker engine, the images and every
# suite; each job's output is printed whole when it ends (--output-sync).
TEST_JOBS ?= 3
test:
	$(MAKE) -j$(TEST_JOBS) --output-sync=target IN_TEST=1 suites
	$(MAKE) alone

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
	$(BIN)/python bench/state_journal.py
	$(MAKE) browser
	$(BIN)/python bench/status_page.py

# The daemon on the real-tunnel lane (about 20 minutes: a 10-minute false-hide window)
bench-realvpn: install images realvpn-images
	$(BIN)/python bench/real_gluetun.py

# The long fault runs: tests/faults -m soak (each writes its figures to bench/results/; the
# kill-round and churn soak's length: SOAK_ROUNDS=50 SOAK_MINUTES=15, its viewers SOAK_VIEWERS=6,
# bench/soak.py, figures in bench/results/stream_safety_soak.json), the HTTP fuzzing at 200
# examples a route.
soak: install images
	$(PYTEST) tests/faults -m soak
	FUZZ_EXAMPLES=200 $(PYTEST) tests/http/test_schema_fuzz.py

clean:
	bash testbed/cleanup.sh acestream-orchestrator-demo=1 || true
	bash testbed/cleanup.sh || true
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache site
