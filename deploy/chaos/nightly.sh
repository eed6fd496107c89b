#!/usr/bin/env bash
# The long run for nightly use: every nemesis on 3 and 5 nodes, many seeds
# (default: ten seeds derived from the date, so each night differs but any
# night can be replayed with SEEDS="...").
source "$(dirname "$0")/lib.sh"
SEEDS="${SEEDS:-$(for i in $(seq 0 9); do echo $(( $(date +%Y%m%d) * 10 + i )); done)}"
fail=0
for seed in $SEEDS; do
	NODES=3 run nightly-3 "$seed" 5m kill,pause,partition,clock,fsync,transfer || fail=1
	NODES=5 run nightly-5 "$seed" 5m kill,pause,partition,clock,fsync,transfer || fail=1
done
exit $fail
