#!/usr/bin/env bash
# bench/cdc.sh - the change log benchmark: what capture costs per put, how
# long a restore to 100,000 changes back takes, and how long a restore from
# the lake alone takes.
#
# Runs build/bench/cdc_bench (see bench/cdc_bench.c) against a server it
# starts on a free loopback port with a throw-away lake: the puts (plain
# upsert against collection put with capture, best of two each, same
# process), the local restore, and the delivery of every event. Then stops
# the server (SIGTERM: everything sealed into the lake) and times `events
# restore --lake` to the same bookmark (the whole command: DuckDB's start,
# reading the changesets from the lake, copying the snapshot, applying), and
# checks that the result has the documents of the local restore.
#
# Environment: PUTS (default 200000), KEYS (50000), TX (1000), BUILD (build),
# KEEP=1 keeps the temporary directory. Builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
PUTS=${PUTS:-200000}
KEYS=${KEYS:-50000}
TX=${TX:-1000}
BIN=$BUILD/events
CDC=$BUILD/bench/cdc_bench
bench_need "$BIN" "$CDC"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-cdc-bench.XXXXXX")
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

PORT=$(bench_free_port 20700)
bench_start_server "$BIN" "$PORT" "$TMP/server.log" --lake "$TMP/lake"

echo "change log benchmark: $(nproc) CPUs, $PUTS puts over $KEYS keys in transactions of $TX"
out=$("$CDC" --dir "$TMP" --puts "$PUTS" --keys "$KEYS" --tx "$TX" --endpoint "http://127.0.0.1:$PORT")
puts=$(grep scenario=puts <<<"$out")
restore=$(grep scenario=restore <<<"$out")
mid=$(sed -n 's/^mid=//p' <<<"$out")
printf '\n%-34s %12s\n' "put, plain upsert (ns)" "$(field "$puts" plain_ns_per_put)"
printf '%-34s %12s\n' "put with capture (ns)" "$(field "$puts" cdc_ns_per_put)"
printf '%-34s %12s   (target <= 1.5)\n' "ratio" "$(field "$puts" ratio)"
printf '%-34s %12s   (%s transactions, %s rows written; dry run %ss; target < 2 s)\n' \
    "restore, $(field "$restore" changes_undone) changes back (s)" "$(field "$restore" restore_s)" \
    "$(field "$restore" transactions)" "$(field "$restore" rows_written)" "$(field "$restore" dry_run_s)"

kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || { echo "cdc.sh: the server did not stop cleanly" >&2; exit 1; }
SERVER_PID=
t0=$(date +%s.%N)
"$BIN" restore --lake "$TMP/lake" --source bench-db --bookmark "$mid" --out "$TMP/dr.db" >"$TMP/dr.txt"
t1=$(date +%s.%N)
printf '%-34s %12s   (%s)\n' "restore from the lake alone (s)" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
    "$(sed 's/^wrote [^:]*: //' "$TMP/dr.txt")"
