#!/usr/bin/env bash
# bench/table_files.sh - the Iceberg table's data files per hour, and so per day, while an
# hour is open (its sealed segments appended as they come, the table lag) and after the
# rewrite once it is due; and what each kind of run costs.
#
# The server's compactor with the default --table-lag 5m runs every 75 s, so an hour that
# receives events all along takes 48 appends. This replays that for one past hour (HOUR_AGO
# hours before now, so that it is not the hour being written): a server
# (`--compact-every 0 --seal-age 1s`, so that it never compacts itself) takes APPENDS
# batches of PER_SEGMENT events with ts in that hour, each sealed into a segment of its
# own, and after each segment `events compact --lake L --open-hours --after 1000000h` runs
# (no hour is due: the segment is appended). Then the data files of the table (all of the
# hour) are counted with `events table --format json`, and `events compact --lake L --after
# 0` (the hour is due now) rewrites them; counted again. Both times `events query` must
# read exactly the events posted (count and distinct ids). Prints files per hour and per day (x 24), and the wall
# time of the append runs (median, max) and of the rewrite.
#
# Environment: APPENDS (default 48), PER_SEGMENT (default 2000), HOUR_AGO (default 3),
# BUILD (default build), KEEP_LAKE=1 keeps the lake. Builds nothing: run `make build`.
#
# Exit: 0 when every batch was stored, every run succeeded, and the lake holds exactly the
# events posted before and after the rewrite; 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
APPENDS=${APPENDS:-48}
PER_SEGMENT=${PER_SEGMENT:-2000}
HOUR_AGO=${HOUR_AGO:-3}
EVENTS=$BUILD/events
export LC_ALL=C

bench_need "$EVENTS"
bench_need_commands curl jq
bench_whole_numbers APPENDS PER_SEGMENT HOUR_AGO

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-tablefiles.XXXXXX")
bench_cleanup_at_exit "$TMP"
LAKE=$TMP/lake
LOG=$TMP/server.log
mkdir -p "$LAKE"
PORT=$(bench_free_port 18700)
BASE=http://127.0.0.1:$PORT
FAILS=0
fail() { echo "  CHECK FAILED: $*"; FAILS=$((FAILS + 1)); }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }

hour_s=$(( ($(date +%s) / 3600 - HOUR_AGO) * 3600 ))
hour=$(date -u -d "@$hour_s" +%Y-%m-%dT%H)
HDIR=$LAKE/events/$(date -u -d "@$hour_s" +%Y/%m/%d/%H)
echo "table files benchmark: $APPENDS segments of $PER_SEGMENT events in the hour $hour:00Z, each appended by" \
    "\`events compact --open-hours\`, then the hour rewritten; lake $LAKE"
bench_start_server "$EVENTS" "$PORT" "$LOG" --lake "$LAKE" --compact-every 0 --seal-age 1s

# `events table --format json`'s data files, or - when there is no table
data_files() { "$EVENTS" table --lake "$LAKE" --format json 2>/dev/null | jq -r '.dataFiles // "-"' || echo -; }
# events in the lake, as `events query` reads it
# the hour's sealed segments (none, and no directory, before the first)
segments() { if [[ -d $HDIR ]]; then find "$HDIR" -name '*.jsonl' | wc -l; else echo 0; fi; }
lake_count() { "$EVENTS" query --lake "$LAKE" --format csv "SELECT count(*), count(DISTINCT id) FROM events" | tail -1; }

: >"$TMP/append.s"
for k in $(seq 1 "$APPENDS"); do
    # a batch of events spread over the hour, of the sizes of small business events
    awk -v k="$k" -v n="$PER_SEGMENT" -v h="$hour" 'BEGIN {
        printf "{\"events\":["
        for (i = 1; i <= n; i++) {
            s = (k * n + i) % 3600
            printf "%s{\"id\":\"s%d-%d\",\"type\":\"%s\",\"ts\":\"%s:%02d:%02d.%03dZ\",\"user\":\"u%d\",\"amount\":%d.%02d,\"note\":\"segment %d event %d of the replayed hour\"}",
                (i > 1 ? "," : ""), k, i, (i % 3 ? "order.placed" : "page.view"), h, int(s / 60), s % 60, i % 1000,
                i % 977, i % 500, i % 100, k, i
        }
        printf "]}" }' >"$TMP/body.json"
    before=$(segments)
    ans=$(curl -sS --max-time 30 --json @"$TMP/body.json" "$BASE/ingest" || echo '{}')
    [[ $(jq -r '.accepted // 0' <<<"$ans") == "$PER_SEGMENT" ]] || fail "batch $k: $(head -c 200 <<<"$ans")"
    # its segment sealed (--seal-age 1s): at most 10 s
    for _ in $(seq 1 100); do
        (($(segments) > before)) && break
        sleep 0.1
    done
    (($(segments) > before)) || fail "batch $k: no new segment within 10 s"
    t0=$EPOCHREALTIME
    out=$("$EVENTS" compact --lake "$LAKE" --open-hours --after 1000000h 2>&1) || fail "append run $k: $out"
    secs "$t0" "$EPOCHREALTIME" >>"$TMP/append.s"
done
# the files of the open hour: those of the table, the lake's, and its events
open_files=$(data_files)
open_parquet=$(find "$HDIR" -name '*.parquet' | wc -l)
open_count=$(lake_count)
json_bytes=$(du -cb "$HDIR"/*.jsonl | tail -1 | cut -f1)
want="$((APPENDS * PER_SEGMENT)),$((APPENDS * PER_SEGMENT))"
[[ $open_count == "$want" ]] || fail "after the appends the lake holds $open_count (count, distinct ids), want $want"

t0=$EPOCHREALTIME
out=$("$EVENTS" compact --lake "$LAKE" --after 0 2>&1) || fail "the rewrite: $out"
rewrite_s=$(secs "$t0" "$EPOCHREALTIME")
due_files=$(data_files)
due_count=$(lake_count)
[[ $due_count == "$want" ]] || fail "after the rewrite the lake holds $due_count (count, distinct ids), want $want"
t0=$EPOCHREALTIME
"$EVENTS" compact --lake "$LAKE" --after 0 >/dev/null 2>&1 || fail "a run after the rewrite failed"
idle_s=$(secs "$t0" "$EPOCHREALTIME")

read -r afirst alast < <(awk 'NR == 1 { f = $1 } { l = $1 } END { printf "%.2f %.2f\n", f, l }' "$TMP/append.s")
read -r amed amax asum < <(sort -g "$TMP/append.s" | awk '{ v[NR] = $1; s += $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.1f\n", m, v[NR], s }')
meta=$("$EVENTS" table --lake "$LAKE" --format json | jq -r .metadataFile)
meta=${meta#file://}
echo
printf '%-34s %8s %8s\n' "" "per hour" "per day"
printf '%-34s %8s %8s\n' "open: after $APPENDS appends" "$open_files" "$((open_files * 24))"
printf '%-34s %8s %8s\n' "due: after the rewrite" "$due_files" "$((due_files * 24))"
echo "(data files of the table's current snapshot, \`events table --format json\`; the hour's Parquet files in the lake:"
echo " $open_parquet after the appends, $(find "$HDIR" -name '*.parquet' | wc -l) after the rewrite, the replaced ones kept for --compact-retain)"
echo "append runs: median $amed s, max $amax s (the first $afirst s, the last $alast s), $asum s in all; the rewrite: $rewrite_s s; a run with nothing to do: $idle_s s"
echo "append runs by number: $(awk '{ printf "%s%d: %.2f s", (NR > 1 ? ", " : ""), NR, $1 }' "$TMP/append.s" | tr -d '\n' |
    awk -F', ' '{ for (i = 1; i <= NF; i += (NF > 12 ? int(NF / 8) : 1)) printf "%s%s", (i > 1 ? ", " : ""), $i; if ((NF - 1) % (NF > 12 ? int(NF / 8) : 1)) printf ", %s", $NF; print "" }')"
echo "events: $((APPENDS * PER_SEGMENT)) in $APPENDS segments, $json_bytes bytes of JSON Lines;" \
    "table: version $(jq -r .version <<<"$("$EVENTS" table --lake "$LAKE" --format json)"), $(jq '.snapshots | length' "$meta") snapshots," \
    "$(jq -r '.["current-snapshot-id"] as $c | .snapshots[] | select(.["snapshot-id"] == $c) | .summary["total-files-size"]' "$meta") bytes of data"

bench_stop_clean
[[ ${STOP_RC:-x} == 0 ]] || fail "the server exited ${STOP_RC:-late} after SIGTERM"
if [[ $FAILS -eq 0 ]]; then echo "result: PASS"; else echo "result: FAIL ($FAILS checks failed)"; fi
[[ $FAILS -eq 0 ]]
