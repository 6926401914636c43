/*
 * query.c - the DuckDB query engine: sandbox, per-query views, answers.
 *
 * A query goes: extract its statements (exactly one) -> ask DuckDB to
 * serialize its parse tree -> begin a transaction -> find the hours it can
 * touch (prune.c; DuckDB evaluates each bound, in this transaction so that
 * now() is the query's own) -> pin the spool and list the lake for those
 * hours -> replace this connection's temporary view `events` -> prepare the
 * statement and refuse anything but SELECT/EXPLAIN-of-SELECT -> bind
 * parameters -> run it streaming with a deadline -> render chunks
 * (result.c) -> roll the transaction back (it only read).
 */
#include "query.h"
#include "evtime.h"
#include "hidden.h"
#include "layout.h"
#include "partition.h"
#include "prune.h"
#include "result.h"

#include <dlfcn.h>
#include <duckdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

struct query_engine {
    duckdb_database db;
    store *store;
    lake_writer *writer;
    lake_cache *cache;
    uint64_t max_rejected_line; /* query_config's */
    char *root;         /* the lake's directory, or NULL: an object store read through cache */
    char *volatile_fns; /* ",random,uuid,…,": DuckDB's volatile functions; read-only after open */
    pthread_mutex_t mu; /* conns and spare */
    query_conn *conns;
    /* DuckDB connections set up before the configuration was locked (a session setting cannot
     * be changed after), for query_conn_new to take and query_conn_free to give back */
    duckdb_connection *spare;
    int nspare;
    pthread_t watchdog;
    pthread_cond_t cv;
    int stop;
};

/*
 * A statement a connection runs for every query (the parse-tree helpers).
 * DuckDB 1.4 keeps every execution's result collector in a prepared
 * statement's plan until the statement is destroyed (about 600 bytes each;
 * duckdb/duckdb#21089), so one prepared statement run for every query grew
 * the server by that much per query, forever. It is therefore prepared again
 * after REUSE_MAX runs: at most REUSE_MAX collectors live per statement.
 */
#define REUSE_MAX 64
typedef struct reused {
    const char *sql;
    duckdb_prepared_statement p; /* NULL until first needed */
    unsigned runs;
} reused;

typedef struct live {
    const struct hours *h;
    lake_cache_item *it; /* key and size of each live file the query needs */
    unsigned char *parquet;
    size_t n, cap;
} live;

struct query_conn {
    query_engine *e;
    duckdb_connection c;
    reused serialize;            /* SELECT json_serialize_sql($1) */
    reused deserialize;          /* SELECT json_deserialize_sql($1::JSON) */
    json_t *eval_template;       /* parse tree of SELECT try(CAST(x AS TIMESTAMP)), … */
    _Atomic int64_t deadline_ms; /* monotonic; 0 when idle */
    _Atomic int timed_out;
    struct live fetched; /* the lake files of the running query */
    query_conn *next;
};

/* The view's columns, extracted from each event's JSON. */
const char QUERY_VIEW_COLUMNS[] =
    "json->>'id' AS id, json->>'type' AS type, TRY_CAST(json->>'ts' AS TIMESTAMP) AS ts, "
    "TRY_CAST(json->>'receivedAt' AS TIMESTAMP) AS receivedAt, "
    "json_transform(json->'do', '{\"id\":\"VARCHAR\",\"name\":\"VARCHAR\",\"class\":\"VARCHAR\","
    "\"colo\":\"VARCHAR\"}') AS \"do\", "
    "json->>'$.do.id' AS do_id, json->>'$.do.name' AS do_name, json->>'$.do.class' AS do_class, "
    "json->>'$.do.colo' AS do_colo, "
    "json->>'method' AS method, TRY_CAST(json->>'durationMs' AS DOUBLE) AS durationMs, "
    "TRY_CAST(json->>'success' AS BOOLEAN) AS success, json->>'error' AS error, "
    "json->>'collection' AS collection, json->>'docId' AS docId, "
    "nullif(json->'doc', 'null'::JSON) AS doc, nullif(json->'prev', 'null'::JSON) AS prev, "
    "json->>'bookmark' AS bookmark, json AS event";

const char QUERY_VIEW_PARSE[] =
    "json_transform(json, '{\"id\":\"VARCHAR\",\"type\":\"VARCHAR\",\"ts\":\"VARCHAR\","
    "\"receivedAt\":\"VARCHAR\",\"do\":{\"id\":\"VARCHAR\",\"name\":\"VARCHAR\","
    "\"class\":\"VARCHAR\",\"colo\":\"VARCHAR\"},\"method\":\"VARCHAR\","
    "\"durationMs\":\"VARCHAR\",\"success\":\"VARCHAR\",\"error\":\"VARCHAR\","
    "\"collection\":\"VARCHAR\",\"docId\":\"VARCHAR\",\"doc\":\"JSON\",\"prev\":\"JSON\","
    "\"bookmark\":\"VARCHAR\"}')";

const char QUERY_VIEW_PARSED_COLUMNS[] =
    "s.id AS id, s.type AS type, TRY_CAST(s.ts AS TIMESTAMP) AS ts, "
    "TRY_CAST(s.receivedAt AS TIMESTAMP) AS receivedAt, s.\"do\" AS \"do\", "
    "s.\"do\".id AS do_id, s.\"do\".\"name\" AS do_name, s.\"do\".\"class\" AS do_class, "
    "s.\"do\".colo AS do_colo, s.method AS method, "
    "TRY_CAST(s.durationMs AS DOUBLE) AS durationMs, TRY_CAST(s.success AS BOOLEAN) AS success, "
    "s.error AS error, s.collection AS collection, s.docId AS docId, "
    "nullif(s.doc, 'null'::JSON) AS doc, nullif(s.prev, 'null'::JSON) AS prev, "
    "s.bookmark AS bookmark, json AS event";

/*
 * The same view through DuckDB's typed JSON reader, for queries that cannot
 * reach `event` (prune.h): one parse per line however many fields a query
 * uses, against one per field above (bench/README.md: rpc_latency twice as
 * fast). A field of the wrong type reads as NULL in both, and a torn line as
 * a row of NULLs, dropped. It has no event column, so a reference the
 * analysis missed fails to bind instead of reading NULL.
 */
static const char TYPED_COLUMNS[] =
    "id, type, ts, receivedAt, \"do\", \"do\".id AS do_id, \"do\".\"name\" AS do_name, "
    "\"do\".\"class\" AS do_class, \"do\".colo AS do_colo, method, durationMs, success, error, "
    "collection, docId, nullif(doc, 'null'::JSON) AS doc, nullif(prev, 'null'::JSON) AS prev, "
    "bookmark";
static const char TYPED_SCHEMA[] =
    "format = 'newline_delimited', ignore_errors = true, columns = {id: 'VARCHAR', type: "
    "'VARCHAR', "
    "ts: 'TIMESTAMP', receivedAt: 'TIMESTAMP', \"do\": 'STRUCT(id VARCHAR, \"name\" VARCHAR, "
    "\"class\" VARCHAR, colo VARCHAR)', method: 'VARCHAR', durationMs: 'DOUBLE', success: "
    "'BOOLEAN', "
    "error: 'VARCHAR', collection: 'VARCHAR', docId: 'VARCHAR', doc: 'JSON', prev: 'JSON', "
    "bookmark: 'VARCHAR'}";

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
    "CREATE MACRO rpc_latency(since) AS TABLE "
    "SELECT do_class AS class, method, count(*) AS calls, "
    "quantile_cont(durationMs, 0.5) AS p50, quantile_cont(durationMs, 0.95) AS p95, "
    "quantile_cont(durationMs, 0.99) AS p99, "
    "avg(CASE WHEN success IS FALSE OR error IS NOT NULL THEN 1.0 ELSE 0.0 END) AS error_rate "
    "FROM events WHERE type = 'rpc.call' AND ts >= since "
    "GROUP BY ALL ORDER BY class NULLS LAST, method NULLS LAST",
};

/* ---- helpers ------------------------------------------------------------- */

static int exec(duckdb_connection c, const char *sql, char *err, size_t errlen)
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
        for (query_conn *c = e->conns; c; c = c->next) {
            int64_t d = atomic_load(&c->deadline_ms);
            if (d && now >= d && !atomic_exchange(&c->timed_out, 1)) duckdb_interrupt(c->c);
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
static json_t *load_tree(const char *txt)
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

/* The prepared statement of s, ready for one more run; NULL if DuckDB cannot prepare it. */
static duckdb_prepared_statement reused_get(duckdb_connection c, reused *s)
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
        if (exec(c, "SET streaming_buffer_size = '1KiB'", err, errlen)) {
            e->nspare++;
            return -1;
        }
    }
    return 0;
}

int query_engine_open(const query_config *cfg, query_engine **out, char *err, size_t errlen)
{
    const char *root = cfg->store->ops->root(cfg->store);
    if (!root && !cfg->cache) {
        snprintf(err, errlen, "query: the lake %s is not a local directory, and no cache is given",
                 cfg->store->url);
        return -1;
    }
    query_engine *e = calloc(1, sizeof *e);
    if (!e || (root && !(e->root = strdup(root)))) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->store = cfg->store;
    e->writer = cfg->writer;
    e->max_rejected_line =
        cfg->max_rejected_line ? cfg->max_rejected_line : 2 * (8ull << 20) + 65536;
    e->cache = root ? NULL : cfg->cache;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);

    duckdb_config dc;
    char mem[32], threads[16], *open_err = NULL;
    snprintf(mem, sizeof mem, "%lluB",
             (unsigned long long)(cfg->memory_limit ? cfg->memory_limit : (1ull << 30)));
    if (duckdb_create_config(&dc) == DuckDBError) {
        snprintf(err, errlen, "query: cannot configure DuckDB");
        goto fail;
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
        goto fail;
    }

    /* The sandbox, then the macros, then lock it all. */
    duckdb_connection c;
    if (duckdb_connect(e->db, &c) == DuckDBError) {
        snprintf(err, errlen, "query: cannot connect to DuckDB");
        goto fail_db;
    }
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
    char e2[512] = "";
    rc = exec(c, buf_cstr(&sql), e2, sizeof e2);
    buf_free(&sql);
    static const char *const setup[] = {"SET enable_external_access = false",
                                        "SET GLOBAL TimeZone = 'UTC'"};
    for (size_t i = 0; !rc && i < sizeof setup / sizeof *setup; i++)
        rc = exec(c, setup[i], e2, sizeof e2);
    /* DuckDB binds a macro's body when it is created: an empty main.events lets it; each
     * connection's temporary events view shadows it when a query runs */
    if (!rc) {
        buf v = BUF_INIT;
        buf_printf(
            &v, "CREATE VIEW main.events AS SELECT %s FROM (SELECT NULL::JSON AS json WHERE false)",
            QUERY_VIEW_COLUMNS);
        rc = buf_cstr(&v) ? exec(c, v.p, e2, sizeof e2) : -1;
        buf_free(&v);
    }
    for (size_t i = 0; !rc && i < sizeof MACROS / sizeof *MACROS; i++)
        rc = exec(c, MACROS[i], e2, sizeof e2);
    if (!rc) rc = load_volatile(c, e, e2, sizeof e2);
    if (!rc) rc = make_spares(e, cfg->conns > 0 ? cfg->conns : 4, e2, sizeof e2);
    if (!rc) rc = exec(c, "SET lock_configuration = true", e2, sizeof e2);
    duckdb_disconnect(&c);
    if (rc) {
        snprintf(err, errlen, "query: cannot set DuckDB up: %s", e2);
        goto fail_db;
    }
    if (pthread_create(&e->watchdog, NULL, watchdog_main, e)) {
        snprintf(err, errlen, "query: cannot start the timeout thread");
        goto fail_db;
    }
    *out = e;
    return 0;
fail_db:
    for (int i = 0; i < e->nspare; i++) duckdb_disconnect(&e->spare[i]);
    free(e->spare);
    duckdb_close(&e->db);
fail:
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->volatile_fns);
    free(e->root);
    free(e);
    return -1;
}

void query_engine_close(query_engine *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->watchdog, NULL);
    for (int i = 0; i < e->nspare; i++) duckdb_disconnect(&e->spare[i]);
    free(e->spare);
    duckdb_close(&e->db);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->volatile_fns);
    free(e->root);
    free(e);
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
    if (!reused_get(q->c, &q->serialize) || !reused_get(q->c, &q->deserialize) ||
        duckdb_query(q->c,
                     "SELECT json_serialize_sql('SELECT try(CAST(NULL AS TIMESTAMP)), "
                     "try(CAST(NULL AS TIMESTAMP) = NULL)')",
                     &r) == DuckDBError) {
        snprintf(err, errlen, "query: cannot prepare the parse-tree statements");
        query_conn_free(q);
        return NULL;
    }
    char *t = duckdb_value_varchar(&r, 0, 0);
    q->eval_template = t ? load_tree(t) : NULL;
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
    duckdb_interrupt(q->c);
}

/* ---- parameters ------------------------------------------------------------ */

/* Binds one JSON value (not an array or object) to parameter k. */
static duckdb_state bind_value(duckdb_prepared_statement p, idx_t k, json_t *v)
{
    if (json_is_string(v))
        return duckdb_bind_varchar_length(p, k, json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) return duckdb_bind_int64(p, k, json_integer_value(v));
    if (json_is_real(v)) return duckdb_bind_double(p, k, json_real_value(v));
    if (json_is_boolean(v)) return duckdb_bind_boolean(p, k, json_is_true(v));
    if (json_is_null(v)) return duckdb_bind_null(p, k);
    return DuckDBError;
}

static int bind_params(duckdb_prepared_statement p, json_t *params, char *err, size_t errlen)
{
    idx_t want = duckdb_nparams(p);
    size_t have = json_array_size(params);
    if (want != have) {
        snprintf(err, errlen, "the query has %llu parameter%s but %zu %s given",
                 (unsigned long long)want, want == 1 ? "" : "s", have, have == 1 ? "was" : "were");
        return -1;
    }
    for (size_t i = 0; i < have; i++) {
        json_t *v = json_array_get(params, i);
        idx_t k = i + 1;
        if (json_is_array(v) || json_is_object(v)) {
            snprintf(err, errlen,
                     "parameter %zu is an array or object: params must be strings, numbers, "
                     "booleans or null",
                     k);
            return -1;
        }
        if (bind_value(p, k, v) == DuckDBError) {
            snprintf(err, errlen, "cannot bind parameter %zu", k);
            return -1;
        }
    }
    return 0;
}

/* ---- which files ----------------------------------------------------------- */

#define HOUR_US         INT64_C(3600000000)
#define EVAL_MAX_PARAMS 64

/* The hour of a microsecond since the epoch: floor division, which cannot overflow. */
static int64_t hour_of_us(int64_t us)
{
    int64_t h = us / HOUR_US;
    return us % HOUR_US < 0 ? h - 1 : h;
}

/* The parameters of a bound evaluated on its own: its $k is the query's parameter of[k-1]. */
typedef struct bound_params {
    json_t *named; /* the query's named_param_map: [{key: identifier, value: index}] */
    size_t of[EVAL_MAX_PARAMS];
    int n;
} bound_params;

/* The query's 1-based index of the parameter with this identifier ("1", "name"), or 0. */
static size_t param_index(json_t *named, const char *id)
{
    size_t i;
    json_t *kv;
    json_array_foreach(named, i, kv)
    {
        const char *k = json_string_value(json_object_get(kv, "key"));
        json_int_t v = json_integer_value(json_object_get(kv, "value"));
        if (k && !strcmp(k, id) && v > 0) return (size_t)v;
    }
    return 0;
}

static int is_volatile(const query_engine *e, const char *name)
{
    char key[160];
    size_t n = strlen(name);
    if (!e->volatile_fns || n + 3 > sizeof key) return 1;
    key[0] = ',';
    for (size_t i = 0; i < n; i++)
        key[i + 1] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    key[n + 1] = ',';
    key[n + 2] = 0;
    return strstr(e->volatile_fns, key) != NULL;
}

/*
 * Readies a copy of a bound to be evaluated on its own statement: its
 * parameters are renumbered $1..$n in order of appearance (DuckDB cannot bind
 * a statement that has a $2 but no $1, which left every `ts < $2` unpruned),
 * and a call of a volatile function makes it unusable (-1).
 */
static int ready_bound(const query_engine *e, json_t *node, bound_params *bp)
{
    size_t i;
    json_t *c;
    if (json_is_array(node)) {
        json_array_foreach(node, i, c) if (ready_bound(e, c, bp)) return -1;
        return 0;
    }
    if (!json_is_object(node)) return 0;
    const char *cls = json_string_value(json_object_get(node, "class"));
    if (cls && !strcmp(cls, "FUNCTION")) {
        const char *fn = json_string_value(json_object_get(node, "function_name"));
        if (!fn || is_volatile(e, fn)) return -1;
    }
    if (cls && !strcmp(cls, "PARAMETER")) {
        const char *id = json_string_value(json_object_get(node, "identifier"));
        size_t k = id ? param_index(bp->named, id) : 0;
        int local = 0;
        if (!k) return -1;
        for (int j = 0; j < bp->n && !local; j++)
            if (bp->of[j] == k) local = j + 1;
        if (!local) {
            if (bp->n == EVAL_MAX_PARAMS) return -1;
            bp->of[bp->n++] = k;
            local = bp->n;
        }
        char num[16];
        snprintf(num, sizeof num, "%d", local);
        return json_object_set_new(node, "identifier", json_string(num)) ? -1 : 0;
    }
    const char *key;
    json_object_foreach(node, key, c) if (ready_bound(e, c, bp)) return -1;
    return 0;
}

/*
 * Evaluates a bound of the parse tree, x, as SELECT try(CAST(x AS TIMESTAMP)),
 * try(CAST(x AS TIMESTAMP) = x), in the query's own transaction (so that now()
 * is the query's instant; try(), because an error would abort the
 * transaction). *us is the first, in microseconds since the epoch (±infinity
 * are ±INT64_MAX); *exact says whether DuckDB's comparison finds it equal to
 * x: when not (a TIMESTAMP_NS between two microseconds), x lies within a
 * microsecond of *us. Returns -1 when the bound gives no usable value (NULL,
 * an error, a volatile function): it is then not used.
 */
static int eval_bound(query_conn *q, json_t *expr, json_t *params, json_t *named, int64_t *us,
                      int *exact)
{
    if (!q->eval_template) return -1;
    bound_params bp = {.named = named};
    json_t *x = json_deep_copy(expr), *stmt = json_deep_copy(q->eval_template);
    json_t *list = json_object_get(
        json_object_get(json_array_get(json_object_get(stmt, "statements"), 0), "node"),
        "select_list");
    json_t *cast = json_array_get(json_object_get(json_array_get(list, 0), "children"), 0),
           *cmp = json_array_get(json_object_get(json_array_get(list, 1), "children"), 0);
    char *txt = NULL, *sql = NULL;
    duckdb_prepared_statement p = NULL;
    duckdb_result r;
    memset(&r, 0, sizeof r); /* a zeroed result may be destroyed whether or not it was filled */
    int rc = -1;
    if (!x || !cast || !cmp || ready_bound(q->e, x, &bp) || json_object_set(cast, "child", x) ||
        json_object_set(json_object_get(cmp, "left"), "child", x) ||
        json_object_set(cmp, "right", x))
        goto out;
    duckdb_prepared_statement des = NULL;
    if (!(txt = json_dumps(stmt, JSON_COMPACT)) || !(des = reused_get(q->c, &q->deserialize)) ||
        duckdb_bind_varchar(des, 1, txt) == DuckDBError ||
        duckdb_execute_prepared(des, &r) == DuckDBError)
        goto out;
    sql = duckdb_value_varchar(&r, 0, 0);
    duckdb_destroy_result(&r);
    memset(&r, 0, sizeof r);
    if (!sql || duckdb_prepare(q->c, sql, &p) == DuckDBError || duckdb_nparams(p) != (idx_t)bp.n)
        goto out;
    for (int i = 0; i < bp.n; i++) {
        json_t *v = json_array_get(params, bp.of[i] - 1);
        if (!v || json_is_array(v) || json_is_object(v) ||
            bind_value(p, (idx_t)i + 1, v) == DuckDBError)
            goto out;
    }
    if (duckdb_execute_prepared(p, &r) == DuckDBError || duckdb_row_count(&r) != 1 ||
        duckdb_value_is_null(&r, 0, 0))
        goto out;
    *us = duckdb_value_timestamp(&r, 0, 0).micros;
    *exact = !duckdb_value_is_null(&r, 1, 0) && duckdb_value_boolean(&r, 1, 0);
    rc = 0;
out:
    duckdb_destroy_result(&r);
    duckdb_destroy_prepare(&p);
    duckdb_free(sql);
    free(txt);
    json_decref(x);
    json_decref(stmt);
    return rc;
}

typedef struct hours {
    int all;        /* every hour */
    int none;       /* the query cannot reach events */
    int raw;        /* the query can reach the whole event: the extracting view */
    int64_t lo, hi; /* inclusive hour numbers */
} hours;

/*
 * 1 if sql is one plain SELECT (what json_serialize_sql accepts); then *ast is
 * its parse tree, or NULL when jansson cannot hold it (an integer literal
 * beyond 64 bits): the query then reads every file. *names (when not NULL)
 * gets the same tree with such integers as reals, which jansson always holds:
 * enough to see what the query names. Parses only: nothing is bound or run.
 */
static int select_tree(query_conn *q, const char *sql, json_t **ast, json_t **names)
{
    *ast = NULL;
    if (names) *names = NULL;
    duckdb_result r;
    memset(&r, 0, sizeof r); /* a zeroed result may be destroyed whether or not it was filled */
    duckdb_prepared_statement ser = reused_get(q->c, &q->serialize);
    if (!ser || duckdb_bind_varchar(ser, 1, sql) == DuckDBError ||
        duckdb_execute_prepared(ser, &r) == DuckDBError) {
        duckdb_destroy_result(&r);
        return 0;
    }
    char *txt = duckdb_value_varchar(&r, 0, 0);
    duckdb_destroy_result(&r);
    if (!txt) return 0;
    json_t *loose = json_loads(txt, JSON_DECODE_INT_AS_REAL, NULL);
    int ok = loose && json_is_false(json_object_get(loose, "error")) &&
             json_array_size(json_object_get(loose, "statements")) == 1;
    if (ok) *ast = load_tree(txt);
    if (ok && names)
        *names = loose;
    else
        json_decref(loose);
    duckdb_free(txt);
    return ok;
}

/* hidden.h: the parse tree of a string given to query(). */
static json_t *parse_for_names(void *ud, const char *sql)
{
    json_t *ast, *names;
    if (!select_tree(ud, sql, &ast, &names)) return NULL;
    json_decref(ast);
    return names;
}

/*
 * The hours the query can touch; ast NULL: every hour. A bound is widened to
 * the microsecond at or beyond it (ts < x: the last microsecond before x, when
 * x is one exactly), then to its hour; ±infinity become hours no partition
 * has, so '-infinity' prunes nothing and 'infinity' as a lower bound all.
 * *aborted: a bound's evaluation failed in a way that ended the transaction
 * (an error try() does not catch, as a parameter that cannot be converted):
 * the caller must begin another, and every hour is read.
 */
static hours query_hours(query_conn *q, json_t *ast, json_t *params, const char *table,
                         const char *column, int *aborted)
{
    hours h = {1, 0, 1, 0, 0};
    *aborted = 0;
    if (!ast) return h;
    json_t *named =
        json_object_get(json_array_get(json_object_get(ast, "statements"), 0), "named_param_map");
    prune_result pr;
    prune_analyse_table(ast, table, column, &pr);
    h.raw = pr.raw;
    if (pr.no_events) {
        h.all = 0;
        h.none = 1;
    } else if (!pr.unbounded && pr.nrefs > 0) {
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        int lo_open = 0, hi_open = 0, failed = 0; /* failed: some bound could not be evaluated */
        for (int i = 0; i < pr.nrefs; i++) {
            prune_ref *ref = &pr.refs[i];
            int64_t rlo = INT64_MIN, rhi = INT64_MAX;
            int have_lo = 0, have_hi = 0;
            for (int k = 0; k < ref->nlo; k++) {
                int64_t us;
                int exact;
                if (eval_bound(q, ref->lo[k].expr, params, named, &us, &exact)) {
                    failed = 1;
                    continue;
                }
                if (!exact && us > INT64_MIN) us -= 1;
                if (us > rlo || !have_lo) rlo = us;
                have_lo = 1;
            }
            for (int k = 0; k < ref->nhi; k++) {
                int64_t us;
                int exact;
                if (eval_bound(q, ref->hi[k].expr, params, named, &us, &exact)) {
                    failed = 1;
                    continue;
                }
                if (exact && ref->hi[k].strict && us > INT64_MIN)
                    us -= 1; /* ts < x: the last microsecond before x */
                else if (!exact && us < INT64_MAX)
                    us += 1;
                if (us < rhi || !have_hi) rhi = us;
                have_hi = 1;
            }
            if (!have_lo) lo_open = 1;
            if (!have_hi) hi_open = 1;
            if (have_lo && rlo < lo) lo = rlo;
            if (have_hi && rhi > hi) hi = rhi;
        }
        char e2[256];
        if (failed && exec(q->c, "SELECT 1", e2, sizeof e2)) {
            *aborted = 1;
        } else if (!lo_open || !hi_open) {
            h.all = 0;
            h.lo = lo_open ? INT64_MIN : hour_of_us(lo);
            h.hi = hi_open ? INT64_MAX : hour_of_us(hi);
        }
    }
    prune_free(&pr);
    return h;
}

/*
 * The quarantine's view (quarantine.h): one row per refused record, from its files under
 * rejected/ and the spool's quarantine segments. A quarantine line is at most twice the
 * refused record, which can be as large as --max-body. DuckDB fails a whole read at a line
 * over about twice its maximum_object_size (16 MiB by default; it reserves buffers of that
 * size per thread, against the memory limit): so with a --max-body over about 15 MiB, and
 * files large enough to hold such a line, it is raised to the longest line there can be.
 */
#define REJECTED_LINE_READ (30u << 20) /* what the default surely reads */
static const char REJECTED_COLUMNS[] =
    "id, receivedAt, requestId, \"index\", class, reason, token, route, raw, rawBase64";
static const char REJECTED_SCHEMA[] =
    "format = 'newline_delimited', ignore_errors = true, "
    "columns = {id: 'VARCHAR', receivedAt: 'TIMESTAMP', requestId: 'VARCHAR', \"index\": 'BIGINT', "
    "class: 'VARCHAR', reason: 'VARCHAR', token: 'VARCHAR', route: 'VARCHAR', raw: 'VARCHAR', "
    "rawBase64: 'VARCHAR'}";
static const char REJECTED_EMPTY[] =
    "SELECT NULL::VARCHAR AS id, NULL::TIMESTAMP AS receivedAt, NULL::VARCHAR AS requestId, "
    "NULL::BIGINT AS \"index\", NULL::VARCHAR AS class, NULL::VARCHAR AS reason, "
    "NULL::VARCHAR AS token, NULL::VARCHAR AS route, NULL::VARCHAR AS raw, "
    "NULL::VARCHAR AS rawBase64 WHERE false";

/* A file of the live list: an events JSONL file, a Parquet file, or a quarantine file. */
enum { FILE_JSONL = 0, FILE_PARQUET = 1, FILE_REJECTED = 2 };

/* The columns of a compacted file (compact.c writes them): the view's, by name. */
static const char PARQUET_COLUMNS[] =
    "id, type, ts, receivedAt, \"do\", do_id, do_name, do_class, do_colo, method, durationMs, "
    "success, error, collection, docId, doc, prev, bookmark";

/* Adds a file to the live list; -2 out of memory. */
static int live_add(live *l, const char *key, uint64_t size, int what)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        lake_cache_item *ni = realloc(l->it, nc * sizeof *ni);
        if (ni) l->it = ni;
        unsigned char *np = ni ? realloc(l->parquet, nc) : NULL;
        if (np) l->parquet = np;
        if (!ni || !np) return -2;
        l->cap = nc;
    }
    lake_cache_item *it = &l->it[l->n];
    if (!(it->key = strdup(key))) return -2;
    it->size = size;
    it->path = NULL;
    l->parquet[l->n++] = (unsigned char)what;
    return 0;
}

static int on_partition(lake_partition *p, void *ud)
{
    live *l = ud;
    if (!l->h->all && (p->hour < l->h->lo || p->hour > l->h->hi)) return 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!p->f[i].live) continue;
        int rc =
            live_add(l, p->f[i].key, p->f[i].size, p->f[i].parquet ? FILE_PARQUET : FILE_JSONL);
        if (rc) return rc;
    }
    return 0;
}

typedef struct rlist {
    live *l;
    const hours *h;
    int oom;
} rlist;

/* A quarantine file of the hours asked for (every file under rejected/ is live). */
static int on_rejected(const store_entry *e, void *ud)
{
    rlist *r = ud;
    int64_t hour;
    if (lake_parse_rejected_key(e->key, &hour)) return 0; /* not a segment */
    if (!r->h->all && (hour < r->h->lo || hour > r->h->hi)) return 0;
    if (live_add(r->l, e->key, e->size, FILE_REJECTED)) r->oom = 1;
    return r->oom;
}

/* Lists the quarantine's files for the hours of h, by hour or day as list_lake does. */
static int list_rejected(query_engine *e, live *l, const hours *h, char *err, size_t errlen)
{
    rlist r = {l, h, 0};
    int rc = 0;
    char prefix[LAKE_KEY_MAX], last[LAKE_KEY_MAX] = "", why[512];
    if (!h->all && h->lo != INT64_MIN && h->hi != INT64_MAX && h->hi - h->lo < 24 * 62) {
        for (int64_t hr = h->lo; hr <= h->hi && !rc && !r.oom; hr++) {
            if (h->hi - h->lo < 24 * 2)
                lake_rejected_hour_prefix(hr, prefix);
            else
                lake_rejected_day_prefix(hr, prefix);
            if (!strcmp(prefix, last)) continue;
            memcpy(last, prefix, sizeof last);
            rc = store_list(e->store, prefix, on_rejected, &r, why, sizeof why);
        }
    } else {
        rc = store_list(e->store, LAKE_REJECTED_PREFIX, on_rejected, &r, why, sizeof why);
    }
    if (rc == STORE_ENOENT) rc = 0; /* nothing refused yet */
    if (r.oom || rc) {
        snprintf(err, errlen, "query: cannot list the quarantine: %s",
                 r.oom ? "out of memory" : why);
        return -1;
    }
    return 0;
}

/* Lists the lake's live files for the hours; per hour directory when there are few. */
static int list_lake(query_engine *e, live *l, char *err, size_t errlen)
{
    const hours *h = l->h;
    int rc = 0;
    if (!h->all && h->lo != INT64_MIN && h->hi != INT64_MAX && h->hi - h->lo < 24 * 2) {
        for (int64_t hr = h->lo; hr <= h->hi && !rc; hr++) {
            char prefix[LAKE_KEY_MAX];
            lake_hour_prefix(hr, prefix);
            rc = lake_partitions_list(e->store, prefix, on_partition, l, err, errlen);
        }
    } else if (!h->all && h->lo != INT64_MIN && h->hi != INT64_MAX && h->hi - h->lo < 24 * 62) {
        /* a day at a time (on an object store, a request per day rather than per hour);
         * on_partition drops the hours out of range */
        char last[LAKE_KEY_MAX] = "";
        for (int64_t hr = h->lo; hr <= h->hi && !rc; hr++) {
            char prefix[LAKE_KEY_MAX];
            lake_day_prefix(hr, prefix);
            if (!strcmp(prefix, last)) continue;
            memcpy(last, prefix, sizeof last);
            rc = lake_partitions_list(e->store, prefix, on_partition, l, err, errlen);
        }
    } else {
        rc = lake_partitions_list(e->store, LAKE_EVENTS_PREFIX, on_partition, l, err, errlen);
    }
    if (rc == -2)
        snprintf(err, errlen, "out of memory");
    else if (rc) {
        char m[1024];
        snprintf(m, sizeof m, "query: %s", err);
        snprintf(err, errlen, "%s", m);
    }
    return rc;
}

static void live_free(query_conn *q, live *l)
{
    if (q->e->cache && l == &q->fetched) {
        lake_cache_unpin(q->e->cache, l->it, l->n);
    } else {
        for (size_t i = 0; i < l->n; i++) free(l->it[i].path);
    }
    for (size_t i = 0; i < l->n; i++) free((char *)l->it[i].key);
    free(l->it);
    free(l->parquet);
    memset(l, 0, sizeof *l);
}

static void add_file(buf *list, uint64_t *n, const char *path)
{
    if ((*n)++) buf_putc(list, ',');
    query_sql_quote(list, path);
}

/*
 * Replaces this connection's events view with one over the files the query
 * needs: the live files of its hours (from the cache for an s3 lake, pinned
 * in q->fetched until the query ends) and the spool's unsealed segments; and
 * its rejected view the same way, over the quarantine's files of the hours hr
 * of their receive time.
 */
static int make_view(query_conn *q, const hours *h, const hours *hr, lake_spool_pins **pins,
                     uint64_t *nfiles, char *err, size_t errlen)
{
    query_engine *e = q->e;
    live *l = &q->fetched;
    l->h = h;
    buf jl = BUF_INIT, pl = BUF_INIT, rl = BUF_INIT;
    uint64_t nj = 0, np = 0, nr = 0, rmax = 0; /* rmax: the largest quarantine file */
    int rc = 0;
    if (!h->none || !hr->none) {
        if (e->writer && lake_writer_pin_spool(e->writer, pins)) {
            snprintf(err, errlen, "query: out of memory");
            return -1;
        }
        /* pinned first, listed second: every event is in exactly one of the two */
        if (!h->none) rc = list_lake(e, l, err, errlen);
        if (!rc && !hr->none) rc = list_rejected(e, l, hr, err, errlen);
        if (rc) { /* nothing was fetched or pinned: live_free must not unpin */
            for (size_t i = 0; i < l->n; i++) free((char *)l->it[i].key);
            l->n = 0;
        }
        if (!rc && e->cache) {
            char m[1024];
            if (lake_cache_fetch(e->cache, e->store, l->it, l->n, 8, m, sizeof m)) {
                snprintf(err, errlen, "query: cannot fetch the lake's files: %s", m);
                for (size_t i = 0; i < l->n; i++) free((char *)l->it[i].key);
                l->n = 0;
                rc = -1;
            }
        }
        for (size_t i = 0; !rc && i < l->n; i++) {
            char path[4096];
            const char *pa = l->it[i].path;
            if (!pa) {
                snprintf(path, sizeof path, "%s/%s", e->root, l->it[i].key);
                if (!(l->it[i].path = strdup(path))) rc = -1;
                pa = path;
            }
            if (l->parquet[i] == FILE_PARQUET) {
                add_file(&pl, &np, pa);
            } else if (l->parquet[i] == FILE_REJECTED) {
                add_file(&rl, &nr, pa);
                if (l->it[i].size > rmax) rmax = l->it[i].size;
            } else
                add_file(&jl, &nj, pa);
        }
        for (size_t i = 0; !rc && i < lake_spool_pins_count(*pins); i++) {
            int kind;
            int64_t hour;
            char path[4096];
            lake_spool_pins_get(e->writer, *pins, i, &kind, &hour, path, sizeof path);
            const hours *want = kind == LAKE_KIND_REJECTED ? hr : h;
            if (want->none || (!want->all && (hour < want->lo || hour > want->hi))) continue;
            if (kind == LAKE_KIND_REJECTED) {
                struct stat st;
                if (!stat(path, &st) && (uint64_t)st.st_size > rmax) rmax = (uint64_t)st.st_size;
                add_file(&rl, &nr, path);
            } else {
                add_file(&jl, &nj, path);
            }
        }
    }
    if (!rc) {
        buf sql = BUF_INIT;
        buf_puts(&sql, "CREATE OR REPLACE TEMP VIEW events AS ");
        if (!h->raw && nj) {
            buf_printf(&sql, "SELECT %s FROM read_json([", TYPED_COLUMNS);
            buf_append(&sql, jl.p, jl.len);
            buf_printf(&sql, "], %s) WHERE id IS NOT NULL OR type IS NOT NULL", TYPED_SCHEMA);
        } else if (nj) {
            buf_printf(&sql, "SELECT %s FROM read_ndjson_objects([", QUERY_VIEW_COLUMNS);
            buf_append(&sql, jl.p, jl.len);
            /* a segment being written may end in a torn line: it reads as NULL, dropped here;
             * a line with neither id nor type is no event (as in the typed view) */
            buf_puts(&sql, "], ignore_errors = true) WHERE json IS NOT NULL AND "
                           "((json->>'id') IS NOT NULL OR (json->>'type') IS NOT NULL)");
        }
        if (np) {
            if (nj) buf_puts(&sql, " UNION ALL ");
            buf_printf(&sql, "SELECT %s%s FROM read_parquet([", PARQUET_COLUMNS,
                       h->raw ? ", event" : "");
            buf_append(&sql, pl.p, pl.len);
            buf_puts(&sql, "])");
        }
        if (!nj && !np)
            buf_printf(&sql, "SELECT %s FROM (SELECT NULL::JSON AS json WHERE false)",
                       QUERY_VIEW_COLUMNS);
        rc = buf_cstr(&sql) ? exec(q->c, sql.p, err, errlen) : -1;
        sql.len = 0;
        /* a torn last line of a segment being written reads as a row of NULLs, dropped */
        buf_puts(&sql, "CREATE OR REPLACE TEMP VIEW rejected AS ");
        if (nr) {
            buf_printf(&sql, "SELECT %s FROM read_json([", REJECTED_COLUMNS);
            buf_append(&sql, rl.p, rl.len);
            buf_printf(&sql, "], %s", REJECTED_SCHEMA);
            uint64_t longest = rmax < e->max_rejected_line ? rmax : e->max_rejected_line;
            if (longest > REJECTED_LINE_READ)
                buf_printf(&sql, ", maximum_object_size = %llu",
                           (unsigned long long)(longest < UINT32_MAX ? longest + 1 : UINT32_MAX));
            buf_puts(&sql, ") WHERE id IS NOT NULL");
        } else {
            buf_puts(&sql, REJECTED_EMPTY);
        }
        if (!rc) rc = buf_cstr(&sql) ? exec(q->c, sql.p, err, errlen) : -1;
        buf_free(&sql);
    }
    buf_free(&jl);
    buf_free(&pl);
    buf_free(&rl);
    *nfiles = nj + np + nr;
    return rc;
}

/* ---- statement checks --------------------------------------------------------- */

static const char *statement_name(duckdb_statement_type t)
{
    static const char *names[] = {"INVALID",      "SELECT",       "INSERT",          "UPDATE",
                                  "EXPLAIN",      "DELETE",       "PREPARE",         "CREATE",
                                  "EXECUTE",      "ALTER",        "TRANSACTION",     "COPY",
                                  "ANALYZE",      "SET VARIABLE", "CREATE FUNCTION", "DROP",
                                  "EXPORT",       "PRAGMA",       "VACUUM",          "CALL",
                                  "SET",          "LOAD",         "RELATION",        "EXTENSION",
                                  "LOGICAL PLAN", "ATTACH",       "DETACH",          "MULTI"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "unknown";
}

static const char *skip_space(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

static int keyword(const char **p, const char *kw)
{
    size_t n = strlen(kw);
    if (strncasecmp(*p, kw, n)) return 0;
    char c = (*p)[n];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return 0;
    *p = skip_space(*p + n);
    return 1;
}

/* The statement an EXPLAIN explains: after EXPLAIN [ANALYZE] [(options)]. */
static const char *explained(const char *sql)
{
    const char *p = skip_space(sql);
    if (!keyword(&p, "EXPLAIN")) return NULL;
    if (*p == '(') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '(') depth++;
            if (*p == ')' && --depth == 0) {
                p++;
                break;
            }
        }
        p = skip_space(p);
    }
    if (!keyword(&p, "ANALYZE")) keyword(&p, "ANALYSE");
    return p;
}

/* The first word of a statement, upper-cased, for messages. */
static void first_word(const char *sql, char *out, size_t cap)
{
    const char *p = skip_space(sql);
    size_t n = 0;
    while (n + 1 < cap && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) {
        out[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        p++;
    }
    out[n] = 0;
    if (!n) snprintf(out, cap, "an unknown");
}

/* 1 if s (after a keyword) is only a name: letters, digits, _, ., quotes, spaces, a ';'. */
static int only_a_name(const char *s)
{
    s = skip_space(s);
    if (!*s) return 1; /* SHOW with nothing after it: SHOW TABLES without TABLES */
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '"' || *s == ' ' || *s == '\t' || *s == '\n' ||
              *s == '\r' || *s == ';'))
            return 0;
    return 1;
}

/* admit's last step: returns ast if names holds nothing hidden (hidden.h), else refuses. */
static json_t *no_hidden_names(query_conn *q, json_t *ast, json_t *names, int *ok, char *err,
                               size_t errlen)
{
    int rc = hidden_check(names, parse_for_names, q, err, errlen);
    json_decref(names);
    if (!rc) return ast;
    json_decref(ast);
    *ok = 0;
    return NULL;
}

/*
 * Decides from the parse alone, before anything is bound, whether a statement
 * may run: binding can have effects (EXPORT DATABASE creates its directory
 * when it is prepared). Allowed: a plain SELECT; EXPLAIN of one; DESCRIBE,
 * SHOW or SUMMARIZE of a name or of a plain SELECT; in each, nothing that
 * hidden.h hides. Returns the parse tree of the SELECT that will run (for
 * pruning; for DESCRIBE and SHOW of a name, that of SELECT * FROM it; NULL
 * when there is none), *ok 1 if allowed, or *ok 0 with the reason in err.
 */
static json_t *admit(query_conn *q, const char *sql, int *ok, char *err, size_t errlen)
{
    *ok = 1;
    json_t *ast = NULL, *names = NULL;
    if (select_tree(q, sql, &ast, &names)) return no_hidden_names(q, ast, names, ok, err, errlen);
    const char *inner = explained(sql);
    if (inner) {
        if (select_tree(q, inner, &ast, &names))
            return no_hidden_names(q, ast, names, ok, err, errlen);
        char w[24];
        first_word(inner, w, sizeof w);
        snprintf(err, errlen,
                 "only read statements run here (SELECT; EXPLAIN of a SELECT; DESCRIBE, SHOW or "
                 "SUMMARIZE), not an EXPLAIN of a statement beginning with %s",
                 w);
        *ok = 0;
        return NULL;
    }
    const char *p = skip_space(sql);
    if (keyword(&p, "DESCRIBE") || keyword(&p, "SHOW") || keyword(&p, "SUMMARIZE")) {
        if (only_a_name(p)) { /* what it names, as a SELECT from it would, and read as one:
                               * DESCRIBE events lists no file of the quarantine */
            buf b = BUF_INIT;
            buf_printf(&b, "SELECT * FROM %s", p);
            if (!buf_cstr(&b) || !select_tree(q, b.p, &ast, &names)) ast = names = NULL;
            buf_free(&b);
            return no_hidden_names(q, ast, names, ok, err, errlen);
        }
        if (select_tree(q, p, &ast, &names)) return no_hidden_names(q, ast, names, ok, err, errlen);
    }
    char w[24];
    first_word(sql, w, sizeof w);
    snprintf(err, errlen,
             "only read statements run here (SELECT; EXPLAIN of a SELECT; DESCRIBE, SHOW or "
             "SUMMARIZE), not a statement beginning with %s",
             w);
    *ok = 0;
    return NULL;
}

/* 0 if the prepared statement only reads (a second look, after admit); else -1 with the reason. */
static int check_read_only(query_conn *q, duckdb_prepared_statement p, const char *sql, char *err,
                           size_t errlen)
{
    duckdb_statement_type t = duckdb_prepared_statement_type(p);
    (void)q;
    /* EXPLAIN got here only over a SELECT (admit parsed what it explains) */
    if (t == DUCKDB_STATEMENT_TYPE_SELECT || (t == DUCKDB_STATEMENT_TYPE_EXPLAIN && explained(sql)))
        return 0;
    snprintf(err, errlen,
             "only read statements run here (SELECT; EXPLAIN of a SELECT; DESCRIBE, SHOW or "
             "SUMMARIZE), not a %s statement",
             statement_name(t));
    return -1;
}

/* ---- running ------------------------------------------------------------------- */

static void fail(query_outcome *o, unsigned status, const char *msg)
{
    o->status = status;
    snprintf(o->error, sizeof o->error, "%s", msg);
}

/* The message of an answer stopped by its deadline. */
static void time_limit(query_outcome *o, const query_request *req)
{
    char m[128];
    snprintf(m, sizeof m, "query stopped after %lld ms: the query time limit",
             (long long)(req->timeout_ms ? req->timeout_ms : 30000));
    fail(o, 504, m);
}

/*
 * After a query ran out of memory, what it freed goes back to the system at
 * once, or the next query (on another of DuckDB's threads, hence another
 * jemalloc arena) would find no room under --memory-max until jemalloc's own
 * decay gave it back, seconds later. DuckDB's Linux builds link jemalloc and
 * export its mallctl; the C API has no call for it, so it is looked up, and a
 * build without it is not purged (its allocator returns memory its own way).
 */
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
static mallctl_fn je_mallctl;
static pthread_once_t je_once = PTHREAD_ONCE_INIT;

static void je_lookup(void)
{
    je_mallctl = (mallctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "duckdb_je_mallctl");
}

static void allocator_purge(void)
{
    pthread_once(&je_once, je_lookup);
    if (je_mallctl) je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0); /* 4096: every arena */
}

/* A statement DuckDB could not prepare; running out of memory there is said as when running. */
static void prepare_error(query_outcome *o, const char *msg)
{
    if (msg && !strncmp(msg, "Out of Memory Error", 19)) {
        char m[1024];
        snprintf(m, sizeof m, "query exceeded the memory limit: %s", msg);
        o->out_of_memory = 1;
        fail(o, 400, m);
        return;
    }
    fail(o, 400, msg ? msg : "query failed");
}

static void duck_error(query_conn *q, query_outcome *o, duckdb_result *r, const query_request *req)
{
    duckdb_error_type t = duckdb_result_error_type(r);
    const char *msg = duckdb_result_error(r);
    if (t == DUCKDB_ERROR_INTERRUPT && atomic_load(&q->timed_out)) {
        time_limit(o, req);
    } else if (t == DUCKDB_ERROR_OUT_OF_MEMORY) {
        o->out_of_memory = 1;
        char m[1024];
        snprintf(m, sizeof m, "query exceeded the memory limit: %s", msg ? msg : "out of memory");
        fail(o, 400, m);
    } else {
        fail(o, 400, msg ? msg : "query failed");
    }
}

/* Renders the answer in pieces of about FLUSH_AT bytes (query.h, query_sink). */
#define FLUSH_AT 65536

typedef struct render {
    query_conn *q;
    const query_request *req;
    const query_sink *sink;
    query_outcome *o;
    result_type **types;
    idx_t ncols;
    char **names;
    buf out;            /* rendered, not yet handed to the sink: whole rows only */
    uint64_t rendered;  /* rows rendered (those in out included) */
    uint64_t max_bytes; /* o->bytes + out.len stays within it, the trailer aside */
    int64_t deadline;   /* monotonic ms */
} render;

static void header(render *rd)
{
    buf *b = &rd->out;
    if (rd->req->format == QUERY_JSON) {
        buf_puts(b, "{\"columns\":[");
        for (idx_t i = 0; i < rd->ncols; i++) {
            buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
            buf_json_str(b, rd->names[i], strlen(rd->names[i]));
            buf_puts(b, ",\"type\":");
            const char *tn = result_type_name(rd->types[i]);
            buf_json_str(b, tn, strlen(tn));
            buf_putc(b, '}');
        }
        buf_puts(b, "],\"rows\":[");
    } else if (rd->req->format == QUERY_CSV) {
        for (idx_t i = 0; i < rd->ncols; i++) {
            if (i) buf_putc(b, ',');
            const char *n = rd->names[i];
            if (strpbrk(n, ",\"\n\r")) {
                buf_putc(b, '"');
                for (const char *p = n; *p; p++) {
                    if (*p == '"') buf_putc(b, '"');
                    buf_putc(b, *p);
                }
                buf_putc(b, '"');
            } else {
                buf_puts(b, n);
            }
        }
        buf_putc(b, '\n');
    }
}

/*
 * Renders row r of a chunk after the rows in rd->out: 0, -1 out of memory, or
 * RESULT_OVER when it would take the answer past max_bytes (out is then as it
 * was: an answer holds whole rows only).
 */
static int row(render *rd, duckdb_data_chunk ch, idx_t r)
{
    buf *b = &rd->out;
    size_t start = b->len;
    /* the header alone may be over: then no row fits */
    size_t limit = rd->max_bytes > rd->o->bytes ? (size_t)(rd->max_bytes - rd->o->bytes) : 0;
    enum query_format f = rd->req->format;
    int rc = 0;
    if (f == QUERY_JSON) buf_puts(b, rd->rendered ? ",[" : "[");
    if (f == QUERY_NDJSON) buf_putc(b, '{');
    for (idx_t i = 0; i < rd->ncols && !rc; i++) {
        duckdb_vector v = duckdb_data_chunk_get_vector(ch, i);
        if (i) buf_putc(b, ',');
        if (f == QUERY_NDJSON) {
            buf_json_str(b, rd->names[i], strlen(rd->names[i]));
            buf_putc(b, ':');
        }
        rc = f == QUERY_CSV ? result_csv(b, rd->types[i], v, r, limit)
                            : result_json(b, rd->types[i], v, r, limit);
    }
    if (!rc) buf_puts(b, f == QUERY_JSON ? "]" : f == QUERY_NDJSON ? "}\n" : "\n");
    if (!rc && !b->p) rc = -1;
    if (!rc && b->len > limit) rc = RESULT_OVER;
    if (rc) {
        b->len = start;
        return rc;
    }
    rd->rendered++;
    return 0;
}

static const char *content_type(enum query_format f)
{
    return f == QUERY_CSV      ? "text/csv; charset=utf-8"
           : f == QUERY_NDJSON ? "application/x-ndjson"
                               : "application/json";
}

/*
 * Hands the rendered rows to the sink (beginning the answer first), waiting
 * for the client up to the deadline. Returns 0, or -1 with the outcome saying
 * why: 499 the client left, 504 the deadline passed (the answer is broken).
 */
static int deliver(render *rd)
{
    query_outcome *o = rd->o;
    if (!o->streamed) {
        if (rd->sink->begin(rd->sink->ud, content_type(rd->req->format))) {
            fail(o, 499, "the client went away");
            return -1;
        }
        o->streamed = 1;
    }
    if (rd->out.len && rd->sink->write(rd->sink->ud, rd->out.p, rd->out.len, rd->deadline)) {
        o->broken = 1;
        if (evtime_mono_ms() >= rd->deadline)
            time_limit(o, rd->req);
        else
            fail(o, 499, "the client went away");
        return -1;
    }
    o->bytes += rd->out.len;
    o->rows = rd->rendered;
    rd->out.len = 0;
    if (rd->out.cap > 4 * FLUSH_AT) buf_free(&rd->out); /* after one large row */
    return 0;
}

/* Renders and hands over the rows of res until its end, a limit, or a failure (in o). */
static void render_rows(render *rd, duckdb_result *res)
{
    query_outcome *o = rd->o;
    uint64_t max_rows = rd->req->max_rows ? rd->req->max_rows : 100000;
    header(rd);
    for (;;) {
        duckdb_data_chunk ch = duckdb_fetch_chunk(*res);
        if (!ch) {
            if (duckdb_result_error(res)) duck_error(rd->q, o, res, rd->req);
            return;
        }
        idx_t size = duckdb_data_chunk_get_size(ch);
        int stop = 0;
        for (idx_t r = 0; r < size && !stop; r++) {
            int rc;
            if (atomic_load_explicit(&rd->q->timed_out, memory_order_relaxed)) {
                time_limit(o, rd->req); /* DuckDB was done: the rendering took the time */
                stop = 1;
            } else if (rd->rendered == max_rows) {
                o->truncated = stop = 1;
            } else if ((rc = row(rd, ch, r)) == RESULT_OVER) {
                o->truncated = o->over_bytes = stop = 1;
            } else if (rc) {
                fail(o, 503, "out of memory rendering the answer");
                stop = 1;
            } else if (rd->out.len >= FLUSH_AT && deliver(rd)) {
                stop = 1;
            }
        }
        duckdb_destroy_data_chunk(&ch);
        if (stop) return;
    }
}

/*
 * Ends the answer once the rows are rendered: an error answer if nothing was
 * sent; else the rest of the rows (unless the query failed: rows rendered
 * after the last piece sent are dropped) and the format's ending, with the
 * marker of a cut answer (query.h). The ending is a few bytes and does not
 * wait for the client.
 */
static void end_answer(render *rd, int64_t t0)
{
    query_outcome *o = rd->o;
    if (o->status == 499 || o->broken || (o->status != 200 && !o->streamed)) return;
    if (o->status == 200 && deliver(rd)) return;
    if (o->over_bytes && o->status == 200)
        snprintf(o->error, sizeof o->error, "answer cut at %llu bytes: the answer size limit",
                 (unsigned long long)rd->max_bytes);
    o->cut = o->status != 200 || o->over_bytes;
    o->truncated |= o->cut;
    o->elapsed_ms = (double)(evtime_mono_ns() - t0) / 1e6;
    buf end = BUF_INIT;
    if (rd->req->format == QUERY_JSON) {
        buf_printf(&end, "],\"rowCount\":%llu,\"truncated\":%s,", (unsigned long long)o->rows,
                   o->truncated ? "true" : "false");
        if (o->cut) {
            buf_puts(&end, "\"error\":");
            buf_json_str(&end, o->error, strlen(o->error));
            buf_putc(&end, ',');
        }
        buf_printf(&end, "\"files\":%llu,\"elapsedMs\":%.3f}", (unsigned long long)o->files,
                   o->elapsed_ms);
    } else if (rd->req->format == QUERY_NDJSON && o->cut) {
        buf_puts(&end, "{\"error\":");
        buf_json_str(&end, o->error, strlen(o->error));
        buf_puts(&end, "}\n");
    }
    if (end.len && (!end.p || rd->sink->write(rd->sink->ud, end.p, end.len, 0))) {
        o->broken = 1;
        if (o->status == 200)
            fail(o, end.p ? 499 : 503, end.p ? "the client went away" : "out of memory");
    } else {
        o->bytes += end.len;
    }
    buf_free(&end);
}

/* The column renderers of res; -1 with the outcome set if a type cannot be sent. */
static int column_types(render *rd, duckdb_result *res)
{
    char err[1024];
    rd->ncols = duckdb_column_count(res);
    rd->types = calloc(rd->ncols ? rd->ncols : 1, sizeof *rd->types);
    rd->names = calloc(rd->ncols ? rd->ncols : 1, sizeof *rd->names);
    if (!rd->types || !rd->names) {
        fail(rd->o, 503, "out of memory");
        return -1;
    }
    for (idx_t i = 0; i < rd->ncols; i++) {
        duckdb_logical_type t = duckdb_column_logical_type(res, i);
        rd->types[i] = result_type_new(t, err, sizeof err);
        duckdb_destroy_logical_type(&t);
        rd->names[i] = (char *)duckdb_column_name(res, i);
        if (!rd->types[i]) {
            fail(rd->o, 400, err);
            return -1;
        }
    }
    return 0;
}

/*
 * The steps before running: one statement, admitted, its hours, the events
 * view, prepared, checked and bound. Returns the prepared statement, or NULL
 * with the outcome set.
 */
static duckdb_prepared_statement prepare(query_conn *q, const query_request *req,
                                         duckdb_extracted_statements *st, lake_spool_pins **pins,
                                         int *in_tx, query_outcome *o)
{
    char err[1024];
    duckdb_prepared_statement p = NULL;
    if (!req->sql || !*req->sql) {
        fail(o, 400, "empty query");
        return NULL;
    }
    if (req->params && !json_is_array(req->params)) {
        fail(o, 400, "params must be an array");
        return NULL;
    }
    idx_t n = duckdb_extract_statements(q->c, req->sql, st);
    if (n != 1) {
        const char *m = n ? NULL : duckdb_extract_statements_error(*st);
        if (n > 1)
            snprintf(err, sizeof err, "one statement per query: this text has %llu",
                     (unsigned long long)n);
        fail(o, 400, n > 1 ? err : m && *m ? m : "empty query");
        return NULL;
    }
    int admitted;
    json_t *ast = admit(q, req->sql, &admitted, err, sizeof err);
    if (!admitted) {
        fail(o, 400, err);
        return NULL;
    }
    /* one transaction from the bounds' evaluation to the end of the query: now() and the
     * other clock functions are then the same instant in both (DuckDB gives the
     * transaction's start), so a bound like now() - INTERVAL 1 HOUR prunes exactly */
    if (exec(q->c, "BEGIN TRANSACTION", err, sizeof err) &&
        (exec(q->c, "ROLLBACK", err, sizeof err),
         exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        fail(o, 503, err);
        json_decref(ast);
        return NULL;
    }
    *in_tx = 1;
    int aborted;
    hours h = query_hours(q, ast, req->params, "events", "ts", &aborted), hr;
    if (aborted && (exec(q->c, "ROLLBACK", err, sizeof err) ||
                    exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        fail(o, 503, err);
        json_decref(ast);
        return NULL;
    }
    hr = query_hours(q, ast, req->params, "rejected", "receivedAt", &aborted);
    json_decref(ast);
    if (atomic_load(&q->timed_out)) { /* the watchdog stopped a bound: the query gets no more */
        time_limit(o, req);
        return NULL;
    }
    if (aborted && (exec(q->c, "ROLLBACK", err, sizeof err) ||
                    exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        fail(o, 503, err);
        return NULL;
    }
    if (make_view(q, &h, &hr, pins, &o->files, err, sizeof err)) {
        fail(o, 503, err);
        return NULL;
    }
    if (duckdb_prepare_extracted_statement(q->c, *st, 0, &p) == DuckDBError) {
        prepare_error(o, duckdb_prepare_error(p));
        duckdb_destroy_prepare(&p);
        return NULL;
    }
    if (check_read_only(q, p, req->sql, err, sizeof err) ||
        bind_params(p, req->params, err, sizeof err)) {
        fail(o, 400, err);
        duckdb_destroy_prepare(&p);
        return NULL;
    }
    return p;
}

void query_run(query_conn *q, const query_request *req, const query_sink *sink, query_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->status = 200;
    int64_t t0 = evtime_mono_ns();
    duckdb_extracted_statements st = NULL;
    duckdb_result res;
    int have_res = 0;
    lake_spool_pins *pins = NULL;
    render rd = {.q = q, .req = req, .sink = sink, .o = o, .out = BUF_INIT};
    rd.max_bytes = req->max_bytes ? req->max_bytes : QUERY_MAX_BYTES_DEFAULT;
    int in_tx = 0;
    atomic_store(&q->timed_out, 0);
    /* the time limit covers the whole query, the evaluation of its time bounds included */
    rd.deadline = evtime_mono_ms() + (req->timeout_ms ? req->timeout_ms : 30000);
    atomic_store(&q->deadline_ms, rd.deadline);

    duckdb_prepared_statement p = prepare(q, req, &st, &pins, &in_tx, o);
    if (!p) goto done;
    have_res = 1;
    if (duckdb_execute_prepared_streaming(p, &res) == DuckDBError)
        duck_error(q, o, &res, req);
    else if (!column_types(&rd, &res))
        render_rows(&rd, &res);
    end_answer(&rd, t0);
done:
    atomic_store(&q->deadline_ms, 0);
    if (!o->elapsed_ms) o->elapsed_ms = (double)(evtime_mono_ns() - t0) / 1e6;
    for (idx_t i = 0; rd.types && i < rd.ncols; i++) result_type_free(rd.types[i]);
    free(rd.types);
    free(rd.names);
    buf_free(&rd.out);
    if (have_res) duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&p);
    duckdb_destroy_extracted(&st);
    if (in_tx) { /* it only read: nothing to keep, and the view it replaced comes back */
        char e2[256];
        exec(q->c, "ROLLBACK", e2, sizeof e2);
    }
    if (q->e->writer) lake_writer_unpin_spool(q->e->writer, pins);
    live_free(q, &q->fetched);
    if (o->out_of_memory) allocator_purge(); /* its result is destroyed: what it held is free */
}

/* ---- the whole answer into a buf --------------------------------------------- */

static int to_buf_begin(void *ud, const char *ct)
{
    (void)ud, (void)ct;
    return 0;
}

static int to_buf_write(void *ud, const char *p, size_t n, int64_t deadline_ms)
{
    (void)deadline_ms;
    return buf_append(ud, p, n);
}

void query_run_to_buf(query_conn *q, const query_request *req, buf *answer, query_outcome *o)
{
    query_sink s = {to_buf_begin, to_buf_write, answer};
    query_run(q, req, &s, o);
}
