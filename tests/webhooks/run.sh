#!/bin/sh
# run.sh - webhook deliveries signed by the providers' own npm libraries
# (@octokit/webhooks-methods, stripe, svix, standardwebhooks; pinned, installed
# by this script into the build directory) and by the documented recipe for
# Slack, Linear and WorkOS, against `events serve` (providers.mjs).
#
#   tests/webhooks/run.sh EVENTS_BIN WORK_DIR
set -eu
bin=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)
# svix 1.99.1 is the last line that runs on Node.js 20 (2.x asks for 22)
packages="@octokit/webhooks-methods@6.0.0 stripe@23.2.0 svix@1.99.1 standardwebhooks@1.3.0"
mkdir -p "$work"
stamp="$work/node_modules/.events-webhooks-packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "$(echo $packages)" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo $packages >"$stamp"
fi
cp "$src/providers.mjs" "$src/../node/checks.mjs" "$work/"
exec node "$work/providers.mjs" "$bin" "$work"
