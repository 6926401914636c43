#!/usr/bin/env bash
# bench/deliver.sh - the webhook delivery benchmark (issue 16): how fast one
# subscription delivers to a local receiver, and how long an event takes from
# ingest to the receiver's 2xx at half of the ingest peak measured in the same run.
#
# Starts build/events serve on a free loopback port with a throw-away lake and
# build/bench/deliver_recv (a libmicrohttpd receiver that verifies every signature
# and times every event), then:
#   1. throughput: BACKLOG events (default 500,000) ingested first, then a
#      subscription to every type from the oldest, batch 100: events/s until the
#      receiver has them all, and the server's CPU time per event delivered (which
#      other load on the machine inflates less than the rate); with concurrency 1
#      (the default) and 4; and, when
#      tests/subs has installed its npm package (ctest -R test_subs_receiver), to
#      the Node.js receiver of the tests (tests/subs/receiver.mjs) too;
#   2. the ingest peak: bench/ingest_load, batch 100 over 8 connections, DURATION s;
#   3. latency: a subscription from now (batch 100, maxWaitMs 1000: the defaults)
#      while ingest_load offers half of that peak for DURATION s; for each event the
#      time from its receivedAt (the server's receive time, which precedes the
#      acknowledgement: an upper bound of ack-to-2xx) to the 2xx, p50/p99/max; and
#      whether delivery kept up (delivered by the end of the load, and how long
#      the rest took).
# Builds nothing: run `make build` first.
#
# Environment: DURATION (seconds of load, default 10), BACKLOG (events, default
# 500000), BUILD (default build), KEEP_LAKE=1 keeps the temporary lake.
# Exit: 0 when every event reached the receiver with no bad signature, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
BACKLOG=${BACKLOG:-500000}
EVENTS=$BUILD/events
LOAD=$BUILD/bench/ingest_load
RECV=$BUILD/bench/deliver_recv
NODE_DIR=$BUILD/tests/subs
export LC_ALL=C
bench_need "$EVENTS" "$LOAD" "$RECV"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || { echo "deliver.sh: DURATION must be whole seconds" >&2; exit 1; }
[[ $BACKLOG =~ ^[0-9]+$ && $BACKLOG -ge 100 ]] || { echo "deliver.sh: BACKLOG must be at least 100" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-deliver-bench.XXXXXX")
bench_cleanup_at_exit "$TMP"
RECV_PIDS=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup_receivers() { local p; for p in "${RECV_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'cleanup_receivers; bench_cleanup' EXIT

PORT=$(bench_free_port 18700)
BASE=http://127.0.0.1:$PORT
bench_start_server "$EVENTS" "$PORT" "$TMP/server.log" --lake "$TMP/lake" --seal-age 5s

SECRET=whsec_$(head -c 24 /dev/urandom | base64)
RPORT=$(bench_free_port 19700)
"$RECV" --port "$RPORT" --secret "$SECRET" &
RECV_PIDS+=($!)
RBASE=http://127.0.0.1:$RPORT
for _ in $(seq 1 50); do curl -fsS -o /dev/null "$RBASE/stats" 2>/dev/null && break; sleep 0.1; done

NBASE=
if [[ -f $NODE_DIR/receiver.mjs && -d $NODE_DIR/node_modules/standardwebhooks ]] && command -v node >/dev/null; then
    node "$NODE_DIR/receiver.mjs" --secret "$SECRET" --log "$TMP/node-receiver.ndjson" >"$TMP/node.out" 2>&1 &
    RECV_PIDS+=($!)
    for _ in $(seq 1 50); do
        NPORT=$(sed -n 's/^listening //p' "$TMP/node.out")
        [[ -n $NPORT ]] && break
        sleep 0.1
    done
    [[ -n ${NPORT:-} ]] && NBASE=http://127.0.0.1:$NPORT
else
    echo "deliver.sh: the Node.js receiver is skipped (run \`ctest -R test_subs_receiver\` in $BUILD to install it)" >&2
fi

field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
jfield() { sed -n "s/.*\"$2\":\\([-0-9.]*\\).*/\\1/p" <<<"$1"; }
now_ms() { date +%s%3N; }
FAIL=0

# subscribe ID URL CONCURRENCY START: POST /subscriptions, batch 100; exits on an error.
subscribe() {
    local body
    body=$(printf '{"id":"%s","pattern":"**","url":"%s","secret":"%s","batchSize":100,"concurrency":%s,"start":"%s"}' \
        "$1" "$2" "$SECRET" "$3" "$4")
    curl -fsS -o /dev/null -H 'Content-Type: application/json' --data-binary "$body" "$BASE/subscriptions" ||
        { echo "deliver.sh: POST /subscriptions $1 failed" >&2; exit 1; }
}
unsubscribe() { curl -fsS -o /dev/null -X DELETE "$BASE/subscriptions/$1" || FAIL=1; }

# receiver_events BASE: events received so far (deliver_recv's /stats, or receiver.mjs's log)
receiver_events() {
    if [[ $1 == "$NBASE" ]]; then
        { grep -o '"ids":\[[^]]*\]' "$TMP/node-receiver.ndjson" 2>/dev/null || true; } | tr ',' '\n' | grep -c '"' || true
    else
        jfield "$(curl -fsS "$1/stats")" events
    fi
}

# wait_events BASE N SECONDS: returns once the receiver has N events (1 after SECONDS).
wait_events() {
    local end=$(($(date +%s) + $3))
    while [[ $(receiver_events "$1") -lt $2 ]]; do
        [[ $(date +%s) -lt $end ]] || return 1
        sleep 0.1
    done
}

echo "delivery benchmark: $(nproc) CPUs, server on $BASE, receivers: C $RBASE${NBASE:+, Node.js $NBASE}"

# ---- 1. throughput from a backlog -----------------------------------------------------------
line=$("$LOAD" --url "$BASE/ingest" --connections 8 --batch 100 --duration 600 \
    --max-requests $((BACKLOG / 100)) --id-prefix backlog 2>"$TMP/backlog.err") || { cat "$TMP/backlog.err" >&2; exit 1; }
N=$(($(field "$line" requests) * 100))
echo "backlog: $N events ingested"
TCK=$(getconf CLK_TCK)
printf '\n%-40s %10s %9s %16s\n' "throughput (batch 100, from the oldest)" events/s seconds srv_cpu_us/event
declare -A THR
throughput() { # name receiver-base concurrency
    # deliver_recv's counters start again; the Node.js receiver has no /stats (it counts from
    # its log: a request there would be a delivery without a signature)
    [[ $2 == "$NBASE" ]] || curl -fsS -o /dev/null "$2/stats?reset=1"
    local base0 t0 t1 c0 c1
    base0=$(receiver_events "$2")
    c0=$(bench_cpu_ticks "$SERVER_PID")
    t0=$(now_ms)
    subscribe "$1" "$2/$1" "$3" oldest
    if ! wait_events "$2" $((base0 + N)) 600; then
        echo "deliver.sh: $1: $(($(receiver_events "$2") - base0)) of $N events within 600 s" >&2
        FAIL=1
    fi
    t1=$(now_ms)
    c1=$(bench_cpu_ticks "$SERVER_PID")
    unsubscribe "$1"
    THR[$1]=$(awk -v n="$N" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    printf '%-40s %10s %9s %16s\n' "$1 (concurrency $3)" "${THR[$1]}" "$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')" \
        "$(awk -v c=$((c1 - c0)) -v t="$TCK" -v n="$N" 'BEGIN { printf "%.2f", c * 1e6 / t / n }')"
}
throughput c_conc1 "$RBASE" 1
throughput c_conc4 "$RBASE" 4
[[ -n $NBASE ]] && throughput node_conc1 "$NBASE" 1

# ---- 2. the ingest peak, 3. latency at half of it --------------------------------------------
line=$("$LOAD" --url "$BASE/ingest" --connections 8 --batch 100 --duration "$DURATION" --id-prefix peak 2>"$TMP/peak.err") || true
PEAK=$(field "$line" events_per_s)
[[ -n $PEAK ]] || { echo "deliver.sh: the peak run failed" >&2; cat "$TMP/peak.err" >&2; exit 1; }
HALF=$((${PEAK%.*} / 2))
RATE=$(awk -v h="$HALF" 'BEGIN { r = h / 100; printf "%.1f", r < 1 ? 1 : r }')
echo
echo "ingest peak (batch 100 x 8 connections): $PEAK events/s; half: $HALF events/s ($RATE requests/s)"

subscribe lat "$RBASE/lat" 1 now
sleep 2 # the deliverer has seen the new subscription (--subscription-poll, 1 s)
curl -fsS -o /dev/null "$RBASE/stats?reset=1"
line=$("$LOAD" --url "$BASE/ingest" --connections 8 --batch 100 --duration "$DURATION" --rate "$RATE" \
    --id-prefix half 2>"$TMP/half.err") || { echo "deliver.sh: the half-peak run had failures" >&2; FAIL=1; }
t_end=$(now_ms)
ACKED=$(($(field "$line" requests) * 100))
AT_END=$(receiver_events "$RBASE")
wait_events "$RBASE" "$ACKED" 300 || { echo "deliver.sh: the receiver got $(receiver_events "$RBASE") of $ACKED" >&2; FAIL=1; }
TAIL_MS=$(($(now_ms) - t_end))
S=$(curl -fsS "$RBASE/stats?latency=1")
unsubscribe lat
printf '\n%-40s %9s %9s %9s %8s %8s %8s %10s\n' "at half the peak" offered/s acked delivered p50_ms p99_ms max_ms rest_ms
printf '%-40s %9s %9s %9s %8s %8s %8s %10s\n' "lat (batch 100, concurrency 1)" "$(field "$line" events_per_s)" "$ACKED" \
    "$AT_END" "$(jfield "$S" p50_ms)" "$(jfield "$S" p99_ms)" "$(jfield "$S" max_ms)" "$TAIL_MS"
echo "  (delivered: by the end of the load; rest_ms: until the receiver had every acknowledged event;"
echo "   latencies from each event's receivedAt to the receiver's 2xx, which bounds ack-to-2xx from above)"

BAD=$(jfield "$(curl -fsS "$RBASE/stats")" bad)
[[ $BAD -eq 0 ]] || { echo "deliver.sh: $BAD bad signatures" >&2; FAIL=1; }
if [[ -n $NBASE ]] && grep -q '"verified":false' "$TMP/node-receiver.ndjson" 2>/dev/null; then
    echo "deliver.sh: bad signatures at the Node.js receiver" >&2
    FAIL=1
fi

verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { ok = op == ">=" ? a + 0 >= b + 0 : a + 0 < b + 0; print ok ? "met" : "NOT met" }'; }
echo
echo "targets:"
echo "  delivery keeps up with half of the ingest peak ($HALF events/s): c_conc1 ${THR[c_conc1]} events/s, $(verdict "${THR[c_conc1]}" '>=' "$HALF")"
echo "  p99 from acknowledgement to delivery under 1 s: $(jfield "$S" p99_ms) ms, $(verdict "$(jfield "$S" p99_ms)" '<' 1000)"
exit "$FAIL"
