/*
 * test_shippers.c - log shippers and generic HTTP clients lose nothing (issue 13).
 *
 * No log shipper can be installed here, so the one that lost events is
 * emulated: Fluent Bit's out_http reads at most 4,096 bytes of an answer
 * (FLB_HTTP_DATA_SIZE_MAX, headers included), counts a longer one as a failed
 * request, and then sends the whole batch again; any status but 2xx is a
 * failure too. Against it: batches with a tenth of their records invalid,
 * every record with an id, some answers lost on the way: every valid record
 * is stored exactly once, and every refused one is in the quarantine. Then
 * what shippers send: records without a type (?type=, a token's type=), their
 * timestamps (?ts_key=, every form), batches of 50,000 records, answers under
 * 4 KiB, and the quarantine's retention.
 */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHIPPER_READ_MAX 4096 /* Fluent Bit's FLB_HTTP_DATA_SIZE_MAX */

/* ---- the emulated shipper --------------------------------------------------- */

typedef struct shipped {
    long status;
    size_t bytes; /* of the answer as received: status line, headers, body */
    int too_long; /* the answer did not fit in SHIPPER_READ_MAX */
    buf body;
} shipped;

static size_t on_head(char *p, size_t size, size_t n, void *ud)
{
    shipped *s = ud;
    s->bytes += size * n;
    return size * n;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    shipped *s = ud;
    s->bytes += size * n;
    if (s->bytes > SHIPPER_READ_MAX) {
        s->too_long = 1;
        return 0; /* the shipper stops reading: a failed request */
    }
    buf_append(&s->body, p, size * n);
    return size * n;
}

/*
 * One POST as the shipper makes it. lose_answer: the connection is cut as the answer
 * arrives (the server has done its work; the shipper never learns it). 0 when the shipper
 * counts it delivered: a 2xx answer of at most SHIPPER_READ_MAX bytes.
 */
static int ship(const char *url, const char *token, const char *body, size_t len, int lose_answer,
                shipped *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[200];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    buf_cstr(&out->body);
    if (lose_answer) return -1;
    return rc == CURLE_OK && !out->too_long && out->status >= 200 && out->status < 300 ? 0 : -1;
}

static json_t *query(const srv *s, const char *token, const char *sql)
{
    json_t *req = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char url[128], auth[200];
    snprintf(url, sizeof url, "%s/query", s->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    const char *h[] = {"Content-Type: application/json", token ? auth : NULL, NULL};
    resp r;
    http_do("POST", url, h, body, strlen(body), 30000, &r);
    free(body);
    json_t *a = r.status == 200 ? json_loads(r.body.p, 0, NULL) : NULL;
    if (!a) test_fail(__FILE__, __LINE__, "query %s: %ld %s", sql, r.status, r.body.p);
    resp_free(&r);
    return a;
}

/* The single value of a one-row, one-column query, as a long long (-1 on failure). */
static long long query_int(const srv *s, const char *token, const char *sql)
{
    json_t *a = query(s, token, sql);
    json_t *v = json_array_get(json_array_get(json_object_get(a, "rows"), 0), 0);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(a);
    return n;
}

static char *lake_dir(const char *tag, char **dir)
{
    *dir = test_tmpdir(tag);
    char *lake = malloc(strlen(*dir) + 8);
    sprintf(lake, "%s/lake", *dir);
    return lake;
}

static void cleanup(srv *s, char *dir, char *lake)
{
    if (test_failed_now()) srv_dump_log(s);
    unlink(s->log);
    test_rmtree(dir);
    free(dir);
    free(lake);
}

/* ---- the shipper loses nothing and stores nothing twice ------------------------ */

#define BATCHES   24
#define PER_BATCH 1000 /* a hundred refused: a list of reasons over 4 KiB */

TEST(test_shippers_a_client_reading_4096_bytes_that_retries_whole_batches_loses_nothing)
{
    char *dir, *lake = lake_dir("shipper", &dir);
    srv s = {0};
    const char *args[] = {"--seal-age", "300ms", "--compact-every", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s.url);
    int attempts = 0, retried = 0, lost = 0, refused = 0;
    size_t longest = 0;
    int64_t deadline = time(NULL) + 120;
    for (int b = 0; b < BATCHES; b++) {
        buf body = BUF_INIT;
        buf_putc(&body, '[');
        for (int i = 0; i < PER_BATCH; i++) {
            if (i) buf_putc(&body, ',');
            if (i % 10 == 3) { /* a tenth refused: no type, or a time that is none */
                buf_printf(&body,
                           i % 20 == 3
                               ? "{\"id\":\"r-%d-%d\",\"log\":\"no type\"}"
                               : "{\"id\":\"r-%d-%d\",\"type\":\"app.log\",\"ts\":\"soon\"}",
                           b, i);
                refused++;
            } else {
                buf_printf(&body, "{\"id\":\"v-%d-%d\",\"type\":\"app.log\",\"n\":%d}", b, i, i);
            }
        }
        buf_putc(&body, ']');
        int done = 0;
        /* the answer of every third batch is lost once: it is stored, and sent again */
        for (int a = 0; a < 20 && !done && time(NULL) < deadline; a++) {
            shipped r;
            int lose = b % 3 == 0 && a == 0;
            done = ship(url, NULL, body.p, body.len, lose, &r) == 0;
            attempts++;
            if (r.bytes > longest) longest = r.bytes;
            if (!done) retried++;
            if (!done && !lose)
                test_fail(__FILE__, __LINE__, "batch %d: %ld, %zu bytes%s: %.300s", b, r.status,
                          r.bytes, r.too_long ? " (more than the shipper reads)" : "", r.body.p);
            lost += lose;
            buf_free(&r.body);
        }
        CHECK(done);
        buf_free(&body);
    }
    fprintf(stderr, "  %d posts for %d batches (%d retried), the longest answer %zu bytes\n",
            attempts, BATCHES, retried, longest);
    CHECK(longest < SHIPPER_READ_MAX);
    int valid = BATCHES * PER_BATCH - refused;
    /* every valid record exactly once */
    CHECK_INT(valid, query_int(&s, NULL, "SELECT count(*) FROM events"));
    CHECK_INT(valid, query_int(&s, NULL, "SELECT count(DISTINCT id) FROM events"));
    /* every refused record in the quarantine: at least once (a batch whose answer was lost
     * is quarantined again when it is sent again), by its id in the raw record */
    CHECK_INT(refused, query_int(&s, NULL,
                                 "SELECT count(DISTINCT raw::JSON->>'id') FROM rejected "
                                 "WHERE raw::JSON->>'id' LIKE 'r-%'"));
    CHECK_INT(refused + lost * (PER_BATCH / 10),
              query_int(&s, NULL, "SELECT count(*) FROM rejected"));
    CHECK_INT(refused / 2, query_int(&s, NULL,
                                     "SELECT count(*) FROM rejected WHERE class = 'ts' AND "
                                     "reason = '\"ts\" must be an ISO 8601 time between 1970 and "
                                     "9999'") -
                               lost * (PER_BATCH / 20));
    /* and in the lake's files once sealed */
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "test $(cat %s/rejected/*/*/*/*/*.jsonl | wc -l) -eq %d", lake,
             refused + lost * (PER_BATCH / 10));
    CHECK_INT(0, sh("%s", cmd));
    cleanup(&s, dir, lake);
}

/* ---- answers stay small ------------------------------------------------------- */

TEST(test_shippers_answers_stay_under_4_kib_and_50000_records_are_taken)
{
    char *dir, *lake = lake_dir("shipper-big", &dir);
    srv s = {0};
    const char *args[] = {"--compact-every", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[160];
    /* 50,000 refused records, the longest reasons among them */
    buf body = BUF_INIT;
    buf_putc(&body, '[');
    for (int i = 0; i < 50000; i++) {
        if (i) buf_putc(&body, ',');
        if (i % 2)
            buf_printf(&body, "{\"type\":\"a\",\"k%060d\":1,\"k%060d\":2}", i, i);
        else
            buf_printf(&body, "{\"log\":\"record %d\"}", i);
    }
    buf_putc(&body, ']');
    snprintf(url, sizeof url, "%s/ingest", s.url);
    shipped r;
    CHECK_INT(0, ship(url, NULL, body.p, body.len, 0, &r));
    fprintf(stderr, "  50,000 refused records: an answer of %zu bytes\n", r.bytes);
    json_t *a = json_loads(r.body.p, 0, NULL);
    CHECK_INT(50000, json_integer_value(json_object_get(a, "rejectedCount")));
    CHECK_INT(10, json_array_size(json_object_get(a, "rejected")));
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM rejected WHERE requestId = '%s'",
             json_string_value(json_object_get(a, "requestId")));
    CHECK_INT(50000, query_int(&s, NULL, sql));
    json_decref(a);
    buf_free(&r.body);
    /* 50,000 records without a type, given one by the URL: accepted, a short answer */
    body.len = 0;
    buf_putc(&body, '[');
    for (int i = 0; i < 50000; i++) buf_printf(&body, "%s{\"log\":\"line %d\"}", i ? "," : "", i);
    buf_putc(&body, ']');
    snprintf(url, sizeof url, "%s/ingest?type=log.big", s.url);
    CHECK_INT(0, ship(url, NULL, body.p, body.len, 0, &r));
    CHECK_STR(
        "{\"ok\":true,\"received\":50000,\"accepted\":50000,\"duplicates\":0,\"rejected\":[]}\n",
        r.body.p);
    buf_free(&r.body);
    CHECK_INT(50000, query_int(&s, NULL, "SELECT count(*) FROM events WHERE type = 'log.big'"));
    buf_free(&body);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, dir, lake);
}

/* ---- records without a type: the URL's, the token's ----------------------------- */

#define TOKEN_APP   "shipper-app-token-0123456789"
#define TOKEN_PLAIN "shipper-plain-token-0123456789"

TEST(test_shippers_typeless_records_take_the_urls_or_the_tokens_type)
{
    char *dir, *lake = lake_dir("shipper-type", &dir);
    char tokens[1200];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    fprintf(f,
            "# name token scopes options\n"
            "fluentbit %s ingest type=log.app ts_key=date\n"
            "plain %s ingest,query\n",
            TOKEN_APP, TOKEN_PLAIN);
    fclose(f);
    chmod(tokens, 0600);
    srv s = {0};
    const char *args[] = {"--tokens-file", tokens, "--compact-every", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[200];
    shipped r;
    const char *rec = "[{\"log\":\"hello\",\"date\":1795600800.25}]";
    /* the token's type and time member */
    snprintf(url, sizeof url, "%s/ingest", s.url);
    CHECK_INT(0, ship(url, TOKEN_APP, rec, strlen(rec), 0, &r));
    CHECK_CONTAINS("\"accepted\":1", r.body.p);
    buf_free(&r.body);
    /* the URL's win over the token's */
    snprintf(url, sizeof url, "%s/ingest?type=log.other&ts_key=at", s.url);
    const char *rec2 = "[{\"log\":\"hi\",\"at\":\"2026-11-25 10:00:01\",\"date\":1}]";
    CHECK_INT(0, ship(url, TOKEN_APP, rec2, strlen(rec2), 0, &r));
    CHECK_CONTAINS("\"accepted\":1", r.body.p);
    buf_free(&r.body);
    /* a token without defaults: the URL's, or refused and kept with the token's name */
    snprintf(url, sizeof url, "%s/ingest?type=log.plain&ts_key=date", s.url);
    CHECK_INT(0, ship(url, TOKEN_PLAIN, rec, strlen(rec), 0, &r));
    CHECK_CONTAINS("\"accepted\":1", r.body.p);
    buf_free(&r.body);
    snprintf(url, sizeof url, "%s/ingest", s.url);
    CHECK_INT(0, ship(url, TOKEN_PLAIN, rec, strlen(rec), 0, &r));
    CHECK_CONTAINS("\"accepted\":0", r.body.p);
    CHECK_CONTAINS("\"rejectedCount\":1", r.body.p);
    buf_free(&r.body);
    /* a type that is not one is refused before the body is read */
    snprintf(url, sizeof url, "%s/ingest?type=Log.App", s.url);
    CHECK_INT(-1, ship(url, TOKEN_PLAIN, rec, strlen(rec), 0, &r));
    CHECK_INT(400, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"type \\\"Log.App\\\" is not an event type: it must match "
              "[a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes\"}\n",
              r.body.p);
    buf_free(&r.body);

    json_t *a =
        query(&s, TOKEN_PLAIN,
              "SELECT type, strftime(ts, '%Y-%m-%dT%H:%M:%S.%g') FROM events ORDER BY type");
    char *rows = json_dumps(json_object_get(a, "rows"), JSON_COMPACT);
    CHECK_STR(
        "[[\"log.app\",\"2026-11-25T10:00:00.250\"],[\"log.other\",\"2026-11-25T10:00:01.000\"],"
        "[\"log.plain\",\"2026-11-25T10:00:00.250\"]]",
        rows);
    free(rows);
    json_decref(a);
    a = query(&s, TOKEN_PLAIN, "SELECT token, route, class, raw FROM rejected");
    rows = json_dumps(json_object_get(a, "rows"), JSON_COMPACT);
    CHECK_STR("[[\"plain\",\"/"
              "ingest\",\"type\",\"{\\\"log\\\":\\\"hello\\\",\\\"date\\\":1795600800.25}\"]]",
              rows);
    free(rows);
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, dir, lake);
}

TEST(test_shippers_a_tokens_file_with_bad_options_stops_the_server)
{
    char *dir, *lake = lake_dir("shipper-tokfile", &dir);
    char tokens[1200];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    static const struct {
        const char *line, *error;
    } t[] = {
        {"a 0123456789abcdef0123 ingest type=Log",
         "tokens file TOKENS:1: type=Log is not an event type"},
        {"a 0123456789abcdef0123 ingest ts_key=id",
         "tokens file TOKENS:1: ts_key=id cannot name the time member"},
        {"a 0123456789abcdef0123 ingest colour=red",
         "tokens file TOKENS:1: unknown option \\\"colour=red\\\" (use type=TYPE or ts_key=NAME)"},
        {"a 0123456789abcdef0123 ingest type=a type=b",
         "tokens file TOKENS:1: option \\\"type=b\\\" given twice"},
        {"a 0123456789abcdef0123 query type=log.app",
         "tokens file TOKENS:1: type= and ts_key= are for tokens that ingest"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        FILE *f = fopen(tokens, "w");
        fprintf(f, "%s\n", t[i].line);
        fclose(f);
        chmod(tokens, 0600);
        char cmd[4000];
        snprintf(cmd, sizeof cmd,
                 "%s serve --listen 127.0.0.1:0 --lake %s --tokens-file %s 2>%s/err; test $? -eq 1",
                 events_bin(), lake, tokens, dir);
        CHECK_INT(0, sh("%s", cmd));
        char errf[1300];
        snprintf(errf, sizeof errf, "%s/err", dir);
        char *e = test_read_file(errf, NULL);
        char want[400];
        snprintf(want, sizeof want, "%s", t[i].error);
        char *at = strstr(want, "TOKENS");
        if (at) { /* the path as the server prints it */
            char full[1600];
            snprintf(full, sizeof full, "%.*s%s%s", (int)(at - want), want, tokens, at + 6);
            CHECK_CONTAINS(full, e);
        }
        free(e);
    }
    test_rmtree(dir);
    free(dir);
    free(lake);
}

/* ---- timestamps as shippers send them, through the server ------------------------- */

TEST(test_shippers_every_timestamp_form_is_stored_normalised)
{
    char *dir, *lake = lake_dir("shipper-ts", &dir);
    srv s = {0};
    const char *args[] = {"--compact-every", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    static const struct {
        const char *ts, *stored;
    } t[] = {
        {"\"2026-11-25T10:00:00.123Z\"", "2026-11-25T10:00:00.123Z"},
        {"\"2026-11-25T11:00:00.123+01:00\"", "2026-11-25T10:00:00.123Z"},
        {"\"2026-11-25 10:00:00.123456\"", "2026-11-25T10:00:00.123Z"},
        {"\"2026-11-25T10:00:00.123\"", "2026-11-25T10:00:00.123Z"},
        {"1795600800.123456", "2026-11-25T10:00:00.123Z"},
        {"1795600800", "2026-11-25T10:00:00.000Z"},
        {"1795600800123", "2026-11-25T10:00:00.123Z"},
        {"1795600800123456", "2026-11-25T10:00:00.123Z"},
        {"1795600800123456789", "2026-11-25T10:00:00.123Z"},
        {"99999999999", "5138-11-16T09:46:39.000Z"},
        {"100000000000", "1973-03-03T09:46:40.000Z"},
    };
    char url[160];
    snprintf(url, sizeof url, "%s/ingest?type=ts.form&ts_key=date", s.url);
    buf body = BUF_INIT;
    buf_putc(&body, '[');
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        buf_printf(&body, "%s{\"id\":\"f%zu\",\"date\":%s}", i ? "," : "", i, t[i].ts);
    buf_putc(&body, ']');
    shipped r;
    CHECK_INT(0, ship(url, NULL, body.p, body.len, 0, &r));
    CHECK_CONTAINS("\"rejected\":[]", r.body.p);
    buf_free(&r.body);
    buf_free(&body);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    buf all = BUF_INIT;
    lake_read_all(lake, &all, &files);
    buf_cstr(&all);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char want[200];
        snprintf(want, sizeof want, "{\"id\":\"f%zu\",\"type\":\"ts.form\",\"ts\":\"%s\"", i,
                 t[i].stored);
        CHECK_CONTAINS(want, all.p);
        snprintf(want, sizeof want, ",\"date\":%s,\"_events_pos\":\"", t[i].ts); /* as sent */
        CHECK_CONTAINS(want, all.p);
    }
    buf_free(&all);
    cleanup(&s, dir, lake);
}

/* ---- retention ------------------------------------------------------------------- */

TEST(test_shippers_rejected_retain_deletes_whole_old_hours_only)
{
    char *dir, *lake = lake_dir("shipper-retain", &dir);
    /* an hour of 2020, and the quarantine of now */
    CHECK_INT(0, sh("mkdir -p %s/rejected/2020/01/01/00 && echo '{\"id\":\"x\"}' > "
                    "%s/rejected/2020/01/01/00/01a2c000-0000-7000-8000-000000000000.jsonl",
                    lake, lake));
    srv s = {0};
    const char *args[] = {"--rejected-retain", "2h", "--seal-age", "200ms",
                          "--compact-every",   "0",  NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    http_ingest(&s, "[{\"log\":\"kept\"}]", &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    char old[1300];
    snprintf(old, sizeof old, "%s/rejected/2020", lake);
    struct stat st;
    for (int i = 0; i < 100 && !stat(old, &st); i++) usleep(100000);
    CHECK(stat(old, &st) != 0); /* the hour and its emptied parents are gone */
    usleep(500000);             /* sealed by now */
    CHECK_INT(0, sh("test $(cat %s/rejected/*/*/*/*/*.jsonl | wc -l) -eq 1", lake));
    char url[160];
    snprintf(url, sizeof url, "%s/metrics", s.url);
    http_do("GET", url, NULL, NULL, 0, 0, &r);
    CHECK_CONTAINS("\nevents_quarantine_expired_files_total 1\n", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, dir, lake);
}

/* ---- the count of events: following --max-body, or an operator's --max-events ---------- */

TEST(test_shippers_the_event_count_follows_the_body_limit_unless_one_is_set)
{
    char *dir, *lake = lake_dir("shipper-count", &dir);
    srv s = {0};
    const char *args[] = {"--max-body", "64KiB", "--max-event-bytes", "1KiB", "--compact-every",
                          "0",          NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[160];
    snprintf(url, sizeof url, "%s/ingest?type=tiny", s.url);
    buf body = BUF_INIT;
    buf_putc(&body, '[');
    while (body.len + 3 <= 65536) buf_puts(&body, "{},");
    body.p[body.len - 1] = ']';
    shipped r;
    CHECK_INT(0, ship(url, NULL, body.p, body.len, 0, &r)); /* 21,845 events of a full body */
    CHECK_CONTAINS("\"accepted\":21845,", r.body.p);
    buf_free(&r.body);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    /* an operator's limit holds, with a 413 that says it */
    const char *args2[] = {"--max-events", "100", "--compact-every", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args2));
    snprintf(url, sizeof url, "%s/ingest?type=tiny", s.url);
    body.len = 0;
    buf_putc(&body, '[');
    for (int i = 0; i < 101; i++) buf_puts(&body, i ? ",{}" : "{}");
    buf_putc(&body, ']');
    CHECK_INT(-1, ship(url, NULL, body.p, body.len, 0, &r));
    CHECK_INT(413, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"more than 100 events in one request\"}\n", r.body.p);
    buf_free(&r.body);
    memcpy(body.p + body.len - 4, "]   ", 4); /* 100 of them: taken */
    CHECK_INT(0, ship(url, NULL, body.p, body.len, 0, &r));
    CHECK_CONTAINS("\"accepted\":100,", r.body.p);
    buf_free(&r.body);
    buf_free(&body);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, dir, lake);
}

/* A refused record as large as a body can be (here 40 MB) is kept whole, and read by the view. */
TEST(test_shippers_a_huge_refused_record_is_kept_whole_and_read)
{
    char *dir, *lake = lake_dir("shipper-huge", &dir);
    srv s = {0};
    const char *args[] = {"--max-body", "64MiB",           "--max-event-bytes",
                          "1MiB",       "--compact-every", "0",
                          "--seal-age", "300ms",           NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    size_t n = 40u << 20;
    buf body = BUF_INIT;
    buf_puts(&body, "[{\"log\":\"");
    for (size_t i = 0; i < n; i++) buf_putc(&body, i % 2 ? '"' : '\\'); /* \" each: twice as text */
    buf_puts(&body, "\"}]");
    char url[160];
    snprintf(url, sizeof url, "%s/ingest", s.url);
    const char *h[] = {"Content-Type: application/json", NULL};
    resp r;
    http_do("POST", url, h, body.p, body.len, 60000, &r);
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"rejectedCount\":1", r.body.p);
    resp_free(&r);
    usleep(800000); /* sealed: read from the lake's file */
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT length(raw) FROM rejected WHERE class = 'too_large'");
    CHECK_INT((long long)body.len - 2, query_int(&s, NULL, sql));
    buf_free(&body);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, dir, lake);
}
