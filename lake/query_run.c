/*
 * query_run.c - running a query: admitting its statement, binding its
 * parameters, streaming its answer.
 *
 * A statement is admitted from its parse alone (a plain SELECT, or EXPLAIN,
 * DESCRIBE, SHOW or SUMMARIZE of one, naming nothing hidden.h hides), runs in
 * a transaction that is rolled back at the end (it only read), and its rows
 * are rendered (result.c) and handed to the sink in pieces, within the
 * answer's row, byte and time limits.
 */
#include "query_int.h"
#include "evtime.h"
#include "hidden.h"
#include "result.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parameters ------------------------------------------------------------ */

/* Binds one JSON value (not an array or object) to parameter k. */
duckdb_state query__bind_value(duckdb_prepared_statement p, idx_t k, json_t *v)
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
        if (query__bind_value(p, k, v) == DuckDBError) {
            snprintf(err, errlen, "cannot bind parameter %zu", k);
            return -1;
        }
    }
    return 0;
}

/* ---- parse trees ---------------------------------------------------------------- */

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
    duckdb_prepared_statement ser = query__reused_get(q->c, &q->serialize);
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
    if (ok) *ast = query__load_tree(txt);
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

/* admit's refusal of what (a statement beginning with stmt's first word): *ok 0, NULL. */
static json_t *refuse(const char *stmt, const char *what, int *ok, char *err, size_t errlen)
{
    char w[24];
    first_word(stmt, w, sizeof w);
    snprintf(err, errlen,
             "only read statements run here (SELECT; EXPLAIN of a SELECT; DESCRIBE, SHOW or "
             "SUMMARIZE), not %s beginning with %s",
             what, w);
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
        return refuse(inner, "an EXPLAIN of a statement", ok, err, errlen);
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
    return refuse(sql, "a statement", ok, err, errlen);
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

/* The columns the view had before the table's layout (docs/query.md), and what replaced them. */
static const char *const RENAMED[][2] = {
    {"\"event\"", "the whole event is the column _events_json"},
    {"\"do_id\"", "the object's id is \"do\".id"},
    {"\"do_name\"", "the object's name is \"do\".\"name\""},
    {"\"do_class\"", "the object's class is \"do\".\"class\""},
    {"\"do_colo\"", "the object's colo is \"do\".colo"},
};

static void fail(query_outcome *o, int code, const char *msg)
{
    o->code = code;
    snprintf(o->error, sizeof o->error, "%s", msg);
    const char *missing = strstr(msg, "Referenced column ");
    for (size_t i = 0; missing && i < sizeof RENAMED / sizeof *RENAMED; i++) {
        size_t n = strlen(RENAMED[i][0]), at = strlen("Referenced column ");
        if (strncmp(missing + at, RENAMED[i][0], n) || strncmp(missing + at + n, " not found", 10))
            continue;
        size_t len = strlen(o->error);
        snprintf(o->error + len, sizeof o->error - len, " (%s: docs/query.md)", RENAMED[i][1]);
        break;
    }
}

/* The message of an answer stopped by its deadline, or by query_conn_interrupt. */
static void time_limit(query_conn *q, query_outcome *o, const query_request *req)
{
    char m[128];
    if (atomic_load(&q->stopped))
        snprintf(m, sizeof m, "query stopped: the server is shutting down");
    else
        snprintf(m, sizeof m, "query stopped after %lld ms: the query time limit",
                 (long long)(req->timeout_ms ? req->timeout_ms : 30000));
    fail(o, QUERY_ETIMEDOUT, m);
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
/* Set once, by je_lookup under je_once (the first purge, on any query thread); read-only after,
 * so read without a lock. NULL: the build has no jemalloc mallctl. */
static mallctl_fn je_mallctl;
static pthread_once_t je_once = PTHREAD_ONCE_INIT; /* guards je_mallctl's one setting */

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
        fail(o, QUERY_EREFUSED, m);
        return;
    }
    fail(o, QUERY_EREFUSED, msg ? msg : "query failed");
}

/*
 * A step before the query itself failed (its transaction, its views): QUERY_EINTERNAL, unless the
 * watchdog interrupted that step, when the query timed out (QUERY_ETIMEDOUT) as in the query.
 */
static void cannot_run(query_conn *q, query_outcome *o, const query_request *req, const char *err)
{
    if (atomic_load(&q->timed_out))
        time_limit(q, o, req);
    else
        fail(o, QUERY_EINTERNAL, err);
}

static void duck_error(query_conn *q, query_outcome *o, duckdb_result *r, const query_request *req)
{
    duckdb_error_type t = duckdb_result_error_type(r);
    const char *msg = duckdb_result_error(r);
    /* interrupted (the deadline, or the stop): whatever error type the interrupted step
     * reported (under load an interrupt can surface as another type: a 400 at shutdown) */
    if (atomic_load(&q->timed_out)) {
        time_limit(q, o, req);
    } else if (t == DUCKDB_ERROR_OUT_OF_MEMORY) {
        o->out_of_memory = 1;
        char m[1024];
        snprintf(m, sizeof m, "query exceeded the memory limit: %s", msg ? msg : "out of memory");
        fail(o, QUERY_EREFUSED, m);
    } else {
        fail(o, QUERY_EREFUSED, msg ? msg : "query failed");
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
 * why: QUERY_EGONE the client left, QUERY_ETIMEDOUT the deadline passed (the answer is broken).
 */
static int deliver(render *rd)
{
    query_outcome *o = rd->o;
    if (!o->streamed) {
        if (rd->sink->begin(rd->sink->ud, content_type(rd->req->format))) {
            fail(o, QUERY_EGONE, "the client went away");
            return -1;
        }
        o->streamed = 1;
    }
    if (rd->out.len && rd->sink->write(rd->sink->ud, rd->out.p, rd->out.len, rd->deadline)) {
        o->broken = 1;
        if (evtime_mono_ms() >= rd->deadline)
            time_limit(rd->q, o, rd->req);
        else
            fail(o, QUERY_EGONE, "the client went away");
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
                time_limit(rd->q, o, rd->req); /* DuckDB was done: the rendering took the time */
                stop = 1;
            } else if (rd->rendered == max_rows) {
                o->truncated = stop = 1;
            } else if ((rc = row(rd, ch, r)) == RESULT_OVER) {
                o->truncated = o->over_bytes = stop = 1;
            } else if (rc) {
                fail(o, QUERY_EINTERNAL, "out of memory rendering the answer");
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
    if (o->code == QUERY_EGONE || o->broken || (o->code != QUERY_OK && !o->streamed)) return;
    if (o->code == QUERY_OK && deliver(rd)) return;
    if (o->over_bytes && o->code == QUERY_OK)
        snprintf(o->error, sizeof o->error, "answer cut at %llu bytes: the answer size limit",
                 (unsigned long long)rd->max_bytes);
    o->cut = o->code != QUERY_OK || o->over_bytes;
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
        buf_printf(&end, "\"files\":%llu,\"elapsedMs\":%.3f}\n", (unsigned long long)o->files,
                   o->elapsed_ms);
    } else if (rd->req->format == QUERY_NDJSON && o->cut) {
        buf_puts(&end, "{\"error\":");
        buf_json_str(&end, o->error, strlen(o->error));
        buf_puts(&end, "}\n");
    }
    if (end.len && (!end.p || rd->sink->write(rd->sink->ud, end.p, end.len, 0))) {
        o->broken = 1;
        if (o->code == QUERY_OK)
            fail(o, end.p ? QUERY_EGONE : QUERY_EINTERNAL,
                 end.p ? "the client went away" : "out of memory");
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
        fail(rd->o, QUERY_EINTERNAL, "out of memory");
        return -1;
    }
    for (idx_t i = 0; i < rd->ncols; i++) {
        duckdb_logical_type t = duckdb_column_logical_type(res, i);
        rd->types[i] = result_type_new(t, err, sizeof err);
        duckdb_destroy_logical_type(&t);
        rd->names[i] = (char *)duckdb_column_name(res, i);
        if (!rd->types[i]) {
            fail(rd->o, QUERY_EREFUSED, err);
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
                                         duckdb_extracted_statements *st, lake_writer_pins **pins,
                                         int *in_tx, query_outcome *o)
{
    char err[1024];
    duckdb_prepared_statement p = NULL;
    if (!req->sql || !*req->sql) {
        fail(o, QUERY_EREFUSED, "empty query");
        return NULL;
    }
    if (req->params && !json_is_array(req->params)) {
        fail(o, QUERY_EREFUSED, "params must be an array");
        return NULL;
    }
    idx_t n = duckdb_extract_statements(q->c, req->sql, st);
    if (n != 1) {
        const char *m = n ? NULL : duckdb_extract_statements_error(*st);
        if (n > 1)
            snprintf(err, sizeof err, "one statement per query: this text has %llu",
                     (unsigned long long)n);
        fail(o, QUERY_EREFUSED, n > 1 ? err : m && *m ? m : "empty query");
        return NULL;
    }
    int admitted;
    json_t *ast = admit(q, req->sql, &admitted, err, sizeof err);
    if (!admitted) {
        /* stopped while its text was parsed (the statements that read the parse tree were
         * interrupted): the time limit or the shutdown, not the query's fault */
        if (atomic_load(&q->timed_out))
            time_limit(q, o, req);
        else
            fail(o, QUERY_EREFUSED, err);
        return NULL;
    }
    /* one transaction from the bounds' evaluation to the end of the query: now() and the
     * other clock functions are then the same instant in both (DuckDB gives the
     * transaction's start), so a bound like now() - INTERVAL 1 HOUR prunes exactly */
    if (query__exec(q->c, "BEGIN TRANSACTION", err, sizeof err) &&
        (query__exec(q->c, "ROLLBACK", err, sizeof err),
         query__exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        cannot_run(q, o, req, err);
        json_decref(ast);
        return NULL;
    }
    *in_tx = 1;
    int aborted;
    query__hours h = query__hours_of(q, ast, req->params, "events", "ts", &aborted), hr;
    if (aborted && (query__exec(q->c, "ROLLBACK", err, sizeof err) ||
                    query__exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        cannot_run(q, o, req, err);
        json_decref(ast);
        return NULL;
    }
    hr = query__hours_of(q, ast, req->params, "rejected", "receivedAt", &aborted);
    json_decref(ast);
    if (atomic_load(&q->timed_out)) { /* the watchdog stopped a bound: the query gets no more */
        time_limit(q, o, req);
        return NULL;
    }
    if (aborted && (query__exec(q->c, "ROLLBACK", err, sizeof err) ||
                    query__exec(q->c, "BEGIN TRANSACTION", err, sizeof err))) {
        cannot_run(q, o, req, err);
        return NULL;
    }
    if (query__make_view(q, &h, &hr, pins, &o->files, err, sizeof err)) {
        cannot_run(q, o, req, err);
        return NULL;
    }
    if (duckdb_prepare_extracted_statement(q->c, *st, 0, &p) == DuckDBError) {
        prepare_error(o, duckdb_prepare_error(p));
        duckdb_destroy_prepare(&p);
        return NULL;
    }
    if (check_read_only(q, p, req->sql, err, sizeof err) ||
        bind_params(p, req->params, err, sizeof err)) {
        fail(o, QUERY_EREFUSED, err);
        duckdb_destroy_prepare(&p);
        return NULL;
    }
    return p;
}

void query_run(query_conn *q, const query_request *req, const query_sink *sink, query_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->code = QUERY_OK;
    int64_t t0 = evtime_mono_ns();
    duckdb_extracted_statements st = NULL;
    duckdb_result res;
    int have_res = 0;
    lake_writer_pins *pins = NULL;
    render rd = {.q = q, .req = req, .sink = sink, .o = o, .out = BUF_INIT};
    rd.max_bytes = req->max_bytes ? req->max_bytes : QUERY_MAX_BYTES_DEFAULT;
    int in_tx = 0;
    atomic_store(&q->timed_out, atomic_load(&q->stopped)); /* once stopped, every query is */
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
    pthread_mutex_lock(&q->e->mu); /* under the watchdog's lock: after it, no interrupt comes */
    atomic_store(&q->deadline_ms, 0);
    pthread_mutex_unlock(&q->e->mu);
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
        query__exec(q->c, "ROLLBACK", e2, sizeof e2);
    }
    if (q->e->writer) lake_writer_unpin_spool(q->e->writer, pins);
    query__live_free(q, &q->fetched);
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
