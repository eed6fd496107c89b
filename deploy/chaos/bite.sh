#!/usr/bin/env bash
# Proof that the harness bites: runs it against deliberately broken servers
# and checks that the matching checker fails (and that the unbroken server
# passes the same schedule). About 2 x 40 s per bug (no-extend: 24 lease
# holders under leadership transfers).
# LEASECHAOS_BITE=skip-verify,... selects bugs.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go test -tags chaos ./chaos/ -run Bite -v -timeout 30m
