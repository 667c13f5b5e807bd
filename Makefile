# Varsel: `make help` lists the targets.
GO      ?= go
BIN     := bin/varsel
BENCH   := bin/varsel-bench
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LISTEN  ?= 127.0.0.1:8080

.DEFAULT_GOAL := help
.PHONY: help build run run-vault test test-faults lint bench stop wipe

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/varsel and the load tool bin/varsel-bench
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/varsel
	$(GO) build -o $(BENCH) ./cmd/varsel-bench

run: build ## start the dev Postgres, demo agencies, dev OpenID provider, broker (127.0.0.1:8080) and portal (127.0.0.1:8090)
	@LISTEN=$(LISTEN) deploy/run.sh $(BIN)

run-vault: build ## like run, but with a dev Vault on loopback holding the keys (--keys vault)
	@url=$$(deploy/pg.sh start) && \
	export VARSEL_DATABASE_URL=$$url && \
	$(BIN) migrate && \
	deploy/demo.sh $(BIN) && \
	deploy/vault/dev.sh start >/dev/null && \
	eval "$$(deploy/vault/dev.sh env)" && \
	echo "Vault at $$VAULT_ADDR (dev server, in memory; deploy/vault/dev.sh stop)" && \
	exec $(BIN) serve --listen $(LISTEN) --keys vault --test-subjects

test: ## run every test (starts its own Postgres unless DATABASE_URL is set)
	GO=$(GO) deploy/test.sh

test-faults: build ## the fault harness: every fault under load (about 5 minutes); rewrites docs/reliability.md
	@vault=$$(deploy/vault/build.sh) && \
	$(BENCH) faults --vault "$$vault" --markdown docs/reliability.md --out .data/faults-result.json

lint: ## gofmt, go vet, opa fmt and opa check --strict
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@out=$$($(GO) tool opa fmt --list policies); if [ -n "$$out" ]; then echo "opa fmt would change:"; echo "$$out"; exit 1; fi
	$(GO) tool opa check --strict policies

bench: build ## a short load run (about 3 to 5 minutes, with wrk when deploy/wrk.sh can have it, and the same load without the audit tree) that rewrites the load section of docs/performance.md
	@mkdir -p .data
	$(BENCH) --flags 100000 --entries 1000000 --duration 20s --opa-duration 10s \
		--wrk auto --compare-tree \
		--out .data/bench-result.json --markdown docs/performance.md --section short

stop: ## stop the dev and test Postgres clusters and the dev Vault
	-deploy/pg.sh stop
	-deploy/pg.sh stop .data/test-pg
	-deploy/vault/dev.sh stop
	-deploy/oidc/oidc.sh stop

wipe: stop ## stop everything and delete .data/ (the dev database, keys and demo keys)
	rm -rf .data
