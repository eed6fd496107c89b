#!/usr/bin/env bash
# Scenario: the clock nemesis alone. Usage: clock.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run clock "${1:-1}" "${2:-60s}" clock
