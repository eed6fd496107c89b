#!/usr/bin/env bash
# Scenario: the partition nemesis alone. Usage: partition.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run partition "${1:-1}" "${2:-60s}" partition
