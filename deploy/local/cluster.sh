#!/usr/bin/env bash
# Start or stop a local flashd store cluster on loopback, each node a
# separate process with its own data directory.
#
#   deploy/local/cluster.sh up   [DIR]   start n1 (bootstrap), n2, n3 (join)
#   deploy/local/cluster.sh down [DIR]   stop the processes started by 'up'
#
# DIR (default: ./tmp/cluster) holds data, logs and pid files. Ports:
# gRPC 7001-7003, raft 7101-7103, metrics 7201-7203.
#
# NODES=5 starts five nodes over three regions (2-2-1: east n1 n4, west n2
# n5, north n3; ports up to 7005/7105/7205), and FRONTDOORS=1 a front door
# per region (fd-east, fd-west, fd-north on gRPC 8001-8003, metrics
# 8201-8203, --auth insecure-header). Each process's command line is kept
# in DIR/NAME.cmd so deploy/chaos/node can restart it (the chaos tier
# without docker: FLASHD_CHAOS_LOCAL=DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
action=${1:?usage: cluster.sh up|down [DIR]}
dir=${2:-tmp/cluster}
nodes=${NODES:-3}
frontdoors=${FRONTDOORS:-0}
regions=(east west north east west)
doors=(fd-east fd-west fd-north)

store_endpoints() {
  local out=() i
  for i in $(seq 1 "$nodes"); do out+=("127.0.0.1:700$i"); done
  (IFS=,; echo "${out[*]}")
}

# launch NAME ARGS...: start a process in the background, keep its pid and command line.
launch() {
  local name=$1
  shift
  printf '%q ' "$@" >"$dir/$name.cmd"
  "$@" >>"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

up() {
  case $nodes in 3 | 5) ;; *) echo "NODES must be 3 or 5" >&2; exit 2 ;; esac
  mkdir -p "$dir"
  for i in $(seq 1 "$nodes"); do
    local join=(--bootstrap)
    [ "$i" -gt 1 ] && join=(--join 127.0.0.1:7001)
    launch "n$i" bin/flashd store --id "n$i" --region "${regions[$((i-1))]}" --data-dir "$dir/n$i" \
      --raft-addr "127.0.0.1:710$i" --grpc-addr "127.0.0.1:700$i" --http-addr "127.0.0.1:720$i" \
      "${join[@]}"
    [ "$i" -eq 1 ] && sleep 1.5
  done
  local endpoints
  endpoints=$(store_endpoints)
  for _ in $(seq 1 60); do
    if bin/flashctl --endpoints "$endpoints" -o json cluster status 2>/dev/null \
        | grep -o '"grpcAddr"' | wc -l | grep -q "^$nodes\$"; then
      echo "cluster up: gRPC $endpoints  metrics http://127.0.0.1:7201/metrics  logs $dir/*.log"
      [ "$frontdoors" = 1 ] && start_frontdoors "$endpoints"
      return 0
    fi
    sleep 0.5
  done
  echo "cluster did not come up; see $dir/*.log" >&2
  down; return 1
}

start_frontdoors() {
  local i doors_up=()
  for i in 1 2 3; do
    launch "${doors[$((i-1))]}" bin/flashd frontdoor --id "${doors[$((i-1))]}" --region "${regions[$((i-1))]}" \
      --grpc-addr "127.0.0.1:800$i" --http-addr "127.0.0.1:820$i" --store "$1" --auth insecure-header
    doors_up+=("127.0.0.1:800$i")
  done
  local list
  list=$(IFS=,; echo "${doors_up[*]}")
  if ! bin/flashctl --endpoints "$1" --timeout 60s chaos wait --frontdoors "$list" --members "$nodes"; then
    echo "front doors did not come up; see $dir/fd-*.log" >&2
    down; return 1
  fi
  echo "front doors up: gRPC $list (x-user-id auth)"
}

down() {
  for f in "$dir"/n*.pid "$dir"/fd-*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -CONT "$pid" 2>/dev/null || true # a paused process cannot stop
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

"$action"
