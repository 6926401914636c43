/*
 * test_query.c - POST /query, events query and events history against a real
 * server with a lake seeded by a known workload: exact answers (counts,
 * latency percentiles computed here independently, document history,
 * collection state by replay), partition pruning, visibility right after an
 * ingest, exactly-once while segments are sealed under running queries, the
 * HTTP errors, and every output format of the command line.
 */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0_MS INT64_C(1795132800000) /* 2026-11-20T00:00:00Z */
#define HOURS 6

/* ---- the workload ---------------------------------------------------------- */

typedef struct rpc {
    int cls, method;
    double ms;
    int ok;
    int64_t ts;
} rpc;

typedef struct change {
    int doc, kind; /* 0 insert, 1 update, 2 delete */
    int v;         /* the document's value after an insert/update */
    int prev_v;    /* before; -1 if none */
    int64_t ts;
    uint64_t bookmark;
} change;

static const char *CLASSES[] = {"ChatRoom", "Lobby"};
static const char *METHODS[] = {"join", "leave", "send"};
static const char *TYPES[] = {"collection.delete", "collection.insert", "collection.update",
                              "custom.thing",      "do.alarm",          "rpc.call",
                              "ws.message"};

typedef struct workload {
    rpc rpcs[600];
    int nrpc;
    change changes[300];
    int nchanges;
    int per_type[7];
    int per_hour[HOURS];
    buf ndjson; /* every event, one per line */
} workload;

static uint64_t rng = 42;
static unsigned next_rand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(rng >> 33);
}

static int type_index(const char *t)
{
    for (int i = 0; i < 7; i++)
        if (!strcmp(TYPES[i], t)) return i;
    return -1;
}

static void ts_text(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void emit(workload *w, const char *type, int64_t ts, const char *rest)
{
    char t[32];
    ts_text(ts, t);
    static int n;
    buf_printf(&w->ndjson, "{\"id\":\"w-%d\",\"type\":\"%s\",\"ts\":\"%s\"%s%s}\n", n++, type, t,
               *rest ? "," : "", rest);
    w->per_type[type_index(type)]++;
    w->per_hour[(ts - T0_MS) / 3600000]++;
}

static void make_workload(workload *w)
{
    memset(w, 0, sizeof *w);
    int live[10], value[10];
    memset(live, 0, sizeof live);
    uint64_t bookmark = 0;
    int total = 1000;
    for (int i = 0; i < total; i++) {
        int64_t ts = T0_MS + (int64_t)i * (HOURS * 3600000LL / total) + next_rand() % 1000;
        unsigned pick = next_rand() % 100;
        char rest[512];
        if (pick < 60 && w->nrpc < 600) {
            rpc *r = &w->rpcs[w->nrpc++];
            r->cls = (int)(next_rand() % 2);
            r->method = (int)(next_rand() % 3);
            r->ms = (double)(next_rand() % 100000) / 100.0;
            r->ok = next_rand() % 20 != 0;
            r->ts = ts;
            snprintf(rest, sizeof rest,
                     "\"do\":{\"id\":\"o%d\",\"class\":\"%s\",\"colo\":\"FRA\"},\"method\":\"%s\","
                     "\"durationMs\":%.2f,"
                     "\"success\":%s%s",
                     r->cls, CLASSES[r->cls], METHODS[r->method], r->ms, r->ok ? "true" : "false",
                     r->ok ? "" : ",\"error\":\"boom\"");
            emit(w, "rpc.call", ts, rest);
        } else if (pick < 85 && w->nchanges < 300) {
            int d = (int)(next_rand() % 10);
            change *c = &w->changes[w->nchanges++];
            c->doc = d;
            c->ts = ts;
            c->bookmark = ++bookmark;
            c->prev_v = live[d] ? value[d] : -1;
            c->kind = !live[d] ? 0 : (next_rand() % 4 == 0 ? 2 : 1);
            c->v = c->kind == 2 ? -1 : (int)(next_rand() % 1000);
            char doc[64] = "null", prev[64] = "null";
            if (c->v >= 0) snprintf(doc, sizeof doc, "{\"name\":\"u%d\",\"v\":%d}", d, c->v);
            if (c->prev_v >= 0)
                snprintf(prev, sizeof prev, "{\"name\":\"u%d\",\"v\":%d}", d, c->prev_v);
            snprintf(rest, sizeof rest,
                     "\"collection\":\"users\",\"docId\":\"u%d\",\"doc\":%s,\"prev\":%s,"
                     "\"bookmark\":\"%016llx\"",
                     d, doc, prev, (unsigned long long)c->bookmark);
            emit(w,
                 c->kind == 0   ? "collection.insert"
                 : c->kind == 1 ? "collection.update"
                                : "collection.delete",
                 ts, rest);
            live[d] = c->kind != 2;
            value[d] = c->v;
        } else if (pick < 92) {
            emit(w, "do.alarm", ts,
                 "\"do\":{\"id\":\"o1\",\"class\":\"ChatRoom\"},\"reason\":\"tick\"");
        } else if (pick < 97) {
            emit(w, "ws.message", ts, "\"size\":512,\"connectionCount\":3");
        } else {
            emit(w, "custom.thing", ts, "\"nested\":{\"a\":[1,2,3]}");
        }
    }
}

/* quantile_cont: linear interpolation between the closest ranks */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1) return v[n - 1];
    return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

/* ---- a seeded server, shared by the tests of this file -------------------- */

static srv S;
static char *DIR_, LAKE[1200];
static workload W;
static int seeded;

static void post_ndjson(const srv *s, const char *body, size_t n)
{
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s->url);
    const char *h[] = {"Content-Type: application/x-ndjson", NULL};
    resp r;
    http_do("POST", url, h, body, n, 0, &r);
    if (r.status != 200 || !strstr(r.body.p, "\"rejected\":[]"))
        test_fail(__FILE__, __LINE__, "ingest failed: %ld %s", r.status, r.body.p);
    resp_free(&r);
}

/* Starts s on lake with args, sends it the workload W and restarts it: a restart seals
 * everything, one file per hour. */
static int seed_server(srv *s, const char *lake, const char *const *args)
{
    if (srv_start(s, lake, args)) return -1;
    /* in batches of 200 lines */
    const char *p = W.ndjson.p, *end = W.ndjson.p + W.ndjson.len;
    while (p < end) {
        const char *q = p;
        for (int k = 0; k < 200 && q < end; k++) q = memchr(q, '\n', (size_t)(end - q)) + 1;
        post_ndjson(s, p, (size_t)(q - p));
        p = q;
    }
    if (srv_stop(s, SIGTERM) != 0) return -1;
    return srv_start(s, lake, args);
}

static int seed(void)
{
    if (seeded) return S.pid ? 0 : -1;
    seeded = 1;
    make_workload(&W);
    DIR_ = test_tmpdir("query");
    snprintf(LAKE, sizeof LAKE, "%s/lake", DIR_);
    return seed_server(&S, LAKE, NULL);
}

static json_t *query(const srv *s, const char *sql, json_t *params, long *status)
{
    json_t *req = json_pack("{s:s}", "sql", sql);
    if (params) json_object_set_new(req, "params", params);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char url[128];
    snprintf(url, sizeof url, "%s/query", s->url);
    const char *h[] = {"Content-Type: application/json", NULL};
    resp r;
    http_do("POST", url, h, body, strlen(body), 30000, &r);
    free(body);
    *status = r.status;
    json_t *a = json_loads(r.body.p ? r.body.p : "", 0, NULL);
    if (!a) test_fail(__FILE__, __LINE__, "answer is not JSON: %ld %s", r.status, r.body.p);
    resp_free(&r);
    return a;
}

static json_t *rows_of(json_t *a)
{
    return json_object_get(a, "rows");
}

TEST(test_query_counts_every_type)
{
    REQUIRE_INT(0, seed());
    long st;
    json_t *a =
        query(&S, "SELECT type, count(*) FROM events GROUP BY type ORDER BY type", NULL, &st);
    REQUIRE_INT(200, st);
    json_t *rows = rows_of(a);
    int n = 0;
    for (int i = 0; i < 7; i++) {
        if (!W.per_type[i]) continue;
        json_t *row = json_array_get(rows, (size_t)n++);
        CHECK_STR(TYPES[i], json_string_value(json_array_get(row, 0)));
        CHECK_INT(W.per_type[i], json_integer_value(json_array_get(row, 1)));
    }
    CHECK_INT(n, json_array_size(rows));
    CHECK_INT(HOURS, json_integer_value(json_object_get(a, "files")));
    json_decref(a);
}

TEST(test_query_rpc_latency_matches_independent_percentiles)
{
    REQUIRE_INT(0, seed());
    long st;
    json_t *a = query(&S, "SELECT * FROM rpc_latency('2026-11-20 02:00')", NULL, &st);
    REQUIRE_INT(200, st);
    json_t *rows = rows_of(a);
    size_t k = 0;
    for (int c = 0; c < 2; c++)
        for (int m = 0; m < 3; m++) {
            double v[600];
            int n = 0, errors = 0;
            for (int i = 0; i < W.nrpc; i++) {
                rpc *r = &W.rpcs[i];
                if (r->cls != c || r->method != m || r->ts < T0_MS + 2 * 3600000) continue;
                v[n++] = r->ms;
                errors += !r->ok;
            }
            if (!n) continue;
            json_t *row = json_array_get(rows, k++);
            CHECK_STR(CLASSES[c], json_string_value(json_array_get(row, 0)));
            CHECK_STR(METHODS[m], json_string_value(json_array_get(row, 1)));
            CHECK_INT(n, json_integer_value(json_array_get(row, 2)));
            double want[3] = {quantile(v, n, 0.5), quantile(v, n, 0.95), quantile(v, n, 0.99)};
            for (int q = 0; q < 3; q++) {
                double got = json_number_value(json_array_get(row, (size_t)(3 + q)));
                if (fabs(got - want[q]) > 1e-9 * fmax(1, fabs(want[q])))
                    test_fail(__FILE__, __LINE__, "%s.%s p%d: expected %.6f, got %.6f", CLASSES[c],
                              METHODS[m],
                              q == 0   ? 50
                              : q == 1 ? 95
                                       : 99,
                              want[q], got);
            }
            double rate = json_number_value(json_array_get(row, 6));
            CHECK(fabs(rate - (double)errors / n) < 1e-12);
        }
    CHECK_INT(k, json_array_size(rows));
    json_decref(a);
}

/* rpc_latency_between reads only the hours of its range, and counts the calls in it */
TEST(test_query_rpc_latency_between_reads_only_its_hours)
{
    REQUIRE_INT(0, seed());
    long st;
    json_t *a = query(&S,
                      "SELECT sum(calls)::BIGINT, count(*) FROM rpc_latency_between("
                      "'2026-11-20 02:00', '2026-11-20 04:00')",
                      NULL, &st);
    REQUIRE_INT(200, st);
    int n = 0;
    for (int i = 0; i < W.nrpc; i++)
        n += W.rpcs[i].ts >= T0_MS + 2 * 3600000 && W.rpcs[i].ts < T0_MS + 4 * 3600000;
    json_t *row = json_array_get(rows_of(a), 0);
    CHECK(n > 0);
    CHECK_INT(n, json_integer_value(json_array_get(row, 0)));
    CHECK_INT(2, json_integer_value(json_object_get(a, "files")));
    json_decref(a);
}

TEST(test_query_doc_history_is_in_change_order)
{
    REQUIRE_INT(0, seed());
    long st;
    json_t *a = query(&S, "SELECT change, bookmark, doc, prev FROM doc_history($1, $2)",
                      json_pack("[s,s]", "users", "u3"), &st);
    REQUIRE_INT(200, st);
    json_t *rows = rows_of(a);
    size_t k = 0;
    for (int i = 0; i < W.nchanges; i++) {
        change *c = &W.changes[i];
        if (c->doc != 3) continue;
        json_t *row = json_array_get(rows, k++);
        char bm[20];
        snprintf(bm, sizeof bm, "%016llx", (unsigned long long)c->bookmark);
        CHECK_STR(c->kind == 0   ? "insert"
                  : c->kind == 1 ? "update"
                                 : "delete",
                  json_string_value(json_array_get(row, 0)));
        CHECK_STR(bm, json_string_value(json_array_get(row, 1)));
        json_t *doc = json_array_get(row, 2), *prev = json_array_get(row, 3);
        CHECK(c->v < 0 ? json_is_null(doc) : json_integer_value(json_object_get(doc, "v")) == c->v);
        CHECK(c->prev_v < 0 ? json_is_null(prev)
                            : json_integer_value(json_object_get(prev, "v")) == c->prev_v);
    }
    CHECK(k > 2);
    CHECK_INT(k, json_array_size(rows));
    json_decref(a);
}

TEST(test_query_collection_at_equals_a_replay)
{
    REQUIRE_INT(0, seed());
    for (int probe = 1; probe <= 3; probe++) {
        int64_t at = W.changes[W.nchanges * probe / 4].ts;
        int live[10], value[10];
        memset(live, 0, sizeof live);
        for (int i = 0; i < W.nchanges && W.changes[i].ts <= at; i++) {
            live[W.changes[i].doc] = W.changes[i].kind != 2;
            value[W.changes[i].doc] = W.changes[i].v;
        }
        char t[32];
        ts_text(at, t);
        long st;
        json_t *a = query(&S, "SELECT docId, doc->>'v' FROM collection_at('users', $1::TIMESTAMP)",
                          json_pack("[s]", t), &st);
        REQUIRE_INT(200, st);
        json_t *rows = rows_of(a);
        size_t k = 0;
        for (int d = 0; d < 10; d++) {
            if (!live[d]) continue;
            json_t *row = json_array_get(rows, k++);
            char id[8], v[16];
            snprintf(id, sizeof id, "u%d", d);
            snprintf(v, sizeof v, "%d", value[d]);
            CHECK_STR(id, json_string_value(json_array_get(row, 0)));
            CHECK_STR(v, json_string_value(json_array_get(row, 1)));
        }
        CHECK_INT(k, json_array_size(rows));
        json_decref(a);
    }
}

TEST(test_query_reads_only_the_hours_of_a_time_filter)
{
    REQUIRE_INT(0, seed());
    for (int h = 0; h < HOURS; h++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM events WHERE ts >= TIMESTAMP '2026-11-20 00:00' + INTERVAL "
                 "%d HOUR "
                 "AND ts < TIMESTAMP '2026-11-20 00:00' + INTERVAL %d HOUR",
                 h, h + 1);
        long st;
        json_t *a = query(&S, sql, NULL, &st);
        CHECK_INT(200, st);
        CHECK_INT(1, json_integer_value(json_object_get(a, "files")));
        CHECK_INT(W.per_hour[h],
                  json_integer_value(json_array_get(json_array_get(rows_of(a), 0), 0)));
        json_decref(a);
    }
}

TEST(test_query_infinite_bounds_read_every_event)
{
    REQUIRE_INT(0, seed());
    int total = 0;
    for (int h = 0; h < HOURS; h++) total += W.per_hour[h];
    static const char *const sql[] = {
        "SELECT count(*) FROM events WHERE ts > '-infinity'",
        "SELECT count(*) FROM events_between('-infinity', 'infinity')",
        "SELECT sum(calls)::BIGINT FROM rpc_latency('-infinity')",
    };
    for (int i = 0; i < 3; i++) {
        long st;
        json_t *a = query(&S, sql[i], NULL, &st);
        CHECK_INT(200, st);
        CHECK_INT(HOURS, json_integer_value(json_object_get(a, "files")));
        CHECK_INT(i == 2 ? W.nrpc : total,
                  json_integer_value(json_array_get(json_array_get(rows_of(a), 0), 0)));
        json_decref(a);
    }
}

TEST(test_query_sees_acknowledged_events_at_once)
{
    REQUIRE_INT(0, seed());
    const char *fresh = "{\"type\":\"fresh.one\",\"id\":\"fresh-1\"}\n{\"type\":\"fresh.one\","
                        "\"id\":\"fresh-2\"}\n";
    post_ndjson(&S, fresh, strlen(fresh));
    long st;
    json_t *a = query(&S, "SELECT id FROM events WHERE type = 'fresh.one' ORDER BY id", NULL, &st);
    CHECK_INT(200, st);
    char *r = json_dumps(rows_of(a), JSON_COMPACT);
    CHECK_STR("[[\"fresh-1\"],[\"fresh-2\"]]", r);
    free(r);
    CHECK_INT(HOURS + 1,
              json_integer_value(json_object_get(a, "files"))); /* the lake and the open segment */
    json_decref(a);
}

TEST(test_query_http_errors)
{
    REQUIRE_INT(0, seed());
    char url[160];
    struct {
        const char *method, *path, *ctype, *body;
        long status;
        const char *error;
    } t[] = {
        {"GET", "/query", NULL, NULL, 405, "method GET not allowed on /query"},
        {"POST", "/query", "application/json", "{nope", 400, "body is not JSON: "},
        {"POST", "/query", "application/json", "{\"query\":\"SELECT 1\"}", 400,
         "body must be {\"sql\":\"...\",\"params\":[...]}"},
        {"POST", "/query", "application/json", "{\"sql\":\"SELECT 1\",\"params\":{}}", 400,
         "body must be {\"sql\":\"...\",\"params\":[...]}"},
        {"POST", "/query?format=xml", "application/json", "{\"sql\":\"SELECT 1\"}", 400,
         "format must be json, csv or ndjson, not \"xml\""},
        {"POST", "/query", "text/csv", "SELECT 1", 415,
         "unsupported Content-Type \"text/csv\": use application/json"},
        {"POST", "/query", "application/json", "{\"sql\":\"SELEC 1\"}", 400,
         "Parser Error: syntax error at or near"},
        {"POST", "/query", "application/json", "{\"sql\":\"DROP VIEW events\"}", 400,
         "not a statement beginning with DROP"},
        {"POST", "/query", "application/json",
         "{\"sql\":\"SELECT * FROM read_text('/etc/passwd')\"}", 400, "Permission Error"},
        {"POST", "/query", "application/json",
         "{\"sql\":\"SELECT value FROM duckdb_settings() WHERE name = 'allowed_directories'\"}",
         400, "duckdb_settings() is not available to queries: it shows the server's configuration"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        snprintf(url, sizeof url, "%s%s", S.url, t[i].path);
        char ct[80];
        snprintf(ct, sizeof ct, "Content-Type: %s", t[i].ctype ? t[i].ctype : "");
        const char *h[] = {t[i].ctype ? ct : NULL, NULL};
        resp r;
        http_do(t[i].method, url, h, t[i].body, t[i].body ? strlen(t[i].body) : 0, 0, &r);
        json_t *e = json_loads(r.body.p ? r.body.p : "", 0, NULL);
        const char *msg = json_string_value(json_object_get(e, "error"));
        if (r.status != t[i].status || !msg || !strstr(msg, t[i].error))
            test_fail(__FILE__, __LINE__, "%s %s %s:\n  expected %ld %s\n  got %ld %s", t[i].method,
                      t[i].path, t[i].body ? t[i].body : "", t[i].status, t[i].error, r.status,
                      r.body.p);
        json_decref(e);
        resp_free(&r);
    }
}

TEST(test_query_streams_csv_and_ndjson)
{
    REQUIRE_INT(0, seed());
    char url[160];
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *body = "{\"sql\":\"SELECT range AS n, 'x,' || range AS s FROM range(60000)\"}";
    resp r;
    snprintf(url, sizeof url, "%s/query?format=csv", S.url);
    http_do("POST", url, h, body, strlen(body), 30000, &r);
    CHECK_INT(200, r.status);
    CHECK(!strncmp(r.body.p, "n,s\n0,\"x,0\"\n1,\"x,1\"\n", 20));
    size_t lines = 0;
    for (size_t i = 0; i < r.body.len; i++) lines += r.body.p[i] == '\n';
    CHECK_INT(60001, lines);
    resp_free(&r);
    snprintf(url, sizeof url, "%s/query?format=ndjson", S.url);
    http_do("POST", url, h, body, strlen(body), 30000, &r);
    CHECK_INT(200, r.status);
    CHECK(!strncmp(r.body.p, "{\"n\":0,\"s\":\"x,0\"}\n{\"n\":1,\"s\":\"x,1\"}\n", 36));
    lines = 0;
    for (size_t i = 0; i < r.body.len; i++) lines += r.body.p[i] == '\n';
    CHECK_INT(60000, lines);
    resp_free(&r);
}

/* ---- the command line ------------------------------------------------------ */

static char *run_cli(const char *args, const char *stdin_text, int *status)
{
    char cmd[4096];
    if (stdin_text)
        snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | %s %s 2>&1", stdin_text, events_bin(), args);
    else
        snprintf(cmd, sizeof cmd, "%s %s 2>&1 </dev/null", events_bin(), args);
    FILE *p = popen(cmd, "r");
    buf b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, p)) > 0) buf_append(&b, tmp, n);
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    buf_cstr(&b);
    return b.p;
}

/* The ways events query and events history reach the lake: mode is "--server" or "--direct
 * --lake", target its URL or directory. */

/* --format csv: a header, then the rows. */
static void cli_query_csv(const char *mode, const char *target)
{
    char args[2048], want[512];
    int st;
    snprintf(args, sizeof args,
             "query %s %s --format csv \"SELECT type, count(*) AS n FROM events WHERE type "
             "LIKE 'collection.%%' GROUP BY 1 ORDER BY 1\"",
             mode, target);
    char *out = run_cli(args, NULL, &st);
    snprintf(want, sizeof want,
             "type,n\ncollection.delete,%d\ncollection.insert,%d\ncollection.update,%d\n",
             W.per_type[0], W.per_type[1], W.per_type[2]);
    CHECK_INT(0, st);
    CHECK_STR(want, out);
    free(out);
}

/* --format ndjson: an object a row; --format json: the columns with their types, the rows. */
static void cli_query_ndjson_and_json(const char *mode, const char *target)
{
    char args[2048];
    int st;
    snprintf(args, sizeof args, "query %s %s --format ndjson \"SELECT 1 AS a, 'x' AS b\"", mode,
             target);
    char *out = run_cli(args, NULL, &st);
    CHECK_STR("{\"a\":1,\"b\":\"x\"}\n", out);
    free(out);
    snprintf(args, sizeof args, "query %s %s --format json \"SELECT 1 AS a\"", mode, target);
    out = run_cli(args, NULL, &st);
    CHECK_CONTAINS(
        "{\"columns\":[{\"name\":\"a\",\"type\":\"INTEGER\"}],\"rows\":[[1]],\"rowCount\":1,", out);
    free(out);
}

/* --format table, the SQL read from stdin: boxed, numbers right-aligned, wide values cut. */
static void cli_query_table_from_stdin(const char *mode, const char *target)
{
    char args[2048];
    int st;
    snprintf(args, sizeof args, "query %s %s --format table -", mode, target);
    char *out = run_cli(args, "SELECT 7 AS n, NULL AS nothing, repeat(chr(120), 300) AS wide", &st);
    CHECK_INT(0, st);
    CHECK_CONTAINS("│    n    │ nothing │", out);
    CHECK_CONTAINS("│ integer │ integer │", out);
    CHECK_CONTAINS("│       7 │ NULL    │ xxxx", out); /* numbers right-aligned */
    CHECK_CONTAINS("…", out);                          /* the wide value is cut */
    CHECK_CONTAINS("1 row (", out);
    free(out);
}

/* --param binds $1, $2… in order. */
static void cli_query_params(const char *mode, const char *target)
{
    char args[2048];
    int st;
    snprintf(args, sizeof args,
             "query %s %s --format csv --param 3 --param u3 \"SELECT \\$1::INT + 1 AS x, \\$2 "
             "AS y\"",
             mode, target);
    char *out = run_cli(args, NULL, &st);
    CHECK_STR("x,y\n4,u3\n", out);
    free(out);
}

/* events history: a document's versions, with their columns. */
static void cli_history_csv(const char *mode, const char *target)
{
    char args[2048];
    int st;
    snprintf(args, sizeof args, "history %s %s --format csv users u3", mode, target);
    char *out = run_cli(args, NULL, &st);
    CHECK_INT(0, st);
    CHECK(!strncmp(out, "ts,change,bookmark,doc,prev,id,receivedAt\n", 42));
    free(out);
}

/* A syntax error: exit 1 with DuckDB's message (and the server's status through a server). */
static void cli_query_syntax_error(const char *mode, const char *target, int through_server)
{
    char args[2048];
    int st;
    snprintf(args, sizeof args, "query %s %s \"SELEC 1\"", mode, target);
    char *out = run_cli(args, NULL, &st);
    CHECK_INT(1, st);
    CHECK_CONTAINS("events query: Parser Error: syntax error at or near \"SELEC\"", out);
    if (through_server) CHECK_CONTAINS("(HTTP 400)", out);
    free(out);
}

TEST(test_query_cli_formats_through_a_server_and_on_the_lake)
{
    REQUIRE_INT(0, seed());
    const char *modes[2] = {"--server", "--direct --lake"};
    const char *targets[2] = {S.url, LAKE};
    for (int m = 0; m < 2; m++) {
        cli_query_csv(modes[m], targets[m]);
        cli_query_ndjson_and_json(modes[m], targets[m]);
        cli_query_table_from_stdin(modes[m], targets[m]);
        cli_query_params(modes[m], targets[m]);
        cli_history_csv(modes[m], targets[m]);
        cli_query_syntax_error(modes[m], targets[m], m == 0);
    }
}

TEST(test_query_cli_reads_a_file_and_refuses_bad_usage)
{
    REQUIRE_INT(0, seed());
    char args[2048], path[1300];
    int st;
    snprintf(path, sizeof path, "%s/q.sql", DIR_);
    FILE *f = fopen(path, "w");
    fputs("SELECT 40 + 2 AS answer", f);
    fclose(f);
    snprintf(args, sizeof args, "query --direct --lake %s --format csv --file %s", LAKE, path);
    char *out = run_cli(args, NULL, &st);
    CHECK_STR("answer\n42\n", out);
    free(out);
    out = run_cli("query --format csv", NULL, &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("expected one SQL argument", out);
    free(out);
    out = run_cli("query --format yaml \"SELECT 1\"", NULL, &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("--format must be table, csv, json or ndjson", out);
    free(out);
}

TEST(test_query_cli_on_the_lake_stops_at_max_bytes)
{
    REQUIRE_INT(0, seed());
    static const struct {
        const char *format, *end;
    } t[] = {
        {"ndjson", "{\"error\":\"answer cut at 10240 bytes: the answer size limit\"}\n"},
        {"json",
         "\"truncated\":true,\"error\":\"answer cut at 10240 bytes: the answer size limit\""},
        {"csv", "xxxx\n"},
        {"table", " rows, cut short ("},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char args[2048];
        snprintf(
            args, sizeof args,
            "query --direct --lake %s --max-bytes 10KiB --format %s \"SELECT repeat('x', 100) AS s "
            "FROM range(1000)\"",
            LAKE, t[i].format);
        int st;
        char *out = run_cli(args, NULL, &st);
        CHECK_INT(1, st);
        CHECK_CONTAINS(t[i].end, out);
        CHECK_CONTAINS(
            "events query: answer cut at 10240 bytes: the answer size limit (--max-bytes)", out);
        free(out);
    }
}

/* ---- exactly once while segments move into the lake ------------------------- */

typedef struct feeder {
    const srv *s;
    atomic_int sent, acked, stop;
} feeder;

static void *feed(void *arg)
{
    feeder *f = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", f->s->url);
    const char *h[] = {"Content-Type: application/x-ndjson", NULL};
    for (int k = 0; k < 100000 && !atomic_load(&f->stop); k++) {
        buf b = BUF_INIT;
        for (int i = 0; i < 20; i++)
            buf_printf(&b, "{\"type\":\"race.test\",\"id\":\"r-%d-%d\"}\n", k, i);
        atomic_fetch_add(&f->sent, 20);
        resp r;
        http_do("POST", url, h, b.p, b.len, 0, &r);
        if (r.status == 200) atomic_fetch_add(&f->acked, 20);
        resp_free(&r);
        buf_free(&b);
    }
    return NULL;
}

TEST(test_query_counts_each_event_once_while_segments_are_sealed)
{
    char *dir = test_tmpdir("qrace");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--seal-age", "20ms", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    feeder f = {&s, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, feed, &f);
    int bad = 0, queries = 0;
    for (int i = 0; i < 80; i++) {
        int before = atomic_load(&f.acked);
        long st;
        json_t *a =
            query(&s, "SELECT count(*), count(DISTINCT id) FROM events WHERE type = 'race.test'",
                  NULL, &st);
        int after = atomic_load(&f.sent);
        json_t *row = json_array_get(rows_of(a), 0);
        long long n = json_integer_value(json_array_get(row, 0)),
                  d = json_integer_value(json_array_get(row, 1));
        queries++;
        if (st != 200 || n != d || n < before || n > after) {
            if (bad++ < 5)
                test_fail(__FILE__, __LINE__,
                          "status %ld: count %lld, distinct %lld, acked before %d, sent after %d",
                          st, n, d, before, after);
        }
        json_decref(a);
    }
    atomic_store(&f.stop, 1);
    pthread_join(th, NULL);
    CHECK_INT(0, bad);
    CHECK(atomic_load(&f.acked) > 100);
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", s.url);
    http_do("GET", url, NULL, NULL, 0, 0, &r);
    CHECK(
        !strstr(r.body.p, "\nevents_segments_sealed_total 0\n")); /* sealing did happen meanwhile */
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

TEST(test_query_scopes_timeouts_and_the_queue)
{
    char *dir = test_tmpdir("qlimits");
    char lake[1200], tokens[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    fputs("svc ingest-token-0123456789 ingest\nanalyst query-token-01234567890 query\n", f);
    fclose(f);
    srv s = {0};
    const char *args[] = {"--tokens-file",
                          tokens,
                          "--query-threads",
                          "1",
                          "--query-timeout",
                          "1s",
                          "--query-max-rows",
                          "5",
                          NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[160];
    snprintf(url, sizeof url, "%s/query", s.url);
    const char *q = "{\"sql\":\"SELECT * FROM range(10)\"}";
    resp r;
    const char *ingest_tok[] = {"Content-Type: application/json",
                                "Authorization: Bearer ingest-token-0123456789", NULL};
    http_do("POST", url, ingest_tok, q, strlen(q), 0, &r);
    CHECK_INT(403, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"token svc lacks the query scope\"}\n", r.body.p);
    resp_free(&r);
    const char *query_tok[] = {"Content-Type: application/json",
                               "Authorization: Bearer query-token-01234567890", NULL};
    http_do("POST", url, query_tok, q, strlen(q), 0, &r);
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"rowCount\":5,\"truncated\":true,", r.body.p);
    resp_free(&r);
    const char *slow =
        "{\"sql\":\"SELECT sum(hash(a * b)) FROM range(300000) t(a), range(300000) u(b)\"}";
    http_do("POST", url, query_tok, slow, strlen(slow), 10000, &r);
    CHECK_INT(504, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"query stopped after 1000 ms: the query time limit\"}\n",
              r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

typedef struct slowq {
    const char *url;
    long status;
} slowq;

static void *slow_query(void *arg)
{
    slowq *sq = arg;
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *slow =
        "{\"sql\":\"SELECT sum(hash(a * b)) FROM range(300000) t(a), range(300000) u(b)\"}";
    resp r;
    http_do("POST", sq->url, h, slow, strlen(slow), 20000, &r);
    sq->status = r.status;
    resp_free(&r);
    return NULL;
}

TEST(test_query_queue_is_bounded)
{
    char *dir = test_tmpdir("qqueue");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--query-threads", "1", "--query-timeout", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[160];
    snprintf(url, sizeof url, "%s/query", s.url);
    slowq sq[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        sq[i] = (slowq){url, 0};
        pthread_create(&th[i], NULL, slow_query, &sq[i]);
    }
    int refused = 0, timed_out = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        refused += sq[i].status == 429;
        timed_out += sq[i].status == 504;
    }
    /*
     * One runs, four wait, the rest are refused at once; the server stays fine.
     * On a loaded machine all eight may arrive before the worker takes the
     * first: then four wait and four are refused.
     */
    CHECK(refused == 3 || refused == 4);
    CHECK_INT(8, refused + timed_out);
    resp r;
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *one = "{\"sql\":\"SELECT 1\"}";
    http_do("POST", url, h, one, strlen(one), 0, &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/* ---- answers of any size, clients of any speed ------------------------------- */

/* Waits (at most 20 s) until a metric has a value; 0 if it did. */
static int await_metric(const srv *s, const char *name, long long want)
{
    for (int i = 0; i < 400; i++) {
        if (srv_metric(s, name) == want) return 0;
        usleep(50000);
    }
    return -1;
}

static resp post_query(const srv *s, const char *format, const char *sql, long timeout_ms)
{
    char url[160];
    snprintf(url, sizeof url, "%s/query%s%s", s->url, format ? "?format=" : "",
             format ? format : "");
    json_t *req = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    const char *h[] = {"Content-Type: application/json", NULL};
    resp r;
    http_do("POST", url, h, body, strlen(body), timeout_ms, &r);
    free(body);
    return r;
}

/* A connection that has sent a POST /query and reads nothing; -1 if it cannot. */
static int post_and_stall(const srv *s, const char *format, const char *sql)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096; /* no window for the answer to hide in */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    json_t *req = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    buf b = BUF_INIT;
    buf_printf(&b,
               "POST /query%s%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n%s",
               format ? "?format=" : "", format ? format : "", strlen(body), body);
    free(body);
    int ok = !connect(fd, (struct sockaddr *)&a, sizeof a) &&
             send(fd, b.p, b.len, MSG_NOSIGNAL) == (ssize_t)b.len;
    buf_free(&b);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

TEST(test_query_answers_stop_at_max_bytes_with_a_marker)
{
    char *dir = test_tmpdir("qbytes");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--query-max-bytes", "100KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    /* 1,000 rows of about 1 KB: about 10 times the limit */
    const char *big = "SELECT range AS n, repeat('x', 1000) AS s FROM range(1000)";
    resp r = post_query(&s, NULL, big, 30000);
    CHECK_INT(200, r.status);
    CHECK(r.body.len <= 102400 + 200);
    json_t *a = json_loads(r.body.p ? r.body.p : "", 0, NULL);
    REQUIRE(a);
    size_t rows = json_array_size(json_object_get(a, "rows"));
    CHECK(rows > 90 && rows < 102);
    CHECK_INT(rows, json_integer_value(json_object_get(a, "rowCount")));
    CHECK(json_is_true(json_object_get(a, "truncated")));
    CHECK_STR("answer cut at 102400 bytes: the answer size limit",
              json_string_value(json_object_get(a, "error")));
    CHECK_INT(rows - 1, json_integer_value(json_array_get(
                            json_array_get(json_object_get(a, "rows"), rows - 1), 0)));
    json_decref(a);
    resp_free(&r);

    /* NDJSON: whole rows, then the marker, and the stream ends without its last chunk */
    r = post_query(&s, "ndjson", big, 30000);
    CHECK_INT(0, r.status);
    CHECK_CONTAINS("partial", r.error);
    const char *last = r.body.p && r.body.len > 1 ? r.body.p + r.body.len - 2 : "";
    while (last > r.body.p && last[-1] != '\n') last--;
    CHECK_STR("{\"error\":\"answer cut at 102400 bytes: the answer size limit\"}\n", last);
    CHECK(!strncmp(r.body.p, "{\"n\":0,\"s\":\"xxx", 15));
    resp_free(&r);

    /* CSV has no place for it: the stream is cut, after whole lines */
    r = post_query(&s, "csv", big, 30000);
    CHECK_INT(0, r.status);
    CHECK_CONTAINS("partial", r.error);
    CHECK(!strncmp(r.body.p, "n,s\n0,xxx", 9));
    CHECK(r.body.len > 90000 && r.body.len <= 102400 && r.body.p[r.body.len - 1] == '\n');
    resp_free(&r);

    /* a small answer is as it was */
    r = post_query(&s, NULL, "SELECT 42 AS a", 0);
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"rows\":[[42]],\"rowCount\":1,\"truncated\":false,\"files\":0,", r.body.p);
    resp_free(&r);

    CHECK_INT(3, srv_metric(&s, "events_query_answers_cut_total"));

    /* events query through the server: the rows so far, the reason, exit status 1 */
    static const char *const formats[] = {"json", "ndjson", "csv", "table"};
    for (int i = 0; i < 4; i++) {
        char cli[512];
        snprintf(cli, sizeof cli,
                 "query --server %s --format %s \"SELECT repeat('x', 1000) AS s FROM range(1000)\"",
                 s.url, formats[i]);
        int st;
        char *out = run_cli(cli, NULL, &st);
        CHECK_INT(1, st);
        CHECK_CONTAINS(i == 2 ? "events query: the answer was cut short"
                              : "events query: answer cut at 102400 bytes: the answer size limit",
                       out);
        free(out);
    }
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

TEST(test_query_json_answer_failing_after_its_first_rows_stays_valid_json)
{
    REQUIRE_INT(0, seed());
    /* DuckDB runs up to about 1 MB ahead of the rows fetched (9,000 of these): the failure
     * comes well after the first 64 KiB went out */
    resp r = post_query(&S, NULL,
                        "SELECT CASE WHEN range < 50000 THEN range ELSE error('boom at ' || range) "
                        "END AS n, repeat('x', 100) AS s FROM range(60000)",
                        30000);
    CHECK_INT(200, r.status);
    json_t *a = json_loads(r.body.p ? r.body.p : "", 0, NULL);
    REQUIRE(a);
    json_t *rows = json_object_get(a, "rows");
    CHECK(json_array_size(rows) > 1000 && json_array_size(rows) < 50000);
    CHECK_INT(json_array_size(rows), json_integer_value(json_object_get(a, "rowCount")));
    CHECK_INT(json_array_size(rows) - 1, json_integer_value(json_array_get(
                                             json_array_get(rows, json_array_size(rows) - 1), 0)));
    CHECK(json_is_true(json_object_get(a, "truncated")));
    CHECK_CONTAINS("Invalid Input Error: boom at 5",
                   json_string_value(json_object_get(a, "error")));
    json_decref(a);
    resp_free(&r);
    /* NDJSON: its last line says why */
    r = post_query(&S, "ndjson",
                   "SELECT CASE WHEN range < 50000 THEN range ELSE error('boom') END AS n, "
                   "repeat('x', 100) AS s FROM range(60000)",
                   30000);
    CHECK_CONTAINS("\n{\"error\":\"Invalid Input Error: boom\"}\n", r.body.p);
    resp_free(&r);
}

TEST(test_query_time_limit_holds_while_a_client_does_not_read)
{
    char *dir = test_tmpdir("qstall");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    /* the idle timeout would free the worker after 120 s: the query time limit must, at 2 s */
    const char *args[] = {"--query-threads",
                          "1",
                          "--query-timeout",
                          "2s",
                          "--idle-timeout",
                          "120s",
                          "--query-max-bytes",
                          "1GiB",
                          "--compact-retain",
                          "120s",
                          NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    /* 50 MB of NDJSON that nobody reads: more than the socket buffers and the pipe hold */
    int fd = post_and_stall(&s, "ndjson", "SELECT repeat('x', 10000) AS s FROM range(5000)");
    REQUIRE(fd >= 0);
    /* running before the next one is sent, or that one could take the worker first */
    CHECK_INT(0, await_metric(&s, "events_query_running", 1));
    resp r = post_query(&s, NULL, "SELECT 42 AS a", 30000);
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"rows\":[[42]]", r.body.p);
    resp_free(&r);
    CHECK_INT(1, srv_metric(&s, "events_query_timeouts_total"));
    close(fd);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

typedef struct slow_client {
    const srv *s;
    resp r;
} slow_client;

static void *slow_client_main(void *arg)
{
    slow_client *c = arg;
    c->r = post_query(c->s, NULL,
                      "SELECT sum(hash(a * b)) FROM range(300000) t(a), range(300000) u(b)", 30000);
    return NULL;
}

TEST(test_query_queued_queries_of_departed_clients_do_not_run)
{
    char *dir = test_tmpdir("qgone");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--query-threads", "1", "--query-timeout", "3s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    slow_client first = {&s, {0}};
    pthread_t th;
    pthread_create(&th, NULL, slow_client_main, &first);
    CHECK_INT(0, await_metric(&s, "events_query_running", 1));
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = post_and_stall(
            &s, NULL, "SELECT sum(hash(a * b)) FROM range(300000) t(a), range(300000) u(b)");
    CHECK_INT(0, await_metric(&s, "events_query_queued", 3));
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]); /* they leave while their queries wait */
    pthread_join(th, NULL);
    CHECK_INT(504, first.r.status);
    resp_free(&first.r);
    resp r = post_query(&s, NULL, "SELECT 42 AS a", 30000);
    CHECK_INT(200, r.status);
    resp_free(&r);
    CHECK_INT(3, srv_metric(&s, "events_query_skipped_total"));
    CHECK_INT(3, srv_metric(&s, "events_query_client_gone_total"));
    CHECK_INT(1, srv_metric(&s, "events_query_timeouts_total")); /* only the first one ran */
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/* SIGTERM stops a running query: its client gets 504 saying why, and the server exits. */
TEST(test_query_running_at_shutdown_answers_504)
{
    char *dir = test_tmpdir("qstop");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--query-threads", "1", "--query-timeout", "60s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    slow_client c = {&s, {0}};
    pthread_t th;
    pthread_create(&th, NULL, slow_client_main, &c);
    CHECK_INT(0, await_metric(&s, "events_query_running", 1));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    pthread_join(th, NULL);
    CHECK_INT(504, c.r.status);
    CHECK_CONTAINS("query stopped: the server is shutting down", c.r.body.p);
    resp_free(&c.r);
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/* rpc_latency's percentiles against quantile_cont and avg of each fraction on the same rows, on
 * durations that repeat, are missing, null, NaN, infinite or huge, in groups of one value,
 * of NULLs only, and with NULL class or method: the same doubles (compared in SQL, where
 * NaN and inf are not rendered as null) and the same answer */
static const char RPC_REFERENCE[] =
    "SELECT \"do\".\"class\" AS class, method, count(*) AS calls, "
    "quantile_cont(durationMs, [0.5, 0.95, 0.99]) AS q, "
    "avg(CASE WHEN success IS FALSE OR error IS NOT NULL THEN 1.0 ELSE 0.0 END) AS error_rate "
    "FROM events WHERE type = 'rpc.call' AND ts >= '-infinity' GROUP BY ALL";

#define RPC_SAME(C) "(r." C " IS NOT DISTINCT FROM m." C " OR (isnan(r." C ") AND isnan(m." C ")))"

TEST(test_query_rpc_latency_equals_quantile_cont_on_odd_durations)
{
    static const char *const DURATIONS[] = {"1",       "2",        "2",    "3.25",    "\"NaN\"",
                                            "\"inf\"", "\"-inf\"", "null", "\"x\"",   "1e308",
                                            "-1e308",  "0.1",      "0.7",  "7",       "1e-300",
                                            "-5",      "2",        "100",  "\"NaN\"", "12.5"};
    static const char *const INFINITE[] = {"\"inf\"", "1", "2", "1e308", "\"-inf\""};
    static const char *const GROUPS[] = {"\"do\":{\"class\":\"A\"},\"method\":\"m\"",
                                         "\"do\":{\"class\":\"A\"},\"method\":\"n\"",
                                         "\"method\":\"m\"", "\"do\":{\"class\":\"B\"}", ""};
    char *dir = test_tmpdir("qrpc");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    buf b = BUF_INIT;
    unsigned r = 7;
    for (int i = 0; i < 600; i++) {
        r = r * 1103515245u + 12345u;
        int g = (int)((r >> 8) % 5), d = (int)((r >> 16) % 20);
        const char *dur = g == 4   ? (i % 2 ? NULL : "null")
                          : g == 3 ? INFINITE[d % 5]
                          : g == 1 ? DURATIONS[d % 4]
                                   : DURATIONS[d];
        buf_printf(&b,
                   "{\"id\":\"r-%d\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T01:%02d:00.000Z\"",
                   i, i % 60);
        if (*GROUPS[g]) buf_printf(&b, ",%s", GROUPS[g]);
        if (dur) buf_printf(&b, ",\"durationMs\":%s", dur);
        buf_printf(&b, "%s}\n",
                   i % 7 == 0 ? ",\"success\":false"
                   : i % 5    ? ",\"success\":true"
                              : "");
    }
    buf_puts(&b,
             "{\"id\":\"r-one\",\"type\":\"rpc.call\",\"ts\":\"2026-11-20T01:00:00.000Z\","
             "\"do\":{\"class\":\"C\"},\"method\":\"one\",\"durationMs\":4.5,\"error\":\"e\"}\n");
    post_ndjson(&s, b.p, b.len);
    buf sql = BUF_INIT;
    buf_printf(
        &sql,
        "SELECT count(*), count(*) FILTER (WHERE NOT (r.calls = m.calls AND r.error_rate "
        "= m.error_rate AND " RPC_SAME("p50") " AND " RPC_SAME("p95") " AND " RPC_SAME(
            "p99") ")), count(*) FILTER (WHERE isnan(r.p50) OR isnan(r.p99)), "
                   "count(*) FILTER (WHERE isinf(r.p95) OR isinf(r.p99)), count(*) FILTER (WHERE "
                   "r.p50 IS NULL) FROM (SELECT class, method, calls, q[1] AS p50, q[2] AS p95, "
                   "q[3] AS p99, error_rate FROM (%s)) r FULL JOIN rpc_latency('-infinity') m ON "
                   "r.class IS NOT DISTINCT FROM m.class AND r.method IS NOT DISTINCT FROM "
                   "m.method",
        RPC_REFERENCE);
    long st;
    json_t *a = query(&s, sql.p, NULL, &st);
    REQUIRE_INT(200, st);
    json_t *row = json_array_get(rows_of(a), 0);
    CHECK_INT(6, json_integer_value(json_array_get(row, 0))); /* 5 groups and C.one */
    CHECK_INT(0, json_integer_value(json_array_get(row, 1))); /* none differs */
    CHECK(json_integer_value(json_array_get(row, 2)) > 0);    /* NaN percentiles covered */
    CHECK(json_integer_value(json_array_get(row, 3)) > 0);    /* infinite ones too */
    CHECK_INT(1, json_integer_value(json_array_get(row, 4))); /* the group of NULLs only */
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    buf_free(&sql);
    buf_free(&b);
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/*
 * The server copies the raw files its queries read into the spool's copies/ directory; the
 * queries after read the copies and answer the same (the workload's files are small: with
 * --query-copies-min 0). With --query-copies 0 it makes none, nor of files under the default
 * --query-copies-min. A server of its own on a lake of its own, which it does not compact: the
 * shared server's compactor may replace its lake's raw files while the tests run.
 */
TEST(test_query_reads_copies_of_raw_files_with_the_same_answers)
{
    REQUIRE_INT(0, seed());
    char *dir = test_tmpdir("qcopies");
    char lake[1200], spool[1300];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    const char *args[] = {"--compact-every", "0", "--query-copies-min", "0", NULL};
    srv c = {0};
    REQUIRE_INT(0, seed_server(&c, lake, args));
    static const char *const sql[] = {
        "SELECT type, count(*), min(ts), max(ts) FROM events GROUP BY type ORDER BY type",
        "SELECT * FROM doc_history('users', 'u3')", "SELECT * FROM rpc_latency('2026-11-20')"};
    enum { N = sizeof sql / sizeof *sql };
    long st;
    char *first[N];
    for (int i = 0; i < N; i++) {
        json_t *a = query(&c, sql[i], NULL, &st);
        CHECK_INT(200, st);
        CHECK_INT(HOURS, json_integer_value(json_object_get(a, "files")));
        first[i] = json_dumps(rows_of(a), JSON_COMPACT);
        json_decref(a);
    }
    /* one copy of each hour's file, once */
    CHECK_INT(0, await_metric(&c, "events_query_copies_made_total", HOURS));
    CHECK_INT(HOURS, srv_metric(&c, "events_query_copies_files"));
    CHECK(srv_metric(&c, "events_query_copies_bytes") > 0);
    CHECK_INT(256ll << 20, srv_metric(&c, "events_query_copies_max_bytes"));
    CHECK_INT(0, srv_metric(&c, "events_query_copies_failed_total"));
    CHECK_INT(0, sh("test $(ls %s/.spool/copies | grep -c '\\.parquet$') = %d", lake, HOURS));
    long long hits = srv_metric(&c, "events_query_copies_hits_total"),
              misses = srv_metric(&c, "events_query_copies_misses_total");
    CHECK(misses >= HOURS);
    for (int i = 0; i < N; i++) {
        json_t *a = query(&c, sql[i], NULL, &st);
        CHECK_INT(200, st);
        char *again = json_dumps(rows_of(a), JSON_COMPACT);
        CHECK_STR(first[i], again);
        free(again);
        free(first[i]);
        json_decref(a);
    }
    /* every file of every query read from its copy, and none copied again */
    CHECK_INT(hits + N * HOURS, srv_metric(&c, "events_query_copies_hits_total"));
    CHECK_INT(misses, srv_metric(&c, "events_query_copies_misses_total"));
    CHECK_INT(HOURS, srv_metric(&c, "events_query_copies_made_total"));
    CHECK_INT(0, srv_stop(&c, SIGTERM));
    /* the copies go when the server stops */
    CHECK_INT(0, sh("test -z \"$(ls %s/.spool/copies)\"", lake));

    /* the lake again, without copies, and with files all under the default minimum */
    for (int k = 0; k < 2; k++) {
        snprintf(spool, sizeof spool, "%s/spool-%d", dir, k);
        const char *none[] = {"--spool", spool, "--compact-every", "0", "--query-copies",
                              "0",       NULL};
        if (k) none[4] = NULL;
        srv t = {0};
        REQUIRE_INT(0, srv_start(&t, lake, none));
        json_t *a = query(&t, sql[0], NULL, &st);
        CHECK_INT(200, st);
        json_decref(a);
        usleep(200000);
        CHECK_INT(k ? 256ll << 20 : 0, srv_metric(&t, "events_query_copies_max_bytes"));
        CHECK_INT(0, srv_metric(&t, "events_query_copies_misses_total"));
        CHECK_INT(0, srv_metric(&t, "events_query_copies_made_total"));
        CHECK_INT(0, srv_stop(&t, SIGTERM));
        unlink(t.log);
    }
    if (test_failed_now()) srv_dump_log(&c);
    unlink(c.log);
    test_rmtree(dir);
    free(dir);
}

/* runs last (tests run in file order): stops the shared server */
TEST(test_query_zz_shared_server_stops_cleanly)
{
    if (!seeded) return;
    CHECK_INT(0, srv_stop(&S, SIGTERM));
    test_rmtree(DIR_);
    unlink(S.log);
    free(DIR_);
    buf_free(&W.ndjson);
}
