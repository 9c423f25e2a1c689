# bgjob-operator: `make run` shows it working, `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the dependencies change.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help venv deps bins cluster-up cluster-down cluster-smoke lint helm-lint unit e2e test run crd bench bench-scale kind-e2e chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with the operator and its dev tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

deps: ## Debian packages the tests need (redis-server, rabbitmq-server), if missing
	@hack/deps.sh

bins: ## build the local control plane's binaries into ~/.cache/bgjob-operator (once)
	@hack/bins.sh >/dev/null

cluster-up: deps bins ## start the local control plane (etcd, apiserver, controllers, kwok, one real kubelet node); kubeconfig in .cluster/
	@hack/cluster.sh up

cluster-down: ## stop exactly what cluster-up started
	@hack/cluster.sh down

cluster-smoke: cluster-up ## prove the local control plane and kwok work
	@hack/cluster-smoke.sh

crd: venv ## regenerate crds/ and the chart's copy (templates/crds.yaml renders it) from the models
	$(BIN)/bgjob-operator crd > crds/bgjob.dev_backgroundjobs.yaml
	cp crds/bgjob.dev_backgroundjobs.yaml charts/bgjob-operator/files/crds/bgjob.dev_backgroundjobs.yaml

lint: venv bins ## ruff, mypy --strict, hadolint, actionlint, helm lint and package
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$$(hack/tools.sh)/actionlint
	@$(MAKE) --no-print-directory helm-lint

# Without a cluster helm assumes Kubernetes v1.20 (a build without release
# ldflags); the chart's kubeVersion needs the one the tests run against.
helm-lint: bins ## helm lint --strict the chart with its main value combinations, then helm package
	@helm=$$(hack/bins.sh)/helm && source hack/versions.env && set -e && \
	lint() { $$helm lint --strict charts/bgjob-operator --kube-version "$$KUBE_VERSION" "$$@"; } && \
	lint && \
	lint --set 'watchNamespaces={team-a,team-b}' && \
	lint --set replicaCount=2 --set serviceMonitor.enabled=true && \
	lint --set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true && \
	lint --set crds.install=false --set podSecurityContext.runAsUser=null --set logFormat=json && \
	out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	$$helm package charts/bgjob-operator -d "$$out" >/dev/null && \
	tar -tzf "$$out"/bgjob-operator-*.tgz | grep -qx 'bgjob-operator/files/crds/bgjob.dev_backgroundjobs.yaml' && \
	echo "helm package: $$(cd "$$out" && ls)"

unit: venv bins ## pure units and API-contract tests (no cluster)
	$(BIN)/pytest tests/unit tests/api

e2e: venv deps bins ## end-to-end suite against KUBECONFIG or the local control plane
	@hack/test.sh tests/e2e

chaos: venv deps bins ## fault suite alone: kill -9, API server/etcd restarts, watch expiry, leader loss
	@hack/test.sh tests/e2e/test_faults.py -s

test: venv deps bins lint ## every test: units, API contract, end-to-end on a real control plane
	@hack/test.sh tests

run: venv bins ## the product on the local control plane: operator + examples, live status
	@hack/run.sh

bench: venv deps bins ## queue scaling benchmark: reaction p50/p95, broker load, operator CPU/RSS
	$(BIN)/python -m benchmarks.queue_scaling

N ?= 10000
bench-scale: venv bins ## scale benchmark: N BackgroundJobs (default 10000); latency, lag, cold start, RSS, SIGTERM
	$(BIN)/pip install -q -e '.[bench]'
	nice -n 19 $(BIN)/python -m benchmarks.scale --n $(N)

kind-e2e: ## the e2e suite on a kind cluster (needs Docker; not available on CI here)
	@hack/kind-e2e.sh
