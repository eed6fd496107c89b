#!/usr/bin/env bash
# Scenario: the pause nemesis alone. Usage: pause.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run pause "${1:-1}" "${2:-60s}" pause
