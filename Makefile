# The test command of the README: vet, the generated code is up to date,
# every test with the race detector (fuzz targets run their seed corpora),
# and the benchmark module's own tests (bench/ is a module of its own, so
# that etcd's dependencies stay out of this one; this also keeps it building).
.PHONY: test vet proto proto-check build run

GO ?= go

test: vet proto-check
	$(GO) test -race -count=1 -timeout 20m ./...
	cd bench && $(GO) test -count=1 -timeout 5m ./...

vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || (gofmt -l . ; echo "gofmt needed"; exit 1)
	$(GO) vet ./...

# proto regenerates leasepb from its .proto files (buf and the plugins are
# pinned Go modules; no system protoc needed).
proto:
	./scripts/genproto.sh

# proto-check fails if regenerating changes the committed code.
proto-check: proto
	git diff --exit-code -- leasepb

build:
	$(GO) build -o bin/leasecluster ./cmd/leasecluster

# run starts a local three-node cluster (the README's first command).
run:
	$(GO) run ./cmd/leasecluster dev
