# Sprout. `make run` starts the demo on embedded defaults; `make test` runs every test,
# installing what it needs first. See README.md.

GO        ?= go
BIN       := $(CURDIR)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
STATICCHECK_VERSION   := v0.8.2
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with
# "context deadline exceeded" at the deadline, with no failing input (go.dev/issue/75804, fixed
# in Go 1.27). About 10 s here.
FUZZTIME  ?= 200000x
export PATH := $(BIN):$(PATH)

.PHONY: all build run cluster test test-go test-firmware test-bench fuzz proto proto-check lint bench bench-mqtt bench-ota bench-history deps tools clean

all: build

build:
	$(GO) build -o $(BIN)/sprout ./cmd/sprout

## run: one node on the embedded store, a simulated WeChat platform and simulated plants (Ctrl-C stops).
# The built binary, not `go run`: on Ctrl-C `go run` exits 1 even when the program stopped cleanly,
# and make would report an error. DEMO_FLAGS are passed on (sprout demo --help lists them).
DEMO_FLAGS ?=
run: build
	$(BIN)/sprout demo $(DEMO_FLAGS)

## cluster: a local 3-node cluster (Consul dev agent, Postgres, three nodes); Ctrl-C stops it.
cluster:
	$(GO) run ./cluster/devcluster

## test: every test (Go, fuzz smoke, proto drift, firmware). Installs what it needs first.
test: deps proto-check test-go fuzz test-firmware

# -p 1: one package at a time. On 2 shared cores, packages running side by side (three-node
# clusters, headless Chromium) starved each other for seconds, which failed timing-sensitive
# tests (a cluster member missing its 3 s Consul TTL). Each package still runs its own tests in
# parallel.
test-go: build
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 -timeout 20m ./...

test-firmware:
	$(MAKE) -C firmware test

## test-bench: the bench program's own end-to-end test (every part twice with tiny numbers, ~5 min; not in make test).
test-bench: build
	SPROUT_TEST_BENCH_SUITE=1 $(GO) test -count=1 -run "TestSuiteRunsTwiceWithTinyNumbers|TestOTAPart" ./simulations/bench

## fuzz: a short run of each Go fuzz target (longer: make fuzz FUZZTIME=20000000x).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./messages

## deps: system packages the tests need (Debian; needs root) and pinned Go tools.
deps:
	bash .ci/deps.sh
	@$(MAKE) --no-print-directory tools

tools: $(BIN)/protoc-gen-go

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## proto: regenerate the Go code of messages/ (the firmware's nanopb code: make -C firmware proto).
proto: $(BIN)/protoc-gen-go
	protoc -I messages --go_out=messages --go_opt=paths=source_relative \
		messages/devicepb/device.proto messages/actorpb/actor.proto

## proto-check: fail if the committed generated code differs from what the .proto files produce.
proto-check: proto
	@git diff --exit-code -- messages/ || { echo "generated code is stale: run make proto and commit"; exit 1; }

lint: $(BIN)/staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	$(GO) mod tidy -diff

## bench: every benchmark, the whole suite twice; writes docs/benchmarks.md (+ .json) and docs/profiles/ (docs/simulations.md, "Benchmarks").
## BENCH_FLAGS adds flags, e.g. BENCH_FLAGS="-only history,big" or "-history-readings 0"; BENCH_RUNS=1 for one run.
BENCH_RUNS ?= 2
bench: build
	$(GO) run ./simulations/bench -runs $(BENCH_RUNS) -sprout $(BIN)/sprout -out docs/benchmarks.md $(BENCH_FLAGS)

## bench-mqtt: only the MQTT and TLS part (vs Mosquitto, vs the TCP edge; idle memory); updates its section of docs/benchmarks.md.
bench-mqtt: build
	$(GO) run ./simulations/bench -only mqtt -runs $(BENCH_RUNS) -sprout $(BIN)/sprout -out docs/benchmarks.md $(BENCH_FLAGS)

## bench-ota: only the firmware rollout part (issue 16: 2,000 pots x 1 MiB, at 400, 2,000 and 10,000 chunks/s; ~12 min, once);
## not in make bench. A quick one: make bench-ota BENCH_FLAGS="-ota-pots 200 -ota-image-bytes 262144 -ota-paces 400:20s,4000:2m".
bench-ota: build
	$(GO) run ./simulations/bench -only ota -runs 1 -sprout $(BIN)/sprout -out docs/benchmarks.md $(BENCH_FLAGS)

## bench-history: only the history queries (loads the 100M-reading datasets once into ~/.cache/sprout/bench-history).
bench-history:
	$(GO) run ./simulations/bench -only history -runs $(BENCH_RUNS) -out docs/benchmarks.md $(BENCH_FLAGS)

clean:
	rm -rf $(BIN)
