#!/bin/sh
# run.sh - webhook subscriptions end to end: a real receiver (receiver.mjs) that
# verifies every delivery with the `standardwebhooks` npm package (pinned,
# installed by this script into the build directory, as tests/webhooks/run.sh
# does) and answers on a schedule, against `events serve`.
#
#   tests/subs/run.sh EVENTS_BIN WORK_DIR SCRIPT [ARGS...]
#
# SCRIPT: receiver_test.mjs (the receiver alone), e2e.mjs (delivery, retries,
# dead letters, replay, SIGKILLs, two servers on S3) or paging.mjs (GET /events
# over a lake of 1,000,000 events). EVENTS_SRC (the source tree) is set for the scripts.
set -eu
bin=$1
work=$2
script=$3
shift 3
src=$(cd "$(dirname "$0")" && pwd)
packages="standardwebhooks@1.3.0"
mkdir -p "$work"
stamp="$work/node_modules/.events-subs-packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "$packages" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo "$packages" >"$stamp"
fi
EVENTS_SRC=$(cd "$src/../.." && pwd)
export EVENTS_SRC
cp "$src/receiver.mjs" "$src/lib.mjs" "$src/$script" "$src/../node/checks.mjs" "$work/"
exec node "$work/$script" "$bin" "$work" "$@"
