#!/usr/bin/env bash
# Generates the compose deployment's certificates with the leasecluster
# binary itself: `leasecluster tls init`, run from the leasecluster:local image
# (build it first with build.sh), as the calling user so that the files stay
# readable by the curl and CLI commands on the host.
#
#   tls.sh [DIR [tls init flags, e.g. --force]]
#
# DIR defaults to $LEASECLUSTER_TLS_DIR, else deploy/docker/tls, the directory
# compose.yaml mounts read-only at /tls in every container. It gets a peer CA,
# a client CA, a certificate per node (n1, n2, n3: the compose service names,
# and localhost/127.0.0.1 for the published ports) and per client (admin, the
# nodes' --admin-cn, and app1). The two CA keys only sign certificates, so
# they are moved out of DIR, into DIR-ca-keys, and never reach a container.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${LEASECLUSTER_TLS_DIR:-$here/tls}}
[ $# -gt 0 ] && shift
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
docker run --rm --network none --user "$(id -u):$(id -g)" -v "$dir:/tls" leasecluster:local \
  tls init --dir /tls --peers n1,n2,n3 --clients admin,app1 --hosts localhost,127.0.0.1 "$@"
mkdir -p "$dir-ca-keys"
chmod 700 "$dir-ca-keys"
mv -f "$dir/peer-ca.key" "$dir/client-ca.key" "$dir-ca-keys/"
cat <<MSG
tls.sh: the files are in $dir (at /tls in the containers); the CA keys were
moved to $dir-ca-keys. From the host, as client app1:
  curl --cacert $dir/peer-ca.crt --cert $dir/client-app1.crt --key $dir/client-app1.key https://127.0.0.1:8001/v1/status
MSG
