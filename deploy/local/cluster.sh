#!/usr/bin/env bash
# Start or stop a local 3-node flashd store cluster on loopback, one node per
# region, each a separate process with its own data directory.
#
#   deploy/local/cluster.sh up   [DIR]   start n1 (bootstrap), n2, n3 (join)
#   deploy/local/cluster.sh down [DIR]   stop the processes started by 'up'
#
# DIR (default: ./tmp/cluster) holds data, logs and pid files. Ports:
# gRPC 7001-7003, raft 7101-7103, metrics 7201-7203.
set -euo pipefail
cd "$(dirname "$0")/../.."
action=${1:?usage: cluster.sh up|down [DIR]}
dir=${2:-tmp/cluster}
regions=(east west north)

up() {
  mkdir -p "$dir"
  for i in 1 2 3; do
    local join=(--bootstrap)
    [ "$i" -gt 1 ] && join=(--join 127.0.0.1:7001)
    bin/flashd store --id "n$i" --region "${regions[$((i-1))]}" --data-dir "$dir/n$i" \
      --raft-addr "127.0.0.1:710$i" --grpc-addr "127.0.0.1:700$i" --http-addr "127.0.0.1:720$i" \
      "${join[@]}" >"$dir/n$i.log" 2>&1 &
    echo $! >"$dir/n$i.pid"
    [ "$i" -eq 1 ] && sleep 1.5
  done
  for _ in $(seq 1 60); do
    if bin/flashctl --endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 -o json cluster status 2>/dev/null \
        | grep -o '"grpcAddr"' | wc -l | grep -q '^3$'; then
      echo "cluster up: gRPC 127.0.0.1:7001,7002,7003  metrics http://127.0.0.1:7201/metrics  logs $dir/*.log"
      return 0
    fi
    sleep 0.5
  done
  echo "cluster did not come up; see $dir/*.log" >&2
  down; return 1
}

down() {
  for f in "$dir"/n*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

"$action"
