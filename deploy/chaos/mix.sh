#!/usr/bin/env bash
# Scenario: every nemesis, mixed. Usage: mix.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run mix "${1:-1}" "${2:-120s}" kill,pause,partition,clock,fsync,transfer
