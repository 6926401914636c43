/*
 * query_view.c - which files a query reads, and the views over them.
 *
 * The parse tree's bounds on ts (prune.c finds them) are evaluated by DuckDB
 * in the query's own transaction and widened to hours; the lake is listed for
 * those hours (from the cache for an object store) and the spool's segments
 * pinned, and the connection's temporary views `events` and `rejected` are
 * replaced by ones over exactly those files.
 */
#include "query_int.h"
#include "layout.h"
#include "partition.h"
#include "prune.h"
#include "evtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The view's columns, extracted from each event's JSON. */
const char QUERY_VIEW_COLUMNS[] =
    "json->>'id' AS id, json->>'type' AS type, TRY_CAST(json->>'ts' AS TIMESTAMP) AS ts, "
    "TRY_CAST(json->>'receivedAt' AS TIMESTAMP) AS receivedAt, "
    "json_transform(json->'do', '{\"id\":\"VARCHAR\",\"name\":\"VARCHAR\",\"class\":\"VARCHAR\","
    "\"colo\":\"VARCHAR\"}') AS \"do\", "
    "json->>'method' AS method, TRY_CAST(json->>'durationMs' AS DOUBLE) AS durationMs, "
    "TRY_CAST(json->>'success' AS BOOLEAN) AS success, json->>'error' AS error, "
    "json->>'collection' AS collection, json->>'docId' AS docId, "
    "nullif(json->'doc', 'null'::JSON) AS doc, nullif(json->'prev', 'null'::JSON) AS prev, "
    "json->>'bookmark' AS bookmark, json AS _events_json";

static const char QUERY_VIEW_PARSE[] =
    "json_transform(json, '{\"id\":\"VARCHAR\",\"type\":\"VARCHAR\",\"ts\":\"VARCHAR\","
    "\"receivedAt\":\"VARCHAR\",\"do\":{\"id\":\"VARCHAR\",\"name\":\"VARCHAR\","
    "\"class\":\"VARCHAR\",\"colo\":\"VARCHAR\"},\"method\":\"VARCHAR\","
    "\"durationMs\":\"VARCHAR\",\"success\":\"VARCHAR\",\"error\":\"VARCHAR\","
    "\"collection\":\"VARCHAR\",\"docId\":\"VARCHAR\",\"doc\":\"JSON\",\"prev\":\"JSON\","
    "\"bookmark\":\"VARCHAR\"}')";

static const char QUERY_VIEW_PARSED_COLUMNS[] =
    "s.id AS id, s.type AS type, TRY_CAST(s.ts AS TIMESTAMP) AS ts, "
    "TRY_CAST(s.receivedAt AS TIMESTAMP) AS receivedAt, s.\"do\" AS \"do\", s.method AS method, "
    "TRY_CAST(s.durationMs AS DOUBLE) AS durationMs, TRY_CAST(s.success AS BOOLEAN) AS success, "
    "s.error AS error, s.collection AS collection, s.docId AS docId, "
    "nullif(s.doc, 'null'::JSON) AS doc, nullif(s.prev, 'null'::JSON) AS prev, "
    "s.bookmark AS bookmark, json AS _events_json";

const char QUERY_COMPACT_ORDER[] =
    "collection NULLS LAST, docId NULLS LAST, type NULLS LAST, ts NULLS LAST, id";

/*
 * The same view through DuckDB's typed JSON reader, for queries that cannot
 * reach `_events_json` (prune.h): one parse per line however many fields a query
 * uses, against one per field above (bench/README.md: rpc_latency twice as
 * fast). A field of the wrong type reads as NULL in both, and a torn line as
 * a row of NULLs, dropped. It has no _events_json column, so a reference the
 * analysis missed fails to bind instead of reading NULL.
 */
static const char TYPED_COLUMNS[] =
    "id, type, ts, receivedAt, \"do\", method, durationMs, success, error, "
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

/* ---- the hours a query can touch ----------------------------------------------------------- */

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
    if (!(txt = json_dumps(stmt, JSON_COMPACT)) ||
        !(des = query__reused_get(q->c, &q->deserialize)) ||
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
            query__bind_value(p, (idx_t)i + 1, v) == DuckDBError)
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

/*
 * The hours the query can touch; ast NULL: every hour. A bound is widened to
 * the microsecond at or beyond it (ts < x: the last microsecond before x, when
 * x is one exactly), then to its hour; ±infinity become hours no partition
 * has, so '-infinity' prunes nothing and 'infinity' as a lower bound all.
 * *aborted: a bound's evaluation failed in a way that ended the transaction
 * (an error try() does not catch, as a parameter that cannot be converted):
 * the caller must begin another, and every hour is read.
 */
query__hours query__hours_of(query_conn *q, json_t *ast, json_t *params, const char *table,
                             const char *column, int *aborted)
{
    query__hours h = {.all = 1, .raw = 1};
    *aborted = 0;
    if (!ast) return h;
    json_t *named =
        json_object_get(json_array_get(json_object_get(ast, "statements"), 0), "named_param_map");
    prune_result pr;
    prune_analyse_table(ast, table, column, &pr);
    h.raw = pr.raw;
    h.whole = pr.whole;
    h.history = !pr.unbounded && !pr.no_events && pr.nrefs == 1 && pr.refs[0].history;
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
            int rollup = pr.nrefs == 1 && ref->nlo == 1 && ref->nhi == ref->between && ref->rollup;
            for (int k = 0; k < ref->nlo; k++) {
                int64_t us;
                int exact;
                if (eval_bound(q, ref->lo[k].expr, params, named, &us, &exact)) {
                    failed = 1;
                    continue;
                }
                if (rollup && exact) h.rollup_lo = us;
                rollup = rollup && exact;
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
                if (rollup && exact) h.rollup_hi = us;
                rollup = rollup && exact;
                if (exact && ref->hi[k].strict && us > INT64_MIN)
                    us -= 1; /* ts < x: the last microsecond before x */
                else if (!exact && us < INT64_MAX)
                    us += 1;
                if (us < rhi || !have_hi) rhi = us;
                have_hi = 1;
            }
            if (rollup && !failed) {
                h.rollup = ref->rollup;
                if (!ref->between) h.rollup_hi = INT64_MAX;
            }
            if (!have_lo) lo_open = 1;
            if (!have_hi) hi_open = 1;
            if (have_lo && rlo < lo) lo = rlo;
            if (have_hi && rhi > hi) hi = rhi;
        }
        char e2[256];
        if (failed) h.rollup = 0;
        if (failed && query__exec(q->c, "SELECT 1", e2, sizeof e2)) {
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

/* ---- the files and the views ---------------------------------------------------- */

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

/*
 * A compacted file of layout 2 (partition.h) read by its columns' Iceberg field ids, as the
 * table's readers do, and typed as the view. ts and receivedAt are TIMESTAMPTZ in the file (UTC,
 * as Iceberg's timestamptz asks) and TIMESTAMP in the view: taken as the same microseconds
 * (make_timestamp(epoch_us(…))), not cast, since a cast goes through ICU's calendar for every
 * value even in UTC (5 M rows: 1,130 ms against 250 ms, bench/README.md). The reader cannot push
 * a filter on ts into the row groups then; the files of an hour are found by the hour anyway,
 * and rows within a file are in QUERY_COMPACT_ORDER, not by ts. doc, prev and _events_json are
 * JSON text.
 */
const char QUERY_PARQUET_SCHEMA[] =
    "schema = map {1: {name: 'id', type: 'VARCHAR', default_value: NULL}, "
    "2: {name: 'type', type: 'VARCHAR', default_value: NULL}, "
    "3: {name: 'ts', type: 'TIMESTAMPTZ', default_value: NULL}, "
    "4: {name: 'receivedAt', type: 'TIMESTAMPTZ', default_value: NULL}, "
    "5: {name: 'do', type: 'STRUCT(id VARCHAR, \"name\" VARCHAR, \"class\" VARCHAR, colo "
    "VARCHAR)', default_value: NULL}, "
    "10: {name: 'method', type: 'VARCHAR', default_value: NULL}, "
    "11: {name: 'durationMs', type: 'DOUBLE', default_value: NULL}, "
    "12: {name: 'success', type: 'BOOLEAN', default_value: NULL}, "
    "13: {name: 'error', type: 'VARCHAR', default_value: NULL}, "
    "14: {name: 'collection', type: 'VARCHAR', default_value: NULL}, "
    "15: {name: 'docId', type: 'VARCHAR', default_value: NULL}, "
    "16: {name: 'doc', type: 'VARCHAR', default_value: NULL}, "
    "17: {name: 'prev', type: 'VARCHAR', default_value: NULL}, "
    "18: {name: 'bookmark', type: 'VARCHAR', default_value: NULL}, "
    "19: {name: '_events_json', type: 'VARCHAR', default_value: NULL}}";
static const char PARQUET_COLUMNS[] =
    "id, type, make_timestamp(epoch_us(ts)) AS ts, "
    "make_timestamp(epoch_us(receivedAt)) AS receivedAt, \"do\", method, durationMs, success, "
    "error, collection, docId, doc::JSON AS doc, prev::JSON AS prev, bookmark";
/* Layout 1: the view's columns by name; the whole event was `event`. */
static const char PARQUET_1_COLUMNS[] =
    "id, type, ts, receivedAt, \"do\", method, durationMs, success, error, collection, docId, "
    "doc, prev, bookmark";

const char QUERY_FILE_COLUMNS[] =
    "id, type, ts::TIMESTAMPTZ AS ts, receivedAt::TIMESTAMPTZ AS receivedAt, \"do\", method, "
    "durationMs, success, error, collection, docId, doc::VARCHAR AS doc, prev::VARCHAR AS prev, "
    "bookmark, _events_json::VARCHAR AS _events_json";

void query_jsonl_select(buf *b, const char *files, size_t len)
{
    buf_printf(b, "SELECT %s FROM (SELECT json, %s AS s FROM read_ndjson_objects([",
               QUERY_VIEW_PARSED_COLUMNS, QUERY_VIEW_PARSE);
    buf_append(b, files, len);
    /* a torn line reads as NULL */
    buf_puts(b, "], ignore_errors = true) WHERE json IS NOT NULL) "
                "WHERE s.id IS NOT NULL OR s.type IS NOT NULL");
}

void query_parquet_select(buf *b, const char *files, size_t len, int layout, int whole)
{
    if (layout == LAKE_LAYOUT_1) {
        buf_printf(b, "SELECT %s%s FROM read_parquet([", PARQUET_1_COLUMNS,
                   whole ? ", event AS _events_json" : "");
        buf_append(b, files, len);
        buf_puts(b, "])");
        return;
    }
    buf_printf(b, "SELECT %s%s FROM read_parquet([", PARQUET_COLUMNS,
               whole ? ", _events_json::JSON AS _events_json" : "");
    buf_append(b, files, len);
    buf_printf(b, "], %s)", QUERY_PARQUET_SCHEMA);
}

int query__live_add(query__live *l, const char *key, uint64_t size, int what)
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

/* 1 if every instant of the hour is within [lo, hi) (microseconds; hi INT64_MAX: no end). */
static int hour_within(int64_t hour, int64_t lo, int64_t hi)
{
    const int64_t us = EVTIME_HOUR_MS * 1000;
    if (hour < lo / us - 1 || (hi != INT64_MAX && hour > hi / us)) return 0; /* far out */
    return hour * us >= lo && (hi == INT64_MAX || hour * us + us <= hi);
}

/*
 * The live files of a partition in range. For a compacted file with a rollup of the kind that
 * the query's one call of a macro (its only way to events, query__hours) reads, of an hour wholly
 * within the call's range, the rollup goes in instead (docs/lake.md, "Rollups"): the call reads
 * that, and the file is not fetched.
 */
static int on_partition(lake_partition *p, void *ud)
{
    query__live *l = ud;
    if (!l->h->all && (p->hour < l->h->lo || p->hour > l->h->hi)) return 0;
    int kind = l->h->rollup - 1;
    int whole = kind >= 0 && hour_within(p->hour, l->h->rollup_lo, l->h->rollup_hi);
    for (size_t i = 0; i < p->n; i++) {
        const lake_part_file *f = &p->f[i];
        if (!f->live) continue;
        int what = !f->parquet                    ? FILE_JSONL
                   : p->m.layout == LAKE_LAYOUT_1 ? FILE_PARQUET_1
                                                  : FILE_PARQUET;
        char rkey[LAKE_KEY_MAX];
        int rolled = what == FILE_PARQUET && whole && (f->rollups >> kind & 1) &&
                     !lake_rollup_key_of(f->key, kind, rkey);
        int rc = rolled ? query__live_add(l, rkey, f->rollup_size[kind], FILE_ROLLUP)
                        : query__live_add(l, f->key, f->size, what);
        if (rc) return rc;
    }
    return 0;
}

typedef struct rlist {
    query__live *l;
    const query__hours *h;
    int oom;
} rlist;

/* A quarantine file of the hours asked for (every file under rejected/ is live). */
static int on_rejected(const store_entry *e, void *ud)
{
    rlist *r = ud;
    int64_t hour;
    if (lake_parse_rejected_key(e->key, &hour)) return 0; /* not a segment */
    if (!r->h->all && (hour < r->h->lo || hour > r->h->hi)) return 0;
    if (query__live_add(r->l, e->key, e->size, FILE_REJECTED)) r->oom = 1;
    return r->oom;
}

/* Lists the quarantine's files for the hours of h, by hour or day as list_lake does. */
static int list_rejected(query_engine *e, query__live *l, const query__hours *h, char *err,
                         size_t errlen)
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

/* Lists the lake's live files for the hours of the table lv (table.h); per hour directory when
 * there are few. */
static int list_hours(query_engine *e, query__live *l, const lake_live *lv, char *err,
                      size_t errlen)
{
    const query__hours *h = l->h;
    int rc = 0;
    if (!h->all && h->lo != INT64_MIN && h->hi != INT64_MAX && h->hi - h->lo < 24 * 2) {
        for (int64_t hr = h->lo; hr <= h->hi && !rc; hr++) {
            char prefix[LAKE_KEY_MAX];
            lake_hour_prefix(hr, prefix);
            rc = lake_partitions_list(e->store, lv, prefix, on_partition, l, err, errlen);
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
            rc = lake_partitions_list(e->store, lv, prefix, on_partition, l, err, errlen);
        }
    } else {
        rc = lake_partitions_list(e->store, lv, LAKE_EVENTS_PREFIX, on_partition, l, err, errlen);
    }
    return rc;
}

/* Loads the table (first: table.h says why), then lists the live files of the hours. */
static int list_lake(query_engine *e, query__live *l, char *err, size_t errlen)
{
    const query__hours *h = l->h;
    lake_table lt;
    lake_live lv;
    memset(&lv, 0, sizeof lv);
    int rc = lake_table_load(e->store, &lt, err, errlen);
    if (!rc)
        rc = lake_live_load(e->store, &lt, h->all ? INT64_MIN : h->lo, h->all ? INT64_MAX : h->hi,
                            &lv, err, errlen);
    if (!rc) rc = list_hours(e, l, &lv, err, errlen);
    lake_live_free(&lv);
    lake_table_free(&lt);
    if (rc == -2)
        snprintf(err, errlen, "out of memory");
    else if (rc) {
        char m[1024];
        snprintf(m, sizeof m, "query: %s", err);
        snprintf(err, errlen, "%s", m);
    }
    return rc;
}

void query__live_free(query_conn *q, query__live *l)
{
    if (q->e->cache && l == &q->fetched) {
        lake_cache_unpin(q->e->cache, l->it, l->n);
    } else {
        for (size_t i = 0; i < l->n; i++) free(l->it[i].path);
    }
    for (size_t i = 0; l->copies && i < l->n; i++) query__copies_put(q->e->copies, l->copies[i]);
    for (size_t i = 0; i < l->n; i++) free((char *)l->it[i].key);
    free(l->it);
    free(l->parquet);
    free(l->copies);
    memset(l, 0, sizeof *l);
}

/* The files of a query's views, as lists of quoted paths for DuckDB's readers. */
typedef struct view_files {
    buf jsonl, parquet, parquet1, rejected;
    uint64_t nj, np, np1, nr; /* files in each list */
    uint64_t rmax;            /* the largest quarantine file */
    buf rollups;              /* rollups read instead of their compacted files */
    uint64_t nrollups;
    buf history; /* history files read instead of their days' compacted files */
    uint64_t nh;
} view_files;

static void add_file(buf *list, uint64_t *n, const char *path)
{
    if ((*n)++) buf_putc(list, ',');
    query_sql_quote(list, path);
}

/* Drops the files listed before any was fetched or pinned: live_free must not unpin them. */
static void unlist(query__live *l)
{
    for (size_t i = 0; i < l->n; i++) free((char *)l->it[i].key);
    l->n = 0;
}

/*
 * Pins the spool, then lists in q->fetched the lake's live files of the hours
 * h and the quarantine's of the hours hr, fetched into the cache (and pinned
 * there until the query ends) for an s3 lake.
 */
static int list_files(query_conn *q, const query__hours *h, const query__hours *hr,
                      lake_writer_pins **pins, char *err, size_t errlen)
{
    query_engine *e = q->e;
    query__live *l = &q->fetched;
    int rc = 0;
    char m[1024];
    if (e->writer && lake_writer_pin_spool(e->writer, pins, m, sizeof m)) {
        snprintf(err, errlen, "query: %s", m);
        return -1;
    }
    /* pinned first, listed second: every event is in exactly one of the two */
    if (!h->none) rc = list_lake(e, l, err, errlen);
    if (!rc && h->history && h->all) rc = query__history(e, l, err, errlen);
    if (!rc && !hr->none) rc = list_rejected(e, l, hr, err, errlen);
    if (rc) {
        unlist(l);
        return rc;
    }
    if (e->cache) {
        if (lake_cache_fetch(e->cache, e->store, l->it, l->n, 8, m, sizeof m)) {
            snprintf(err, errlen, "query: cannot fetch the lake's files: %s", m);
            unlist(l);
            return -1;
        }
    }
    return 0;
}

/* Adds the listed files and the pinned spool segments of the hours asked for to f's lists. */
static int add_files(query_conn *q, const query__hours *h, const query__hours *hr,
                     lake_writer_pins *pins, view_files *f)
{
    query_engine *e = q->e;
    query__live *l = &q->fetched;
    if (e->copies && l->n && !(l->copies = calloc(l->n, sizeof *l->copies))) return -1;
    for (size_t i = 0; i < l->n; i++) {
        char path[4096];
        const char *pa = l->it[i].path;
        if (!pa) {
            snprintf(path, sizeof path, "%s/%s", e->root, l->it[i].key);
            if (!(l->it[i].path = strdup(path))) return -1;
            pa = path;
        }
        const char *copy = NULL;
        if (l->parquet[i] == FILE_JSONL && e->copies)
            l->copies[i] = query__copies_get(e->copies, l->it[i].key, l->it[i].size, &copy);
        if (copy) { /* the raw file's copy: read as a compacted file is */
            add_file(&f->parquet, &f->np, copy);
        } else if (l->parquet[i] == FILE_PARQUET) {
            add_file(&f->parquet, &f->np, pa);
        } else if (l->parquet[i] == FILE_ROLLUP) {
            add_file(&f->rollups, &f->nrollups, pa);
        } else if (l->parquet[i] == FILE_HISTORY) {
            add_file(&f->history, &f->nh, pa);
        } else if (l->parquet[i] == FILE_PARQUET_1) {
            add_file(&f->parquet1, &f->np1, pa);
        } else if (l->parquet[i] == FILE_REJECTED) {
            add_file(&f->rejected, &f->nr, pa);
            if (l->it[i].size > f->rmax) f->rmax = l->it[i].size;
        } else
            add_file(&f->jsonl, &f->nj, pa);
    }
    for (size_t i = 0; i < lake_writer_pins_count(pins); i++) {
        int kind;
        int64_t hour;
        char path[4096];
        lake_writer_pins_get(e->writer, pins, i, &kind, &hour, path, sizeof path);
        const query__hours *want = kind == LAKE_KIND_REJECTED ? hr : h;
        if (want->none || (!want->all && (hour < want->lo || hour > want->hi))) continue;
        if (kind == LAKE_KIND_REJECTED) {
            struct stat st;
            if (!stat(path, &st) && (uint64_t)st.st_size > f->rmax) f->rmax = (uint64_t)st.st_size;
            add_file(&f->rejected, &f->nr, path);
        } else {
            add_file(&f->jsonl, &f->nj, path);
        }
    }
    return 0;
}

/* The rows of the history files of f (history.h) with the view's columns: those doc_history
 * does not read are NULL. */
static void history_select(buf *b, const view_files *f, int whole)
{
    buf_printf(b,
               "SELECT id, type, ts, receivedAt, NULL::STRUCT(id VARCHAR, \"name\" VARCHAR, "
               "\"class\" VARCHAR, colo VARCHAR) AS \"do\", NULL::VARCHAR AS method, "
               "NULL::DOUBLE AS durationMs, NULL::BOOLEAN AS success, NULL::VARCHAR AS error, "
               "collection, docId, doc::JSON AS doc, prev::JSON AS prev, bookmark%s "
               "FROM read_parquet([",
               whole ? ", NULL::JSON AS _events_json" : "");
    buf_append(b, f->history.p, f->history.len);
    buf_puts(b, "])");
}

/* Replaces this connection's events view with one over f's events files. */
static int events_view(query_conn *q, const query__hours *h, const view_files *f, char *err,
                       size_t errlen)
{
    buf sql = BUF_INIT;
    buf_puts(&sql, "CREATE OR REPLACE TEMP VIEW events AS ");
    if (!h->raw && f->nj) {
        buf_printf(&sql, "SELECT %s FROM read_json([", TYPED_COLUMNS);
        buf_append(&sql, f->jsonl.p, f->jsonl.len);
        buf_printf(&sql, "], %s) WHERE id IS NOT NULL OR type IS NOT NULL", TYPED_SCHEMA);
    } else if (f->nj && h->whole) {
        /* every column: one parse of each event rather than one per column (bench/README.md) */
        query_jsonl_select(&sql, f->jsonl.p, f->jsonl.len);
    } else if (f->nj) {
        buf_printf(&sql, "SELECT %s FROM read_ndjson_objects([", QUERY_VIEW_COLUMNS);
        buf_append(&sql, f->jsonl.p, f->jsonl.len);
        /* a segment being written may end in a torn line: it reads as NULL, dropped here;
         * a line with neither id nor type is no event (as in the typed view) */
        buf_puts(&sql, "], ignore_errors = true) WHERE json IS NOT NULL AND "
                       "((json->>'id') IS NOT NULL OR (json->>'type') IS NOT NULL)");
    }
    if (f->np) {
        if (f->nj) buf_puts(&sql, " UNION ALL ");
        query_parquet_select(&sql, f->parquet.p, f->parquet.len, LAKE_LAYOUT_2, h->raw);
    }
    if (f->np1) {
        if (f->nj || f->np) buf_puts(&sql, " UNION ALL ");
        query_parquet_select(&sql, f->parquet1.p, f->parquet1.len, LAKE_LAYOUT_1, h->raw);
    }
    if (f->nh) {
        if (f->nj || f->np || f->np1) buf_puts(&sql, " UNION ALL ");
        history_select(&sql, f, h->raw);
    }
    if (!f->nj && !f->np && !f->np1 && !f->nh)
        buf_printf(&sql, "SELECT %s FROM (SELECT NULL::JSON AS json WHERE false)",
                   QUERY_VIEW_COLUMNS);
    int rc = buf_cstr(&sql) ? query__exec(q->c, sql.p, err, errlen) : -1;
    buf_free(&sql);
    return rc;
}

/* Replaces this connection's rejected view with one over f's quarantine files. */
static int rejected_view(query_conn *q, const view_files *f, char *err, size_t errlen)
{
    buf sql = BUF_INIT;
    /* a torn last line of a segment being written reads as a row of NULLs, dropped */
    buf_puts(&sql, "CREATE OR REPLACE TEMP VIEW rejected AS ");
    if (f->nr) {
        buf_printf(&sql, "SELECT %s FROM read_json([", REJECTED_COLUMNS);
        buf_append(&sql, f->rejected.p, f->rejected.len);
        buf_printf(&sql, "], %s", REJECTED_SCHEMA);
        uint64_t longest = f->rmax < q->e->max_rejected_line ? f->rmax : q->e->max_rejected_line;
        if (longest > REJECTED_LINE_READ)
            buf_printf(&sql, ", maximum_object_size = %llu",
                       (unsigned long long)(longest < UINT32_MAX ? longest + 1 : UINT32_MAX));
        buf_puts(&sql, ") WHERE id IS NOT NULL");
    } else {
        buf_puts(&sql, REJECTED_EMPTY);
    }
    int rc = buf_cstr(&sql) ? query__exec(q->c, sql.p, err, errlen) : -1;
    buf_free(&sql);
    return rc;
}

/*
 * The view of the rollups a macro reads (query.c) when they stand for some of the compacted
 * files, which the events view then leaves out. Without, the engine's empty one applies.
 */
static int rollup_view(query_conn *q, int kind, const view_files *f, char *err, size_t errlen)
{
    static const char *const VIEW[LAKE_ROLLUP_KINDS][2] = {
        {"_events_rpc_rollup", QUERY_ROLLUP_COLUMNS},
        {"_events_counts_rollup", QUERY_COUNTS_COLUMNS},
        {"_events_objects_rollup", QUERY_OBJECTS_COLUMNS}};
    buf sql = BUF_INIT;
    buf_printf(&sql, "CREATE OR REPLACE TEMP VIEW %s AS SELECT %s FROM read_parquet([",
               VIEW[kind][0], VIEW[kind][1]);
    buf_append(&sql, f->rollups.p, f->rollups.len);
    buf_puts(&sql, "])");
    int rc = buf_cstr(&sql) ? query__exec(q->c, sql.p, err, errlen) : -1;
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    buf_free(&sql);
    return rc;
}

/*
 * Replaces this connection's events view with one over the files the query
 * needs: the live files of its hours (from the cache for an s3 lake, pinned
 * in q->fetched until the query ends) and the spool's unsealed segments; and
 * its rejected view the same way, over the quarantine's files of the hours hr
 * of their receive time.
 */
int query__make_view(query_conn *q, const query__hours *h, const query__hours *hr,
                     lake_writer_pins **pins, uint64_t *nfiles, char *err, size_t errlen)
{
    view_files f = {.jsonl = BUF_INIT,
                    .parquet = BUF_INIT,
                    .parquet1 = BUF_INIT,
                    .rejected = BUF_INIT,
                    .rollups = BUF_INIT,
                    .history = BUF_INIT};
    int rc = 0;
    q->fetched.h = h;
    if (!h->none || !hr->none) {
        rc = list_files(q, h, hr, pins, err, errlen);
        if (!rc) rc = add_files(q, h, hr, *pins, &f);
    }
    if (!rc) rc = events_view(q, h, &f, err, errlen);
    if (!rc) rc = rejected_view(q, &f, err, errlen);
    if (!rc && f.nrollups) rc = rollup_view(q, h->rollup - 1, &f, err, errlen);
    buf_free(&f.jsonl);
    buf_free(&f.parquet);
    buf_free(&f.parquet1);
    buf_free(&f.rejected);
    buf_free(&f.rollups);
    buf_free(&f.history);
    *nfiles = f.nj + f.np + f.np1 + f.nr + f.nrollups + f.nh;
    return rc;
}
