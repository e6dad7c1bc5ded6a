#!/usr/bin/env bash
# The chaos tier of CI (.ci/run), after make test: start the docker-compose
# cluster, prove the cuts (test-cuts), run a short seeded chaos run through
# the front doors with every fault kind, and remove the cluster.
#
#   CHAOS_DURATION (default 90s)  CHAOS_SEED (default: from the clock, printed)
#
# Needs docker and docker-compose; installs iptables itself. Without a
# usable docker engine it says so and runs the same chaos run against five
# store processes and three front doors on loopback (deploy/local/cluster.sh),
# with every fault kind but partitions.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${CHAOS_DURATION:-90s}
seed=${CHAOS_SEED:-$(( $(date +%s) % 100000 + 1 ))}
make build >/dev/null # the image and the local cluster use bin/: never a stale one

if ! command -v docker-compose >/dev/null || ! docker info >/dev/null 2>&1; then
  # No containers: the same runner against local processes on loopback,
  # with every fault but partitions (they need the containers' networks).
  echo "chaos: no usable docker engine or docker-compose here: local processes, no partitions" >&2
  dir=tmp/chaos-local
  trap 'NODES=5 FRONTDOORS=1 deploy/local/cluster.sh down "$dir" || true' EXIT
  rm -rf "$dir"
  NODES=5 FRONTDOORS=1 deploy/local/cluster.sh up "$dir"
  echo "chaos run: seed $seed, $duration (replay the schedule: FLASHD_CHAOS_LOCAL=$dir deploy/chaos/run --duration $duration --seed $seed --faults kill,pause,restart,leader-transfer)"
  FLASHD_CHAOS_LOCAL=$dir deploy/chaos/run --duration "$duration" --seed "$seed" \
    --faults kill,pause,restart,leader-transfer --out "tmp/chaos-runs/ci-seed-$seed"
  exit
fi

trap 'deploy/local/compose.sh down >/dev/null 2>&1 || true' EXIT
deploy/local/compose.sh down >/dev/null 2>&1 || true
deploy/local/compose.sh up
deploy/chaos/test-cuts
echo "chaos run: seed $seed, $duration (replay the schedule: deploy/chaos/run --duration $duration --seed $seed)"
deploy/chaos/run --duration "$duration" --seed "$seed" --out "tmp/chaos-runs/ci-seed-$seed"
