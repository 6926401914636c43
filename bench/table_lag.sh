#!/usr/bin/env bash
# bench/table_lag.sh - from acknowledgement to visibility in the Iceberg table: how long an
# event takes, once POST /ingest has answered, to be read by an Iceberg reader.
#
# Starts `events serve --table-lag LAG --seal-age SEAL_AGE` on a fresh directory lake (its
# compactor then runs every LAG / 4 and appends the sealed segments of the open hour to the
# table), and at once:
#   - posts BATCHES batches of BATCH events with the current time as ts, one every EVERY
#     seconds (a fixed schedule: a late batch is not made up for), recording each batch's
#     ids and the time its 200 arrived (the acknowledgement);
#   - polls the table every POLL seconds with icebird (bench/table_lag.mjs: version-hint,
#     metadata, manifests, data files, every row), recording when each id is first seen.
# After the last batch it goes on polling until every event has been seen, or 2 x LAG.
# For each event, delay = start of the first poll that saw it - its acknowledgement (the
# poll's start: the version it read was current then; its end is reported too). Prints
# p50, p95 and max, the events never seen, the table's snapshots and data files at the end
# (`events table --format json`, the current metadata file), and the server's warnings.
# Loopback only; every loop bounded in count and time. Builds nothing: run `make build`.
# icebird (pinned as in tests/iceberg/run.sh) is installed by npm into BUILD/bench/table-node.
#
# Environment: LAG (default 1m), SEAL_AGE (default 5s), BATCHES (default 90), BATCH (events
# per batch, default 100), EVERY (seconds between batches, default 2), POLL (seconds between
# polls, default 5), BUILD (default build), KEEP_LAKE=1 keeps the lake and the records.
#
# Exit: 0 when every batch was accepted whole, every event was seen, and the server stopped
# cleanly; 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
LAG=${LAG:-1m}
SEAL_AGE=${SEAL_AGE:-5s}
BATCHES=${BATCHES:-90}
BATCH=${BATCH:-100}
EVERY=${EVERY:-2}
POLL=${POLL:-5}
EVENTS=$BUILD/events
export LC_ALL=C

bench_need "$EVENTS"
bench_need_commands curl node npm jq
bench_whole_numbers BATCHES BATCH EVERY POLL
# the lag in ms, from the server's own syntax (Ns, Nm)
case $LAG in
*m) LAG_MS=$((${LAG%m} * 60000)) ;;
*s) LAG_MS=$((${LAG%s} * 1000)) ;;
*) echo "table_lag.sh: LAG must be Nm or Ns" >&2; exit 1 ;;
esac

# icebird and the packages it pins, as tests/iceberg/run.sh installs them
NODE_DIR=$BUILD/bench/table-node
packages="icebird@0.3.1 hyparquet@1.19.0 hyparquet-compressors@1.1.1"
mkdir -p "$NODE_DIR"
if [[ $(cat "$NODE_DIR/node_modules/.events-iceberg-packages" 2>/dev/null) != "$packages" ]]; then
    # shellcheck disable=SC2086 # the package list, split on purpose
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent --no-save $packages >/dev/null)
    echo "$packages" >"$NODE_DIR/node_modules/.events-iceberg-packages"
fi
cp bench/table_lag.mjs "$NODE_DIR/"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-tablelag.XXXXXX")
bench_cleanup_at_exit "$TMP"
LAKE=$TMP/lake
LOG=$TMP/server.log
OUT=$TMP/out
mkdir -p "$LAKE" "$OUT"
POLLER=
stop_poller() { [[ -z $POLLER ]] || kill "$POLLER" 2>/dev/null || true; }
trap 'stop_poller; bench_cleanup' EXIT

PORT=$(bench_free_port 18700)
BASE=http://127.0.0.1:$PORT
now_ms() { date +%s%3N; }

FAILS=0
fail() { echo "  CHECK FAILED: $*"; FAILS=$((FAILS + 1)); }

echo "table lag benchmark: --table-lag $LAG --seal-age $SEAL_AGE, $BATCHES batches of $BATCH events every $EVERY s," \
    "icebird polls every $POLL s; lake $LAKE, server on $BASE"
bench_start_server "$EVENTS" "$PORT" "$LOG" --lake "$LAKE" --table-lag "$LAG" --seal-age "$SEAL_AGE"

# the poller: at most the posting time, 2 lags and 2 minutes of slack, whatever happens
t_start=$(now_ms)
deadline=$((t_start + BATCHES * EVERY * 1000 + 2 * LAG_MS + 120000))
node "$NODE_DIR/table_lag.mjs" "$LAKE" "$OUT" $((POLL * 1000)) "$deadline" 2>"$OUT/poller.err" &
POLLER=$!

# the batches, on a fixed schedule; ids r{run}-b{batch}-{i}
run=$(printf '%x' "$t_start")
: >"$OUT/acks.tsv"
for k in $(seq 1 "$BATCHES"); do
    ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
    body=$(awk -v r="$run" -v k="$k" -v n="$BATCH" -v ts="$ts" 'BEGIN {
        printf "{\"events\":["
        for (i = 1; i <= n; i++)
            printf "%s{\"id\":\"r%s-b%d-%d\",\"type\":\"bench.tick\",\"ts\":\"%s\",\"n\":%d}", (i > 1 ? "," : ""), r, k, i, ts, i
        printf "]}" }')
    ans=$(curl -sS --max-time 30 --json "$body" -w '\n%{http_code}' "$BASE/ingest" || echo $'\n000')
    ack=$(now_ms)
    code=${ans##*$'\n'}
    accepted=$(head -1 <<<"$ans" | jq -r '.accepted // 0' 2>/dev/null || echo 0)
    if [[ $code == 200 && $accepted == "$BATCH" ]]; then
        printf '%d\t%d\n' "$k" "$ack" >>"$OUT/acks.tsv"
    else
        fail "batch $k: answered $code, accepted $accepted of $BATCH: $(head -c 200 <<<"$ans")"
    fi
    next=$((t_start + k * EVERY * 1000))
    wait_ms=$((next - $(now_ms)))
    ((wait_ms <= 0)) || sleep "$(awk -v m="$wait_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
done
posted=$(($(wc -l <"$OUT/acks.tsv") * BATCH))
t_posted=$(now_ms)
echo "posted $posted events in $(( (t_posted - t_start) / 1000 )) s; waiting for the table (at most 2 x $LAG)"
echo "$posted $((t_posted + 2 * LAG_MS))" >"$OUT/done"
wait "$POLLER" || fail "the poller exited $?: $(head -c 300 "$OUT/poller.err")"
POLLER=
t_end=$(now_ms)

# ---- the delays ---------------------------------------------------------------
# acks.tsv: batch, ack ms; seen.tsv: id, poll start, poll end
awk -F'\t' -v out="$OUT/delays" '
    FNR == NR { ack[$1] = $2; next }
    { split($1, p, "-"); b = substr(p[2], 2); if (b in ack) { print $2 - ack[b] > out ".start"; print $3 - ack[b] > out ".end" } }
' "$OUT/acks.tsv" "$OUT/seen.tsv"
touch "$OUT/delays.start" "$OUT/delays.end"
pct() { # file: p50 p95 max in seconds, exact order statistics (nearest rank)
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        i50 = int(NR * 0.50 + 0.999999); i95 = int(NR * 0.95 + 0.999999)
        printf "%.1f %.1f %.1f\n", v[i50] / 1000, v[i95] / 1000, v[NR] / 1000 }'
}
seen_n=$(wc -l <"$OUT/delays.start")
never=$((posted - seen_n))
read -r p50 p95 pmax < <(pct "$OUT/delays.start")
read -r e50 e95 emax < <(pct "$OUT/delays.end")
polls=$(wc -l <"$OUT/polls.tsv")
perrs=$(awk -F'\t' '$6 != ""' "$OUT/polls.tsv" | wc -l)
read -r pr50 prmax < <(awk -F'\t' '{ print $2 - $1 }' "$OUT/polls.tsv" | sort -n |
    awk '{ v[NR] = $1 } END { printf "%.2f %.2f\n", v[int(NR * 0.5 + 0.999999)] / 1000, v[NR] / 1000 }')
first_seen=$(awk -F'\t' '$5 > 0 { print ($1 - s) / 1000; exit }' s="$t_start" "$OUT/polls.tsv")

echo
echo "visibility delay (first poll that saw the event - its acknowledgement), $seen_n events seen:"
printf '  by the poll'"'"'s start: p50 %s s, p95 %s s, max %s s\n' "$p50" "$p95" "$pmax"
printf '  by the poll'"'"'s end:   p50 %s s, p95 %s s, max %s s\n' "$e50" "$e95" "$emax"
echo "  never seen: $never of $posted (waited $(( (t_end - t_posted) / 1000 )) s after the last batch)"
echo "polls: $polls, each read $pr50 s median, $prmax s at most; $perrs failed; first rows seen ${first_seen:--} s after the start"
[[ $perrs -eq 0 ]] || awk -F'\t' '$6 != "" { print "  poll error: " $6 }' "$OUT/polls.tsv" | sort | uniq -c | head -5
[[ $never -eq 0 ]] || fail "$never events were never seen in the table"

# ---- the table at the end -------------------------------------------------------
if "$EVENTS" table --lake "$LAKE" --format json >"$OUT/table.json" 2>"$OUT/table.err"; then
    meta=$(jq -r .metadataFile "$OUT/table.json")
    meta=${meta#file://}
    echo "table: version $(jq -r .version "$OUT/table.json"), $(jq '.snapshots | length' "$meta") snapshots in its metadata," \
        "$(jq -r .dataFiles "$OUT/table.json") data files, $(jq -r .records "$OUT/table.json") records," \
        "$(jq -r .bytes "$OUT/table.json") bytes"
    echo "lake: $(find "$LAKE/events" -name '*.parquet' | wc -l) Parquet files, $(find "$LAKE/events" -name '*.jsonl' | wc -l) JSON Lines segments," \
        "$(find "$LAKE/metadata" -name 'v*.metadata.json' | wc -l) metadata files"
else
    fail "events table: $(head -c 300 "$OUT/table.err")"
fi
echo "server: $(curl -fsS "$BASE/metrics" | awk '$1 ~ /^events_compaction_(runs|appended|files_written|failures)_total$/ {
    sub(/^events_compaction_/, "", $1); sub(/_total$/, "", $1); printf "%s%s %s", (n++ ? ", " : ""), $1, $2 }')"
if grep -qE 'level=(warn|error)' "$LOG"; then
    echo "server warnings and errors:"
    grep -E 'level=(warn|error)' "$LOG" | head -10 | sed 's/^/  /'
fi

bench_stop_clean
if [[ -z $STOP_RC ]]; then
    fail "the server did not exit within 60 s of SIGTERM"
elif [[ $STOP_RC -ne 0 ]]; then
    fail "the server exited $STOP_RC after SIGTERM"
fi
if [[ $FAILS -eq 0 ]]; then echo "result: PASS"; else echo "result: FAIL ($FAILS checks failed)"; fi
[[ $FAILS -eq 0 ]]
