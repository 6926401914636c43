#!/usr/bin/env bash
# bench/query.sh - the query benchmark: how long the four standard queries
# take on a lake of raw JSONL, through the server and through the CLI, and
# whether both give the same, right answer.
#
# For each size in SIZES, writes a deterministic lake with
# build/bench/query_gen (48 hours, 4 files per hour), starts build/events
# serve on it on a free loopback port, and times each query RUNS times after
# one warm-up run: through POST /query (curl's time_total, and the elapsedMs
# the server reports) and through `events query --lake` (the wall time of the
# whole process, DuckDB's start-up included). Every answer is checked: the
# server and the CLI must agree byte for byte (CSV, and JSON but for
# elapsedMs), each run must give the same answer, and the answer and the
# number of files read must match what the generator wrote. Then (COMPACTED=1,
# the default) the same lake is compacted with `events compact --after 0` (a
# copy of hard links: the raw lake stays as it is), which commits its Iceberg
# table (`events table` must name every Parquet file), and the four queries run
# again through a server on it: their answers must be byte-identical to the
# raw lake's (CSV, and JSON but for files and elapsedMs), the full scans must
# read every Parquet file and doc_history the history files compaction wrote
# (docs/lake.md, "History files") and the Parquet files of days without, and
# the times are printed side by side with the raw ones. Builds nothing: run
# `make build` first.
#
# Environment: SIZES (events per lake, default "1000000 5000000"), RUNS (timed
# runs per query, default 5), HOURS (default 48), TIMEOUT (query time limit
# for the server and the CLI, default 300s), BUILD (default build),
# COMPACTED (1: also the compacted lake, the default; 0: raw only),
# KEEP_LAKE=1 keeps the temporary lakes for inspection, LAKES=DIR keeps the raw
# lakes in DIR/N and reuses them in later runs (a 5M lake takes a while to write;
# the compacted copy is made afresh each run, by this build's compactor).
#
# Exit: 0 when every answer checked out and every server stopped cleanly, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD=${BUILD:-build}
SIZES=${SIZES:-1000000 5000000}
SIZES=${SIZES//,/ }
RUNS=${RUNS:-5}
HOURS=${HOURS:-48}
TIMEOUT=${TIMEOUT:-300s}
COMPACTED=${COMPACTED:-1}
LAKES=${LAKES:-}
EVENTS=$BUILD/events
GEN=$BUILD/bench/query_gen
export LC_ALL=C

bench_need "$EVENTS" "$GEN"
command -v curl >/dev/null || { echo "query.sh: curl is missing" >&2; exit 1; }
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "query.sh: RUNS must be a whole number >= 1" >&2; exit 1; }
[[ $HOURS =~ ^[0-9]+$ && $HOURS -ge 2 ]] || { echo "query.sh: HOURS must be a whole number >= 2" >&2; exit 1; }
for n in $SIZES; do
    # smaller lakes may miss a method or a type, and the answer checks expect all of them
    [[ $n =~ ^[0-9]+$ && $n -ge 10000 ]] || { echo "query.sh: each size must be a whole number >= 10000, not $n" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/events-qbench.XXXXXX")
bench_cleanup_at_exit "$TMP" # a server left running is killed; the clean stop is stop_clean's

PORT=$(bench_free_port 18700)
BASE=http://127.0.0.1:$PORT

TCK=$(getconf CLK_TCK)
server_ticks() { local s; s=$(<"/proc/$SERVER_PID/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }
# Resets VmHWM, so each query reports its own peak (Linux >= 4.0; harmless if refused).
reset_hwm() { echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || true; }
server_mem_mb() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
# a number from the JSON answer's trailer: "rowCount":R,"truncated":B,"files":F,"elapsedMs":T}
# (inside a string in the rows, the quotes around a name would be escaped; the answer
# ends without a newline, so sed's output does too: echo adds it)
answer_field() { local v; v=$(sed -n "s/.*\"$2\":\\([0-9.eE+-]*\\).*/\\1/p" "$1" | tail -1); echo "$v"; }
# the answer without its timing and with one final newline (the server sends none, the CLI one)
answer_norm() { printf '%s\n' "$(sed 's/,"elapsedMs":[0-9.eE+-]*}$/}/' "$1")"; }
# and without the number of files read, which compaction changes
answer_rows() { answer_norm "$1" | sed 's/,"files":[0-9]*}$/}/'; }
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
# median and minimum of numbers on stdin, formatted with one decimal
med_min() { sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f\n", m, v[1] }'; }
ms_of() { awk -v s="$1" 'BEGIN { printf "%.3f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# CPU ticks all CPUs spent busy (user, nice, system, irq, softirq, steal), and those of
# this script with its waited-for children (everything it ran but the running server)
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
own_ticks() { local s; s=$(<"/proc/$$/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13} + ${14} + ${15})); }
# Other processes compete for the same CPUs and distort every figure: say so.
check_idle() {
    local b0 b1 o0 o1
    b0=$(busy_ticks)
    o0=$(own_ticks)
    sleep 1
    b1=$(busy_ticks)
    o1=$(own_ticks)
    local pct=$(( (b1 - b0 - (o1 - o0)) * 100 / TCK ))
    if (( pct > 10 )); then
        echo "WARNING: the machine is not idle: other processes use ${pct}% of a CPU; every time will be inflated. Busiest:"
        ps -eo pid,pcpu,etime,args --sort=-pcpu | head -4 | cut -c1-150 | sed 's/^/  /'
    fi
}

FAILS=0
fail() { echo "  CHECK FAILED: $*"; FAILS=$((FAILS + 1)); }

# no background compaction, and no Parquet copies of the raw files queries read
# (--query-copies; a build without them ignores the variable): the raw lake stays raw
# while it is measured
export EVENTS_QUERY_COPIES=0
start_server() { # lake log
    bench_start_server "$EVENTS" "$PORT" "$2" --lake "$1" --query-timeout "$TIMEOUT" --compact-every 0
}

stop_clean() { # log; SIGTERM, then the exit status must be 0
    bench_stop_clean
    if [[ -z $STOP_RC ]]; then
        fail "the server did not exit within 60 s of SIGTERM"
        tail -20 "$1" | sed 's/^/    /'
    elif [[ $STOP_RC -ne 0 ]]; then
        fail "the server exited $STOP_RC after SIGTERM"
        tail -20 "$1" | sed 's/^/    /'
    fi
}

# Runs query $2 (SQL $3) on the server: one warm-up as CSV (kept to compare with
# the CLI), then RUNS timed as JSON. Leaves $D/$1.srv.* behind.
server_runs() { # size name sql
    local n=$1 name=$2 sql=$3 body code t k t0 t1
    local D=$TMP/$n/$name
    body="{\"sql\":$(json_str "$sql"),\"params\":[]}"
    code=$(curl -sS --json "$body" -o "$D.srv.csv" -w '%{http_code}' "$BASE/query?format=csv") || code=000
    [[ $code == 200 ]] || { fail "$name: server (CSV) answered $code: $(head -c 300 "$D.srv.csv")"; return 1; }
    : >"$D.srv.wall"
    : >"$D.srv.elapsed"
    reset_hwm
    t0=$(server_ticks)
    for k in $(seq 1 "$RUNS"); do
        read -r code t < <(curl -sS --json "$body" -o "$D.srv.json.$k" -w '%{http_code} %{time_total}\n' "$BASE/query" || echo "000 0")
        [[ $code == 200 ]] || { fail "$name: server answered $code: $(head -c 300 "$D.srv.json.$k")"; return 1; }
        ms_of "$t" >>"$D.srv.wall"
        echo >>"$D.srv.wall"
        answer_field "$D.srv.json.$k" elapsedMs >>"$D.srv.elapsed"
        # the answer without its timing, to compare runs with each other and with the CLI
        answer_norm "$D.srv.json.$k" >"$D.srv.norm.$k"
        if [[ $k -gt 1 ]] && ! cmp -s "$D.srv.norm.1" "$D.srv.norm.$k"; then fail "$name: server run $k answered differently from run 1"; fi
    done
    t1=$(server_ticks)
    awk -v d=$((t1 - t0)) -v t="$TCK" -v r="$RUNS" 'BEGIN { printf "%.0f\n", d / t * 1000 / r }' >"$D.srv.cpu"
    server_mem_mb VmHWM >"$D.srv.hwm"
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "query.sh: the server died during $name; its log:" >&2; tail -50 "$LOG" >&2; exit 1; }
}

# The same query through `events query --lake`: one warm-up as JSON (to compare
# with the server's JSON, files included), then RUNS timed as CSV.
cli_runs() { # size name sql
    local n=$1 name=$2 sql=$3 k rc
    local D=$TMP/$n/$name
    rc=0
    "$EVENTS" query --lake "$LAKE" --timeout "$TIMEOUT" --format json "$sql" >"$D.cli.json" 2>"$D.cli.err" || rc=$?
    [[ $rc -eq 0 ]] || { fail "$name: events query (JSON) exited $rc: $(head -c 300 "$D.cli.err")"; return 1; }
    : >"$D.cli.wall"
    : >"$D.cli.cpu"
    local TIMEFORMAT='%3R %3U %3S'
    for k in $(seq 1 "$RUNS"); do
        rc=0
        { time "$EVENTS" query --lake "$LAKE" --timeout "$TIMEOUT" --format csv "$sql" >"$D.cli.csv.$k" 2>"$D.cli.err" || rc=$?; } 2>"$D.cli.time"
        [[ $rc -eq 0 ]] || { fail "$name: events query exited $rc: $(head -c 300 "$D.cli.err")"; return 1; }
        read -r real user sys <"$D.cli.time"
        ms_of "$real" >>"$D.cli.wall"
        echo >>"$D.cli.wall"
        awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f\n", (u + s) * 1000 }' >>"$D.cli.cpu"
        if [[ $k -gt 1 ]] && ! cmp -s "$D.cli.csv.1" "$D.cli.csv.$k"; then fail "$name: CLI run $k answered differently from run 1"; fi
    done
}

# The lake of size $1 compacted (a copy of hard links: compaction only adds files and unlinks),
# the queries through a server on it, each answer checked against the raw lake's. Uses G,
# SQL, LAKE of the size's raw runs; results in R[size.cQUERY.*].
compacted_runs() { # size
    local n=$1 CL=$TMP/$1/compacted CLOG=$TMP/$1/server-compacted.log q D t0 out pfiles hfiles docfiles day
    rm -rf "$CL"
    cp -al "$LAKE" "$CL"
    t0=$EPOCHREALTIME
    out=$("$EVENTS" compact --lake "$CL" --after 0 2>&1) || { fail "events compact failed: $out"; return 1; }
    R[$n.compact_s]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    pfiles=$(find "$CL/events" -name '*.parquet' | wc -l)
    hfiles=$(find "$CL/events/$(sed 's/^\(....\)-\(..\)-\(..\)T\(..\).*/\1\/\2\/\3\/\4/' <<<"$mid")" -name '*.parquet' | wc -l)
    R[$n.pfiles]=$pfiles
    R[$n.pbytes]=$(find "$CL/events" -name '*.parquet' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    # doc_history reads the history files of the days that have them (docs/lake.md, "History
    # files"), and the Parquet files of the others
    R[$n.histfiles]=$(find "$CL/history" -name '*.parquet' 2>/dev/null | wc -l)
    R[$n.histbytes]=$(find "$CL/history" -name '*.parquet' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
    docfiles=${R[$n.histfiles]}
    for day in $(cd "$CL/events" && find . -mindepth 3 -maxdepth 3 -type d); do
        [[ -d $CL/history/$day ]] || docfiles=$((docfiles + $(find "$CL/events/$day" -name '*.parquet' | wc -l)))
    done
    echo
    echo "compacted in ${R[$n.compact_s]} s: $(tail -1 <<<"$out")"
    # compaction commits the lake's Iceberg table: its current snapshot names every Parquet file
    if "$EVENTS" table --lake "$CL" --format json >"$TMP/$n/table.json" 2>&1; then
        R[$n.tfiles]=$(sed -n 's/^ *"dataFiles": *\([0-9]*\),*$/\1/p' "$TMP/$n/table.json")
        echo "table: version $(sed -n 's/^ *"version": *\([0-9]*\),*$/\1/p' "$TMP/$n/table.json"), ${R[$n.tfiles]} data files" \
            "($(find "$CL/metadata" -name 'v*.metadata.json' | wc -l) metadata files)"
        [[ ${R[$n.tfiles]} == "$pfiles" ]] || fail "the table names ${R[$n.tfiles]:-?} data files, the lake holds $pfiles Parquet files"
    else
        fail "events table on the compacted lake: $(head -c 300 "$TMP/$n/table.json")"
    fi
    sync -f "$CL"
    check_idle
    start_server "$CL" "$CLOG"
    for q in $QUERIES; do
        server_runs "$n" "c$q" "${SQL[$q]}" || continue
        D=$TMP/$n
        cmp -s "$D/$q.srv.csv" "$D/c$q.srv.csv" || fail "$q: the compacted lake's CSV differs from the raw lake's (see $D/$q.srv.csv, $D/c$q.srv.csv)"
        cmp -s <(answer_rows "$D/$q.srv.json.1") <(answer_rows "$D/c$q.srv.json.1") ||
            fail "$q: the compacted lake's JSON differs from the raw lake's but for files and elapsedMs (see $D/$q.srv.json.1, $D/c$q.srv.json.1)"
        R[$n.c$q.files]=$(answer_field "$D/c$q.srv.json.1" files)
        R[$n.c$q.rows]=$(answer_field "$D/c$q.srv.json.1" rowCount)
        read -r "R[$n.c$q.srv]" "R[$n.c$q.srvmin]" < <(med_min <"$D/c$q.srv.wall")
        read -r "R[$n.c$q.el]" _ < <(med_min <"$D/c$q.srv.elapsed")
        R[$n.c$q.srvcpu]=$(<"$D/c$q.srv.cpu")
        R[$n.c$q.hwm]=$(<"$D/c$q.srv.hwm")
    done
    for q in a b; do
        [[ ${R[$n.c$q.files]:-} == "$pfiles" ]] || fail "compacted ($q): read ${R[$n.c$q.files]:-?} files, want all $pfiles Parquet files"
    done
    [[ ${R[$n.cc.files]:-} == "$docfiles" ]] ||
        fail "compacted (c): read ${R[$n.cc.files]:-?} files, want $docfiles (${R[$n.histfiles]} history files and the Parquet files of the days without)"

    [[ ${R[$n.cd.files]:-} == "$hfiles" ]] || fail "compacted (d): read ${R[$n.cd.files]:-?} files, want the hour's $hfiles"

    printf '\ncompacted: %s Parquet files, %.1f MB; %s history files, %.1f MB\n' "$pfiles" "$(awk -v b="${R[$n.pbytes]}" 'BEGIN { print b / 1e6 }')" \
        "${R[$n.histfiles]}" "$(awk -v b="${R[$n.histbytes]}" 'BEGIN { print b / 1e6 }')"
    printf '%-24s %6s %5s | %10s %10s %10s %8s %7s | %10s %8s\n' query files rows srv_med_ms srv_min_ms srv_el_ms srv_cpu \
        srv_rss raw_med_ms raw/comp
    for q in $QUERIES; do
        printf '%-24s %6s %5s | %10s %10s %10s %8s %5sMB | %10s %8s\n' "${TITLE[$q]}" "${R[$n.c$q.files]:--}" "${R[$n.c$q.rows]:--}" \
            "${R[$n.c$q.srv]:--}" "${R[$n.c$q.srvmin]:--}" "${R[$n.c$q.el]:--}" "${R[$n.c$q.srvcpu]:--}" "${R[$n.c$q.hwm]:--}" \
            "${R[$n.$q.srv]:--}" "$(ratio "${R[$n.$q.srv]:-0}" "${R[$n.c$q.srv]:-0}")"
    done
    echo "(the same server measures as above, on the compacted lake; raw/comp: the raw lake's median over this one's)"
    if grep -qE 'level=(warn|error)' "$CLOG"; then
        echo "server warnings and errors:"
        grep -E 'level=(warn|error)' "$CLOG" | head -10 | sed 's/^/  /'
    fi
    stop_clean "$CLOG"
    [[ ${KEEP_LAKE:-0} == 1 ]] || rm -rf "$CL"
}

declare -A R # results: R[size.query.what]
QUERIES="a b c d"
declare -A TITLE=([a]="(a) count by type, all" [b]="(b) rpc_latency, all" [c]="(c) doc_history" [d]="(d) count of one hour")

echo "query benchmark: $(nproc) CPUs, sizes: $SIZES, $HOURS hours, $RUNS timed runs after 1 warm-up, server on $BASE"
echo "lakes under $TMP (page cache warm: each lake is read right after it is written)"
for n in $SIZES; do
    mkdir -p "$TMP/$n"
    LAKE=$TMP/$n/lake
    LOG=$TMP/$n/server.log
    echo
    echo "== $n events =="
    if [[ -n $LAKES && -s $LAKES/$n/gen.out ]]; then
        LAKE=$LAKES/$n/lake
        G=$(<"$LAKES/$n/gen.out")
        echo "reusing $LAKE"
    else
        [[ -z $LAKES ]] || { LAKE=$LAKES/$n/lake; rm -rf "$LAKES/$n"; mkdir -p "$LAKES/$n"; }
        G=$("$GEN" --events "$n" --hours "$HOURS" --out "$LAKE") || { echo "query.sh: query_gen failed" >&2; exit 1; }
        [[ -z $LAKES ]] || echo "$G" >"$LAKES/$n/gen.out"
    fi
    files=$(field "$G" files)
    bytes=$(field "$G" bytes)
    R[$n.files]=$files
    R[$n.bytes]=$bytes
    printf 'generated %s events in %s s (%s events/s): %s files, %.1f MB (%s bytes per event), %s on disk\n' \
        "$n" "$(field "$G" seconds)" "$(field "$G" events_per_s)" "$files" \
        "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" "$(field "$G" mean_event_bytes)" "$(du -sh "$LAKE" | cut -f1)"

    # write the lake back to disk now, so that the writeback does not compete with the queries
    t0=$EPOCHREALTIME
    sync -f "$LAKE"
    echo "written back to disk in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s (sync)"

    start=$(field "$G" start)
    mid=$(field "$G" mid_hour)
    mid_end=$(field "$G" mid_hour_end)
    doc=$(field "$G" doc_id)
    declare -A SQL=(
        [a]="SELECT type, count(*) FROM events GROUP BY type ORDER BY type"
        [b]="SELECT * FROM rpc_latency('$start')"
        [c]="SELECT * FROM doc_history('$(field "$G" doc_collection)', '$doc')"
        [d]="SELECT count(*) FROM events WHERE ts >= '$mid' AND ts < '$mid_end'"
    )

    check_idle
    start_server "$LAKE" "$LOG"
    rss0=$(server_mem_mb VmRSS)
    busy0=$(busy_ticks)
    own0=$(own_ticks)
    srv0=$(server_ticks)
    for q in $QUERIES; do
        server_runs "$n" "$q" "${SQL[$q]}" || continue
        cli_runs "$n" "$q" "${SQL[$q]}" || continue
        D=$TMP/$n/$q
        # server and CLI: the same CSV, the same JSON but for elapsedMs
        cmp -s "$D.srv.csv" "$D.cli.csv.1" || fail "$q: the server's CSV and the CLI's differ (see $D.srv.csv, $D.cli.csv.1)"
        answer_norm "$D.cli.json" >"$D.cli.norm"
        cmp -s "$D.srv.norm.1" "$D.cli.norm" || fail "$q: the server's JSON and the CLI's differ (see $D.srv.norm.1, $D.cli.norm)"
        R[$n.$q.files]=$(answer_field "$D.srv.json.1" files)
        R[$n.$q.rows]=$(answer_field "$D.srv.json.1" rowCount)
        read -r "R[$n.$q.srv]" "R[$n.$q.srvmin]" < <(med_min <"$D.srv.wall")
        read -r "R[$n.$q.el]" _ < <(med_min <"$D.srv.elapsed")
        read -r "R[$n.$q.cli]" "R[$n.$q.climin]" < <(med_min <"$D.cli.wall")
        read -r "R[$n.$q.clicpu]" _ < <(med_min <"$D.cli.cpu")
        R[$n.$q.srvcpu]=$(<"$D.srv.cpu")
        R[$n.$q.hwm]=$(<"$D.srv.hwm")
        if (( ${R[$n.$q.hwm]:-0} > ${R[$n.hwm]:-0} )); then R[$n.hwm]=${R[$n.$q.hwm]}; fi
    done
    # CPU that neither the server nor this script (curl, the CLI) used while the queries ran
    other=$(( $(busy_ticks) - busy0 - ($(own_ticks) - own0) - ($(server_ticks) - srv0) ))
    R[$n.other]=$(awk -v o="$other" -v t="$TCK" 'BEGIN { printf "%.1f", (o < 0 ? 0 : o) / t }')
    R[$n.rss]=$(server_mem_mb VmRSS)
    R[$n.rss0]=$rss0

    # CLI start-up: a query that reads no file
    : >"$TMP/$n/startup.wall"
    TIMEFORMAT='%3R'
    for _ in $(seq 0 "$RUNS"); do
        { time "$EVENTS" query --lake "$LAKE" --format csv "SELECT 42" >/dev/null; } 2>>"$TMP/$n/startup.raw"
    done
    tail -n "$RUNS" "$TMP/$n/startup.raw" | while read -r s; do ms_of "$s"; echo; done >"$TMP/$n/startup.wall"
    read -r "R[$n.startup]" _ < <(med_min <"$TMP/$n/startup.wall")

    # the answers against what the generator wrote
    D=$TMP/$n
    want_types=$(field "$G" types | tr ',' '\n' | tr ':' ',')
    [[ $(tail -n +2 "$D/a.srv.csv" 2>/dev/null) == "$want_types" ]] || fail "(a): counts by type differ from the generator's: $(tr '\n' ' ' <"$D/a.srv.csv" 2>/dev/null)"
    [[ ${R[$n.a.files]:-} == "$files" ]] || fail "(a): read ${R[$n.a.files]:-?} files, want all $files"
    rpc=$(field "$G" types | tr ',' '\n' | sed -n 's/^rpc\.call://p')
    calls=$(awk -F, 'NR > 1 { s += $3 } END { print s + 0 }' "$D/b.srv.csv" 2>/dev/null || echo 0)
    [[ $calls == "$rpc" && ${R[$n.b.rows]:-} == 8 ]] || fail "(b): ${R[$n.b.rows]:-?} rows with $calls calls, want 8 rows (class, method) with $rpc calls"
    [[ ${R[$n.b.files]:-} == "$files" ]] || fail "(b): read ${R[$n.b.files]:-?} files, want all $files (bounded below by the lake's start)"
    [[ ${R[$n.c.rows]:-} == "$(field "$G" doc_changes)" ]] || fail "(c): ${R[$n.c.rows]:-?} changes of $doc, want $(field "$G" doc_changes)"
    [[ $(tail -n +2 "$D/d.srv.csv" 2>/dev/null) == "$(field "$G" mid_hour_events)" ]] || fail "(d): counted $(tail -n +2 "$D/d.srv.csv" 2>/dev/null), want $(field "$G" mid_hour_events)"
    [[ ${R[$n.d.files]:-} == "$(field "$G" mid_hour_files)" ]] || fail "(d): read ${R[$n.d.files]:-?} files, want the hour's $(field "$G" mid_hour_files)"

    printf '\n%-24s %6s %5s | %10s %10s %10s %8s %7s | %10s %10s %8s\n' query files rows srv_med_ms srv_min_ms srv_el_ms srv_cpu \
        srv_rss cli_med_ms cli_min_ms cli_cpu
    for q in $QUERIES; do
        printf '%-24s %6s %5s | %10s %10s %10s %8s %5sMB | %10s %10s %8s\n' "${TITLE[$q]}" "${R[$n.$q.files]:--}" "${R[$n.$q.rows]:--}" \
            "${R[$n.$q.srv]:--}" "${R[$n.$q.srvmin]:--}" "${R[$n.$q.el]:--}" "${R[$n.$q.srvcpu]:--}" "${R[$n.$q.hwm]:--}" \
            "${R[$n.$q.cli]:--}" "${R[$n.$q.climin]:--}" "${R[$n.$q.clicpu]:--}"
    done
    echo "(srv: POST /query, curl's time_total; srv_el: the server's elapsedMs; srv_cpu: server CPU ms per run, all threads;"
    echo " srv_rss: the server's peak resident memory (VmHWM) during that query's runs;"
    echo " cli: \`events query --lake\`, wall time of the process; cli_cpu: its CPU ms; median of $RUNS runs unless min)"
    echo "CLI start-up (SELECT 42, no file read): ${R[$n.startup]} ms median"
    echo "CPU used by other processes while the queries ran: ${R[$n.other]} s (should be near 0)"
    echo "server memory: ${R[$n.rss0]} MB resident before the queries, ${R[$n.rss]} MB after them, peak (VmHWM) ${R[$n.hwm]:-?} MB"
    if grep -qE 'level=(warn|error)' "$LOG"; then
        echo "server warnings and errors:"
        grep -E 'level=(warn|error)' "$LOG" | head -10 | sed 's/^/  /'
    fi
    stop_clean "$LOG"
    [[ $COMPACTED != 1 ]] || compacted_runs "$n"
    [[ ${KEEP_LAKE:-0} == 1 || -n $LAKES ]] || rm -rf "$LAKE"
done

# ---- ratios ---------------------------------------------------------------------
set -- $SIZES
first=$1
last=${!#}
echo
if [[ $first != "$last" ]]; then
    echo "scaling, $last / $first events ($(ratio "$last" "$first")x the events, $(ratio "${R[$last.bytes]}" "${R[$first.bytes]}")x the bytes): time ratio, median"
    for q in $QUERIES; do
        printf '  %-24s server %6s   CLI %6s\n' "${TITLE[$q]}" "$(ratio "${R[$last.$q.srv]:-0}" "${R[$first.$q.srv]:-0}")" \
            "$(ratio "${R[$last.$q.cli]:-0}" "${R[$first.$q.cli]:-0}")"
    done
fi
echo "pruning, (d) one hour / (a) everything: time ratio, median (files: 1/$HOURS of the lake = $(ratio 1 "$HOURS"))"
for n in $SIZES; do
    printf '  %-24s server %6s   CLI %6s   server elapsedMs %6s\n' "$n events" "$(ratio "${R[$n.d.srv]:-0}" "${R[$n.a.srv]:-0}")" \
        "$(ratio "${R[$n.d.cli]:-0}" "${R[$n.a.cli]:-0}")" "$(ratio "${R[$n.d.el]:-0}" "${R[$n.a.el]:-0}")"
done

echo
if [[ $COMPACTED == 1 ]]; then
    echo "compacted lake, raw / compacted time, server median:"
    for n in $SIZES; do
        printf '  %-14s' "$n events"
        for q in $QUERIES; do printf ' (%s) %6s' "$q" "$(ratio "${R[$n.$q.srv]:-0}" "${R[$n.c$q.srv]:-0}")"; done
        echo
    done
fi
if [[ $FAILS -eq 0 ]]; then
    echo "answers: PASS (server and CLI agree, every run the same, counts and files as generated$([[ $COMPACTED != 1 ]] || echo ", compacted the same as raw"))"
else
    echo "answers: FAIL ($FAILS checks failed)"
fi
[[ $FAILS -eq 0 ]]
