#!/usr/bin/env bash
# bench/lake_age.sh - the cost of a compaction run and of a one-hour query on a lake of two
# years of hours on the S3 test server (Ceph's radosgw on loopback): store requests by kind
# and time for a sweep (a run that lists the whole lake: every run before the pending
# index), a run of the pending index (the server's runs between its daily sweeps), and a
# query of one old hour. Builds nothing: run `make build` first.
#
# Environment: HOURS (default 17520, two years), RUNS (default 3), BUILD (default build),
# S3_DIR (keep the S3 test server's data there, and the lake with it, between runs).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
HOURS=${HOURS:-17520}
RUNS=${RUNS:-3}
bench_need "$BUILD/bench/lake_age"
command -v radosgw >/dev/null || { echo "lake_age.sh: radosgw is missing: scripts/bootstrap --test installs it" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-lakeage.XXXXXX")
RGW=${S3_DIR:-$TMP/rgw}
cleanup() {
    scripts/s3-test-server stop "$RGW" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "lake age benchmark: $(nproc) CPUs, $HOURS hours; starting the S3 test server (radosgw on loopback)"
scripts/s3-test-server start "$RGW" >"$TMP/rgw.out" 2>&1 || { cat "$TMP/rgw.out" >&2; exit 1; }
while IFS='=' read -r k v; do export "$k=$v"; done <"$RGW/env"
mkdir -p "$TMP/work"
"$BUILD/bench/lake_age" "s3://$EVENTS_S3_BUCKET/lake-age-$HOURS" "$TMP/work" "$HOURS" "$RUNS"
