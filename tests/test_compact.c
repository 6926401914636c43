/*
 * test_compact.c - compaction in bounded memory, on a directory lake: hours of
 * large events (CDC of big documents) under a tight memory limit, from
 * `events compact` and from the server's compactor; a run killed midway; what
 * killed runs leave in the work directory; and the view's values, odd ones
 * included, the same before and after. The contract of several files per hour
 * runs on both backends in test_s3.c.
 */
#include "compact.h"
#include "harness.h"
#include "query.h"
#include "store.h"
#include "table.h"
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

/* A test's lake: a new temporary directory with the lake's HOUR_DIR made, and the hour's first
 * segment holding `first` (NULL: none). tlake_done removes it all. */
typedef struct tlake {
    char *dir;
    char lake[1200], path[1400]; /* the lake, and HOUR_DIR in it */
} tlake;

static FILE *open_segment(const char *lake, int k);

static void tlake_make(tlake *t, const char *name, const char *first)
{
    t->dir = test_tmpdir(name);
    snprintf(t->lake, sizeof t->lake, "%s/lake", t->dir);
    snprintf(t->path, sizeof t->path, "%s/" HOUR_DIR, t->lake);
    sh("mkdir -p '%s'", t->path);
    FILE *f = first ? open_segment(t->lake, 1) : NULL;
    if (f) {
        fputs(first, f);
        fclose(f);
    } else if (first) {
        test_fail(__FILE__, __LINE__, "cannot write the first segment of %s", t->lake);
    }
}

static void tlake_done(tlake *t)
{
    test_rmtree(t->dir);
    free(t->dir);
}

/* ---- an hour of large events ---------------------------------------------------------------- */

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

/* The hour's latest manifest's Parquet files, each checked in QUERY_COMPACT_ORDER; their rows in
 * *rows. */
/* The live files of the hour by the lake's table (each checked to be in QUERY_COMPACT_ORDER),
 * with their rows; -1 when there is no table or a file is unreadable. */
static int hour_files(const char *lake, long long *rows)
{
    *rows = 0;
    store *s;
    char err[512];
    if (store_open(lake, &s, err, sizeof err)) return -1;
    lake_table lt;
    lake_live lv;
    memset(&lv, 0, sizeof lv);
    int n = -1;
    if (!lake_table_load(s, &lt, err, sizeof err) && lt.t &&
        !lake_live_load(s, &lt, INT64_MIN, INT64_MAX, &lv, err, sizeof err)) {
        duckdb_database db;
        duckdb_connection con;
        if (duckdb_open(NULL, &db) == DuckDBError) return -1;
        duckdb_connect(db, &con);
        duckdb_query(con, "SET threads = 1", NULL);
        n = 0;
        for (size_t i = 0; i < lv.n && n >= 0; i++) {
            if (strncmp(lv.files[i].key, HOUR_DIR "/", strlen(HOUR_DIR) + 1)) continue;
            char path[1400], sql[2000];
            duckdb_result c;
            snprintf(path, sizeof path, "%s/%s", lake, lv.files[i].key);
            parquet_order_sql(sql, sizeof sql, path, QUERY_COMPACT_ORDER);
            if (duckdb_query(con, sql, &c) == DuckDBError || duckdb_value_int64(&c, 1, 0)) {
                test_fail(__FILE__, __LINE__, "%s: unreadable or not in QUERY_COMPACT_ORDER",
                          lv.files[i].key);
                n = -1;
            } else {
                *rows += duckdb_value_int64(&c, 0, 0);
                n++;
            }
            duckdb_destroy_result(&c);
        }
        duckdb_disconnect(&con);
        duckdb_close(&db);
    }
    lake_live_free(&lv);
    lake_table_free(&lt);
    store_close(s);
    return n;
}

/* 1 if some directory under lake/.compact holds a Parquet file (a run at work). */
static int run_wrote_a_file(const char *lake)
{
    return sh("ls '%s'/.compact/run-*/*.parquet >/dev/null 2>&1", lake) == 0;
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

TEST(compaction_killed_midway_leaves_every_event_once_and_the_next_run_cleans_up)
{
    char *dir = test_tmpdir("compact-kill");
    char lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    hour_facts f;
    REQUIRE_INT(0, put_large_hour(lake, 24 << 20, 2, &f));
    char *want = expected_totals(&f, 0), *want_raw = expected_totals(&f, 1);

    /* killed once its first file is written (at 128 MiB, an hour of a dozen chunks) */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(null, 2);
        execl(events_bin(), "events", "compact", "--lake", lake, "--after", "0", "--memory",
              "128MiB", "--lease", "1s", (char *)NULL);
        _exit(127);
    }
    int st = 0, exited = 0;
    for (int i = 0; i < 3000 && !exited && !run_wrote_a_file(lake); i++) {
        usleep(10000);
        exited = waitpid(pid, &st, WNOHANG) == pid;
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    REQUIRE(!exited); /* it had a dozen chunks to go */
    CHECK(WIFSIGNALED(st));
    CHECK(sh("ls '%s/" HOUR_DIR "'/_manifest-* >/dev/null 2>&1", lake) != 0);
    char *mid = lake_totals(lake);
    CHECK_STR(want_raw, mid);
    CHECK_INT(0, sh("test -d \"$(ls -d '%s'/.compact/run-* | head -1)\"", lake));

    /* the next run, once the killed one's lease has expired, removes what it left and compacts */
    int rc = 75;
    for (int i = 0; i < 100 && rc == 75; i++) {
        usleep(100000);
        rc = sh("'%s' compact --lake '%s' --after 0 --memory 128MiB > '%s' 2>&1", events_bin(),
                lake, out);
    }
    char *t = test_read_file(out, NULL);
    CHECK_INT(0, rc);
    CHECK_CONTAINS("compacted 1 of 1 partitions", t);
    CHECK_CONTAINS("removed 1 leftovers of killed runs", t);
    CHECK_INT(0, sh("test -z \"$(ls -A '%s'/.compact)\"", lake));
    long long rows;
    CHECK(hour_files(lake, &rows) >= 2);
    CHECK_INT(f.events, rows);
    char *after = lake_totals(lake);
    CHECK_STR(want, after);
    free(t), free(want), free(want_raw), free(mid), free(after);
    test_rmtree(dir);
    free(dir);
}

/* ---- what killed runs leave ----------------------------------------------------------------- */

/* A small hour of n events, and the leftovers of three killed runs of two layouts. */
static void put_small_hour(const char *lake, int n)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/" HOUR_DIR, lake);
    sh("mkdir -p '%s'", path);
    FILE *f = open_segment(lake, 1);
    for (int i = 0; f && i < n; i++)
        fprintf(f,
                "{\"id\":\"s%04d\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T10:%02d:00.000Z\","
                "\"durationMs\":%d}\n",
                i, i % 60, i);
    if (f) fclose(f);
}

/*
 * Leftovers: a zero-byte file (the layout before runs had directories), a run directory whose
 * lock is free (its run was killed), with a zero-byte file and a DuckDB spill file. And a
 * directory whose lock the caller holds (a run at work): returns the lock's descriptor.
 */
static int put_leftovers(const char *lake)
{
    char p[1400];
    sh("mkdir -p '%s/.compact/run-01a00000-dead' '%s/.compact/run-01a00000-live'", lake, lake);
    sh("touch '%s/.compact/01a24b91-2cc7-7880-b5ec-1db7c8eaebc1.parquet' "
       "'%s/.compact/run-01a00000-dead/lock' "
       "'%s/.compact/run-01a00000-dead/01a24b91-331f-753f-84fc-eaca3e8e037f.parquet'",
       lake, lake, lake);
    sh("head -c 4096 /dev/zero > '%s/.compact/run-01a00000-dead/duckdb_temp_storage_S4K-0.tmp'",
       lake);
    snprintf(p, sizeof p, "%s/.compact/run-01a00000-live/lock", lake);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void check_leftovers_gone(const char *lake)
{
    CHECK_INT(0, sh("test \"$(ls -A '%s'/.compact)\" = run-01a00000-live", lake));
    CHECK_INT(0, sh("test -f '%s'/.compact/run-01a00000-live/lock", lake));
}

TEST(compaction_removes_what_killed_runs_left_and_nothing_else)
{
    char *dir = test_tmpdir("compact-leftovers");
    char lake[1200], out[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(out, sizeof out, "%s/compact.out", dir);
    put_small_hour(lake, 300);
    /* an hour compacted before: its live files must stay */
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > '%s' 2>&1", events_bin(), lake, out));
    char *before = lake_totals(lake);
    CHECK_STR("300,300,44850\n", before);
    FILE *late = open_segment(lake, 2);
    if (late) {
        fputs("{\"id\":\"late\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T10:30:00.000Z\","
              "\"durationMs\":1}\n",
              late);
        fclose(late);
    }
    int held = put_leftovers(lake);
    REQUIRE(held >= 0);

    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > '%s' 2>&1", events_bin(), lake, out));
    char *t = test_read_file(out, NULL);
    CHECK_CONTAINS("compacted 1 of 1 partitions", t);
    CHECK_CONTAINS("removed 2 leftovers of killed runs", t);
    check_leftovers_gone(lake);
    char *after = lake_totals(lake);
    CHECK_STR("301,301,44851\n", after);
    long long rows;
    CHECK_INT(1, hour_files(lake, &rows));
    CHECK_INT(301, rows);
    /* the replaced files stay for --retain, the live ones are all there */
    CHECK_INT(0, sh("test $(ls '%s/" HOUR_DIR "' | grep -c jsonl) = 2", lake));
    close(held);
    free(t), free(before), free(after);
    test_rmtree(dir);
    free(dir);
}

/* ---- the server's compactor ----------------------------------------------------------------- */

static long long metric(const srv *s, const char *name)
{
    char url[128], pat[128];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    snprintf(pat, sizeof pat, "\n%s ", name);
    resp r;
    long long v = -1;
    if (!http_do("GET", url, NULL, NULL, 0, 5000, &r) && r.body.p) {
        const char *p = strstr(r.body.p, pat);
        if (p) v = atoll(p + strlen(pat));
    }
    resp_free(&r);
    return v;
}

TEST(server_compacts_large_events_within_its_memory_and_cleans_up_at_start)
{
    char *dir = test_tmpdir("compact-server");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    hour_facts f;
    REQUIRE_INT(0, put_large_hour(lake, 32 << 20, 3, &f));
    int held = put_leftovers(lake);
    REQUIRE(held >= 0);
    srv s;
    memset(&s, 0, sizeof s);
    const char *const args[] = {"--compact-every",
                                "1s",
                                "--compact-after",
                                "0",
                                "--compact-retain",
                                "1h",
                                "--compact-memory",
                                "128MiB",
                                NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    long long parts = 0;
    for (int i = 0; i < 1200 && parts < 1; i++) {
        usleep(100000);
        parts = metric(&s, "events_compaction_partitions_total");
    }
    CHECK_INT(1, parts);
    CHECK_INT(0, metric(&s, "events_compaction_failures_total"));
    CHECK(metric(&s, "events_compaction_files_written_total") >= 2);
    CHECK_INT(2, metric(&s, "events_compaction_leftovers_removed_total"));
    check_leftovers_gone(lake);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char *want = expected_totals(&f, 0), *after = lake_totals(lake);
    CHECK_STR(want, after);
    char *log = test_read_file(s.log, NULL);
    CHECK_CONTAINS("msg=\"removed compaction leftovers\"", log);
    CHECK_CONTAINS("msg=\"compacted\" partitions=1 files=", log);
    if (test_failed_now()) srv_dump_log(&s);
    close(held);
    free(want), free(after), free(log);
    test_rmtree(dir);
    free(dir);
}

/* ---- the same values ------------------------------------------------------------------------ */

/* Every column of every event, through the query engine over a directory lake. */
/* The CSV answer to sql on the lake's files (or the error), through an engine of its own. */
static char *answer_of(const char *lake, const char *sql);

static char *all_rows(const char *lake)
{
    return answer_of(lake, "SELECT * FROM events ORDER BY id NULLS FIRST, type NULLS FIRST");
}

static char *answer_of(const char *lake, const char *sql)
{
    return lake_query_csv(lake, sql, NULL);
}

TEST(compaction_keeps_every_value_of_odd_events)
{
    /* odd values in every typed field, as a lake written by another tool could hold */
    tlake t;
    tlake_make(
        &t, "compact-odd",
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
        "{\"id\":\"o10\",\"type\":\"cut\",\"dur");
    const char *lake = t.lake;
    char *raw = all_rows(lake);
    CHECK_CONTAINS("o9,ok,", raw);
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    CHECK_INT(0, sh("ls '%s/" HOUR_DIR "'/*.parquet > /dev/null 2>&1", lake));
    char *compacted = all_rows(lake);
    CHECK_STR(raw, compacted);
    free(raw), free(compacted);
    tlake_done(&t);
}

/* rpc_latency as it was, over the rows of events in [lo, hi) (no rollup): the reference. */
#define RPC_ROWS                                                                                   \
    "SELECT class, method, calls, q::VARCHAR AS q, error_rate::VARCHAR AS e FROM ("                \
    "SELECT \"do\".\"class\" AS class, method, count(*) AS calls, "                                \
    "quantile_cont(durationMs, [0.5, 0.95, 0.99]) AS q, avg(CASE WHEN success IS FALSE OR error "  \
    "IS NOT NULL THEN 1.0 ELSE 0.0 END) AS error_rate FROM events WHERE type = 'rpc.call' AND ts " \
    ">= %s AND ts < %s GROUP BY ALL) ORDER BY class NULLS LAST, method NULLS LAST"

/* A call's answer with its doubles as text, where NaN and inf are not null. */
#define RPC_TEXT(CALL)                                                                             \
    "SELECT class, method, calls, [p50, p95, p99]::VARCHAR AS q, error_rate::VARCHAR AS e "        \
    "FROM " CALL

/* Writes hours 10 to 12 of 2026-11-20 as a raw file each, their events from gen. */
static int write_hours(const tlake *t, void (*gen)(FILE *f, int h, unsigned *r), unsigned seed)
{
    unsigned r = seed;
    for (int h = 10; h <= 12; h++) {
        char path[1500];
        snprintf(path, sizeof path, "%s/events/2026/11/20/%d", t->lake, h);
        sh("mkdir -p '%s'", path);
        snprintf(path + strlen(path), sizeof path - strlen(path),
                 "/01a00000-0000-7000-8000-%012d.jsonl", h);
        FILE *f = fopen(path, "w");
        if (!f) return -1;
        gen(f, h, &r);
        fclose(f);
    }
    return 0;
}

/* Hour h's rpc.call events, with durations that repeat, are missing, null, NaN, infinite or
 * huge, with NULL class or method, some of them failed; and one other event. */
static void rpc_events(FILE *f, int h, unsigned *r)
{
    static const char *const DURATIONS[] = {
        "1",      "2",   "2", "3.25", "\"NaN\"", "\"inf\"", "null", "\"x\"",    "1e308",
        "-1e308", "0.1", "7", "-5",   "100",     "12.5",    "2",    "\"-inf\"", "0.7"};
    static const char *const GROUPS[] = {"\"do\":{\"class\":\"A\"},\"method\":\"m\"",
                                         "\"do\":{\"class\":\"A\"},\"method\":\"n\"",
                                         "\"method\":\"m\"", "\"do\":{\"class\":\"B\"}", ""};
    for (int i = 0; i < 400; i++) {
        *r = *r * 1103515245u + 12345u;
        int g = (int)((*r >> 8) % 5), d = (int)((*r >> 16) % 18);
        fprintf(f,
                "{\"id\":\"r%d-%d\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T%d:%02d:%02d.000Z\"",
                h, i, h, i % 60, (i * 7) % 60);
        if (*GROUPS[g]) fprintf(f, ",%s", GROUPS[g]);
        if (i % 11) fprintf(f, ",\"durationMs\":%s", DURATIONS[d]);
        fprintf(f, "%s}\n",
                i % 7 == 0 ? ",\"success\":false"
                : i % 13   ? ",\"success\":true"
                           : ",\"error\":\"boom\"");
    }
    fprintf(f, "{\"id\":\"other-%d\",\"type\":\"x\",\"ts\":\"2026-11-20T%d:30:00.000Z\"}\n", h, h);
}

/*
 * Three hours of rpc.call events with durations that repeat, are missing, null, NaN, infinite
 * or huge, with NULL class or method, some of them failed: rpc_latency and rpc_latency_between
 * over whole hours, parts of hours and both, before compaction (the rows) and after (whole
 * hours from the rollups compaction wrote beside each file), give the same answer as
 * quantile_cont and avg over the rows.
 */
TEST(rollups_give_rpc_latency_the_answers_of_the_rows)
{
    tlake t;
    tlake_make(&t, "compact-rollup", NULL);
    REQUIRE_INT(0, write_hours(&t, rpc_events, 11));
    static const char *const RANGES[][2] = {
        {"'-infinity'", "'infinity'"},
        {"'2026-11-20 10:00'", "'2026-11-20 13:00'"},
        {"'2026-11-20 11:00'", "'2026-11-20 12:00'"},
        {"'2026-11-20 10:30'", "'2026-11-20 12:00'"},
        {"'2026-11-20 10:15'", "'2026-11-20 12:45'"},
        {"TIMESTAMPTZ '2026-11-20 10:59:59.999999+00'", "TIMESTAMP '2026-11-20 12:00:00.000001'"},
        {"'2026-11-20 11:00'", "'2026-11-20 11:00'"},
    };
    enum { N = sizeof RANGES / sizeof *RANGES };
    char *before[N][2];
    char sql[1200];
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, RPC_TEXT("rpc_latency_between(%s, %s)"), RANGES[i][0],
                 RANGES[i][1]);
        before[i][0] = answer_of(t.lake, sql);
        snprintf(sql, sizeof sql, RPC_ROWS, RANGES[i][0], RANGES[i][1]);
        before[i][1] = answer_of(t.lake, sql);
        CHECK_STR(before[i][1], before[i][0]);
    }
    char *since_raw = answer_of(t.lake, RPC_TEXT("rpc_latency('2026-11-20 11:00')"));
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), t.lake));
    /* a rollup beside each compacted file */
    CHECK_INT(0, sh("test $(ls '%s'/events/2026/11/20/*/*.parquet | wc -l) -eq 3 && "
                    "test $(ls '%s'/events/2026/11/20/*/*.rollup | wc -l) -eq 3",
                    t.lake, t.lake));
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, RPC_TEXT("rpc_latency_between(%s, %s)"), RANGES[i][0],
                 RANGES[i][1]);
        char *after = answer_of(t.lake, sql);
        CHECK_STR(before[i][0], after);
        CHECK(strchr(before[i][0], '\n') != NULL);
        free(after);
        free(before[i][0]), free(before[i][1]);
    }
    char *since = answer_of(t.lake, RPC_TEXT("rpc_latency('2026-11-20 11:00')"));
    CHECK_STR(since_raw, since);
    CHECK_CONTAINS("nan", since); /* NaN percentiles covered, and infinite ones */
    CHECK_CONTAINS("inf", since);
    free(since), free(since_raw);
    tlake_done(&t);
}

/* event_counts as it was, over the rows of events (no rollup), from lo to hi: the reference. */
#define COUNTS_ROWS                                                                                \
    "SELECT date_trunc('minute', ts) AS minute, type, collection, count(*)::BIGINT AS n FROM "     \
    "events WHERE ts >= %s AND ts < %s GROUP BY ALL ORDER BY minute, type NULLS LAST, "            \
    "collection NULLS LAST"

/* Hour h's events of several types, in collections or none, some without a type, at the
 * edges of minutes. */
static void count_events(FILE *f, int h, unsigned *r)
{
    static const char *const KINDS[] = {"\"type\":\"collection.insert\",\"collection\":\"users\"",
                                        "\"type\":\"collection.update\",\"collection\":\"users\"",
                                        "\"type\":\"collection.delete\",\"collection\":\"orders\"",
                                        "\"type\":\"rpc.call\"",
                                        "\"type\":\"ws.message\",\"collection\":\"\"",
                                        "\"collection\":\"users\""};
    /* the first and the last microsecond of a minute, and between */
    static const char *const US[] = {"00.000000", "59.999999", "30.5"};
    for (int i = 0; i < 500; i++) {
        *r = *r * 1103515245u + 12345u;
        int kind = (int)((*r >> 8) % 6), min = (int)((*r >> 16) % 60);
        fprintf(f, "{\"id\":\"c%d-%d\",%s,\"ts\":\"2026-11-20T%d:%02d:%sZ\"}\n", h, i, KINDS[kind],
                h, min, US[i % 3]);
    }
}

/*
 * The macro fn over whole hours, parts of hours and both, and fn without _between since 11:00:
 * before compaction (the rows) the same as the reference `rows` (a query of [lo, hi), whose
 * answer holds `must`), and after (whole hours from the rollups with extension ext beside each
 * of the 3 compacted files) the same again.
 */
static void macro_answers(const tlake *t, const char *fn, const char *rows, const char *ext,
                          const char *must)
{
    static const char *const RANGES[][2] = {
        {"'-infinity'", "'infinity'"},
        {"'2026-11-20 11:00'", "'2026-11-20 12:00'"},
        {"'2026-11-20 10:30'", "'2026-11-20 12:00'"},
        {"TIMESTAMPTZ '2026-11-20 10:59:59.999999+00'", "TIMESTAMP '2026-11-20 12:00:00.000001'"},
        {"'2026-11-20 11:00'", "'2026-11-20 11:00'"},
    };
    enum { N = sizeof RANGES / sizeof *RANGES };
    char *before[N], *since[2];
    char sql[2400];
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, "SELECT * FROM %s_between(%s, %s)", fn, RANGES[i][0],
                 RANGES[i][1]);
        before[i] = answer_of(t->lake, sql);
        snprintf(sql, sizeof sql, rows, RANGES[i][0], RANGES[i][1]);
        char *want = answer_of(t->lake, sql);
        CHECK_STR(want, before[i]);
        free(want);
    }
    CHECK_CONTAINS(must, before[0]);
    snprintf(sql, sizeof sql, "SELECT * FROM %s('2026-11-20 11:00')", fn);
    since[0] = answer_of(t->lake, sql);
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), t->lake));
    CHECK_INT(0, sh("test $(ls '%s'/events/2026/11/20/*/*.%s | wc -l) -eq 3", t->lake, ext));
    for (int i = 0; i < N; i++) {
        snprintf(sql, sizeof sql, "SELECT * FROM %s_between(%s, %s)", fn, RANGES[i][0],
                 RANGES[i][1]);
        char *after = answer_of(t->lake, sql);
        CHECK_STR(before[i], after);
        free(after);
        free(before[i]);
    }
    snprintf(sql, sizeof sql, "SELECT * FROM %s('2026-11-20 11:00')", fn);
    since[1] = answer_of(t->lake, sql);
    CHECK_STR(since[0], since[1]);
    free(since[0]), free(since[1]);
}

/* macro_answers on a new lake (dir) of three hours of events from gen. */
static void rollup_macro_answers(const char *dir, void (*gen)(FILE *f, int h, unsigned *r),
                                 unsigned seed, const char *fn, const char *rows, const char *ext,
                                 const char *must)
{
    tlake t;
    tlake_make(&t, dir, NULL);
    if (write_hours(&t, gen, seed))
        test_fail(__FILE__, __LINE__, "cannot write the hours of %s", dir);
    else
        macro_answers(&t, fn, rows, ext, must);
    tlake_done(&t);
}

/* event_counts and event_counts_between: from the rows and from the .counts rollups, the same
 * answers as counting the rows. */
TEST(rollups_give_event_counts_the_answers_of_the_rows)
{
    rollup_macro_answers("compact-counts", count_events, 7, "event_counts", COUNTS_ROWS, "counts",
                         "users");
}

/* objects as it was, over the rows of events (no rollup): the reference, written otherwise
 * (first() in an order, for the latest values). */
#define OBJECTS_ROWS                                                                               \
    "SELECT \"do\".\"class\" AS class, \"do\".id AS id, "                                          \
    "first(\"do\".\"name\" ORDER BY ts DESC, \"do\".\"name\" DESC) "                               \
    "FILTER (\"do\".\"name\" IS NOT NULL) AS name, "                                               \
    "first(\"do\".colo ORDER BY ts DESC, \"do\".colo DESC) FILTER (\"do\".colo IS NOT NULL) AS "   \
    "colo, max(ts) AS last_seen, "                                                                 \
    "first(type ORDER BY ts DESC, type DESC) FILTER (type LIKE 'do.%%') AS lifecycle, "            \
    "max(ts) FILTER (type LIKE 'do.%%') AS lifecycle_at, "                                         \
    "count(*) FILTER (type = 'ws.connect') AS connects, "                                          \
    "count(*) FILTER (type = 'ws.message') AS messages, "                                          \
    "count(*) FILTER (type IN ('ws.close', 'ws.error')) AS closes, count(*) AS events "            \
    "FROM events WHERE \"do\".id IS NOT NULL AND ts >= %s AND ts < %s GROUP BY ALL "               \
    "ORDER BY last_seen DESC, class NULLS LAST, id"

/* Appends hour h's events of emitting objects (and some without one) to f. */
static void object_events(FILE *f, int h, unsigned *r)
{
    static const char *const TYPES[] = {"do.alarm", "do.start", "ws.connect", "ws.message",
                                        "ws.close", "ws.error", "rpc.call",   "x"};
    static const char *const CLASSES[] = {"\"class\":\"Room\",", "\"class\":\"User\",", ""};
    for (int i = 0; i < 300; i++) {
        *r = *r * 1103515245u + 12345u;
        int k = (int)((*r >> 8) % 9), t = (int)((*r >> 12) % 8), sec = (int)((*r >> 16) % 40);
        fprintf(f, "{\"id\":\"o%d-%d\",\"type\":\"%s\",\"ts\":\"2026-11-20T%d:%02d:%02dZ\"", h, i,
                TYPES[t], h, i % 60, sec);
        if (k < 8) { /* a ninth of them from no object */
            fprintf(f, ",\"do\":{%s\"id\":\"o%d\"", CLASSES[k % 3], k);
            if (i % 4) fprintf(f, ",\"name\":\"n%d-%d\"", k, (i + h) % 5); /* names change */
            if (i % 3) fprintf(f, ",\"colo\":\"c%d\"", (int)(*r >> 20) % 3);
            fputc('}', f);
        }
        fputs("}\n", f);
    }
}

/* objects and objects_between, on objects whose names and colos change and events at the
 * same second: from the rows and from the .objects rollups, the same answers as the rows. */
TEST(rollups_give_objects_the_answers_of_the_rows)
{
    rollup_macro_answers("compact-objects", object_events, 5, "objects", OBJECTS_ROWS, "objects",
                         "Room");
}

TEST(compaction_cleaning_leaves_a_run_directory_being_made)
{
    /* a run makes .new-{uuid}, locks it and renames it: another server's cleaning in between
     * must not take it; one a minute old and unlocked is a run killed in that moment */
    char *dir = test_tmpdir("compact-new");
    CHECK_INT(0, sh("mkdir -p '%s/.new-fresh' '%s/.new-old' && touch -d '2 minutes ago' "
                    "'%s/.new-old'",
                    dir, dir, dir));
    uint64_t removed = 0;
    char err[256];
    CHECK_INT(0, compact_clean(dir, &removed, err, sizeof err));
    CHECK_INT(1, removed);
    CHECK_INT(0, sh("test \"$(ls -A '%s')\" = .new-fresh", dir));
    test_rmtree(dir);
    free(dir);
}

/* The quarantine is not compaction's: its files stay as they are, never read into Parquet. */
TEST(compaction_leaves_the_quarantine_alone)
{
    char *dir = test_tmpdir("compact-quarantine");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    sh("mkdir -p '%s/" HOUR_DIR "' '%s/rejected/2026/11/20/10'", lake, lake);
    FILE *f = open_segment(lake, 1);
    REQUIRE(f);
    fputs("{\"id\":\"e1\",\"type\":\"ok\",\"ts\":\"2026-11-20T10:00:00.000Z\"}\n", f);
    fclose(f);
    const char *q =
        "{\"id\":\"01KB5Q9X3C6W8M2N4P7R1T0VYZ\",\"receivedAt\":\"2026-11-20T10:00:00.000Z\","
        "\"requestId\":\"r\",\"index\":0,\"class\":\"type\",\"reason\":\"x\","
        "\"token\":null,\"route\":\"/ingest\",\"raw\":\"{}\"}\n";
    char path[1400];
    snprintf(path, sizeof path,
             "%s/rejected/2026/11/20/10/01a2c000-0000-7000-8000-000000000001.jsonl", lake);
    FILE *r = fopen(path, "w");
    REQUIRE(r);
    fputs(q, r);
    fclose(r);
    CHECK_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    CHECK_INT(0, sh("ls '%s/" HOUR_DIR "'/*.parquet > /dev/null 2>&1", lake));
    char *kept = test_read_file(path, NULL);
    CHECK_STR(q, kept);
    free(kept);
    CHECK_INT(0, sh("test \"$(find '%s/rejected' -type f | wc -l)\" -eq 1", lake));
    test_rmtree(dir);
    free(dir);
}

/* ---- what a compacted file's columns show ------------------------------------------------- */

/* The answer of one statement on a DuckDB of its own (no lake), as CSV-ish text: a plain reader. */
static char *plain_read(const char *sql)
{
    duckdb_database db;
    duckdb_connection c;
    duckdb_result r;
    if (duckdb_open(NULL, &db) == DuckDBError) return strdup("cannot open DuckDB");
    duckdb_connect(db, &c);
    buf out = BUF_INIT;
    duckdb_query(c, "SET TimeZone = 'UTC'", NULL);
    if (duckdb_query(c, sql, &r) == DuckDBError) {
        buf_printf(&out, "ERROR %s", duckdb_result_error(&r));
    } else {
        for (idx_t row = 0; row < duckdb_row_count(&r); row++) {
            for (idx_t col = 0; col < duckdb_column_count(&r); col++) {
                char *v = duckdb_value_varchar(&r, col, row);
                buf_printf(&out, "%s%s", col ? "|" : "", v ? v : "NULL");
                duckdb_free(v);
            }
            buf_putc(&out, '\n');
        }
    }
    duckdb_destroy_result(&r);
    duckdb_disconnect(&c);
    duckdb_close(&db);
    char *t = strdup(buf_cstr(&out) ? out.p : "");
    buf_free(&out);
    return t;
}

/* The original clients' shapes: a top-level `event` (track), do_id and do_class beside `do`. */
static const char ORIGINAL_SHAPES[] =
    "{\"id\":\"s1\",\"type\":\"track\",\"ts\":\"2026-11-20T10:00:00.000Z\","
    "\"receivedAt\":\"2026-11-20T10:00:00.100Z\",\"event\":\"button_click\","
    "\"properties\":{\"plan\":\"pro\"},\"userId\":\"u1\",\"anonymousId\":\"a1\"}\n"
    "{\"id\":\"s2\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T10:00:01.000Z\","
    "\"receivedAt\":\"2026-11-20T10:00:01.100Z\",\"do_id\":\"top-level\",\"do_class\":\"Top\","
    "\"do\":{\"id\":\"room-1\",\"class\":\"Room\"},\"method\":\"join\",\"durationMs\":2.5,"
    "\"success\":true}\n"
    "{\"id\":\"s3\",\"type\":\"page\",\"ts\":\"2026-11-20T10:00:02.000Z\","
    "\"receivedAt\":\"2026-11-20T10:00:02.100Z\",\"event\":{\"name\":\"nested\"},"
    "\"do_name\":null}\n";

TEST(compacted_files_hide_no_member_an_event_carries)
{
    tlake t;
    tlake_make(&t, "compact-fidelity", ORIGINAL_SHAPES);
    const char *lake = t.lake, *path = t.path;
    char *raw = all_rows(lake);
    CHECK_CONTAINS("button_click", raw);
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    char *compacted = all_rows(lake);
    CHECK_STR(raw, compacted);
    free(raw), free(compacted);

    /* what any Parquet reader sees: the table's columns, none named as a member it does not
     * hold; the members JSON Lines readers see as columns are in _events_json as sent */
    char sql[2048];
    snprintf(
        sql, sizeof sql,
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM (DESCRIBE SELECT * FROM "
        "read_parquet('%s/*.parquet'))",
        path);
    char *cols = plain_read(sql);
    CHECK_STR("_events_json,bookmark,collection,do,doc,docId,durationMs,error,id,method,prev,"
              "receivedAt,success,ts,type\n",
              cols);
    free(cols);
    snprintf(sql, sizeof sql,
             "SELECT p.id, p.ts = j.ts, p.\"do\".id IS NOT DISTINCT FROM j.\"do\".id, "
             "(p._events_json::JSON->'event') IS NOT DISTINCT FROM j.\"event\", "
             "(p._events_json::JSON->>'do_id') IS NOT DISTINCT FROM j.do_id, "
             "(p._events_json::JSON->>'userId') IS NOT DISTINCT FROM j.userId "
             "FROM read_parquet('%s/*.parquet') p JOIN read_json('%s/*.jsonl', format = "
             "'newline_delimited', union_by_name = true, columns = {id: 'VARCHAR', ts: "
             "'TIMESTAMPTZ', \"do\": 'STRUCT(id VARCHAR)', \"event\": 'JSON', do_id: 'VARCHAR', "
             "userId: 'VARCHAR'}) j USING (id) ORDER BY 1",
             path, path);
    char *same = plain_read(sql);
    CHECK_STR("s1|true|true|true|true|true\ns2|true|true|true|true|true\n"
              "s3|true|true|true|true|true\n",
              same);
    free(same);
    /* ts is a UTC instant (Iceberg's timestamptz), with the field ids Iceberg readers use */
    snprintf(sql, sizeof sql,
             "SELECT name, field_id, logical_type FROM parquet_schema('%s/*.parquet') WHERE name "
             "IN ('ts', '_events_json', 'class') ORDER BY 2",
             path);
    char *schema = plain_read(sql);
    CHECK_CONTAINS("ts|3|TimestampType(isAdjustedToUTC=1", schema);
    CHECK_CONTAINS("class|8|", schema);
    CHECK_CONTAINS("_events_json|19|", schema);
    free(schema);
    tlake_done(&t);
}

/*
 * A lake compacted before the table's layout (manifest version 1: do_id, do_name, do_class,
 * do_colo and the whole event as `event`) reads the same, and its hour is written again in
 * the new layout when late events come.
 */
TEST(compacted_files_of_the_first_layout_read_the_same_and_are_rewritten)
{
    tlake t;
    tlake_make(&t, "compact-layout1", ORIGINAL_SHAPES);
    const char *lake = t.lake, *path = t.path;
    char *raw = all_rows(lake);
    /* the first layout, as compaction wrote it then */
    char sql[4096];
    snprintf(sql, sizeof sql,
             "COPY (SELECT json->>'id' AS id, json->>'type' AS type, TRY_CAST(json->>'ts' AS "
             "TIMESTAMP) AS ts, TRY_CAST(json->>'receivedAt' AS TIMESTAMP) AS receivedAt, "
             "json_transform(json->'do', '{\"id\":\"VARCHAR\",\"name\":\"VARCHAR\","
             "\"class\":\"VARCHAR\",\"colo\":\"VARCHAR\"}') AS \"do\", json->>'$.do.id' AS do_id, "
             "json->>'$.do.name' AS do_name, json->>'$.do.class' AS do_class, json->>'$.do.colo' "
             "AS do_colo, json->>'method' AS method, TRY_CAST(json->>'durationMs' AS DOUBLE) AS "
             "durationMs, TRY_CAST(json->>'success' AS BOOLEAN) AS success, json->>'error' AS "
             "error, json->>'collection' AS collection, json->>'docId' AS docId, "
             "nullif(json->'doc', 'null'::JSON) AS doc, nullif(json->'prev', 'null'::JSON) AS "
             "prev, json->>'bookmark' AS bookmark, json AS event FROM read_ndjson_objects('%s/"
             "*.jsonl')) TO '%s/01a00000-0000-7000-8000-000000000009.parquet' (FORMAT parquet)",
             path, path);
    char *copied = plain_read(sql);
    CHECK_STR("3\n", copied);
    free(copied);
    sh("printf '%%s' '{\"version\":1,\"seq\":1,\"parquet\":[\"01a00000-0000-7000-8000-"
       "000000000009.parquet\"],\"replaced\":{\"01a00000-0000-7000-8000-000000000001.jsonl\":1},"
       "\"rows\":3,\"createdAt\":1}' > '%s/_manifest-0000000001.json'",
       path);
    char *old = all_rows(lake);
    CHECK_STR(raw, old);
    free(old);

    /* a late event: the hour is compacted again, its old file written in the new layout */
    FILE *f = open_segment(lake, 2);
    REQUIRE(f);
    fputs("{\"id\":\"s4\",\"type\":\"late\",\"ts\":\"2026-11-20T10:00:03.000Z\","
          "\"receivedAt\":\"2026-11-20T11:30:00.000Z\",\"event\":\"late_click\"}\n",
          f);
    fclose(f);
    sh("rm -f '%s/01a00000-0000-7000-8000-000000000001.jsonl'", path); /* retained no longer */
    char *before = all_rows(lake);
    CHECK_CONTAINS("late_click", before);
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    long long in_table = 0;
    CHECK_INT(1, hour_files(lake, &in_table));
    CHECK_INT(4, in_table);
    char *after = all_rows(lake);
    CHECK_STR(before, after);
    free(before), free(after);
    snprintf(sql, sizeof sql,
             "SELECT count(*), count(DISTINCT filename) FROM read_parquet('%s/*.parquet', "
             "filename = true, union_by_name = true) WHERE _events_json IS NOT NULL",
             path);
    char *rows = plain_read(sql);
    CHECK_STR("4|1\n", rows);
    free(rows);
    free(raw);
    tlake_done(&t);
}

/*
 * The table lag: an hour not yet due gets each batch of sealed segments appended as a file of
 * its own (the files before kept), a retry that slipped past dedup still once; once due, its
 * small files are rewritten into one. Every answer the same as the raw lake's.
 */
TEST(open_hours_are_appended_and_rewritten_once_due)
{
    tlake t;
    tlake_make(&t, "compact-append", NULL);
    const char *lake = t.lake;
    const char *later = "--after 1000000h --open-hours"; /* 2026-11-20 is not due for years */
    long long rows = 0;
    for (int k = 1; k <= 3; k++) {
        FILE *f = open_segment(lake, k);
        REQUIRE(f);
        for (int i = 0; i < 20; i++)
            fprintf(f,
                    "{\"id\":\"k%d-%d\",\"type\":\"a.b\",\"ts\":\"2026-11-20T10:%02d:00.000Z\","
                    "\"receivedAt\":\"2026-11-20T10:%02d:00.500Z\"}\n",
                    k, i, i, i);
        fflush(f);
        char *raw = all_rows(lake);
        if (k == 3) /* a retry of an event of the first batch, received later: it loses */
            fputs("{\"id\":\"k1-0\",\"type\":\"a.b\",\"ts\":\"2026-11-20T10:00:00.000Z\","
                  "\"receivedAt\":\"2026-11-20T11:00:00.000Z\"}\n",
                  f);
        fclose(f);
        REQUIRE_INT(0,
                    sh("'%s' compact --lake '%s' %s > /dev/null 2>&1", events_bin(), lake, later));
        char *appended = all_rows(lake);
        CHECK_STR(raw, appended);
        free(raw), free(appended);
        CHECK_INT(k, hour_files(lake, &rows));
        CHECK_INT(20 * k, rows);
    }
    char *before = all_rows(lake);
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    char *after = all_rows(lake);
    CHECK_STR(before, after);
    free(before), free(after);
    CHECK_INT(1, hour_files(lake, &rows));
    CHECK_INT(60, rows);
    tlake_done(&t);
}

/*
 * A run that does not sweep looks at the hours of the pending index (and the recent ones): a
 * segment without a marker (sealed by a server that crashed before it, or put by hand) waits
 * for a sweep; a marker is deleted once its segment is folded in, or when it never came.
 */
TEST(pending_runs_look_only_at_the_hours_the_index_names)
{
    tlake t;
    tlake_make(&t, "compact-pending",
               "{\"id\":\"a1\",\"type\":\"a.b\",\"ts\":\"2026-11-20T10:00:00.000Z\"}\n");
    const char *lake = t.lake, *dir = t.dir;
    sh("mkdir -p '%s/events/2026/11/21/10' '%s/pending/2026/11/20/10' '%s/pending/2026/11/22/10'",
       lake, lake, lake);
    sh(": > '%s/pending/2026/11/20/10/01a00000-0000-7000-8000-000000000001.jsonl'", lake);
    sh("printf '%%s\\n' '{\"id\":\"b1\",\"type\":\"a.b\",\"ts\":\"2026-11-21T10:00:00.000Z\"}' > "
       "'%s/events/2026/11/21/10/01a00000-0000-7000-8000-000000000002.jsonl'",
       lake);
    /* a marker whose segment never came, a day old */
    sh(": > '%s/pending/2026/11/22/10/01a00000-0000-7000-8000-000000000003.jsonl' && touch -d "
       "'2 days ago' '%s/pending/2026/11/22/10/01a00000-0000-7000-8000-000000000003.jsonl'",
       lake, lake);
    char *raw = all_rows(lake);
    /* the first run of a lake without a table sweeps; the table then exists */
    sh("mkdir -p '%s/x' && mv '%s/events/2026/11/21' '%s/x/'", dir, lake, dir);
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    sh("mv '%s/x/21' '%s/events/2026/11/'", dir, lake);
    CHECK_INT(0,
              sh("test ! -e '%s/pending/2026/11/20/10/01a00000-0000-7000-8000-000000000001.jsonl'",
                 lake));
    /* an index run: the unmarked hour is not looked at, the stale marker goes */
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 --pending-only > /dev/null 2>&1",
                      events_bin(), lake));
    CHECK_INT(0,
              sh("test ! -e '%s/pending/2026/11/22/10/01a00000-0000-7000-8000-000000000003.jsonl'",
                 lake));
    CHECK(sh("ls '%s/events/2026/11/21/10/'*.parquet > /dev/null 2>&1", lake) != 0);
    char *mid = all_rows(lake);
    CHECK_STR(raw, mid);
    /* a sweep finds it */
    REQUIRE_INT(0, sh("'%s' compact --lake '%s' --after 0 > /dev/null 2>&1", events_bin(), lake));
    CHECK_INT(0, sh("ls '%s/events/2026/11/21/10/'*.parquet > /dev/null 2>&1", lake));
    char *swept = all_rows(lake);
    CHECK_STR(raw, swept);
    free(raw), free(mid), free(swept);
    tlake_done(&t);
}
