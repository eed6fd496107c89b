#!/usr/bin/env bash
# Scenario: the transfer nemesis alone (frequent leadership handovers, with
# followers' lessor clocks drifting beyond the client's margin), with many
# lease holders so that leases are abandoned close to a handover.
# Usage: transfer.sh [seed] [duration]
source "$(dirname "$0")/lib.sh"
run transfer "${1:-1}" "${2:-60s}" transfer -holders 24
