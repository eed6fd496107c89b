#!/usr/bin/env bash
# Scenario: kills during snapshot writes and installs (nodes snapshot every
# 32 entries and keep 16). Usage: snapshot.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run snapshot "${1:-1}" "${2:-60s}" snapshot
