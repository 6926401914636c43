/*
 * query.c - the DuckDB query engine: opening it, its sandbox and its connections.
 *
 * A query goes: extract its statements (exactly one) -> ask DuckDB to
 * serialize its parse tree -> begin a transaction -> find the hours it can
 * touch (prune.c; DuckDB evaluates each bound, in this transaction so that
 * now() is the query's own) -> pin the spool and list the lake for those
 * hours -> replace this connection's temporary view `events` -> prepare the
 * statement and refuse anything but SELECT/EXPLAIN-of-SELECT -> bind
 * parameters -> run it streaming with a deadline -> render chunks
 * (result.c) -> roll the transaction back (it only read).
 *
 * The engine lives in three files: this one (the engine, its settings, its
 * connections and the watchdog that stops a query at its deadline);
 * query_view.c (the hours a query can touch and the views over their files);
 * query_run.c (admitting a statement, running it and streaming its answer).
 * query_int.h is what they share.
 */
#include "query.h"
#include "query_int.h"
#include "quantiles.h"
#include "evtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * rpc_latency over a range, from the rollups of the compacted files of hours wholly within it
 * (docs/lake.md, "Rollups": per class and method, the calls, their errors and their durations
 * in order), in the view _events_rpc_rollup, and from the rpc.call rows in range of the events
 * view, which then leaves those files out (query_view.c), summed up the same way here. Without
 * rollups (the query reads events otherwise too, or its bounds are not known to the
 * microsecond) the first is empty and the second has every file. The percentiles are
 * _events_quantiles_agg of a group's lists of durations (quantiles.h): exactly quantile_cont's,
 * found by bisection in the sorted lists of the rollups, with no sort of the whole group. The
 * error rate is the errors over the calls, the same double as the average of 1.0 and 0.0 per
 * call that it was.
 */
#define RPC_LATENCY(HEAD, WHERE)                                                                   \
    "CREATE MACRO " HEAD " AS TABLE "                                                              \
    "SELECT class, method, calls, q[1] AS p50, q[2] AS p95, q[3] AS p99, error_rate FROM ("        \
    "SELECT class, method, sum(calls)::BIGINT AS calls, " RPC_QUANTILES " AS q, "                  \
    "sum(errors)::DOUBLE / sum(calls) AS error_rate FROM ("                                        \
    "SELECT " QUERY_ROLLUP_COLUMNS " FROM _events_rpc_rollup UNION ALL "                           \
    "SELECT \"do\".\"class\" AS class, method, count(*) AS calls, "                                \
    "count(*) FILTER (success IS FALSE OR error IS NOT NULL) AS errors, "                          \
    "list(durationMs) AS durations "                                                               \
    "FROM events WHERE type = 'rpc.call' AND " WHERE " GROUP BY ALL) GROUP BY ALL) "               \
    "ORDER BY class NULLS LAST, method NULLS LAST"
#define RPC_QUANTILES "_events_quantiles_agg(durations)"

/*
 * event_counts over a range: the events per minute, type and collection, from the rollups of
 * the compacted files of hours wholly within it (docs/lake.md, "Rollups"), in the view
 * _events_counts_rollup, and from the rows in range of the events view, which then leaves those
 * files out (query_view.c), counted the same way here. The dashboard's charts read it.
 */
#define EVENT_COUNTS(HEAD, WHERE)                                                                  \
    "CREATE MACRO " HEAD " AS TABLE "                                                              \
    "SELECT minute, type, collection, sum(n)::BIGINT AS n FROM ("                                  \
    "SELECT " QUERY_COUNTS_COLUMNS " FROM _events_counts_rollup UNION ALL "                        \
    "SELECT date_trunc('minute', ts) AS minute, type, collection, count(*) AS n "                  \
    "FROM events WHERE " WHERE " GROUP BY ALL) GROUP BY ALL "                                      \
    "ORDER BY minute, type NULLS LAST, collection NULLS LAST"

/*
 * objects over a range: each emitting object's events summed up (QUERY_OBJECTS_SUMS, query.h),
 * from the rollups of the compacted files of hours wholly within it (docs/lake.md, "Rollups"),
 * in the view _events_objects_rollup, and from the rows, as above; the dashboard's Objects view.
 */
#define OBJECTS(HEAD, WHERE)                                                                       \
    "CREATE MACRO " HEAD " AS TABLE "                                                              \
    "SELECT class, id, max(name).v AS name, max(colo).v AS colo, max(last_seen) AS last_seen, "    \
    "max(lifecycle).v AS lifecycle, max(lifecycle).ts AS lifecycle_at, "                           \
    "sum(connects)::BIGINT AS connects, sum(messages)::BIGINT AS messages, "                       \
    "sum(closes)::BIGINT AS closes, sum(events)::BIGINT AS events FROM ("                          \
    "SELECT " QUERY_OBJECTS_COLUMNS " FROM _events_objects_rollup UNION ALL " QUERY_OBJECTS_SUMS   \
    " FROM events WHERE \"do\".id IS NOT NULL AND " WHERE " GROUP BY ALL) GROUP BY ALL "           \
    "ORDER BY last_seen DESC, class NULLS LAST, id"

static const char *const MACROS[] = {
    "CREATE MACRO events_between(lo, hi) AS TABLE SELECT * FROM events WHERE ts >= lo AND ts < hi",
    "CREATE MACRO doc_history(coll, doc_id) AS TABLE "
    "SELECT ts, replace(type, 'collection.', '') AS change, bookmark, doc, prev, id, receivedAt "
    "FROM events WHERE collection = coll AND docId = doc_id "
    "AND type IN ('collection.insert', 'collection.update', 'collection.delete') "
    "ORDER BY bookmark NULLS LAST, ts, id",
    "CREATE MACRO collection_at(coll, at_ts) AS TABLE "
    "SELECT docId, doc, bookmark, ts FROM (SELECT docId, doc, bookmark, ts, type, "
    "row_number() OVER (PARTITION BY docId ORDER BY bookmark DESC NULLS LAST, ts DESC, id DESC) AS "
    "rn "
    "FROM events WHERE collection = coll AND ts <= at_ts "
    "AND type IN ('collection.insert', 'collection.update', 'collection.delete')) "
    "WHERE rn = 1 AND type <> 'collection.delete' ORDER BY docId",
    RPC_LATENCY("rpc_latency(since)", "ts >= since"),
    RPC_LATENCY("rpc_latency_between(lo, hi)", "ts >= lo AND ts < hi"),
    EVENT_COUNTS("event_counts(since)", "ts >= since"),
    EVENT_COUNTS("event_counts_between(lo, hi)", "ts >= lo AND ts < hi"),
    OBJECTS("objects(since)", "ts >= since"),
    OBJECTS("objects_between(lo, hi)", "ts >= lo AND ts < hi"),
};

/* The views of the rollups (query_view.c, rollup_view), empty: what a query without them reads. */
static const char *const NO_ROLLUPS[] = {
    "CREATE VIEW main._events_rpc_rollup AS SELECT NULL::VARCHAR AS class, NULL::VARCHAR AS "
    "method, NULL::BIGINT AS calls, NULL::BIGINT AS errors, NULL::DOUBLE[] AS durations WHERE "
    "false",
    "CREATE VIEW main._events_counts_rollup AS SELECT NULL::TIMESTAMP AS minute, NULL::VARCHAR AS "
    "type, NULL::VARCHAR AS collection, NULL::BIGINT AS n WHERE false",
    "CREATE VIEW main._events_objects_rollup AS SELECT NULL::VARCHAR AS class, NULL::VARCHAR AS "
    "id, NULL::STRUCT(ts TIMESTAMP, v VARCHAR) AS name, NULL::STRUCT(ts TIMESTAMP, v VARCHAR) AS "
    "colo, NULL::TIMESTAMP AS last_seen, NULL::STRUCT(ts TIMESTAMP, v VARCHAR) AS lifecycle, "
    "NULL::BIGINT AS connects, NULL::BIGINT AS messages, NULL::BIGINT AS closes, NULL::BIGINT AS "
    "events WHERE false",
};

/* ---- helpers ------------------------------------------------------------- */

int query__exec(duckdb_connection c, const char *sql, char *err, size_t errlen)
{
    duckdb_result r;
    memset(&r, 0, sizeof r); /* a zeroed result may be destroyed whether or not it was filled */
    int rc = duckdb_query(c, sql, &r) == DuckDBSuccess ? 0 : -1;
    if (rc) snprintf(err, errlen, "%s", duckdb_result_error(&r));
    duckdb_destroy_result(&r);
    return rc;
}

void query_sql_quote(buf *b, const char *s)
{
    buf_putc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'') buf_putc(b, '\'');
        buf_putc(b, *s);
    }
    buf_putc(b, '\'');
}

static void *watchdog_main(void *arg)
{
    query_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        int64_t now = evtime_mono_ms();
        /* Again at every tick while the query runs: DuckDB forgets an interrupt when its next
         * statement starts, and a query takes several (its transaction, views, the query). */
        for (query_conn *c = e->conns; c; c = c->next) {
            int64_t d = atomic_load(&c->deadline_ms);
            if (d && (now >= d || atomic_load(&c->stopped))) {
                atomic_store(&c->timed_out, 1);
                duckdb_interrupt(c->c);
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/*
 * Parses a parse tree from json_serialize_sql. DuckDB marks "no location" with
 * the largest idx_t, which jansson cannot hold; the marker (the exact member,
 * never found inside a string, where the quotes would be escaped) becomes 0.
 */
json_t *query__load_tree(const char *txt)
{
    static const char marker[] = "\"query_location\":18446744073709551615";
    buf b = BUF_INIT;
    const char *p = txt, *m;
    while ((m = strstr(p, marker))) {
        buf_append(&b, p, (size_t)(m - p));
        buf_puts(&b, "\"query_location\":0");
        p = m + sizeof marker - 1;
    }
    buf_puts(&b, p);
    json_t *t = buf_cstr(&b) ? json_loads(b.p, 0, NULL) : NULL;
    buf_free(&b);
    return t;
}

#define REUSE_MAX 64 /* runs of a reused statement before it is prepared again */

/* The prepared statement of s, ready for one more run; NULL if DuckDB cannot prepare it. */
duckdb_prepared_statement query__reused_get(duckdb_connection c, query__reused *s)
{
    if (s->p && s->runs >= REUSE_MAX) duckdb_destroy_prepare(&s->p);
    if (!s->p) {
        s->runs = 0;
        if (duckdb_prepare(c, s->sql, &s->p) == DuckDBError) {
            duckdb_destroy_prepare(&s->p);
            return NULL;
        }
    }
    s->runs++;
    return s->p;
}

/* ---- the engine ---------------------------------------------------------- */

/*
 * Keeps the names of DuckDB's volatile functions (random, uuid, current_query,
 * …) as ",a,b,": a time bound that calls one would have one value where it is
 * evaluated for pruning and another in the query, so it is not used.
 */
static int load_volatile(duckdb_connection c, query_engine *e, char *err, size_t errlen)
{
    duckdb_result r;
    memset(&r, 0, sizeof r);
    if (duckdb_query(c,
                     "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                     "WHERE stability = 'VOLATILE'",
                     &r) == DuckDBError) {
        snprintf(err, errlen, "%s", duckdb_result_error(&r));
        duckdb_destroy_result(&r);
        return -1;
    }
    buf b = BUF_INIT;
    buf_putc(&b, ',');
    for (idx_t i = 0; i < duckdb_row_count(&r); i++) {
        char *v = duckdb_value_varchar(&r, 0, i);
        if (v) buf_printf(&b, "%s,", v);
        duckdb_free(v);
    }
    duckdb_destroy_result(&r);
    if (!buf_cstr(&b)) {
        buf_free(&b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->volatile_fns = b.p;
    return 0;
}

/*
 * Connects the engine's n connections and sets what is set per session, before
 * the configuration is locked. streaming_buffer_size: DuckDB runs ahead of the
 * rows fetched by this much, but counts a string by its 16-byte header, not
 * its bytes: at the default (1 MB) a query of 1 MB strings held three chunks
 * of 2,048 of them at once (4.8 GB), at the least (one chunk ahead) one
 * (2 GB), at the same speed (bench/README.md, query memory).
 */
static int make_spares(query_engine *e, int n, char *err, size_t errlen)
{
    if (!(e->spare = calloc((size_t)n, sizeof *e->spare))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (; e->nspare < n; e->nspare++) {
        duckdb_connection c;
        if (duckdb_connect(e->db, &c) == DuckDBError) {
            snprintf(err, errlen, "cannot connect");
            return -1;
        }
        e->spare[e->nspare] = c;
        if (query__exec(c, "SET streaming_buffer_size = '1KiB'", err, errlen)) {
            e->nspare++;
            return -1;
        }
    }
    return 0;
}

/* The engine's own state, before DuckDB is opened; NULL with err set. */
static query_engine *engine_new(const query_config *cfg, char *err, size_t errlen)
{
    const char *root = cfg->store->ops->root(cfg->store);
    if (!root && !cfg->cache) {
        snprintf(err, errlen, "query: the lake %s is not a local directory, and no cache is given",
                 cfg->store->url);
        return NULL;
    }
    query_engine *e = calloc(1, sizeof *e);
    if (!e || (root && !(e->root = strdup(root)))) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->store = cfg->store;
    e->writer = cfg->writer;
    e->max_rejected_line =
        cfg->max_rejected_line ? cfg->max_rejected_line : 2 * (8ull << 20) + 65536;
    e->cache = root ? NULL : cfg->cache;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    return e;
}

/* Frees the engine: its connections and DuckDB, if it got that far. The watchdog is stopped. */
static void engine_free(query_engine *e)
{
    query__copies_close(e->copies);
    for (int i = 0; i < e->nspare; i++) duckdb_disconnect(&e->spare[i]);
    free(e->spare);
    if (e->db) duckdb_close(&e->db);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->volatile_fns);
    free(e->root);
    free(e);
}

/* Opens DuckDB in memory under the engine's memory limit and threads. */
static int open_duckdb(query_engine *e, const query_config *cfg, char *err, size_t errlen)
{
    duckdb_config dc;
    char mem[32], threads[16], *open_err = NULL;
    snprintf(mem, sizeof mem, "%lluB",
             (unsigned long long)(cfg->memory_limit ? cfg->memory_limit : (1ull << 30)));
    if (duckdb_create_config(&dc) == DuckDBError) {
        snprintf(err, errlen, "query: cannot configure DuckDB");
        return -1;
    }
    duckdb_set_config(dc, "memory_limit", mem);
    duckdb_set_config(dc, "autoinstall_known_extensions", "false");
    duckdb_set_config(dc, "autoload_known_extensions", "false");
    duckdb_set_config(dc, "temp_directory", ""); /* no spilling: the memory limit is the limit */
    /* DuckDB's jemalloc gives freed memory back only when DuckDB allocates again: after a
     * query of gigabytes the server would hold them, near --memory-max, until the next
     * query. Its background thread gives them back within seconds. */
    duckdb_set_config(dc, "allocator_background_threads", "true");
    if (cfg->threads > 0) {
        snprintf(threads, sizeof threads, "%d", cfg->threads);
        duckdb_set_config(dc, "threads", threads);
    }
    int rc = duckdb_open_ext(NULL, &e->db, dc, &open_err);
    duckdb_destroy_config(&dc);
    if (rc == DuckDBError) {
        snprintf(err, errlen, "query: cannot open DuckDB: %s",
                 open_err ? open_err : "unknown error");
        duckdb_free(open_err);
        return -1;
    }
    return 0;
}

/* The sandbox: queries read the lake (or its cache) and the spool, and nothing else. */
static int sandbox(query_engine *e, duckdb_connection c, char *err, size_t errlen)
{
    buf sql = BUF_INIT;
    buf_puts(&sql, "SET allowed_directories = [");
    buf b = BUF_INIT;
    buf_printf(&b, "%s/", e->root ? e->root : lake_cache_dir(e->cache));
    query_sql_quote(&sql, buf_cstr(&b));
    if (e->writer) {
        b.len = 0;
        buf_printf(&b, "%s/", lake_writer_spool_dir(e->writer));
        buf_putc(&sql, ',');
        query_sql_quote(&sql, buf_cstr(&b));
    }
    buf_putc(&sql, ']');
    buf_free(&b);
    int rc = query__exec(c, buf_cstr(&sql), err, errlen);
    buf_free(&sql);
    static const char *const setup[] = {"SET enable_external_access = false",
                                        "SET GLOBAL TimeZone = 'UTC'"};
    for (size_t i = 0; !rc && i < sizeof setup / sizeof *setup; i++)
        rc = query__exec(c, setup[i], err, errlen);
    return rc;
}

/* The macros (MACROS), over the events view. */
static int create_macros(duckdb_connection c, char *err, size_t errlen)
{
    /* DuckDB binds a macro's body when it is created: an empty main.events lets it; each
     * connection's temporary events view shadows it when a query runs */
    buf v = BUF_INIT;
    buf_printf(&v,
               "CREATE VIEW main.events AS SELECT %s FROM (SELECT NULL::JSON AS json WHERE false)",
               QUERY_VIEW_COLUMNS);
    int rc = buf_cstr(&v) ? query__exec(c, v.p, err, errlen) : -1;
    buf_free(&v);
    if (!rc) rc = query_quantiles_register(c, err, errlen); /* rpc_latency's percentiles */
    /* the rollups the macros read (query_view.c) when the query has none */
    for (size_t i = 0; !rc && i < sizeof NO_ROLLUPS / sizeof *NO_ROLLUPS; i++)
        rc = query__exec(c, NO_ROLLUPS[i], err, errlen);
    for (size_t i = 0; !rc && i < sizeof MACROS / sizeof *MACROS; i++)
        rc = query__exec(c, MACROS[i], err, errlen);
    return rc;
}

/* The sandbox, then the macros and the connections, then lock it all. */
static int set_up(query_engine *e, int conns, char *err, size_t errlen)
{
    duckdb_connection c;
    if (duckdb_connect(e->db, &c) == DuckDBError) {
        snprintf(err, errlen, "query: cannot connect to DuckDB");
        return -1;
    }
    char e2[512] = "";
    int rc = sandbox(e, c, e2, sizeof e2);
    if (!rc) rc = create_macros(c, e2, sizeof e2);
    if (!rc) rc = load_volatile(c, e, e2, sizeof e2);
    if (!rc) rc = make_spares(e, conns, e2, sizeof e2);
    if (!rc) rc = query__exec(c, "SET lock_configuration = true", e2, sizeof e2);
    duckdb_disconnect(&c);
    if (rc) snprintf(err, errlen, "query: cannot set DuckDB up: %s", e2);
    return rc;
}

int query_engine_open(const query_config *cfg, query_engine **out, char *err, size_t errlen)
{
    query_engine *e = engine_new(cfg, err, errlen);
    if (!e) return -1;
    if (open_duckdb(e, cfg, err, errlen) ||
        set_up(e, cfg->conns > 0 ? cfg->conns : 4, err, errlen)) {
        engine_free(e);
        return -1;
    }
    if (cfg->copies_dir && cfg->copies_max &&
        query__copies_open(e, cfg->copies_dir, cfg->copies_max, cfg->copies_min,
                           cfg->copies_idle_ms, &e->copies, err, errlen)) {
        engine_free(e);
        return -1;
    }
    if (pthread_create(&e->watchdog, NULL, watchdog_main, e)) {
        snprintf(err, errlen, "query: cannot start the timeout thread");
        engine_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void query_engine_close(query_engine *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->watchdog, NULL);
    engine_free(e);
}

void query_engine_copies_stats(query_engine *e, query_copies_stats *out)
{
    memset(out, 0, sizeof *out);
    if (e->copies) query__copies_stats_get(e->copies, out);
}

query_conn *query_conn_new(query_engine *e, char *err, size_t errlen)
{
    query_conn *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    q->e = e;
    pthread_mutex_lock(&e->mu);
    if (e->nspare) q->c = e->spare[--e->nspare];
    pthread_mutex_unlock(&e->mu);
    if (!q->c) {
        snprintf(err, errlen,
                 "query: every connection of this engine is in use (query_config.conns)");
        free(q);
        return NULL;
    }
    duckdb_result r;
    memset(&r, 0, sizeof r); /* a zeroed result may be destroyed whether or not it was filled */
    q->serialize.sql = "SELECT json_serialize_sql($1::VARCHAR)";
    q->deserialize.sql = "SELECT json_deserialize_sql($1::JSON)";
    if (!query__reused_get(q->c, &q->serialize) || !query__reused_get(q->c, &q->deserialize) ||
        duckdb_query(q->c,
                     "SELECT json_serialize_sql('SELECT try(CAST(NULL AS TIMESTAMP)), "
                     "try(CAST(NULL AS TIMESTAMP) = NULL)')",
                     &r) == DuckDBError) {
        snprintf(err, errlen, "query: cannot prepare the parse-tree statements");
        query_conn_free(q);
        return NULL;
    }
    char *t = duckdb_value_varchar(&r, 0, 0);
    q->eval_template = t ? query__load_tree(t) : NULL;
    duckdb_free(t);
    duckdb_destroy_result(&r);
    pthread_mutex_lock(&e->mu);
    q->next = e->conns;
    e->conns = q;
    pthread_mutex_unlock(&e->mu);
    return q;
}

void query_conn_free(query_conn *q)
{
    if (!q) return;
    query_engine *e = q->e;
    pthread_mutex_lock(&e->mu);
    for (query_conn **pp = &e->conns; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    pthread_mutex_unlock(&e->mu);
    duckdb_destroy_prepare(&q->serialize.p);
    duckdb_destroy_prepare(&q->deserialize.p);
    json_decref(q->eval_template);
    pthread_mutex_lock(&e->mu);
    e->spare[e->nspare++] = q->c; /* room: it was taken from there */
    pthread_mutex_unlock(&e->mu);
    free(q);
}

void query_conn_interrupt(query_conn *q)
{
    atomic_store(&q->stopped, 1);
    atomic_store(&q->timed_out, 1);
    duckdb_interrupt(q->c);
}
