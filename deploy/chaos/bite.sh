#!/usr/bin/env bash
# Proof that the harness bites: runs it against deliberately broken servers,
# one planted bug per checker and the first five variants, and checks that
# the checker planted for each fails (and that the unbroken server passes
# the same schedule). About 30 minutes: 40 s to 3 minutes per bug.
# LEASECHAOS_BITE=skip-verify,... selects bugs; bite-ci.sh runs a rotating
# two of them in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go test -tags chaos ./chaos/ -run 'TestBite$' -count=1 -v -timeout 60m
