#!/usr/bin/env bash
# Generates the Go code for every .proto file. With --check, generates into a
# temporary tree and fails if it differs from what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin/tools
GOBIN="$(pwd)/bin/tools" go install google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
export PATH="$(pwd)/bin/tools:$PATH"

out=.
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fi
module=github.com/flashd/flashd
gen() { # proto-root file...
  protoc -I "$1" --go_out="$out" --go_opt=module=$module \
    --go-grpc_out="$out" --go-grpc_opt=module=$module "${@:2}"
}
gen fsm/fsmpb fsm/fsmpb/command.proto
gen rpc/proto rpc/proto/flashd/v1/*.proto

if [ "${1:-}" = "--check" ]; then
  for f in $(cd "$out" && find . -name '*.pb.go'); do
    if ! cmp -s "$out/$f" "$f"; then
      echo "generated code is stale: $f (run 'make proto')" >&2; exit 1
    fi
  done
fi
