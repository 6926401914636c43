#!/usr/bin/env bash
# bench/ingest_profile.sh - where a single-event request's cost goes, with the
# ingest lane and without it, against GET /health, in one run.
#
# For each server (--ingest-lane 16KiB, the default, and --ingest-lane 0) it
# starts build/events serve on a throw-away lake, drives POST /ingest with one
# event per request (wrk, bench/ingest_single.lua, 64 connections) and then
# GET /health, each for DURATION seconds (default 6) under
# `perf stat -p SERVER` (task-clock, context switches, system calls), and
# prints per request: req/s, the server's CPU microseconds, system calls and
# context switches, and the ingest rate as a fraction of the same server's
# /health rate. ROUNDS (default 2) alternates the two servers. Builds nothing.
#
# Needs wrk and perf (perf_event_paranoid low enough to count a process's
# tracepoints; run as root on the benchmark machine).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-2}
EVENTS=$BUILD/events
export LC_ALL=C

bench_need "$EVENTS"
bench_need_commands wrk perf
bench_whole_numbers DURATION ROUNDS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-profile.XXXXXX")
bench_cleanup_at_exit "$TMP"

# perf stat's counters of a run: task-clock ms, context switches, system calls
measure() { # url [lua script]
    local url=$1 lua=${2:-} out
    local wrk_args=(-t1 -c64 -d"${DURATION}s")
    [[ -n $lua ]] && wrk_args+=(-s "$lua")
    perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$SERVER_PID" \
        -o "$TMP/perf" -- sleep "$((DURATION + 1))" &
    local perf_pid=$!
    sleep 0.5
    out=$(wrk "${wrk_args[@]}" "$url" 2>&1)
    wait "$perf_pid" || true
    local reqs
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    awk -F, -v reqs="$reqs" -v d="$DURATION" '
        $3 == "task-clock" { ms = $1 }
        $3 == "context-switches" { cs = $1 }
        $3 == "raw_syscalls:sys_enter" { sc = $1 }
        END { printf "%d %.1f %.2f %.2f\n", reqs / d, ms * 1000 / reqs, sc / reqs, cs / reqs }' "$TMP/perf"
}

printf '%-22s %9s %9s %9s %9s %9s %7s\n' server what req/s cpu_us syscalls ctx_sw ratio
for round in $(seq "$ROUNDS"); do
    for lane in 16KiB 0; do
        PORT=$(bench_free_port 18900)
        rm -rf "$TMP/lake"
        bench_start_server "$EVENTS" "$PORT" "$TMP/server.log" --lake "$TMP/lake" --seal-age 5s \
            --ingest-lane "$lane"
        export WRK_ID_PREFIX="r$round-$lane"
        read -r irate icpu isc ics < <(measure "http://127.0.0.1:$PORT/ingest" bench/ingest_single.lua)
        read -r hrate hcpu hsc hcs < <(measure "http://127.0.0.1:$PORT/health")
        ratio=$(awk -v a="$irate" -v b="$hrate" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
        printf '%-22s %9s %9s %9s %9s %9s %7s\n' "--ingest-lane $lane" "ingest" "$irate" "$icpu" \
            "$isc" "$ics" "$ratio"
        printf '%-22s %9s %9s %9s %9s %9s\n' "" "/health" "$hrate" "$hcpu" "$hsc" "$hcs"
        bench_stop_server
    done
done
