/*
 * test_compact.c - compaction in bounded memory, on a directory lake: hours of
 * large events (CDC of big documents) under a tight memory limit, and the
 * view's values, odd ones included, the same before and after. The contract
 * of several files per hour runs on both backends in test_s3.c.
 */
#include "compact.h"
#include "harness.h"
#include "query.h"
#include "store.h"
#include "test.h"

#include <duckdb.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOUR_DIR "events/2026/11/20/10"

/* ---- an hour of large events ------------------------------------------------------------------
 */

typedef struct hour_facts {
    long long events;   /* distinct */
    long long duration; /* sum of durationMs over them */
    long long lines;    /* events and retries: what the raw files hold */
    long long lines_duration;
    long long bytes;
} hour_facts;

static uint64_t rnd_state;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rnd_state >> 33) % n);
}

static void put_text_of(FILE *f, size_t n)
{
    static const char *const words[] = {"order ", "shipped ", "customer ", "address ", "invoice ",
                                        "total ", "review ",  "draft ",    "section ", "value "};
    for (size_t k = 0; k < n;) {
        const char *w = words[rnd(10)];
        fputs(w, f);
        k += strlen(w);
    }
}

static FILE *open_segment(const char *lake, int k)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/" HOUR_DIR "/01a00000-0000-7000-8000-%012d.jsonl", lake, k);
    return fopen(path, "w");
}

/*
 * About `bytes` of collection.update events of 100-250 KB (doc and prev halves of that), ts at
 * random in the hour, in segments of about 16 MB; every 10th event sent again later (a retry
 * through another server: same id, a later receivedAt), in a segment of its own.
 */
static int put_large_hour(const char *lake, long long bytes, uint64_t seed, hour_facts *f)
{
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/" HOUR_DIR, lake);
    if (sh("mkdir -p '%s'", dir)) return -1;
    rnd_state = seed;
    memset(f, 0, sizeof *f);
    int seg = 0;
    FILE *out = open_segment(lake, seg++), *retries = open_segment(lake, 999);
    long long in_seg = 0;
    if (!out || !retries) return -1;
    for (int i = 0; f->bytes < bytes; i++) {
        size_t size = 100 * 1024 + rnd(150 * 1024);
        int ts = (int)rnd(3600000);
        for (int copy = 0; copy < 1 + (i % 10 == 9); copy++) {
            FILE *to = copy ? retries : out;
            long before = ftell(to);
            fprintf(
                to,
                "{\"id\":\"big-%05d\",\"type\":\"collection.update\",\"ts\":\"2026-11-20T10:%02d:"
                "%02d.%03dZ\",\"receivedAt\":\"2026-11-20T11:%02d:00.000Z\",\"do\":{\"id\":"
                "\"store-1\",\"class\":\"Store\"},\"collection\":\"docs\",\"docId\":\"d%d\","
                "\"durationMs\":%d,\"doc\":{\"rev\":%d,\"body\":\"",
                i, ts / 60000, ts / 1000 % 60, ts % 1000, copy, i % 97, i, i);
            put_text_of(to, size / 2);
            fprintf(to, "\"},\"prev\":{\"rev\":%d,\"body\":\"", i - 1);
            put_text_of(to, size / 2);
            fputs("\"}}\n", to);
            long n = ftell(to) - before;
            f->bytes += n;
            f->lines++;
            f->lines_duration += i;
            if (!copy) in_seg += n;
        }
        f->events++;
        f->duration += i;
        if (in_seg > (16 << 20)) {
            if (fclose(out)) return -1;
            out = open_segment(lake, seg++);
            in_seg = 0;
            if (!out) return -1;
        }
    }
    return fclose(out) | fclose(retries);
}

/* `events query --lake` of count(*), count(DISTINCT id), sum(durationMs), as CSV's data line. */
static char *lake_totals(const char *lake)
{
    char out[1300];
    snprintf(out, sizeof out, "%s.totals", lake);
    if (sh("'%s' query --lake '%s' --format csv 'SELECT count(*), count(DISTINCT id), "
           "sum(durationMs) FROM events' > '%s' 2>&1",
           events_bin(), lake, out))
        return test_read_file(out, NULL);
    char *t = test_read_file(out, NULL);
    const char *nl = t ? strchr(t, '\n') : NULL;
    char *line = strdup(nl ? nl + 1 : "");
    free(t);
    return line;
}

/* What lake_totals gives for the hour compacted (one row per id), or raw (retries twice). */
static char *expected_totals(const hour_facts *f, int raw)
{
    char *t = malloc(80);
    snprintf(t, 80, "%lld,%lld,%lld\n", raw ? f->lines : f->events, f->events,
             raw ? f->lines_duration : f->duration);
    return t;
}

/* The hour's latest manifest's Parquet files, each checked sorted by ts; their rows in *rows. */
static int hour_files(const char *lake, long long *rows)
{
    char path[1400], sql[2000];
    *rows = 0;
    snprintf(path, sizeof path, "ls '%s/" HOUR_DIR "'/_manifest-* | tail -1", lake);
    FILE *p = popen(path, "r");
    char mpath[1400] = "";
    if (!p || !fgets(mpath, sizeof mpath, p)) {
        if (p) pclose(p);
        return -1;
    }
    pclose(p);
    mpath[strcspn(mpath, "\n")] = 0;
    duckdb_database db;
    duckdb_connection con;
    duckdb_result r;
    if (duckdb_open(NULL, &db) == DuckDBError) return -1;
    duckdb_connect(db, &con);
    duckdb_query(con, "SET threads = 1", NULL);
    snprintf(sql, sizeof sql,
             "SELECT unnest(parquet) FROM read_json('%s', columns = {parquet: 'VARCHAR[]'})",
             mpath);
    int n = -1;
    if (duckdb_query(con, sql, &r) == DuckDBSuccess) {
        n = (int)duckdb_row_count(&r);
        for (int i = 0; i < n; i++) {
            char *name = duckdb_value_varchar(&r, 0, (idx_t)i);
            duckdb_result c;
            /* one thread and no ORDER BY: the rows in the file's order */
            snprintf(sql, sizeof sql,
                     "SELECT count(*), count(*) FILTER (WHERE ts < prev) FROM (SELECT ts, lag(ts) "
                     "OVER () AS prev FROM read_parquet('%s/" HOUR_DIR "/%s'))",
                     lake, name);
            if (duckdb_query(con, sql, &c) == DuckDBError || duckdb_value_int64(&c, 1, 0)) {
                test_fail(__FILE__, __LINE__, "%s: unreadable or not sorted by ts", name);
                n = -1;
            }
            *rows += duckdb_value_int64(&c, 0, 0);
            duckdb_destroy_result(&c);
            duckdb_free(name);
            if (n < 0) break;
        }
    }
    duckdb_destroy_result(&r);
    duckdb_disconnect(&con);
    duckdb_close(&db);
    return n;
}

TEST(compaction_of_large_events_fits_a_small_memory_limit)
{
    /* 953 MB for an hour of 24 MB before: one statement over the whole hour */
    char *dir = test_tmpdir("compact-large");
    char lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    hour_facts f;
    REQUIRE_INT(0, put_large_hour(lake, 64 << 20, 1, &f));
    char *want = expected_totals(&f, 0), *want_raw = expected_totals(&f, 1);
    char *raw = lake_totals(lake);
    CHECK_STR(want_raw, raw);
    int rc = sh("'%s' compact --lake '%s' --after 0 --memory 256MiB > '%s' 2>&1", events_bin(),
                lake, out);
    char *t = test_read_file(out, NULL);
    CHECK_INT(0, rc);
    CHECK_CONTAINS("compacted 1 of 1 partitions", t);
    long long rows;
    int files = hour_files(lake, &rows);
    CHECK(files >= 2); /* an hour larger than a chunk: several files */
    CHECK_INT(f.events, rows);
    char *after = lake_totals(lake);
    CHECK_STR(want, after);
    if (test_failed_now()) fprintf(stderr, "%s\n", t ? t : "");
    free(t), free(want), free(want_raw), free(raw), free(after);
    test_rmtree(dir);
    free(dir);
}

/* ---- the same values ----------------------------------------------------------------------------
 */

/* Every column of every event, through the query engine over a directory lake. */
static char *all_rows(const char *lake)
{
    store *s;
    char err[512];
    if (store_open(lake, &s, err, sizeof err)) return strdup(err);
    query_config qc = {.store = s, .threads = 1};
    query_engine *e;
    if (query_engine_open(&qc, &e, err, sizeof err)) {
        store_close(s);
        return strdup(err);
    }
    query_conn *c = query_conn_new(e, err, sizeof err);
    query_request rq = {"SELECT * FROM events ORDER BY id NULLS FIRST, type NULLS FIRST", NULL,
                        QUERY_CSV, 0, 0};
    buf out = BUF_INIT;
    query_outcome o;
    query_run_to_buf(c, &rq, &out, &o);
    char *t = strdup(o.status == 200 ? buf_cstr(&out) : o.error);
    buf_free(&out);
    query_conn_free(c);
    query_engine_close(e);
    store_close(s);
    return t;
}

TEST(compaction_keeps_every_value_of_odd_events)
{
    char *dir = test_tmpdir("compact-odd");
    char lake[1200], path[1400];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(path, sizeof path, "%s/" HOUR_DIR, lake);
    sh("mkdir -p '%s'", path);
    FILE *f = open_segment(lake, 1);
    REQUIRE(f);
    /* odd values in every typed field, as a lake written by another tool could hold */
    fputs(
        "{\"id\":\"o1\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T10:00:00.000Z\","
        "\"durationMs\":\"fast\",\"success\":\"maybe\",\"do\":\"not an object\","
        "\"error\":{\"code\":7}}\n"
        "{\"id\":\"o2\",\"type\":\"rpc.call\",\"ts\":\"not a time\",\"durationMs\":\"12.5\","
        "\"success\":\"true\",\"do\":{\"id\":\"x\",\"class\":7,\"extra\":[1]},\"error\":\"boom\"}\n"
        "{\"id\":\"o3\",\"type\":[\"x\"],\"ts\":1795136400000,\"durationMs\":[1],\"success\":1,"
        "\"do\":null,\"doc\":[1,2],\"prev\":\"text\",\"bookmark\":12}\n"
        "{\"id\":\"o4\",\"type\":\"collection.update\",\"ts\":\"2026-11-20T10:00:01.000Z\","
        "\"collection\":\"c\",\"docId\":\"d\",\"doc\":{\"a\":{\"b\":null}},\"prev\":null,"
        "\"bookmark\":\"0000000000000001\",\"receivedAt\":\"2026-11-20T10:00:01.500Z\"}\n"
        "{\"id\":\"o5\",\"type\":\"x\",\"durationMs\":1e999,\"success\":false,\"doc\":5,"
        "\"prev\":{}}\n"
        "{\"id\":\"o6\",\"type\":\"x\",\"durationMs\":null,\"success\":null,\"error\":null,"
        "\"collection\":3}\n"
        "{}\n[1,2]\n\"text\"\n"
        "{\"id\":\"o\\u0037\",\"type\":\"esc\\\"aped\",\"ts\":\"2026-11-20T10:00:01Z\","
        "\"durationMs\":1.50, \"doc\" : { \"x\" : 1 } ,\"do\":{\"id\":\"a\",\"id\":\"b\"}}\n"
        "{\"id\":12,\"type\":true,\"durationMs\":-0.0,\"error\":[1,\"a\"]}\n"
        "{\"id\":null,\"type\":\"no id\",\"ts\":\"2026-11-20T10:59:59.999Z\"}\n"
        "{\"id\":\"o9\",\"type\":\"ok\",\"ts\":\"2026-11-20T10:30:00.000Z\",\"do\":{\"id\":\"r\","
        "\"name\":\"n\",\"class\":\"Room\",\"colo\":\"FRA\"},\"method\":\"m\",\"durationMs\":3,"
        "\"success\":true}\n"
        "{\"id\":\"o10\",\"type\":\"cut\",\"dur",
        f);
    fclose(f);
    char *raw = all_rows(lake);
    CHECK_CONTAINS("o9,ok,", raw);
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    CHECK_INT(0, sh("ls '%s/" HOUR_DIR "'/*.parquet > /dev/null 2>&1", lake));
    char *compacted = all_rows(lake);
    CHECK_STR(raw, compacted);
    free(raw), free(compacted);
    test_rmtree(dir);
    free(dir);
}
