#!/usr/bin/env bash
# bench/slowloris.sh - a slow-headers attack (bench/slowloris.c) on events
# serve, and how long a normal request waits while it runs.
#
# Starts $EVENTS serve --max-connections $CONNS on a free loopback port with a
# throw-away lake, runs build/bench/slowloris with $ATTACK connections that each
# send one header line every $INTERVAL seconds (never ending their headers) for
# $DURATION seconds, while a probe sends GET /health once a second and waits up
# to 10 s for its answer. Prints the slowloris line, the server's refusal
# counters from /metrics, and stops the server. Builds nothing: `make build`.
#
# Environment: CONNS (default 300), ATTACK (attack connections, default
# $CONNS), INTERVAL (default 5), DURATION (default 30),
# BUILD (default build), EVENTS (the server binary, default $BUILD/events: point
# it at an older binary to compare), SERVE_ARGS (more flags for events serve).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
EVENTS=${EVENTS:-$BUILD/events}
LOAD=$BUILD/bench/slowloris
CONNS=${CONNS:-300}
ATTACK=${ATTACK:-$CONNS}
INTERVAL=${INTERVAL:-5}
DURATION=${DURATION:-30}
bench_need "$EVENTS" "$LOAD"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-slowloris.XXXXXX")
SERVER_PID=
cleanup() {
    bench_stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(bench_free_port 18700)

# shellcheck disable=SC2086
bench_start_server "$EVENTS" "$PORT" "$TMP/server.log" --lake "$TMP/lake" --compact-every 0 \
    --max-connections "$CONNS" ${SERVE_ARGS:-}

echo "server: $EVENTS serve --max-connections $CONNS ${SERVE_ARGS:-}"
"$LOAD" --port "$PORT" --conns "$ATTACK" --interval "$INTERVAL" --duration "$DURATION"
# The attack has stopped: the counters of what the server refused or closed.
curl -s --max-time 10 "http://127.0.0.1:$PORT/metrics" | grep '^events_http_refused_total' || true
