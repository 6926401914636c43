#!/usr/bin/env bash
# bench/compact.sh - compaction's peak memory and time on one hour of large events.
#
# Writes one hour of BYTES (default 4GiB) with build/bench/compact_gen: events of a few
# hundred bytes and every LARGE_EVERY-th (default 80) a CDC event of 100-250 KB, ts at
# random over the hour, every 50th event retried in a later segment, segments of 64 MiB.
# Then runs `events compact --after 0 --memory MEMORY` on it under /usr/bin/time -v (peak
# RSS, wall time) and checks the compacted hour against the generator's facts: one row per
# event and the sum of their durationMs, through `events query`. SERVER=1 then has
# `events serve --compact-memory MEMORY` compact a copy of the raw hour in the background,
# and reports the server's peak RSS (VmHWM) and how long it took.
#
# Environment: BYTES (default 4GiB), MEMORY (default 1GiB), LARGE_EVERY (default 80; 1: every
# event large), CHUNK (--chunk; default from MEMORY), EVENTS (the binary measured, default
# BUILD/events: point it at an older build for a before/after), BUILD (default build),
# SERVER=1, KEEP_LAKE=1 (keep the temporary lake). Needs about 2.5 x BYTES of disk under
# TMPDIR (default /tmp). Builds nothing: run `make build` first.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
BYTES=${BYTES:-4GiB}
MEMORY=${MEMORY:-1GiB}
LARGE_EVERY=${LARGE_EVERY:-80}
EVENTS=${EVENTS:-$BUILD/events}
GEN=$BUILD/bench/compact_gen
export LC_ALL=C
for f in "$EVENTS" "$GEN" /usr/bin/time; do
    [[ -x $f ]] || { echo "compact.sh: $f is missing (make build; apt-get install time)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-compactbench.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    if [[ ${KEEP_LAKE:-0} == 1 ]]; then echo "kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

to_bytes() {
    local v=$1
    case $v in
        *GiB) echo $((${v%GiB} << 30)) ;; *G) echo $((${v%G} << 30)) ;;
        *MiB) echo $((${v%MiB} << 20)) ;; *M) echo $((${v%M} << 20)) ;;
        *) echo "$v" ;;
    esac
}
need=$(($(to_bytes "$BYTES") * 5 / 2))
avail=$(df --output=avail -B1 "$TMP" | tail -1)
if ((avail < need)); then
    echo "compact.sh: $((need >> 20)) MiB of disk needed under ${TMPDIR:-/tmp}, $((avail >> 20)) free" >&2
    exit 1
fi

fact() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$FACTS"; }
t0=$(date +%s.%N)
FACTS=$("$GEN" --out "$TMP/lake" --bytes "$BYTES" --large-every "$LARGE_EVERY")
sync
t1=$(date +%s.%N)
printf 'hour: %s bytes in %s segments, %s events (%s of 100-250 KB), %s retried; written in %.1f s\n' \
    "$(fact bytes)" "$(fact files)" "$(fact events)" "$(fact large)" "$(fact retried)" \
    "$(echo "$t1 - $t0" | bc)"
EXPECT="$(fact events),$(fact events),$(fact duration_sum)"
HOUR=events/2026/11/20/10
if [[ ${SERVER:-0} == 1 ]]; then cp -al "$TMP/lake" "$TMP/lake-server"; fi

check() { # lake -> PASS or FAIL with what was found
    local got
    got=$("$EVENTS" query --lake "$1" --format csv \
        'SELECT count(*), count(DISTINCT id), sum(durationMs) FROM events' 2>&1 | tail -1)
    local m files=0
    m=$(ls "$1/$HOUR"/_manifest-* 2>/dev/null | tail -1)
    [[ -n $m ]] && files=$(grep -o '"parquet":\[[^]]*\]' "$m" | grep -o '\.parquet"' | wc -l)
    local pbytes=0
    for f in "$1/$HOUR"/*.parquet; do [[ -f $f ]] && pbytes=$((pbytes + $(stat -c %s "$f"))); done
    if [[ $got == "$EXPECT" && $files -gt 0 ]]; then
        echo "check PASS ($got); $files Parquet files live ($((pbytes >> 20)) MiB in the hour)"
    else
        echo "check FAIL: expected $EXPECT, got $got; $files Parquet files live"
        return 1
    fi
}

# ---- events compact ----
args=(compact --lake "$TMP/lake" --after 0 --memory "$MEMORY")
[[ -n ${CHUNK:-} ]] && args+=(--chunk "$CHUNK")
set +e
/usr/bin/time -v "$EVENTS" "${args[@]}" >"$TMP/compact.out" 2>"$TMP/compact.time"
rc=$?
set -e
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/compact.time")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$TMP/compact.time")
echo "events ${args[*]/#$TMP\//}"
echo "  exit $rc, peak RSS $((rss / 1024)) MB, wall $wall"
grep -h -e '^events compact:' -e '^compacted' "$TMP/compact.out" "$TMP/compact.time" | head -3 | cut -c1-300 | sed 's/^/  /'
status=0
if [[ $rc == 0 ]]; then check "$TMP/lake" | sed 's/^/  /' || status=1; else status=1; fi

# ---- the server's background compaction ----
if [[ ${SERVER:-0} == 1 ]]; then
    port=$(bench_free_port 18700)
    memflag=--compact-memory
    "$EVENTS" serve --help 2>&1 | grep -q -- --compact-memory || memflag=--query-memory
    "$EVENTS" serve --listen "127.0.0.1:$port" --lake "$TMP/lake-server" --compact-every 1s \
        --compact-after 0 --compact-retain 1h "$memflag" "$MEMORY" 2>"$TMP/server.log" &
    SERVER_PID=$!
    metric() { curl -s "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"; }
    t0=$(date +%s)
    until [[ $(metric events_compaction_partitions_total) -ge 1 || $(metric events_compaction_failures_total) -ge 1 ]] 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died"; cat "$TMP/server.log"; exit 1; }
        sleep 1
        (($(date +%s) - t0 < 7200)) || { echo "server: no compaction within 2 h"; break; }
    done
    t1=$(date +%s)
    hwm=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$SERVER_PID/status")
    fails=$(metric events_compaction_failures_total)
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    echo "events serve $memflag $MEMORY (background compaction)"
    echo "  peak RSS (VmHWM) $((hwm / 1024)) MB, $((t1 - t0)) s to the first compacted hour, $fails failed runs"
    grep -e 'compaction failed' -e 'msg="compacted"' "$TMP/server.log" | head -2 | cut -c1-300 | sed 's/^/  /'
    if [[ $fails == 0 ]]; then check "$TMP/lake-server" | sed 's/^/  /' || status=1; else status=1; fi
fi
exit $status
