# shellcheck shell=bash
# bench/lib.sh - what the benchmark scripts share, sourced by them (bash, from the
# top of the source tree): a free loopback port, an `events serve` started and
# waited for, and stopped. Messages name the script that sourced it.

BENCH_NAME=${0##*/}

# bench_need FILE...: exits the script with 1 when a program it runs is not built.
bench_need() {
    local f
    for f in "$@"; do
        [[ -x $f ]] || { echo "$BENCH_NAME: $f is missing; run \`make build\` first" >&2; exit 1; }
    done
}

# bench_need_commands CMD...: exits the script with 1 when a command it runs is not installed.
bench_need_commands() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "$BENCH_NAME: $c is missing" >&2; exit 1; }
    done
}

# bench_whole_numbers VAR...: exits the script with 1 when a variable named is not a whole
# number >= 1.
bench_whole_numbers() {
    local v
    for v in "$@"; do
        [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "$BENCH_NAME: $v must be a whole number >= 1" >&2; exit 1; }
    done
}

# bench_cleanup_at_exit DIR: when the script exits (status 130 at SIGINT or SIGTERM),
# the server SERVER_PID names is stopped (bench_stop_server) and DIR removed, or kept
# and named with KEEP_LAKE=1.
bench_cleanup_at_exit() {
    BENCH_TMP=$1
    SERVER_PID=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    bench_stop_server
    if [[ ${KEEP_LAKE:-0} == 1 ]]; then echo "kept: $BENCH_TMP"; else rm -rf "$BENCH_TMP"; fi
}

# bench_free_port [FIRST]: prints a port in FIRST..FIRST+999 (default 18700) that
# nothing on 127.0.0.1 listens on (connecting to it fails), tried at 50 places spread
# by the script's pid, so that scripts run at once pick different ones. Returns 1,
# with a message, when none is free.
bench_free_port() {
    local first=${1:-18700} i p
    for i in $(seq 0 49); do
        p=$((first + ($$ + i * 7) % 1000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    echo "$BENCH_NAME: no free port in $first-$((first + 999))" >&2
    return 1
}

# bench_start_server BIN PORT LOG [FLAGS...]: `BIN serve --listen 127.0.0.1:PORT
# FLAGS...` in the background, its output in LOG and its pid in SERVER_PID; returns
# once GET /health answers. When the server exits or does not answer within 10 s,
# prints its log and exits the script with 1.
bench_start_server() {
    local bin=$1 port=$2 log=$3
    shift 3
    "$bin" serve --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "$BENCH_NAME: the server did not answer /health within 10 s; its log:" >&2
    cat "$log" >&2
    exit 1
}

# bench_cpu_ticks PID: the CPU time (user + system) a process has used, in clock ticks
# (getconf CLK_TCK a second): a figure that other load on the machine inflates less than
# a rate does.
# shellcheck disable=SC2086 # the fields of /proc/PID/stat, split on purpose
bench_cpu_ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }

# bench_stop_server [TENTHS]: SIGTERM to the server SERVER_PID names if it still runs,
# SIGKILL if it has not exited TENTHS tenths of a second later (default 100); clears
# SERVER_PID. For clean-up: a script that checks how the server stops does it itself.
# shellcheck disable=SC2120 # TENTHS is optional
bench_stop_server() {
    local tenths=${1:-100}
    if [[ -n ${SERVER_PID:-} ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 "$tenths"); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}

# bench_stop_clean: SIGTERM to the server SERVER_PID names, then up to 60 s for it
# to exit. STOP_RC is its exit status and SERVER_PID is cleared; STOP_RC is empty
# when it has not exited (SERVER_PID still names it then, for bench_stop_server).
bench_stop_clean() {
    # shellcheck disable=SC2034 # read by the caller
    STOP_RC=
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 600); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            # shellcheck disable=SC2034
            wait "$SERVER_PID" && STOP_RC=0 || STOP_RC=$?
            SERVER_PID=
            return 0
        fi
        sleep 0.1
    done
}
