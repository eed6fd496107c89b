#!/usr/bin/env bash
# Builds the leasecluster:local image from a static binary (no base image is
# pulled: the image is FROM scratch).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$here/leasecluster" ./cmd/leasecluster
docker build -q -t leasecluster:local "$here"
rm -f "$here/leasecluster"
