#!/usr/bin/env bash
# bench/ingest_ceiling.sh - single-event ingest against the ceiling of the HTTP
# side of three designs (issue 18, section 1), all in one run, with the same wrk
# script and the same 64 connections.
#
# Starts build/events serve on a throw-away lake and measures, ROUNDS times
# (default 2) and DURATION seconds each (default 5): GET /health (the baseline of
# the issue's ratio), POST /ingest of one event (bench/ingest_single.lua), then
# build/bench/ingest_ceiling in each mode against the same script: `answer`
# (an epoll loop of our own answering at once), `handoff` (the loop hands each
# request to a writer thread, which commits a group with one fdatasync and hands
# it back, as events serve does) and `inline` (the loop commits what it read in
# one round itself), the last two also without the fdatasync. Prints each one's
# requests per second and its ratio to the round's /health. Builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
EVENTS=$BUILD/events
CEIL=$BUILD/bench/ingest_ceiling
bench_need "$EVENTS" "$CEIL"
bench_need_commands wrk curl
bench_whole_numbers DURATION ROUNDS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-ceiling.XXXXXX")
bench_cleanup_at_exit "$TMP"
PORT=$(bench_free_port 18700)
CPORT=$(bench_free_port 19700)
bench_start_server "$EVENTS" "$PORT" "$TMP/server.log" --lake "$TMP/lake" --compact-every 0

# wrk -t1 -c64 for DURATION seconds: prints its requests per second
rate() { # url [script]
    local out
    if [[ -n ${2:-} ]]; then
        out=$(WRK_ID_PREFIX="c$RANDOM$RANDOM" wrk -t1 -c64 -d"${DURATION}s" -s "$2" "$1" 2>&1 | grep '^wrk_acked=') || true
        sed -n 's/.*\breq_per_s=\([0-9]*\).*/\1/p' <<<"$out"
        [[ $out == *"wrk_bad=0 "* ]] || echo "ingest_ceiling.sh: some answers were not acknowledgements: $out" >&2
    else
        wrk -t1 -c64 -d"${DURATION}s" "$1" 2>&1 | awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'
    fi
}

CEIL_PID=
stop_ceiling() { [[ -z $CEIL_PID ]] || { kill "$CEIL_PID" 2>/dev/null; wait "$CEIL_PID" 2>/dev/null || true; }; CEIL_PID=; }
trap 'stop_ceiling; bench_cleanup' EXIT

ceiling() { # mode [--no-sync]
    "$CEIL" --port "$CPORT" --mode "$1" ${2:+"$2"} --file "$TMP/ceiling.log" >/dev/null &
    CEIL_PID=$!
    for _ in $(seq 1 50); do
        curl -s -o /dev/null --max-time 1 -X POST -H 'Content-Length: 0' "http://127.0.0.1:$CPORT/" && break
        sleep 0.1
    done
    rate "http://127.0.0.1:$CPORT/ingest" bench/ingest_single.lua
    stop_ceiling
}

echo "ingest ceiling: $(nproc) CPUs, ${DURATION}s each, wrk -t1 -c64, one event per request"
printf '%-7s %-34s %9s %7s\n' round what req/s ratio
for round in $(seq 1 "$ROUNDS"); do
    health=$(rate "http://127.0.0.1:$PORT/health")
    printf '%-7s %-34s %9s %7s\n' "$round" "events serve: GET /health" "$health" 1.00
    line() { printf '%-7s %-34s %9s %7s\n' "$round" "$1" "$2" "$(awk -v a="$2" -v b="$health" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"; }
    line "events serve: POST /ingest" "$(rate "http://127.0.0.1:$PORT/ingest" bench/ingest_single.lua)"
    line "loop: answer at once" "$(ceiling answer)"
    line "loop: handoff to a writer" "$(ceiling handoff)"
    line "loop: handoff, no fdatasync" "$(ceiling handoff --no-sync)"
    line "loop: inline commit" "$(ceiling inline)"
    line "loop: inline, no fdatasync" "$(ceiling inline --no-sync)"
done
