#!/usr/bin/env bash
# The docker-compose cluster: 5 store nodes over 3 regions (2-2-1) and a
# front door per region (docker-compose.yml says how it is laid out).
#
#   deploy/local/compose.sh up          build the image, start, wait until every node and front door serves, print endpoints
#   deploy/local/compose.sh down        stop and remove its containers, network and volumes (data is lost)
#   deploy/local/compose.sh endpoints   print the endpoints reachable from this machine
#   deploy/local/compose.sh ps          the containers and their state
#
# FLASHD_NET (default 10.213) is the first two octets of its /16.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/topology.sh
export FLASHD_NET
chaos_state=tmp/chaos

dc() { docker-compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE_PATH" "$@"; }

need() {
  command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
  command -v docker-compose >/dev/null || { echo "docker-compose is not installed (apt-get install docker-compose)" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { echo "the docker engine is not reachable" >&2; exit 1; }
}

endpoints() {
  echo "store gRPC (flashctl --endpoints): $(store_endpoints)"
  echo "front doors (x-user-id auth):      $(frontdoor_endpoints)"
  local n
  for n in "${STORES[@]}" "${FRONTDOORS[@]}"; do
    local port=7200
    [[ $n == fd-* ]] && port=8200
    printf '  %-9s %-6s %-14s metrics http://%s:%s/metrics\n' "$n" "${NODE_REGION[$n]}" "${NODE_IP[$n]}" "${NODE_IP[$n]}" "$port"
  done
  echo "try:  bin/flashctl --endpoints $(store_endpoints) cluster status"
}

up() {
  need
  [ -x bin/flashd ] && [ -x bin/flashctl ] || { echo "bin/flashd or bin/flashctl missing: run make build" >&2; exit 1; }
  deploy/local/image.sh "${FLASHD_IMAGE:-flashd:local}"
  rm -rf "$chaos_state"
  dc up -d --no-build --remove-orphans
  if ! bin/flashctl chaos wait --endpoints "$(store_endpoints)" --frontdoors "$(frontdoor_endpoints)" \
      --members "${#STORES[@]}" --timeout 120s; then
    dc logs --tail 20 >&2 || true
    echo "the cluster did not come up; make cluster-down removes it" >&2
    exit 1
  fi
  endpoints
}

down() {
  need
  local n c
  for n in "${STORES[@]}" "${FRONTDOORS[@]}"; do
    c=$(container "$n")
    if [ "$(docker inspect -f '{{.State.Paused}}' "$c" 2>/dev/null)" = true ]; then docker unpause "$c" >/dev/null; fi
  done
  dc down -v --remove-orphans --timeout 5
  rm -rf "$chaos_state"
}

ps() { need; dc ps; }

case ${1:-} in
  up) up ;;
  down) down ;;
  endpoints) endpoints ;;
  ps) ps ;;
  *) echo "usage: $0 up|down|endpoints|ps" >&2; exit 2 ;;
esac
