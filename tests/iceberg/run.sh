#!/bin/sh
# run.sh - the Iceberg table of a lake, read by an independent reader: icebird
# (npm, with the hyparquet and hyparquet-compressors it pins; installed by this
# script into the build directory).
#
#   tests/iceberg/run.sh TEST_ICEBERG_BIN WORK_DIR
#       the metadata module's table: test_iceberg makes it (appends over three
#       days, a replace, a delete) and DuckDB's reading of its live files; read.mjs reads the table
#       with icebird and compares
#   tests/iceberg/run.sh EVENTS_BIN WORK_DIR e2e
#       the table compaction writes against `events query` (e2e.mjs)
set -eu
bin=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)
# icebird 0.3.1 pins hyparquet 1.19.0 and hyparquet-compressors 1.1.1 (zstd); named here too
packages="icebird@0.3.1 hyparquet@1.19.0 hyparquet-compressors@1.1.1"
mkdir -p "$work"
stamp="$work/node_modules/.events-iceberg-packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "$(echo $packages)" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo $packages >"$stamp"
fi
cp "$src/read.mjs" "$work/"
if [ "${3:-}" = e2e ]; then
    cp "$src/e2e.mjs" "$src/../node/checks.mjs" "$work/"
    exec node "$work/e2e.mjs" "$bin" "$work"
fi
rm -rf "$work/lake"
mkdir -p "$work/lake"
ICE_TABLE_OUT="$work/lake" "$bin" test_iceberg_table_for_readers
exec node "$work/read.mjs" "$work/lake" --expect "$work/lake/expected.ndjson" --out "$work/icebird.ndjson"
