#!/usr/bin/env bash
# Scenario: lock holders paused between their deadline check and their
# fenced write. Usage: client-pause.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run client-pause "${1:-1}" "${2:-60s}" client-pause
