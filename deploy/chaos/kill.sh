#!/usr/bin/env bash
# Scenario: the kill nemesis alone. Usage: kill.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run kill "${1:-1}" "${2:-60s}" kill
