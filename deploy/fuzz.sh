#!/usr/bin/env bash
# Runs every Go fuzz target (a func FuzzX in a _test.go file) for FUZZTIME
# each (default 20s), one after the other: go test -fuzz takes one target at
# a time. A failing input is written to the package's testdata/fuzz/FuzzX/
# and the script stops; commit that file as a regression case (plain
# `go test` runs it) and fix the bug. FUZZ_TARGETS=FuzzA,FuzzB runs only
# those.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-20s}
only=${FUZZ_TARGETS:-}
ran=0
for file in $(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort); do
  pkg=./$(dirname "$file")
  for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then
      continue
    fi
    echo "== $name ($pkg, $time)"
    go test -run '^$' -fuzz "^$name\$" -fuzztime "$time" "$pkg"
    ran=$((ran + 1))
  done
done
echo "fuzz: $ran targets, $time each, no failure"
