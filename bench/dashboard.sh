#!/usr/bin/env bash
# bench/dashboard.sh - how long the dashboard's views take to load in a real
# browser against a lake of EVENTS events (default 1,000,000) spread over the
# last 24 hours, with the range set to the last 24 hours (every event in scope).
#
# Writes the lake with build/bench/query_gen, starts events serve on it, and
# drives headless Chromium through tests/browser/run.sh (playwright-core from
# npm, Chromium from Debian: `scripts/bootstrap --test`). Each view is timed from
# the click on its tab to its data drawn, three rounds: first on the raw JSON
# Lines, then again after `events compact --after 0` (what a running server's
# compaction makes of every closed hour). The raw lake is read raw in every round;
# after compaction, the server copies the current hour's raw files to Parquet
# when the first round reads them (--query-copies), as it would. Each view's time
# in the page (from the click's handler to the data drawn) is printed beside it
# as VIEW_page_N. Builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
EVENTS=${EVENTS:-1000000}
for f in "$BUILD/events" "$BUILD/bench/query_gen"; do
    [[ -x $f ]] || { echo "dashboard.sh: $f is missing; run \`make build\` first" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-dashbench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
start=$(date -u -d "@$(( $(date +%s) / 3600 * 3600 - 23 * 3600 ))" +%Y-%m-%dT%H:00:00Z)
"$BUILD/bench/query_gen" --events "$EVENTS" --hours 24 --start "$start" --out "$TMP/lake" >"$TMP/gen.out"
echo "dashboard benchmark: $(nproc) CPUs; lake: $(cat "$TMP/gen.out")"
echo "raw JSON Lines:"
# read raw in every round: no Parquet copies of the raw files (--query-copies; a build
# without them ignores the variable)
EVENTS_QUERY_COPIES=0 tests/browser/run.sh "$BUILD/events" "$TMP/work" --lake "$TMP/lake" --bench | grep -E '^(timings|FAIL)'
cp "$TMP/work/artifacts/timings.json" "$BUILD/dashboard-timings-raw.json"
"$BUILD/events" compact --lake "$TMP/lake" --after 0
echo "compacted:"
tests/browser/run.sh "$BUILD/events" "$TMP/work" --lake "$TMP/lake" --bench | grep -E '^(timings|FAIL)'
cp "$TMP/work/artifacts/timings.json" "$BUILD/dashboard-timings-compacted.json"
echo "(saved to $BUILD/dashboard-timings-{raw,compacted}.json)"
