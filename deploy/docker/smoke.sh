#!/usr/bin/env bash
# Smoke test of the compose deployment: three containers from the scratch
# image elect a leader, serve HTTP through a follower, survive a SIGKILL of the
# leader's container, and the killed node rejoins from its volume.
#
# A failure says why: the output of the step that failed (the build,
# `docker-compose up` with, say, a published port already in use, ...), then
# the containers' states and their last log lines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=lcsmoke$$
dc() { docker-compose -p "$project" -f "$here/compose.yaml" "$@"; }
started=
cleanup() {
  rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$started" ]; then
    echo "smoke: FAILED (exit $rc); containers:" >&2
    dc ps -a >&2 || true
    echo "smoke: their last log lines:" >&2
    dc logs --no-color --tail 40 >&2 || true
  fi
  dc down -v >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

# quietly WHAT CMD...: runs CMD, showing its output only if it fails.
quietly() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    echo "smoke: $what failed:" >&2
    echo "$out" >&2
    return 1
  fi
}

quietly "building the image" "$here/build.sh"
started=1
quietly "docker-compose up" dc up -d

# wait_for URL PATTERN: poll until the body matches, at most 30s.
wait_for() {
  for _ in $(seq 1 150); do
    body=$(curl -s --max-time 1 "$1" || true)
    if [[ $body =~ $2 ]]; then return 0; fi
    sleep 0.2
  done
  echo "smoke: $1 never matched $2 (last: $body)" >&2
  return 1
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

wait_for http://127.0.0.1:8001/readyz . 
wait_for http://127.0.0.1:8001/v1/status '"leader":"n[123]"'
leader=$(curl -s http://127.0.0.1:8001/v1/status | json '["leader"]')
port() { echo $((8000 + ${1#n})); }
follower=n1; [ "$leader" = n1 ] && follower=n2
grant=$(curl -s -XPOST "http://127.0.0.1:$(port $follower)/v1/leases" -d '{"ttl_ms":60000}')
id=$(echo "$grant" | json '["id"]') || { echo "smoke: grant through $follower answered: $grant" >&2; exit 1; }
quietly "attaching smoke/key through $follower" \
  curl -sS --fail-with-body -XPUT "http://127.0.0.1:$(port $follower)/v1/items/smoke/key" -d "{\"lease_id\":\"$id\",\"value\":\"v\"}"
echo "smoke: leader $leader, lease $id attached through follower $follower"

quietly "killing $leader" docker kill -s KILL "$(dc ps -q "$leader")"
others=$(echo n1 n2 n3 | tr ' ' '\n' | grep -v "$leader" | paste -sd'|')
wait_for "http://127.0.0.1:$(port $follower)/v1/status" "\"leader\":\"($others)\""
wait_for "http://127.0.0.1:$(port $follower)/v1/items/smoke/key" "\"lease_id\":\"$id\""
echo "smoke: item survived the SIGKILL of $leader"

quietly "restarting $leader" dc start "$leader"
wait_for "http://127.0.0.1:$(port "$leader")/v1/status" '"role":"follower"'
wait_for "http://127.0.0.1:$(port "$leader")/v1/leases/$id" "smoke/key"
echo "smoke: $leader rejoined from its volume; ok"
