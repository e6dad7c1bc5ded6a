#!/usr/bin/env bash
# Build the flashd image FROM scratch around the static binaries in bin/
# (make build). Usage: deploy/local/image.sh [IMAGE]   (default flashd:local)
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-flashd:local}
for b in bin/flashd bin/flashctl; do
  [ -x "$b" ] || { echo "$b missing: run make build" >&2; exit 1; }
  if ldd "$b" >/dev/null 2>&1; then # ldd fails on a static binary
    echo "$b is dynamically linked: build it with CGO_ENABLED=0 (make build)" >&2; exit 1
  fi
done
root=tmp/image/rootfs
rm -rf tmp/image
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" tmp/image/data/flashd
cp bin/flashd bin/flashctl "$root/usr/local/bin/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nflashd:x:65532:65532:flashd:/var/lib/flashd:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nflashd:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
if ! out=$(docker build -q -f deploy/local/Dockerfile -t "$image" tmp/image 2>&1); then echo "$out" >&2; exit 1; fi
new=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  docker image rm "$old" >/dev/null 2>&1 || true # the previous build, now untagged
fi
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
