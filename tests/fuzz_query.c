/*
 * fuzz_query.c - libFuzzer target for query admission, pruning and the
 * sandbox: arbitrary SQL text through the whole query engine.
 *
 * The input is SQL (the first byte picks the answer format). Whatever it
 * is, the query must end QUERY_OK, QUERY_EREFUSED or QUERY_ETIMEDOUT (the
 * server's 200, 400 or 504: never crash, hang or 5xx), and
 * nothing may appear in the lake: after each input the lake's directory tree
 * must hold exactly the files it was created with. A statement that writes
 * (COPY, EXPORT, ATTACH, a CREATE that persists, ...) and got past admission
 * would show up here.
 *
 * Built with -fsanitize=fuzzer by clang (the sanitizer build) and as a replay
 * program in every build (with fuzz_replay.c).
 */
#include "evtime.h"
#include "layout.h"
#include "log.h"
#include "query.h"
#include "store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char lake_dir[256];
static store *st;
static query_engine *engine;
static query_conn *conn;
static size_t files_at_start;

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb)) continue;
        n += 1 + (S_ISDIR(sb.st_mode) ? count_files(p) : 0);
    }
    closedir(d);
    return n;
}

static void cleanup(void)
{
    query_conn_free(conn);
    query_engine_close(engine);
    store_close(st);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", lake_dir);
    if (system(cmd)) { /* best effort */
    }
}

static void setup(void)
{
    char why[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(lake_dir, sizeof lake_dir, "%s/events-fuzzq-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(lake_dir)) abort();
    char err[512];
    if (store_open(lake_dir, &st, err, sizeof err)) abort();
    /* two hours of events */
    for (int h = 0; h < 2; h++) {
        char key[LAKE_KEY_MAX];
        const char *uuid =
            h ? "00000000-0000-7000-8000-000000000001" : "00000000-0000-7000-8000-000000000000";
        lake_raw_key(493000 + h, uuid, key);
        char line[256];
        char ts[EVTIME_LEN + 1];
        evtime_format((int64_t)(493000 + h) * 3600000 + 5, ts);
        int n = snprintf(
            line, sizeof line,
            "{\"id\":\"e%d\",\"type\":\"rpc.call\",\"ts\":\"%s\",\"receivedAt\":\"%s\",\"method\":"
            "\"m\","
            "\"durationMs\":1.5,\"collection\":\"c\",\"docId\":\"d\",\"bookmark\":\"%016d\"}\n",
            h, ts, ts, h);
        if (store_put(st, key, line, (size_t)n, 0, why, sizeof why)) abort();
    }
    query_config qc = {.store = st, .memory_limit = 256u << 20, .threads = 1};
    if (query_engine_open(&qc, &engine, err, sizeof err)) {
        fprintf(stderr, "fuzz_query: %s\n", err);
        abort();
    }
    if (!(conn = query_conn_new(engine, err, sizeof err))) abort();
    files_at_start = count_files(lake_dir);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!conn) setup();
    if (size < 1 || size > 4096) return 0;
    char *sql = malloc(size);
    memcpy(sql, data + 1, size - 1);
    sql[size - 1] = 0; /* SQL is a C string: an embedded NUL ends it */
    query_request req = {
        .sql = sql, .format = (enum query_format)(data[0] % 3), .max_rows = 50, .timeout_ms = 300};
    buf out = BUF_INIT;
    query_outcome o;
    query_run_to_buf(conn, &req, &out, &o);
    if (o.code != QUERY_OK && o.code != QUERY_EREFUSED && o.code != QUERY_ETIMEDOUT) {
        fprintf(stderr, "fuzz_query: code %d for %s: %s\n", o.code, sql, o.error);
        abort();
    }
    size_t now = count_files(lake_dir);
    if (now != files_at_start) {
        fprintf(stderr, "fuzz_query: the lake changed (%zu entries, was %zu) after: %s\n", now,
                files_at_start, sql);
        abort();
    }
    buf_free(&out);
    free(sql);
    return 0;
}
