# Tidemark — make help lists the targets.

GO ?= go
PKGS ?= ./...
BENCH ?= .
BENCHCOUNT ?= 6

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## Run every test with -race, against PostgreSQL (started from the installed binaries if none is running).
	./scripts/test.sh

.PHONY: demo
demo: ## The offline demo: hnindex syncs a fake HackerNews API into hnindex-demo.db (SQLite), then searches it.
	./scripts/demo.sh

.PHONY: examples
examples: ## Run the four use cases in examples/ offline, each on its own fakes (quickstart, user360, legacysoap, pricewatch); files in a temp dir.
	./scripts/examples.sh

.PHONY: bench
bench: ## The benchmark harness: hnindex end to end against the fake API and real databases, with baselines (BENCHARGS=...).
	$(GO) run ./cmd/hnbench $(BENCHARGS)

.PHONY: bench-scale
bench-scale: ## The scale run: 20,000 threads × 50 comments (1.02 M rows), initial sync and no-change update, peak RSS, the insight server's latencies.
	$(GO) run ./cmd/hnbench -threads 20000 -comments 50 -runs 1 -live-passes 0 -naive=false -insight-budget 30s -json bench-scale.json $(BENCHARGS)

.PHONY: gobench
gobench: ## The Go micro-benchmarks of the engine and targets (BENCH=regexp, BENCHCOUNT=n), medians by benchstat.
	./scripts/bench.sh '$(BENCH)' $(BENCHCOUNT)

.PHONY: lint
lint: ## Check formatting and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')
