#!/usr/bin/env bash
# Run the comparisons of docs/PERFORMANCE.md with flashctl bench, one
# workload after another, and keep everything: the tables (.txt), the JSON
# documents, the HTML reports with their screenshots, and the CPU and heap
# profiles of the servers and the load generator.
#
#   deploy/bench/report.sh [OUT_DIR]        (default bin/bench)
#
# BIN (default bin) holds flashd and flashctl (make build); BENCH_DURATION
# (default 10s) is each run's measured time. Every run is bounded by it; the
# whole script takes about 5 minutes with the defaults.
set -euo pipefail

out=${1:-bin/bench}
bin=${BIN:-bin}
duration=${BENCH_DURATION:-10s}
here=$(dirname "$0")
mkdir -p "$out"

run() {
    local name=$1
    shift
    echo "== $name: flashctl bench $*" >&2
    "$bin/flashctl" bench "$@" --report "$out/$name.html" --json "$out/$name.json" | tee "$out/$name.txt"
    "$here/render-report.sh" "$out/$name.html" "$out/$name.png"
}

run sustained --workload sustained --duration "$duration" --baseline echo,redis-lua --coalesce off --half-rate \
    --profile "$out/profiles-sustained"
run sustained-1024 --workload sustained --duration "$duration" --concurrency 1024 --baseline echo,redis-lua --coalesce off \
    --profile "$out/profiles-sustained-1024"
run sustained-unary --workload sustained --duration "$duration" --concurrency 1024 --client-batching off --baseline echo
run sellout --workload sellout --stock 20000 --duration "$duration" --baseline redis-lua \
    --profile "$out/profiles-sellout"
run many-items --workload many-items --items 100 --duration "$duration" --baseline redis-lua
run cards --workload cards --duration "$duration"
echo "results in $out: *.txt tables, *.json documents, *.html reports, *.png screenshots, profiles-*/ (go tool pprof -top FILE)" >&2
