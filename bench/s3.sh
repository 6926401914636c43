#!/usr/bin/env bash
# bench/s3.sh - the lake on S3-compatible storage against the lake on a directory,
# in the same run: ingest throughput (ratio s3/fs), upload and download throughput
# of the store (MB/s), and one query through a cold and a warm local cache.
#
# Starts the project's S3 test server (scripts/s3-test-server: Ceph's radosgw on
# loopback, about 15 s), then for each lake starts build/events serve with
# --seal-age 2s --seal-bytes 4MiB (so that segments are uploaded while the load
# runs), drives it with build/bench/ingest_load (8 connections x 100 events,
# REQUESTS requests, default 20000: the same 2,000,000 events for both lakes, so
# that the queries after compare like with like), waits until the spool is empty
# (everything uploaded), stops the server, and checks that the lake holds every
# acknowledged event once. Builds nothing: run `make build` first.
#
# Environment: REQUESTS (default 20000), BUILD (default build), S3_DIR (where the
# S3 test server keeps its data; default a temporary directory).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
REQUESTS=${REQUESTS:-20000}
EVENTS=$BUILD/events
export LC_ALL=C
bench_need "$EVENTS" "$BUILD/bench/ingest_load" "$BUILD/bench/s3_bench"
command -v radosgw >/dev/null || { echo "s3.sh: radosgw is missing: scripts/bootstrap --test installs it" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-s3bench.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    scripts/s3-test-server stop "${RGW:-$TMP/rgw}" >/dev/null 2>&1 || true
    [[ -n ${S3_DIR:-} ]] && rm -rf "$S3_DIR"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
now_ms() { date +%s%3N; }

echo "s3 benchmark: $(nproc) CPUs; starting the S3 test server (radosgw on loopback)"
RGW=${S3_DIR:-$TMP/rgw}
scripts/s3-test-server start "$RGW" >"$TMP/rgw.out" 2>&1 || { cat "$TMP/rgw.out" >&2; exit 1; }
while IFS='=' read -r k v; do export "$k=$v"; done <"$RGW/env"
S3LAKE=s3://$EVENTS_S3_BUCKET/bench-$$
FSLAKE=$TMP/fslake

# CPU seconds (user+system) of a process, and of the S3 test server's processes together
ticks_of() { local s; s=$(<"/proc/$1/stat") || { echo 0; return; }; s=${s##*) }; set -- $s; echo $((${12} + ${13})); }
TCK=$(getconf CLK_TCK)
s3_ticks() {
    local t=0 p
    for p in $(cat "$RGW"/run/*.pid 2>/dev/null); do t=$((t + $(ticks_of "$p"))); done
    echo $t
}
cpu_s() { awk -v d="$1" -v t="$TCK" 'BEGIN { printf "%.1f", d / t }'; }

declare -A OUT
ingest() { # name lake
    local name=$1 lake=$2 port base t0 t1 pending
    port=$(bench_free_port 18700)
    base=http://127.0.0.1:$port
    bench_start_server "$EVENTS" "$port" "$TMP/$name.log" --lake "$lake" --spool "$TMP/$name-spool" \
        --cache "$TMP/$name-cache" --seal-age 2s --seal-bytes 4MiB --compact-every 0
    local line c0 c1 r0 r1
    c0=$(ticks_of "$SERVER_PID")
    r0=$(s3_ticks)
    line=$("$BUILD/bench/ingest_load" --url "$base/ingest" --connections 8 --batch 100 --max-requests "$REQUESTS" --duration 300 \
        --id-prefix "$name" --ids-out "$TMP/$name.ids" --unacked-out "$TMP/$name.unacked" 2>"$TMP/$name.err") || true
    [[ -n $line ]] || { echo "s3.sh: ingest_load failed:" >&2; cat "$TMP/$name.err" >&2; exit 1; }
    # until everything is sealed and in the lake
    t0=$(now_ms)
    for _ in $(seq 1 1200); do
        pending=$(curl -fsS --max-time 2 "$base/health" 2>/dev/null | sed -n 's/.*"spoolBytesPending":\([0-9]*\).*/\1/p') || true
        open=$(curl -fsS --max-time 2 "$base/health" 2>/dev/null | sed -n 's/.*"segmentsOpen":\([0-9]*\).*/\1/p') || true
        [[ $pending == 0 && $open == 0 ]] && break
        sleep 0.1
    done
    t1=$(now_ms)
    c1=$(ticks_of "$SERVER_PID")
    r1=$(s3_ticks)
    OUT[$name.cpu]=$(cpu_s $((c1 - c0)))
    OUT[$name.s3cpu]=$(cpu_s $((r1 - r0)))
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || { echo "s3.sh: the $name server did not stop cleanly:" >&2; tail -20 "$TMP/$name.log" >&2; exit 1; }
    SERVER_PID=
    OUT[$name]=$line
    OUT[$name.drain]=$((t1 - t0))
    OUT[$name.acked]=$(wc -l <"$TMP/$name.ids")
    local counts
    counts=$("$EVENTS" query --lake "$lake" --cache "$TMP/check-cache" --format csv \
        "SELECT count(*), count(DISTINCT id) FROM events" | tail -1)
    OUT[$name.lake]=$counts
    printf '%-4s %8s events/s %7s MB/s  p99 %6s ms  server %5s cpu-s  S3 server %5s cpu-s  lake %s for %s acked  drained in %s ms\n' \
        "$name" "$(field "$line" events_per_s)" "$(field "$line" mb_per_s)" "$(field "$line" p99_ms)" \
        "${OUT[$name.cpu]}" "${OUT[$name.s3cpu]}" "$counts" "${OUT[$name.acked]}" "${OUT[$name.drain]}"
}

echo
echo "ingest ($REQUESTS requests of 100 events on 8 connections into each lake, same run)"
ingest fs "$FSLAKE"
ingest s3 "$S3LAKE"
RATIO=$(awk -v a="$(field "${OUT[s3]}" events_per_s)" -v b="$(field "${OUT[fs]}" events_per_s)" 'BEGIN { printf "%.2f", a / b }')
echo "ratio s3/fs: $RATIO (target >= 0.8)"
# the S3 server shares this machine's CPUs: the events each CPU-second of events serve
# itself took are the comparison that does not depend on where the store runs
EFF=$(awk -v a="${OUT[s3.acked]}" -v ac="${OUT[s3.cpu]}" -v b="${OUT[fs.acked]}" -v bc="${OUT[fs.cpu]}" \
    'BEGIN { printf "%.0f %.0f %.2f", b / bc, a / ac, (a / ac) / (b / bc) }')
read -r EFF_FS EFF_S3 EFF_RATIO <<<"$EFF"
echo "events per server CPU-second: fs $EFF_FS, s3 $EFF_S3, ratio s3/fs $EFF_RATIO"
STATUS=0
for n in fs s3; do
    want="${OUT[$n.acked]},${OUT[$n.acked]}"
    # requests in flight when the load stopped may be stored without an acknowledgement
    got=${OUT[$n.lake]}
    rows=${got%,*} distinct=${got#*,}
    if [[ $rows != "$distinct" || $rows -lt ${OUT[$n.acked]} ]]; then
        echo "s3.sh: the $n lake holds $got (rows,distinct) for ${OUT[$n.acked]} acknowledged" >&2
        STATUS=1
    fi
done

echo
echo "store throughput (put_file then get_file, 4 files of 64 MiB; multipart above 32 MiB)"
mkdir -p "$TMP/fsstore" "$TMP/scratch"
FSLINE=$("$BUILD/bench/s3_bench" "$TMP/fsstore" "$TMP/scratch" 64 4)
S3LINE=$("$BUILD/bench/s3_bench" "s3://$EVENTS_S3_BUCKET/bench-store-$$" "$TMP/scratch" 64 4)
echo "fs  $FSLINE"
echo "s3  $S3LINE"

echo
echo "query through the cache (the s3 lake above; the fs lake as the baseline)"
SQL="SELECT type, count(*), avg(durationMs) FROM events GROUP BY ALL"
q() { # lake cache -> ms
    local t0 t1
    t0=$(now_ms)
    "$EVENTS" query --lake "$1" --cache "$2" --format csv "$SQL" >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0))
}
FSQ=$(q "$FSLAKE" "$TMP/unused")
rm -rf "$TMP/qcache"
COLD=$(q "$S3LAKE" "$TMP/qcache")
WARM=$(q "$S3LAKE" "$TMP/qcache")
BYTES=$(du -sb "$TMP/qcache" | cut -f1)
echo "fs lake          ${FSQ} ms"
echo "s3, cold cache   ${COLD} ms (fetched $((BYTES / 1048576)) MiB)"
echo "s3, warm cache   ${WARM} ms"
awk -v c="$COLD" -v w="$WARM" -v f="$FSQ" 'BEGIN { printf "ratios: cold/warm %.1f, warm/fs %.2f\n", c / w, w / f }'
exit $STATUS
