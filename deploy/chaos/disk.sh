#!/usr/bin/env bash
# Scenario: one node's log disk lies about fsync and the node is killed
# (lose-unsynced), or its log writes fail (io-errors).
# Usage: disk.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run disk "${1:-1}" "${2:-60s}" disk
