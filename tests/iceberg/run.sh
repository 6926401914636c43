#!/bin/sh
# run.sh - the Iceberg table of a lake, read by an independent reader: icebird
# (npm, with the hyparquet and hyparquet-compressors it pins; installed by this
# script into the build directory, with aws4, which signs the requests to the S3
# test server: tests/iceberg/s3.mjs).
#
#   tests/iceberg/run.sh TEST_ICEBERG_BIN WORK_DIR
#       the metadata module's table: test_iceberg makes it (appends over three
#       days, a replace, a delete) and DuckDB's reading of its live files; read.mjs reads the table
#       with icebird and compares
#   tests/iceberg/run.sh EVENTS_BIN WORK_DIR e2e
#       the table compaction writes against `events query` (e2e.mjs)
#   tests/iceberg/run.sh EVENTS_BIN WORK_DIR e2e-s3
#       the same on an S3 lake: radosgw on loopback (scripts/s3-test-server)
set -eu
bin=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)
# icebird 0.3.1 pins hyparquet 1.19.0 and hyparquet-compressors 1.1.1 (zstd); named here too
# aws4 1.13.2: AWS Signature Version 4 for the S3 test server (no dependencies)
packages="icebird@0.3.1 hyparquet@1.19.0 hyparquet-compressors@1.1.1 aws4@1.13.2"
mkdir -p "$work"
stamp="$work/node_modules/.events-iceberg-packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "$packages" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo "$packages" >"$stamp"
fi
cp "$src/read.mjs" "$src/s3.mjs" "$work/"
case "${3:-}" in
e2e | e2e-s3)
    cp "$src/e2e.mjs" "$src/../node/checks.mjs" "$work/"
    EVENTS_SRC=$(cd "$src/../.." && pwd)
    export EVENTS_SRC
    if [ "$3" = e2e-s3 ]; then exec node "$work/e2e.mjs" "$bin" "$work" s3; fi
    exec node "$work/e2e.mjs" "$bin" "$work"
    ;;
esac
rm -rf "$work/lake"
mkdir -p "$work/lake"
ICE_TABLE_OUT="$work/lake" "$bin" test_iceberg_table_for_readers
exec node "$work/read.mjs" "$work/lake" --expect "$work/lake/expected.ndjson" --out "$work/icebird.ndjson"
