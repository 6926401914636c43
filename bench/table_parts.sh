#!/usr/bin/env bash
# bench/table_parts.sh - where `rpc_latency` and a document's lookup spend their time on the
# compacted lake, statement by statement in the engine alone (build/bench/sql_time: DuckDB,
# 2 threads, UTC, no server): the macro as the view computes it, then without each of its
# parts (the bound on ts, the percentiles, the do struct), its percentiles by an aggregate of
# our own (bench_quantiles3 in bench/sql_time.c; the last of those lines counts the groups
# where it differs from quantile_cont: 0), and the lookup of one document with and without
# DuckDB's parquet_metadata_cache. Builds nothing: run `make build` first.
#
# Environment: LAKE (a compacted lake directory to read; default: a lake of EVENTS events
# (5,000,000) over 48 hours written by build/bench/query_gen and compacted by `events compact
# --after 0` in a temporary directory), RUNS (default 3: the fastest is printed), BUILD
# (default build), DOC (the document looked up, default usr_004242 of collection users).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
EVENTS=${EVENTS:-5000000}
DOC=${DOC:-usr_004242}
bench_need "$BUILD/bench/sql_time" "$BUILD/bench/query_gen" "$BUILD/events"
bench_whole_numbers RUNS EVENTS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-tableparts.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
if [[ -z ${LAKE:-} ]]; then
    LAKE=$TMP/lake
    echo "table_parts: writing $EVENTS events and compacting them (about a minute at 5M)"
    "$BUILD/bench/query_gen" --events "$EVENTS" --hours 48 --out "$LAKE" >/dev/null
    "$BUILD/events" compact --lake "$LAKE" --after 0 | tail -1
fi
n=$(find "$LAKE/events" -name '*.parquet' | wc -l)
[[ $n -gt 0 ]] || { echo "table_parts: no Parquet file under $LAKE/events" >&2; exit 1; }
echo "table_parts: $n Parquet files under $LAKE, $(nproc) CPUs, fastest of $RUNS"

# The files by the table's field ids, as the view reads them (lake/query_view.c)
F="read_parquet('$LAKE/events/*/*/*/*/*.parquet', schema = map {2: {name: 'type', type: 'VARCHAR', default_value: NULL}, 3: {name: 'ts', type: 'TIMESTAMPTZ', default_value: NULL}, 5: {name: 'do', type: 'STRUCT(id VARCHAR, \"name\" VARCHAR, \"class\" VARCHAR, colo VARCHAR)', default_value: NULL}, 10: {name: 'method', type: 'VARCHAR', default_value: NULL}, 11: {name: 'durationMs', type: 'DOUBLE', default_value: NULL}, 12: {name: 'success', type: 'BOOLEAN', default_value: NULL}, 13: {name: 'error', type: 'VARCHAR', default_value: NULL}, 14: {name: 'collection', type: 'VARCHAR', default_value: NULL}, 15: {name: 'docId', type: 'VARCHAR', default_value: NULL}})"
AGG="SELECT \"do\".class AS class, method, count(*) AS calls, quantile_cont(durationMs, [0.5, 0.95, 0.99]) AS q, avg(CASE WHEN success IS FALSE OR error IS NOT NULL THEN 1.0 ELSE 0.0 END) AS e"
NOQ="SELECT \"do\".class AS class, method, count(*) AS calls, avg(CASE WHEN success IS FALSE OR error IS NOT NULL THEN 1.0 ELSE 0.0 END) AS e"
RPC="type = 'rpc.call'"
"$BUILD/bench/sql_time" "$RUNS" \
    "$AGG FROM (SELECT type, make_timestamp(epoch_us(ts)) AS ts, \"do\", method, durationMs, success, error FROM $F) WHERE $RPC AND ts >= TIMESTAMP '2000-01-01' GROUP BY ALL" \
    "$AGG FROM $F WHERE $RPC AND ts >= TIMESTAMPTZ '2000-01-01 00:00:00+00' GROUP BY ALL" \
    "$AGG FROM $F WHERE $RPC GROUP BY ALL" \
    "$NOQ FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT count(*) FROM $F WHERE $RPC" \
    "SELECT method, count(*) FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT \"do\".class, method, count(*) FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT method, quantile_cont(durationMs, [0.5, 0.95, 0.99]) FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT method, sum(durationMs) FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT method, len(list(durationMs)) FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT method, bench_quantiles3(durationMs) FROM $F WHERE $RPC GROUP BY ALL" \
    "${AGG/quantile_cont(durationMs, \[0.5, 0.95, 0.99\])/bench_quantiles3(durationMs)} FROM $F WHERE $RPC GROUP BY ALL" \
    "SELECT count(*) FROM (SELECT \"do\".class, method, quantile_cont(durationMs, [0.5, 0.95, 0.99]) AS a, bench_quantiles3(durationMs) AS b FROM $F WHERE $RPC GROUP BY ALL) WHERE a IS DISTINCT FROM b" \
    "SELECT count(*) FROM $F WHERE collection = 'users' AND docId = '$DOC'" \
    "SELECT count(*) FROM $F WHERE docId = 'no such document'" \
    "SET parquet_metadata_cache = true" \
    "SELECT count(*) FROM $F WHERE collection = 'users' AND docId = '$DOC'" \
    "SELECT count(*) FROM $F WHERE docId = 'no such document'"
