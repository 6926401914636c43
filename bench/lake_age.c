/*
 * lake_age.c - what a compaction run and a one-hour query cost on a lake of many
 * hours: store requests by kind and time, through a store that counts them.
 *
 * Builds (once per URL: a lake with a table is reused) a lake of HOURS hours
 * ending a week ago, one small Parquet file per hour (the same bytes for every
 * hour: what is measured is finding files, not reading them), committed to the
 * lake's Iceberg table a month at a time, then puts one new segment and its
 * pending marker into the current hour, and measures, RUNS times each:
 *
 *   sweep     a compaction run that lists the whole lake (what every run did
 *             before the pending index, and what a server's first run does)
 *   pending   a compaction run of the pending index (the server's other runs)
 *   query     SELECT count(*) of one old hour, through a query engine on the
 *             lake (its table, its hour's listing, its file through the cache)
 *
 * Each prints: name, ms, and the requests: list get head put del.
 *
 * Usage: lake_age URL WORK_DIR [HOURS [RUNS]]   (HOURS default 17520: two years)
 */
#include "compact.h"
#include "evrand.h"
#include "evtime.h"
#include "iceberg.h"
#include "layout.h"
#include "query.h"
#include "table.h"

#include <duckdb.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- a store that counts the requests it passes on ---------------------------------------- */

enum { C_LIST, C_GET, C_HEAD, C_PUT, C_DEL, C_N };

typedef struct counting {
    store base;
    store *in;
    _Atomic uint64_t n[C_N];
} counting;

#define IN(s)       (((counting *)(s))->in)
#define COUNT(s, k) atomic_fetch_add(&((counting *)(s))->n[k], 1)

static int c_put(store *s, const char *key, const void *d, size_t n, int flags, char *err,
                 size_t errlen)
{
    COUNT(s, C_PUT);
    return IN(s)->ops->put(IN(s), key, d, n, flags, err, errlen);
}
static int c_put_file(store *s, const char *key, const char *path, int flags, char *err,
                      size_t errlen)
{
    COUNT(s, C_PUT);
    return IN(s)->ops->put_file(IN(s), key, path, flags, err, errlen);
}
static int c_get(store *s, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
                 size_t errlen)
{
    COUNT(s, C_GET);
    return IN(s)->ops->get(IN(s), key, off, len, out, err, errlen);
}
static int c_get_file(store *s, const char *key, const char *path, char *err, size_t errlen)
{
    COUNT(s, C_GET);
    return IN(s)->ops->get_file(IN(s), key, path, err, errlen);
}
static int c_head(store *s, const char *key, store_entry *e, char *err, size_t errlen)
{
    COUNT(s, C_HEAD);
    return IN(s)->ops->head(IN(s), key, e, err, errlen);
}
/* A listing is one request per page of 1000 keys on S3: counted per 1000 entries seen. */
typedef struct pages {
    store *s;
    store_list_fn fn;
    void *ud;
    uint64_t seen;
} pages;
static int c_on_entry(const store_entry *e, void *ud)
{
    pages *p = ud;
    if (p->seen++ % 1000 == 999) COUNT(p->s, C_LIST);
    return p->fn(e, p->ud);
}
static int c_list(store *s, const char *prefix, store_list_fn fn, void *ud, char *err,
                  size_t errlen)
{
    COUNT(s, C_LIST);
    pages p = {s, fn, ud, 0};
    return IN(s)->ops->list(IN(s), prefix, c_on_entry, &p, err, errlen);
}
static int c_del(store *s, const char *key, char *err, size_t errlen)
{
    COUNT(s, C_DEL);
    return IN(s)->ops->del(IN(s), key, err, errlen);
}
static const char *c_root(store *s)
{
    return IN(s)->ops->root(IN(s));
}
static void c_close(store *s)
{
    (void)s;
}
static const store_ops COUNTING_OPS = {c_put,  c_put_file, c_get,  c_get_file, c_head,
                                       c_list, c_del,      c_root, c_close};

static void counts_take(counting *c, uint64_t out[C_N])
{
    for (int k = 0; k < C_N; k++) out[k] = atomic_exchange(&c->n[k], 0);
}

/* ---- the lake ------------------------------------------------------------------------------- */

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "lake_age: %s: %s\n", what, err);
    return 1;
}

/* One small Parquet file of the table's layout at path, and its statistics. */
static int sample_file(const char *path, ice_file *f, char *err, size_t errlen)
{
    duckdb_database db;
    duckdb_connection con;
    if (duckdb_open(NULL, &db) == DuckDBError) return snprintf(err, errlen, "duckdb"), -1;
    duckdb_connect(db, &con);
    char sql[4096];
    snprintf(
        sql, sizeof sql,
        "COPY (SELECT 'e' || i AS id, 'rpc.call' AS type, TIMESTAMPTZ '2024-01-01 00:00:00+00' + "
        "i * INTERVAL 1 SECOND AS ts, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS receivedAt, "
        "{'id': 'room', 'name': NULL, 'class': 'Room', 'colo': 'FRA'}::STRUCT(id VARCHAR, "
        "\"name\" VARCHAR, \"class\" VARCHAR, colo VARCHAR) AS \"do\", 'join' AS method, "
        "i * 0.5 AS durationMs, true AS success, NULL::VARCHAR AS error, NULL::VARCHAR AS "
        "collection, NULL::VARCHAR AS docId, NULL::VARCHAR AS doc, NULL::VARCHAR AS prev, "
        "NULL::VARCHAR AS bookmark, '{\"id\":\"e' || i || '\"}' AS _events_json FROM "
        "range(100) t(i)) TO '%s' (FORMAT parquet, COMPRESSION zstd, %s)",
        path, ice_duckdb_field_ids());
    duckdb_result r;
    int rc = duckdb_query(con, sql, &r) == DuckDBError ? -1 : 0;
    if (rc) snprintf(err, errlen, "%s", duckdb_result_error(&r));
    duckdb_destroy_result(&r);
    if (!rc) rc = ice_stats_from_parquet(con, path, f, err, errlen) ? -1 : 0;
    duckdb_disconnect(&con);
    duckdb_close(&db);
    return rc;
}

/* HOURS hours ending a week ago, one file each, committed a month (720 hours) at a time. */
static int build(store *s, const char *work, int64_t hours, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sample.parquet", work);
    ice_file sample;
    memset(&sample, 0, sizeof sample);
    if (sample_file(path, &sample, err, errlen)) return -1;
    FILE *fp = fopen(path, "rb");
    buf bytes = BUF_INIT;
    char chunk[65536];
    size_t got;
    while (fp && (got = fread(chunk, 1, sizeof chunk, fp)) > 0) buf_append(&bytes, chunk, got);
    if (fp) fclose(fp);
    int64_t last = lake_hour(evtime_now_ms()) - 24 * 7, first = last - hours + 1;
    ice_catalog cat = ice_store_catalog(s);
    int rc = 0;
    for (int64_t h0 = first; h0 <= last && !rc; h0 += 720) {
        int64_t h1 = h0 + 719 < last ? h0 + 719 : last;
        size_t n = (size_t)(h1 - h0 + 1);
        ice_file *add = calloc(n, sizeof *add);
        for (size_t i = 0; add && i < n && !rc; i++) {
            char uuid[LAKE_UUID_LEN + 1], key[LAKE_KEY_MAX];
            evrand_uuid7(uuid);
            lake_parquet_key(h0 + (int64_t)i, uuid, key);
            rc = store_put(s, key, bytes.p, bytes.len, 0, err, errlen);
            add[i] = sample;
            add[i].key = strdup(key);
            add[i].hour = h0 + (int64_t)i;
            add[i].cols = malloc(sample.ncols * sizeof *sample.cols);
            for (size_t c = 0; add[i].cols && c < sample.ncols; c++) {
                add[i].cols[c] = sample.cols[c];
                add[i].cols[c].lower = (buf)BUF_INIT;
                add[i].cols[c].upper = (buf)BUF_INIT;
                buf_append(&add[i].cols[c].lower, sample.cols[c].lower.p, sample.cols[c].lower.len);
                buf_append(&add[i].cols[c].upper, sample.cols[c].upper.p, sample.cols[c].upper.len);
            }
        }
        ice_change ch = {.operation = "append", .add = add, .nadd = n};
        if (!rc) rc = ice_commit_retry(&cat, s, &ch, evtime_now_ms(), 4, NULL, err, errlen);
        ice_files_free(add, n);
        fprintf(stderr, "lake_age: %lld of %lld hours\n", (long long)(h1 - first + 1),
                (long long)hours);
    }
    ice_file_clear(&sample);
    buf_free(&bytes);
    return rc;
}

/* A new segment in the current hour, with its marker, as a server seals it. */
static int new_segment(store *s, char *err, size_t errlen)
{
    char uuid[LAKE_UUID_LEN + 1], key[LAKE_KEY_MAX], marker[LAKE_KEY_MAX], line[256];
    int64_t now = evtime_now_ms();
    char ts[EVTIME_LEN + 1];
    evtime_format(now, ts);
    evrand_uuid7(uuid);
    lake_raw_key(lake_hour(now), uuid, key);
    lake_pending_key(key, marker);
    int n =
        snprintf(line, sizeof line, "{\"id\":\"%s\",\"type\":\"a.b\",\"ts\":\"%s\"}\n", uuid, ts);
    if (store_put(s, marker, "", 0, 0, err, errlen)) return -1;
    return store_put(s, key, line, (size_t)n, 0, err, errlen);
}

static void report(const char *name, int64_t ms, const uint64_t n[C_N])
{
    printf("%-8s ms=%lld list=%llu get=%llu head=%llu put=%llu del=%llu\n", name, (long long)ms,
           (unsigned long long)n[C_LIST], (unsigned long long)n[C_GET],
           (unsigned long long)n[C_HEAD], (unsigned long long)n[C_PUT],
           (unsigned long long)n[C_DEL]);
    fflush(stdout);
}

static int compact_once(counting *c, const char *work, lake_cache *cache, int sweep,
                        const char *name)
{
    compact_config cc = {.store = &c->base,
                         .cache = cache,
                         .work_dir = work,
                         .after_ms = 600000,
                         .retain_ms = 600000,
                         .open_hours = 1,
                         .sweep = sweep,
                         .owner = "lake_age"};
    compact_stats st;
    char err[1024];
    uint64_t n[C_N];
    counts_take(c, n);
    int64_t t0 = evtime_mono_ms();
    int r = compact_run(&cc, &st, err, sizeof err);
    int64_t ms = evtime_mono_ms() - t0;
    counts_take(c, n);
    if (r) return fail(name, err);
    report(name, ms, n);
    return 0;
}

static int query_once(counting *c, lake_cache *cache, int64_t hour)
{
    query_config qc = {.store = &c->base, .cache = cache, .threads = 1};
    query_engine *e;
    char err[1024];
    if (query_engine_open(&qc, &e, err, sizeof err)) return fail("query engine", err);
    query_conn *q = query_conn_new(e, err, sizeof err);
    char from[EVTIME_LEN + 1], to[EVTIME_LEN + 1], sql[256];
    evtime_format(hour * 3600000, from);
    evtime_format((hour + 1) * 3600000, to);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE ts >= '%s' AND ts < '%s'", from,
             to);
    query_request rq = {.sql = sql, .format = QUERY_CSV};
    buf out = BUF_INIT;
    query_outcome o;
    uint64_t n[C_N];
    counts_take(c, n);
    int64_t t0 = evtime_mono_ms();
    query_run_to_buf(q, &rq, &out, &o);
    int64_t ms = evtime_mono_ms() - t0;
    counts_take(c, n);
    int rc = o.code == QUERY_OK ? 0 : fail("query", o.error);
    if (!rc) report("query", ms, n);
    buf_free(&out);
    query_conn_free(q);
    query_engine_close(e);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lake_age URL WORK_DIR [HOURS [RUNS]]\n");
        return 2;
    }
    int64_t hours = argc > 3 ? atoll(argv[3]) : 17520;
    int runs = argc > 4 ? atoi(argv[4]) : 3;
    char err[1024], cdir[4200], work[4200];
    store *in;
    if (store_open(argv[1], &in, err, sizeof err)) return fail(argv[1], err);
    counting c = {.base = {.ops = &COUNTING_OPS, .url = in->url}, .in = in};
    lake_table lt;
    if (lake_table_load(in, &lt, err, sizeof err)) return fail("the table", err);
    int built = lt.t != NULL;
    lake_table_free(&lt);
    int64_t t0 = evtime_mono_ms();
    if (!built && build(in, argv[2], hours, err, sizeof err)) return fail("building the lake", err);
    if (!built)
        printf("built %lld hours in %lld ms\n", (long long)hours,
               (long long)(evtime_mono_ms() - t0));
    /* apart: a run removes what it does not know in its work directory */
    snprintf(cdir, sizeof cdir, "%s/cache", argv[2]);
    snprintf(work, sizeof work, "%s/compact", argv[2]);
    if (mkdir(work, 0700) && errno != EEXIST) return fail(work, strerror(errno));
    lake_cache *cache = NULL;
    if (!in->ops->root(in) && lake_cache_open(cdir, 1ull << 30, &cache, err, sizeof err))
        return fail("the cache", err);
    int rc = 0;
    int64_t old_hour = lake_hour(evtime_now_ms()) - 24 * 30;
    for (int i = 0; i < runs && !rc; i++) {
        if (new_segment(in, err, sizeof err)) return fail("a new segment", err);
        rc = compact_once(&c, work, cache, 1, "sweep");
        if (!rc && new_segment(in, err, sizeof err)) return fail("a new segment", err);
        if (!rc) rc = compact_once(&c, work, cache, 0, "pending");
        if (!rc) rc = query_once(&c, cache, old_hour - i);
    }
    lake_cache_close(cache);
    store_close(in);
    return rc;
}
