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
BUILD=${BUILD:-build}
EVENTS=${EVENTS:-$BUILD/events}
LOAD=$BUILD/bench/slowloris
CONNS=${CONNS:-300}
ATTACK=${ATTACK:-$CONNS}
INTERVAL=${INTERVAL:-5}
DURATION=${DURATION:-30}
for f in "$EVENTS" "$LOAD"; do
    [[ -x $f ]] || { echo "slowloris.sh: $f is missing; run \`make build\` first" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-slowloris.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for i in $(seq 0 49); do
    p=$((18700 + ($$ + i * 7) % 1000))
    if port_free "$p"; then PORT=$p; break; fi
done
[[ -n $PORT ]] || { echo "slowloris.sh: no free port in 18700-19699" >&2; exit 1; }

# shellcheck disable=SC2086
"$EVENTS" serve --listen "127.0.0.1:$PORT" --lake "$TMP/lake" --compact-every 0 \
    --max-connections "$CONNS" ${SERVE_ARGS:-} >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
up=0
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/health" 2>/dev/null; then up=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
[[ $up == 1 ]] || { echo "slowloris.sh: the server did not start; its log:" >&2; cat "$TMP/server.log" >&2; exit 1; }

echo "server: $EVENTS serve --max-connections $CONNS ${SERVE_ARGS:-}"
"$LOAD" --port "$PORT" --conns "$ATTACK" --interval "$INTERVAL" --duration "$DURATION"
# The attack has stopped: the counters of what the server refused or closed.
curl -s --max-time 10 "http://127.0.0.1:$PORT/metrics" | grep '^events_http_refused_total' || true
