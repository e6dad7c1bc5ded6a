#!/usr/bin/env bash
# The chaos tier of CI (.ci/run), after make test: start the docker-compose
# cluster, prove the cuts (test-cuts), run a short seeded chaos run through
# the front doors with every fault kind, and remove the cluster.
#
#   CHAOS_DURATION (default 90s)  CHAOS_SEED (default: from the clock, printed)
#
# Needs docker and docker-compose; installs iptables itself. Without a
# usable docker engine it says so and runs the long in-process simulation
# tier instead (the same runner and checks, no containers).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${CHAOS_DURATION:-90s}
seed=${CHAOS_SEED:-$(( $(date +%s) % 100000 + 1 ))}

if ! command -v docker-compose >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "chaos: no usable docker engine or docker-compose here; running 100 simulated seeds instead" >&2
  make chaos-sim SEEDS=100 FIRST_SEED="$seed"
  exit
fi

trap 'deploy/local/compose.sh down >/dev/null 2>&1 || true' EXIT
deploy/local/compose.sh down >/dev/null 2>&1 || true
deploy/local/compose.sh up
deploy/chaos/test-cuts
echo "chaos run: seed $seed, $duration (replay the schedule: deploy/chaos/run --duration $duration --seed $seed)"
deploy/chaos/run --duration "$duration" --seed "$seed" --out "tmp/chaos-runs/ci-seed-$seed"
