#!/usr/bin/env bash
# Regenerates the Go code in leasepb/ from its .proto files. buf and the
# protoc plugins are Go modules at pinned versions: no system protoc needed.
set -euo pipefail
cd "$(dirname "$0")/.."
go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate
