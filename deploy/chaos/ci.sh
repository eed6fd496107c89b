#!/usr/bin/env bash
# A few minutes of chaos for CI: several seeds over the main nemeses, on 3
# and 5 nodes, and one shorter run with mutual TLS on every connection
# (-tls: certificates made in the run's directory, nodes with
# --client-cert-auth), then two runs of the newer nemeses: two faults at
# once (overlap: seed 6 nests five pairs), and snapshots, the lying disk,
# log I/O errors and client pauses (seed 300 schedules each of them; it
# happens to nest nothing). Exits non-zero if any run fails a checker (or
# cannot run). Partitions need root (network namespaces); without it they
# are skipped. About six minutes (6m07s as root on 2 cores).
source "$(dirname "$0")/lib.sh"
fail=0
for seed in 1 2 3; do
	run ci-mix "$seed" 40s kill,pause,partition,clock,fsync,transfer,membership || fail=1
done
NODES=5 run ci-5nodes 4 40s kill,partition,pause || fail=1
NODES=3 run ci-tls 5 30s kill,pause,partition,clock -tls || fail=1
NODES=3 run ci-overlap 6 40s kill,pause,partition,clock,fsync,overlap || fail=1
NODES=3 run ci-disk 300 50s snapshot,disk,client-pause,kill,partition,overlap || fail=1
if [[ $fail -ne 0 ]]; then
	echo "chaos: FAILED; see $OUT/*/summary.json, report.html and nodes/*/node.log" >&2
	exit 1
fi
echo "chaos: all runs passed"
