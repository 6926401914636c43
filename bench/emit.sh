#!/usr/bin/env bash
# bench/emit.sh - the libevents benchmark: what one events_emit costs, and how
# fast events go from events_emit to a server's lake.
#
# 1. build/bench/emit_bench runs the emit scenarios (memory-only, durable one
#    transaction per emit, durable in one transaction; 1 and THREADS threads),
#    each next to its baseline in the same process (see bench/emit_bench.c).
# 2. For each lake (LAKES: a directory on disk under $TMPDIR, and one on
#    tmpfs under /dev/shm where the server never waits for a disk), starts
#    build/events serve on a free loopback port and, for gzip on (the
#    library's default, bodies above 4 KiB) and off, runs emit_bench's
#    end-to-end scenarios at BATCH events per request: direct (the same
#    events posted by a bare client: the server's pace with one sender), e2e
#    (emitted and delivered at once) and drain (an outbox filled during an
#    outage, then delivered). Ratios are against direct, in the same run.
# 3. Stops each server (SIGTERM) and checks that its lake holds every event
#    of the runs exactly once.
#
# Each end-to-end configuration runs REPEAT times (default 3) and the table
# shows the median of each column: one run on this kind of machine varies by
# a factor of two with the disk's fdatasync times.
#
# Environment: EVENTS (memory and durable_tx scenarios, default 1000000; the
# standalone durable one uses a tenth), THREADS (default 4), BATCH (default
# 100), E2E_EVENTS (default 100000), REPEAT (default 3), LAKES (default "disk
# tmpfs"), BUILD (default build), KEEP=1 keeps the temporary directories.
# Builds nothing.
#
# Exit: 0 when every run finished and every lake check passed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
EVENTS=${EVENTS:-1000000}
THREADS=${THREADS:-4}
BATCH=${BATCH:-100}
E2E_EVENTS=${E2E_EVENTS:-100000}
REPEAT=${REPEAT:-3}
LAKES=${LAKES:-disk tmpfs}
BIN=$BUILD/events
EMIT=$BUILD/bench/emit_bench
export LC_ALL=C
bench_need "$BIN" "$EMIT"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-emit-bench.XXXXXX")
SHM=
SERVER_PID=
stop_server() { bench_stop_server 300; }
cleanup() {
    stop_server
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept: $TMP $SHM"; else rm -rf "$TMP" ${SHM:+"$SHM"}; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'; }

echo "emit benchmark: $(nproc) CPUs; each scenario next to its baseline, same process"
printf '\n%-12s %7s %9s %10s %12s %14s %6s\n' scenario threads events ns/event events/s baseline_ns ratio
"$EMIT" --dir "$TMP" --events "$EVENTS" --threads "$THREADS" | while read -r line; do
    printf '%-12s %7s %9s %10s %12s %14s %6s\n' "$(field "$line" scenario)" "$(field "$line" threads)" \
        "$(field "$line" events)" "$(field "$line" ns_per_event)" "$(field "$line" events_per_s)" \
        "$(field "$line" baseline_ns_per_event)" "$(field "$line" ratio)"
done

FAILED=0
printf '\n%-7s %-5s %6s %12s %12s %6s %12s %6s\n' lake gzip batch direct_ev/s e2e_ev/s ratio drain_ev/s ratio
for kind in $LAKES; do
    case $kind in
        disk) LAKE=$TMP/lake ;;
        tmpfs)
            [[ -d /dev/shm && -w /dev/shm ]] || { echo "emit.sh: no writable /dev/shm; tmpfs lake skipped" >&2; continue; }
            SHM=$(mktemp -d /dev/shm/events-emit-bench.XXXXXX)
            LAKE=$SHM/lake ;;
        *) echo "emit.sh: LAKES takes disk and tmpfs, not $kind" >&2; exit 1 ;;
    esac
    PORT=$(bench_free_port 19700)
    BASE=http://127.0.0.1:$PORT
    bench_start_server "$BIN" "$PORT" "$TMP/server-$kind.log" --lake "$LAKE"
    runs=0
    for gz in 4096 off; do
        g=$gz
        [[ $gz == off ]] && g=18446744073709551615
        ds= es= rs=
        for _ in $(seq 1 "$REPEAT"); do
            out=$("$EMIT" --dir "$TMP" --endpoint "$BASE" --events "$E2E_EVENTS" --batch "$BATCH" --gzip-above "$g") || {
                echo "emit.sh: an end-to-end run failed: $out" >&2; FAILED=1; }
            runs=$((runs + 1))
            ds+=" $(field "$(grep scenario=direct <<<"$out")" events_per_s)"
            es+=" $(field "$(grep scenario=e2e <<<"$out")" events_per_s)"
            rs+=" $(field "$(grep scenario=drain <<<"$out")" events_per_s)"
            rm -f "$TMP"/e2e-*
        done
        d=$(median <<<"$ds") e=$(median <<<"$es") r=$(median <<<"$rs")
        printf '%-7s %-5s %6s %12s %12s %6s %12s %6s\n' "$kind" "$([[ $gz == off ]] && echo off || echo on)" \
            "$BATCH" "$d" "$e" "$(ratio "$e" "$d")" "$r" "$(ratio "$r" "$d")"
    done
    stop_server
    # every event of the runs once: direct's ids are its own, the library's are ULIDs
    read -r n dist < <(find "$LAKE/events" -name '*.jsonl' -print0 | xargs -0 cat |
        grep -E '"type":"bench\.(e2e|base)"' | awk -F'"' '{ n++; if (!($4 in s)) { s[$4] = 1; d++ } } END { print n + 0, d + 0 }')
    want=$((runs * E2E_EVENTS * 3))
    if [[ $n -ne $want || $dist -ne $want ]]; then
        echo "emit.sh: lake check failed on $kind: $n events, $dist distinct, $want sent" >&2
        FAILED=1
    fi
done
echo
[[ $FAILED -eq 0 ]] && echo "lake check: every event delivered exactly once" || exit 1
