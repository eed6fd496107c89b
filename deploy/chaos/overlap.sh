#!/usr/bin/env bash
# Scenario: two faults at once (a second fault nested in a step's window).
# Usage: overlap.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run overlap "${1:-6}" "${2:-60s}" kill,pause,partition,clock,fsync,overlap
