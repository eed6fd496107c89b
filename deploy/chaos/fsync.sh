#!/usr/bin/env bash
# Scenario: the fsync nemesis alone. Usage: fsync.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run fsync "${1:-1}" "${2:-60s}" fsync
