#!/usr/bin/env bash
# bench/tail_attack.sh - what GET /tail subscribers cost ingest.
#
# For each scenario, starts a fresh build/events serve on a free loopback port
# with a throw-away lake, and runs build/bench/tail_attack against it: the time
# of one POST /ingest of EVENTS events (median of ROUNDS) with no subscriber,
# then with SUBSCRIBERS open /tail streams, and the ratio. Scenarios:
#
#   hostile       15 crafted patterns (966 bytes in all) that make a
#                 backtracking glob slow on a 128-byte type, against events of
#                 that type: the attack of issue 11 (6), within the default limits.
#   hostile_long  28 patterns of 1,000 bytes, the most a request line holds,
#                 with the limits raised to admit them (--tail-max-pattern-bytes
#                 1024 --tail-max-patterns 64); servers without those flags skip it.
#   every_event   subscribers of every event (no pattern): each event is copied
#                 into every stream.
#   control       no subscriber in either phase: the ratio the machine's noise
#                 alone gives, to read the others against.
#
# Builds nothing: run `make build` first. Environment: BUILD (default build),
# EVENTS_BIN (a server binary to measure instead of BUILD/events, e.g. an older
# build), ROUNDS (default 5), EVENTS (default 10000), SUBSCRIBERS (default 100).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
BIN=${EVENTS_BIN:-$BUILD/events}
LOAD=$BUILD/bench/tail_attack
ROUNDS=${ROUNDS:-5}
EVENTS=${EVENTS:-10000}
SUBSCRIBERS=${SUBSCRIBERS:-100}
export LC_ALL=C

bench_need "$BIN" "$LOAD"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-tail-bench.XXXXXX")
SERVER_PID=
stop_server() { bench_stop_server; }
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# start_server NAME [flags...]: a fresh server and lake; sets BASE
start_server() {
    local name=$1
    shift
    local port
    port=$(bench_free_port 19700)
    BASE=http://127.0.0.1:$port
    bench_start_server "$BIN" "$port" "$TMP/$name.log" --lake "$TMP/$name" --tail-max-clients 1000 \
        --tail-heartbeat 1s --max-events "$EVENTS" --max-body 64MiB "$@"
}

TYPE=$(printf 'a%.0s' $(seq 1 128))
SEG=$(printf 'a%.0s' $(seq 1 63))
HOSTILE=
for _ in $(seq 1 14); do HOSTILE+="*${SEG}b,"; done
HOSTILE+="*$(printf 'a%.0s' $(seq 1 40))b"

LONG=
for i in $(seq 1 28); do LONG+="${LONG:+,}$(printf '*a%.0s' $(seq 1 499))z"; done

NEW_FLAGS=0
"$BIN" serve --help 2>&1 | grep -q -- --tail-max-pattern-bytes && NEW_FLAGS=1

run() { # run NAME SUBSCRIBERS PATTERN [server flags...]
    local name=$1 subscribers=$2 pattern=$3
    shift 3
    start_server "$name" "$@"
    local out
    out=$("$LOAD" "$BASE" --subscribers "$subscribers" --events "$EVENTS" --rounds "$ROUNDS" \
        --pattern "$pattern" --type "$TYPE")
    local lost
    lost=$(curl -fsS "$BASE/metrics" | awk '/^events_tail_lost_total / { print $2 }')
    stop_server
    printf '%-13s %s lost=%s\n' "$name" "$out" "${lost:-n/a}"
}

echo "server: $BIN; $EVENTS events of a 128-byte type per request, median of $ROUNDS requests"
run hostile "$SUBSCRIBERS" "$HOSTILE"
if [[ $NEW_FLAGS == 1 ]]; then
    run hostile_long "$SUBSCRIBERS" "$LONG" --tail-max-pattern-bytes 1024 --tail-max-patterns 64
fi
run every_event "$SUBSCRIBERS" ""
run control 0 ""
