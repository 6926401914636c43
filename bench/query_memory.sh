#!/usr/bin/env bash
# bench/query_memory.sh - the server's memory under queries: whether it grows
# with their number, and how high it goes when every query worker runs a
# worst-case query at once.
#
# Starts build/events serve on a free loopback port with an empty lake
# (--query-memory 128MiB, --query-threads THREADS, a long query time limit so
# that the worst case runs to its end), then:
#
#  1. per query: posts QUERIES small queries one after the other through
#     POST /query (build/bench/query_load, one keep-alive connection), a mix of
#     SELECT 1, a refused statement and a query whose time bound is evaluated;
#     the server's VmRSS after a warm-up of WARMUP and then every QUERIES/STEPS
#     queries, and the growth per query from the warm-up to the end;
#  2. the same with SHOW_QUERIES times SHOW TABLES (0: skipped), which DuckDB
#     answers from its catalog;
#  3. peak: THREADS clients post WORST at once (one per query worker); the
#     server's VmHWM (reset just before, where Linux allows) and how each
#     answer ended; with WIDE=1 also WIDE_SQL, whose DuckDB chunks are full;
#     with HOSTILE=1 also HOSTILE_SQL, whose one chunk is 20 GB (run it only
#     with MEMORY_MAX set, which the server gets as --memory-max).
#
# Environment: BUILD (default build), EVENTS (the binary; default
# BUILD/events: point it at another build to compare), QUERIES (default
# 30000), WARMUP (2000), STEPS (6), SHOW_QUERIES (0), THREADS (2), WORST
# (SELECT repeat('x',1000000) FROM range(1500)), WIDE (0), WIDE_SQL (the same
# over range(5000)), HOSTILE (0), HOSTILE_SQL (strings of 10 MB over
# range(2048)), MEMORY_MAX (none: the server's default of 3/4 of the machine's
# memory), KEEP_LAKE=1 keeps the temporary directory.
#
# Exit: 0 when every query got an answer and the server stopped cleanly.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
EVENTS=${EVENTS:-$BUILD/events}
LOAD=$BUILD/bench/query_load
QUERIES=${QUERIES:-30000}
WARMUP=${WARMUP:-2000}
STEPS=${STEPS:-6}
SHOW_QUERIES=${SHOW_QUERIES:-0}
THREADS=${THREADS:-2}
WORST=${WORST:-"SELECT repeat('x',1000000) FROM range(1500)"}
WIDE=${WIDE:-0}
WIDE_SQL=${WIDE_SQL:-"SELECT repeat('x',1000000) FROM range(5000)"}
HOSTILE=${HOSTILE:-0}
HOSTILE_SQL=${HOSTILE_SQL:-"SELECT repeat('x',10000000) FROM range(2048)"}
MEMORY_MAX=${MEMORY_MAX:-}
if [[ $HOSTILE == 1 && -z $MEMORY_MAX ]]; then
    echo "query_memory.sh: HOSTILE=1 needs MEMORY_MAX (each query would try to take 20 GB)" >&2; exit 1
fi
export LC_ALL=C

bench_need "$EVENTS" "$LOAD"
for v in QUERIES WARMUP STEPS SHOW_QUERIES THREADS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "query_memory.sh: $v must be a whole number" >&2; exit 1; }
done
(( STEPS >= 1 && THREADS >= 1 && QUERIES >= STEPS )) || { echo "query_memory.sh: STEPS, THREADS >= 1 and QUERIES >= STEPS" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-qmem.XXXXXX")
bench_cleanup_at_exit "$TMP"

PORT=$(bench_free_port 18700)
URL=http://127.0.0.1:$PORT/query
LOG=$TMP/server.log

bench_start_server "$EVENTS" "$PORT" "$LOG" --lake "$TMP/lake" --query-memory 128MiB \
    ${MEMORY_MAX:+--memory-max "$MEMORY_MAX" --compact-memory 128MiB} \
    --query-threads "$THREADS" --query-timeout 600s --compact-retain 600s

FAILS=0
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }
mb() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }
load() { # clients requests sql... ; prints query_load's total line, counts transport failures
    local c=$1 n=$2 out
    shift 2
    local args=()
    for q in "$@"; do args+=(--sql "$q"); done
    out=$("$LOAD" --url "$URL" --clients "$c" --requests "$n" --timeout 900 "${args[@]}") || FAILS=$((FAILS + 1))
    echo "$out"
}

# Runs N queries of the given SQL in STEPS parts after WARMUP; prints the RSS after each.
soak() { # title n sql...
    local title=$1 n=$2
    shift 2
    echo "## $title: $n queries after $WARMUP of warm-up"
    load 1 "$WARMUP" "$@" >/dev/null
    local r0 r done=0 step=$(( n / STEPS ))
    r0=$(kb VmRSS)
    printf '  %8s queries  RSS %s MB\n' 0 "$(mb "$r0")"
    for _ in $(seq 1 "$STEPS"); do
        load 1 "$step" "$@" >/dev/null
        done=$((done + step))
        r=$(kb VmRSS)
        printf '  %8s queries  RSS %s MB\n' "$done" "$(mb "$r")"
    done
    awk -v a="$r0" -v b="$r" -v n="$done" 'BEGIN { printf "  growth: %+.1f MB, %+.0f bytes per query\n", (b - a) / 1024, (b - a) * 1024 / n }'
}

echo "server: $EVENTS, --query-threads $THREADS, --query-memory 128MiB, --memory-max ${MEMORY_MAX:-default}; RSS at start $(mb "$(kb VmRSS)") MB"
soak "SELECT 1, a refused DROP, a time-bounded count" "$QUERIES" "SELECT 1" "DROP VIEW events" \
    "SELECT count(*) FROM events WHERE ts > now() - INTERVAL 1 HOUR"
if (( SHOW_QUERIES > 0 )); then
    soak "SHOW TABLES" "$SHOW_QUERIES" "SHOW TABLES"
fi

peak() { # title sql
    echo "## peak: $THREADS at once: $2"
    echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || echo "  (VmHWM cannot be reset here: it is the peak since start)"
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$(load "$THREADS" 1 "$2")
    t1=$(date +%s.%N)
    grep -q '^total .* failed=0 ' <<<"$out" || { echo "  CHECK FAILED: a query got no answer"; FAILS=$((FAILS + 1)); }
    grep '^client=' <<<"$out" | sed -E 's/last="(.*)"$/\1/' | awk '{ n = length($0); print "  " (n > 260 ? "…" substr($0, n - 259) : $0) }'
    echo "  VmHWM $(mb "$(kb VmHWM)") MB, VmRSS after $(mb "$(kb VmRSS)") MB, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
}
peak "worst case" "$WORST"
if [[ $WIDE == 1 ]]; then peak "wide" "$WIDE_SQL"; fi
if [[ $HOSTILE == 1 ]]; then peak "hostile" "$HOSTILE_SQL"; fi

bench_stop_clean
if [[ $STOP_RC != 0 ]]; then echo "CHECK FAILED: the server did not stop cleanly (exit ${STOP_RC:-none})"; FAILS=$((FAILS + 1)); fi
(( FAILS == 0 ))
