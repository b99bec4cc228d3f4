# The table of contents of the project's workflows. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY := .venv/bin/python

.PHONY: help install deps infra-install proto up down status demo test fuzz test-unit test-integration test-e2e k8s-check \
        k8s-generate new-service docs images token grpcurl bench logs mail marketing-rebuild clean

help: ## list the workflows
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: deps infra-install proto ## install everything: Python deps (uv), RabbitMQ, FerretDB, generated gRPC code

deps: ## Python dependencies into .venv (uv workspace, one lockfile)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	@$(UV) sync --all-packages --frozen -q 2>/dev/null || $(UV) sync --all-packages -q

infra-install: ## install rabbitmq-server and promtool (Debian), build FerretDB (Go) if missing
	@scripts/infra.sh install
	@scripts/check-monitoring.sh install

proto: ## generate Python code from proto/crm/v1/*.proto
	@scripts/gen-proto.sh

up: install ## bring the whole CRM up locally with demo data (idempotent)
	@scripts/infra.sh up
	@$(PY) scripts/stack.py up
	@$(PY) scripts/demo_data.py
	@$(PY) scripts/stack.py status
	@$(PY) scripts/stack.py banner

down: ## stop the CRM and the infrastructure `make up` started
	@$(PY) scripts/stack.py down || true
	@scripts/infra.sh down

status: ## what is running
	@scripts/infra.sh status
	@$(PY) scripts/stack.py status

demo: ## (re)load demo data into a running CRM (idempotent)
	@$(PY) scripts/demo_data.py

test: install ## the whole suite: unit, integration (real broker + database), end-to-end (through the gateway)
	@scripts/test.sh

fuzz: install ## generated requests to every public RPC, with and without credentials: none may be INTERNAL/UNKNOWN (FUZZ_EXAMPLES per RPC, default 300; FUZZ_SEED)
	@scripts/test.sh fuzz

test-unit: ## unit tests only (no I/O)
	@scripts/test.sh unit

test-integration: install ## integration tests only
	@scripts/test.sh integration

test-e2e: install ## end-to-end tests only
	@scripts/test.sh e2e

new-service: deps ## start a new service: NAME=<name> [PORT=<metrics port>] (docs/adding-a-service.md)
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=<name> [PORT=<metrics port>]"; exit 2; }
	@$(PY) scripts/new_service.py $(NAME) $(if $(PORT),--metrics-port $(PORT))

docs: deps ## regenerate the generated tables of docs/rpc.md and docs/events.md from the declarations
	@$(PY) scripts/gen_docs.py

k8s-generate: deps ## regenerate deploy/k8s's per-deployable files from the registry (commit the result)
	@$(PY) scripts/k8s_generate.py

k8s-check: deps ## deploy/ without a cluster: render every overlay and component, validate (Kubernetes + CRD schemas), monitoring checks, invariant tests
	@scripts/test.sh deploy

IMAGE_PREFIX ?= localhost/crm-
IMAGE_TAG ?= dev
images: ## build the container images (needs a Docker engine): localhost/crm-<name>:dev, as the dev overlay expects (IMAGE_PREFIX, IMAGE_TAG)
	@docker info >/dev/null 2>&1 || { echo "images: no Docker engine reachable (docker info failed)"; exit 1; }
	@for s in $$($(PY) -m crm_common.registry services); do \
	  docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=$$s -t $(IMAGE_PREFIX)$$s:$(IMAGE_TAG) . || exit 1; \
	done
	docker build -f deploy/docker/gateway.Dockerfile -t $(IMAGE_PREFIX)gateway:$(IMAGE_TAG) .

run-%: ## run-<name>: one service of the registry, or the gateway, in the foreground with the local stack's settings (needs `scripts/infra.sh up`)
	@$(PY) scripts/stack.py run $*

ROLE ?= admin
token: deps ## print a bearer token for ROLE (admin, sales_rep, analyst ...; docs/access.md), signed by the local key (SUBJECT=, TEAM=)
	@$(PY) -m crm_gateway.devauth token --role $(ROLE) $(if $(SUBJECT),--subject $(SUBJECT)) $(if $(TEAM),--team $(TEAM))

grpcurl: tools/bin/grpcurl ## build grpcurl (a gRPC command-line client) into tools/bin

tools/bin/grpcurl:
	GOBIN=$(CURDIR)/tools/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3

bench: install tools/bin/ghz ## measure the CRM against its transport floor (starts or reuses the stack; not a test)
	@scripts/infra.sh up
	@$(PY) -m bench

tools/bin/ghz:
	GOBIN=$(CURDIR)/tools/bin go install github.com/bojand/ghz/cmd/ghz@v0.93.0

logs: ## follow the logs of the local stack
	@tail -F var/log/*.log

mail: ## what the local mail sink received (the emails marketing sent; N=<n> shows one, SMS=1 the text messages)
	@$(PY) scripts/mail_sink.py $(if $(N),show $(N),list) $(if $(SMS),--sms)

marketing-rebuild: ## rebuild marketing's audience from the producers' records (RESET=1: from scratch; README "Marketing")
	@CRM_INTERNAL_SECRET=$$($(PY) -c 'from crm_gateway import devauth; print(devauth.init().secret)') \
		$(PY) -m marketing.audience.rebuild_cli $(if $(RESET),--reset)

clean: down ## stop everything and delete local data (var/)
	rm -rf var
