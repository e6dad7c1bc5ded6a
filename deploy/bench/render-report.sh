#!/usr/bin/env bash
# Render a `flashctl bench --report` page in headless Chromium and save a
# screenshot, to check that the page renders with no network: Chromium
# runs with every network request refused (a proxy that does not exist),
# so anything the page tried to load would be missing from the picture.
#
#   deploy/bench/render-report.sh REPORT.html [SCREENSHOT.png]
#
# Installs Debian's chromium when it is missing (apt-get, as root).
set -euo pipefail

report=${1:?usage: render-report.sh REPORT.html [SCREENSHOT.png]}
shot=${2:-${report%.html}.png}
width=${RENDER_WIDTH:-1400}
height=${RENDER_HEIGHT:-3000}

if [ ! -f "$report" ]; then
    echo "render-report: $report: no such file" >&2
    exit 1
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "render-report: installing chromium (Debian package)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    browser=$(command -v chromium)
fi

# The page must load nothing: no http(s) URL anywhere in it.
if grep -Eqi '(src|href)=["'"'"']?(https?:)?//|url\((["'"'"'])?(https?:)?//|https?://' "$report"; then
    echo "render-report: $report refers to a network URL:" >&2
    grep -Eoi '.{0,40}https?://.{0,40}' "$report" | head -5 >&2
    exit 1
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: root in a container has no user namespaces for the
# sandbox. The proxy refuses every request the page might make.
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$profile" --no-first-run --no-default-browser-check \
    --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>' \
    --window-size="$width,$height" --virtual-time-budget=5000 \
    --screenshot="$(realpath -m "$shot")" "file://$(realpath "$report")" 2>"$profile/chromium.log" || {
    echo "render-report: chromium failed:" >&2
    tail -20 "$profile/chromium.log" >&2
    exit 1
}
if [ ! -s "$shot" ]; then
    echo "render-report: no screenshot written" >&2
    exit 1
fi
echo "render-report: $shot ($(stat -c %s "$shot") bytes)"
