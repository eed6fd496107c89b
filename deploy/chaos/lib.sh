#!/usr/bin/env bash
# Shared helpers for the chaos scenarios: build the harness and the chaos
# build of the node once, then run leasechaos with the given flags.
# Environment: OUT (output root, default ./chaos-out), NODES (3 or 5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/chaos-out}"
NODES="${NODES:-3}"
BIN="$OUT/bin"

build() {
	# Once per script (go build is incremental, so this is cheap).
	if [[ -z "${_CHAOS_BUILT:-}" ]]; then
		mkdir -p "$BIN"
		# Explicit returns: run is called as `run ... || fail=1`, where set -e
		# does not apply, and a failed build must not start a run.
		(cd "$ROOT" && go build -o "$BIN/leasechaos" ./cmd/leasechaos) || return 2
		(cd "$ROOT" && go build -tags chaos -o "$BIN/leasecluster" ./cmd/leasecluster) || return 2
		_CHAOS_BUILT=1
	fi
}

# run NAME SEED DURATION NEMESES [extra leasechaos flags...]
run() {
	local name=$1 seed=$2 duration=$3 nemeses=$4
	shift 4
	build || { echo "chaos: build failed; $name not run" >&2; return 2; }
	local dir="$OUT/$name-seed$seed"
	rm -rf "$dir"
	echo "=== $name: seed=$seed duration=$duration nemesis=$nemeses nodes=$NODES"
	"$BIN/leasechaos" -q -binary "$BIN/leasecluster" -nodes "$NODES" -duration "$duration" \
		-nemesis "$nemeses" -seed "$seed" -out "$dir" "$@"
}
