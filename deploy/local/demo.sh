#!/usr/bin/env bash
# The interim demo: start a local 3-region cluster, run a tiny sale through
# flashctl, show the cluster status, then stop everything (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d "${TMPDIR:-/tmp}/flashd-demo.XXXXXX")
ctl() { bin/flashctl --endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 "$@"; }
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $dir (stop with deploy/local/cluster.sh down $dir)"; return; fi
  deploy/local/cluster.sh down "$dir"; rm -rf "$dir"
}
trap cleanup EXIT

deploy/local/cluster.sh up "$dir"
ctl campaign create spring --name "Spring Festival" --kind flash-sale --start now --per-user-limit 1 --reservation-ttl 10m
ctl item add --campaign spring lantern --stock 3
ctl campaign open spring
for u in alice bob carol dave; do
  ctl claim --campaign spring --item lantern --user "$u" || true
done
ctl item get --campaign spring lantern
ctl cluster status
