# civicloud: the same commands on a developer's machine and in CI (.ci/run calls these targets).
# `make` alone lists the targets. Every target that needs Python first builds .venv from uv.lock.

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-print-directory

# The uv to use (any command line: `make test UV="python3 -m uv"`); installed with pip if missing.
UV ?= uv
PYTHON ?= python3
BIN := .venv/bin
# Extra arguments for pytest: `make test PYTEST_ARGS="-k tenants -x"`.
PYTEST_ARGS ?=
# pytest-xdist workers: one per core (`make test WORKERS=0` runs in this process, in order).
WORKERS ?= auto

# Options passed to `civicloud demo|serve|db upgrade`: `make demo PORT=8080 DATA_DIR=/srv/civicloud`.
# HOST counts only on the command line: zsh exports HOST as the machine's name.
ifeq ($(origin HOST),environment)
HOST :=
endif
DATA_DIR ?=
PORT ?=
DATA_DIR_FLAG = $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")
LISTEN_FLAGS = $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

# Debian packages installed by `make test` / `make bench` when missing, if we are root with apt.
APT_INSTALL = apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: help
help: ## Show this list of targets
	@echo "civicloud: make <target> [VAR=value]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: DATA_DIR, HOST, PORT (demo, serve, migrate); PYTEST_ARGS, WORKERS (test); UV, PYTHON."

# Sets $$uv to a working uv: $(UV), else `python3 -m uv`, else installs uv with pip first.
FIND_UV = if $(UV) --version >/dev/null 2>&1; then uv="$(UV)"; \
	elif $(PYTHON) -m uv --version >/dev/null 2>&1; then uv="$(PYTHON) -m uv"; \
	else \
	  echo "make: uv not found; installing it with pip" >&2; \
	  $(PYTHON) -m pip install --quiet --user uv 2>/dev/null \
	    || $(PYTHON) -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
	    || $(PYTHON) -m pip install --quiet uv; \
	  uv="$(PYTHON) -m uv"; \
	fi

.PHONY: venv
venv: ## Create or update .venv from uv.lock (installs uv with pip if it is missing)
	@$(FIND_UV); echo "+ $$uv sync --frozen --all-groups"; $$uv sync --frozen --all-groups

.PHONY: demo
demo: venv ## Fresh machine → the demo world at http://localhost:8000/ (logins are printed)
	$(BIN)/civicloud demo $(DATA_DIR_FLAG) $(LISTEN_FLAGS)

.PHONY: serve
serve: venv ## Apply migrations and serve civicloud (Ctrl-C or SIGTERM stops it)
	$(BIN)/civicloud serve $(DATA_DIR_FLAG) $(LISTEN_FLAGS)

.PHONY: migrate
migrate: venv ## Bring the database up to date (civicloud db upgrade)
	$(BIN)/civicloud db upgrade $(DATA_DIR_FLAG)

.PHONY: test
test: venv test-deps ## Run the whole test suite: SQLite, PostgreSQL and the browser tests
	$(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: venv test-deps ## The suite without the long scenarios (-m "not slow"); CI runs them all
	$(BIN)/pytest -n $(WORKERS) -m "not slow" $(PYTEST_ARGS)

.PHONY: coverage
coverage: venv test-deps ## The test suite with a branch-coverage report
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

.PHONY: test-deps
test-deps: # PostgreSQL server binaries, Chromium, poppler, Mosquitto, rclone and awscli v2; installed with apt-get when we can, else skipped
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium fonts-noto-cjk"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	[ -x /usr/bin/rclone ] || missing="$$missing rclone"; \
	[ -x /usr/bin/aws ] || missing="$$missing awscli"; \
	command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
	  || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "+ apt-get install$$missing"; \
	    ( $(APT_INSTALL) $$missing ) \
	      || echo "make: apt-get failed; the tests that need$$missing will be skipped" >&2; \
	  else \
	    echo "make: not installing$$missing (needs root and apt-get); the tests that need it skip" >&2; \
	  fi; \
	fi

.PHONY: check
check: venv ## Format, lint, types, import contracts, and models against migrations
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export CIVICLOUD_DATA_DIR="$$tmp" CIVICLOUD_DATABASE_URL=""; \
	echo "+ civicloud db check  (every branch upgraded on a temporary SQLite database, then alembic check)"; \
	$(BIN)/civicloud db check

.PHONY: fmt
fmt: venv ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: bench
bench: venv ## Run every benchmark in bench/ with --quick
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { echo "+ apt-get install wrk"; ( $(APT_INSTALL) wrk ) || true; }; } || true
	@for bench in $(filter-out bench/_%,$(wildcard bench/*.py)); do \
	  echo "+ $(BIN)/python $$bench --quick"; \
	  $(BIN)/python "$$bench" --quick; \
	done

.PHONY: lock
lock: ## Re-resolve uv.lock after editing pyproject.toml, then sync .venv
	@$(FIND_UV); echo "+ $$uv lock"; $$uv lock
	@$(MAKE) venv
