/*
 * test_server.c - `events serve` on a loopback port with a temporary lake:
 * the three body formats end to end, dedup, health, metrics, auth, CORS,
 * every kind of bad input, slow clients, and shutdown.
 */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char *lake_dir(void)
{
    char *d = test_tmpdir("srv");
    char *lake = malloc(strlen(d) + 8);
    sprintf(lake, "%s/lake", d);
    free(d);
    return lake;
}

static void cleanup(srv *s, char *lake)
{
    if (s->pid) srv_stop(s, SIGKILL);
    if (test_failed_now()) srv_dump_log(s);
    char *slash = strrchr(lake, '/');
    *slash = 0;
    test_rmtree(lake);
    free(lake);
}

static int post(const srv *s, const char *path, const char *ctype, const char *extra,
                const void *body, size_t n, resp *r)
{
    char url[128], ct[128];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *h[] = {ct, extra, NULL};
    return http_do("POST", url, h, body, n, 0, r);
}

static long get(const srv *s, const char *path, const char *auth, resp *r)
{
    char url[128];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    const char *h[] = {auth, NULL};
    http_do("GET", url, h, NULL, 0, 0, r);
    return r->status;
}

/* Checks that the server still answers /health with 200. */
static void check_alive(const srv *s)
{
    resp r;
    CHECK_INT(200, get(s, "/health", NULL, &r));
    resp_free(&r);
}

/* All lines of the lake, parsed; caller decrefs. */
static json_t *lake_events(const char *lake, int *files)
{
    buf all = BUF_INIT;
    lake_read_all(lake, &all, files);
    json_t *arr = json_array();
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            test_fail(__FILE__, __LINE__, "lake ends without a newline");
            break;
        }
        json_error_t e;
        json_t *v = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &e);
        if (!v) {
            test_fail(__FILE__, __LINE__, "lake line does not parse: %s: %.*s", e.text,
                      (int)(nl - p), p);
        } else {
            json_array_append_new(arr, v);
        }
        p = nl + 1;
    }
    buf_free(&all);
    return arr;
}

static json_t *find_by(json_t *events, const char *key, const char *val)
{
    size_t i;
    json_t *v;
    json_array_foreach(events, i, v)
    {
        const char *s = json_string_value(json_object_get(v, key));
        if (s && !strcmp(s, val)) return v;
    }
    return NULL;
}

TEST(test_server_ingests_three_formats_and_gzip_into_the_lake)
{
    srv s = {0};
    char *lake = lake_dir();
    const char *args[] = {"--seal-age", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;

    const char *wrapped =
        "{\"events\":[{\"type\":\"rpc.call\",\"id\":\"w1\",\"method\":\"send\",\"durationMs\":12.5,"
        "\"success\":true,\"do\":{\"id\":\"r1\",\"class\":\"ChatRoom\",\"colo\":\"FRA\"},"
        "\"ts\":\"2026-11-25T10:00:00.123Z\"}]}";
    post(&s, "/ingest", "application/json", NULL, wrapped, strlen(wrapped), &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":1,\"duplicates\":0,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);

    const char *array =
        "[{\"type\":\"do.alarm\",\"id\":\"a1\",\"ts\":\"2026-11-25T11:59:59.999+00:00\"},"
        "{\"type\":\"ws.connect\",\"id\":\"a2\",\"ts\":1795600800000}]";
    post(&s, "/e", "application/json; charset=utf-8", NULL, array, strlen(array), &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);

    const char *nd =
        "{\"type\":\"collection.insert\",\"id\":\"n1\",\"collection\":\"users\",\"docId\":\"u1\","
        "\"doc\":{\"name\":\"Ann\"},\"prev\":null,\"bookmark\":\"0000000000000001\","
        "\"ts\":\"2026-11-25T10:05:00Z\"}\n"
        "{ \"type\" : \"custom.thing\", \"id\" : \"n2\", \"nested\" : { \"a\" : [ 1, \"x y\" ] },"
        " \"ts\" : \"2026-11-25T10:06:00Z\" }\n";
    post(&s, "/ingest", "application/x-ndjson", NULL, nd, strlen(nd), &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);

    const char *plain =
        "{\"type\":\"ws.close\",\"id\":\"g1\",\"code\":1000,\"ts\":\"2026-11-25T10:07:00Z\"}\n";
    buf gz = BUF_INIT;
    gzip_bytes(plain, strlen(plain), &gz);
    post(&s, "/ingest", "application/x-ndjson", "Content-Encoding: gzip", gz.p, gz.len, &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":1,\"duplicates\":0,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);
    buf_free(&gz);

    /* nothing is in the lake before sealing; SIGTERM seals everything */
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(6, json_array_size(ev));
    CHECK_INT(2, files); /* hours 10 and 11 */

    json_t *w1 = find_by(ev, "id", "w1");
    REQUIRE(w1);
    CHECK_STR("rpc.call", json_string_value(json_object_get(w1, "type")));
    CHECK_STR("2026-11-25T10:00:00.123Z", json_string_value(json_object_get(w1, "ts")));
    CHECK(json_number_value(json_object_get(w1, "durationMs")) == 12.5);
    CHECK(json_is_true(json_object_get(w1, "success")));
    CHECK_STR("FRA", json_string_value(json_object_get(json_object_get(w1, "do"), "colo")));
    CHECK_INT(24, strlen(json_string_value(json_object_get(w1, "receivedAt"))));
    CHECK_STR("2026-11-25T11:59:59.999Z",
              json_string_value(json_object_get(find_by(ev, "id", "a1"), "ts")));
    CHECK_STR("2026-11-25T10:00:00.000Z",
              json_string_value(json_object_get(find_by(ev, "id", "a2"), "ts")));
    json_t *n1 = find_by(ev, "id", "n1");
    CHECK_STR("Ann", json_string_value(json_object_get(json_object_get(n1, "doc"), "name")));
    CHECK(json_is_null(json_object_get(n1, "prev")));
    CHECK_STR("x y",
              json_string_value(json_array_get(
                  json_object_get(json_object_get(find_by(ev, "id", "n2"), "nested"), "a"), 1)));
    CHECK_INT(1000, json_integer_value(json_object_get(find_by(ev, "id", "g1"), "code")));

    /* each event sits in the file of its ts hour */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "grep -q '\"id\":\"a1\"' %s/events/2026/11/25/11/*.jsonl", lake);
    CHECK_INT(0, sh("%s", cmd));
    snprintf(cmd, sizeof cmd, "grep -c . %s/events/2026/11/25/10/*.jsonl | grep -qx 5", lake);
    CHECK_INT(0, sh("%s", cmd));
    json_decref(ev);
    cleanup(&s, lake);
}

TEST(test_server_answers_retries_as_duplicates_and_stores_once)
{
    srv s = {0};
    char *lake = lake_dir();
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    resp r;
    const char *b1 = "[{\"type\":\"a\",\"id\":\"d1\"},{\"type\":\"a\",\"id\":\"d2\"}]";
    const char *b2 = "[{\"type\":\"a\",\"id\":\"d2\"},{\"type\":\"a\",\"id\":\"d3\"},{\"type\":"
                     "\"a\",\"id\":\"d3\"},{\"type\":\"a\"}]";
    http_ingest(&s, b1, &r);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);
    http_ingest(&s, b2, &r);
    CHECK_STR("{\"ok\":true,\"received\":4,\"accepted\":2,\"duplicates\":2,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);
    http_ingest(&s, b1, &r);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":0,\"duplicates\":2,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(4, json_array_size(ev)); /* d1 d2 d3 and one without an id */
    json_decref(ev);

    /* the window survives a restart: it is rebuilt from what was sealed */
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    http_ingest(&s, b2, &r);
    CHECK_STR("{\"ok\":true,\"received\":4,\"accepted\":1,\"duplicates\":3,\"rejected\":[]}",
              r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    ev = lake_events(lake, &files);
    CHECK_INT(5, json_array_size(ev));
    json_decref(ev);
    cleanup(&s, lake);
}

TEST(test_server_health_and_metrics)
{
    srv s = {0};
    char *lake = lake_dir();
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    resp r;
    http_ingest(&s,
                "[{\"type\":\"a\"},{\"type\":\"B\"},{\"type\":\"c\",\"id\":\"m1\"},{\"type\":\"c\","
                "\"id\":\"m1\"}]",
                &r);
    resp_free(&r);
    CHECK_INT(200, get(&s, "/health", NULL, &r));
    json_t *h = json_loads(r.body.p, 0, NULL);
    REQUIRE(h);
    CHECK_STR("ok", json_string_value(json_object_get(h, "status")));
    CHECK_STR("0.1.0", json_string_value(json_object_get(h, "version")));
    CHECK(json_is_number(json_object_get(h, "uptimeSeconds")));
    CHECK_CONTAINS("file://", json_string_value(json_object_get(h, "lake")));
    CHECK(json_integer_value(json_object_get(h, "spoolBytesPending")) > 0);
    CHECK_INT(1, json_integer_value(json_object_get(h, "segmentsOpen")));
    json_decref(h);
    resp_free(&r);

    CHECK_INT(200, get(&s, "/metrics", NULL, &r));
    CHECK_CONTAINS("\nevents_ingested_total 2\n", r.body.p);
    CHECK_CONTAINS("\nevents_rejected_total 1\n", r.body.p);
    CHECK_CONTAINS("\nevents_duplicate_total 1\n", r.body.p);
    CHECK_CONTAINS("events_http_requests_total{route=\"ingest\",code=\"200\"} 1\n", r.body.p);
    CHECK_CONTAINS("events_http_request_duration_seconds_count{route=\"ingest\"} 1\n", r.body.p);
    CHECK_CONTAINS("events_fsync_duration_seconds_count 1\n", r.body.p);
    CHECK_CONTAINS("\nevents_http_connections_open ", r.body.p);
    CHECK_CONTAINS("\nevents_segments_sealed_total 0\n", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGINT)); /* SIGINT stops as cleanly as SIGTERM */
    cleanup(&s, lake);
}

TEST(test_server_requires_tokens_with_scopes)
{
    srv s = {0};
    char *lake = lake_dir();
    char tokens[1200];
    snprintf(tokens, sizeof tokens, "%s.tokens", lake);
    FILE *f = fopen(tokens, "w");
    fputs("# name token scopes\n"
          "svc     ingest-token-0123456789  ingest\n"
          "analyst query-token-01234567890  query   # read only\n"
          "ops     admin-token-012345678901 admin\n",
          f);
    fclose(f);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    const char *body = "[{\"type\":\"a\"}]";

    post(&s, "/ingest", "application/json", NULL, body, strlen(body), &r);
    CHECK_INT(401, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"missing bearer token (Authorization: Bearer TOKEN)\"}",
              r.body.p);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Bearer wrong-token-0123456789", body,
         strlen(body), &r);
    CHECK_INT(401, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"invalid bearer token\"}", r.body.p);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Basic dXNlcjpwYXNz", body, strlen(body),
         &r);
    CHECK_INT(401, r.status);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Bearer query-token-01234567890", body,
         strlen(body), &r);
    CHECK_INT(403, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"token analyst lacks the ingest scope\"}", r.body.p);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Bearer ingest-token-0123456789", body,
         strlen(body), &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: bearer admin-token-012345678901", body,
         strlen(body), &r);
    CHECK_INT(200, r.status);
    resp_free(&r);

    CHECK_INT(200, get(&s, "/health", NULL, &r)); /* health needs no token */
    resp_free(&r);
    CHECK_INT(401, get(&s, "/metrics", NULL, &r));
    resp_free(&r);
    CHECK_INT(403, get(&s, "/metrics", "Authorization: Bearer ingest-token-0123456789", &r));
    resp_free(&r);
    CHECK_INT(200, get(&s, "/metrics", "Authorization: Bearer query-token-01234567890", &r));
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    unlink(tokens);
    cleanup(&s, lake);
}

/* Runs `events serve ARGS` expecting it to refuse to start; returns its stderr. */
static char *refused(const char *args, int *status)
{
    char cmd[2048], out[1100];
    char *dir = test_tmpdir("refuse");
    snprintf(out, sizeof out, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "timeout 10 %s serve --lake %s/lake %s 2>%s", events_bin(), dir, args,
             out);
    *status = sh("%s", cmd);
    char *t = test_read_file(out, NULL);
    test_rmtree(dir);
    free(dir);
    return t;
}

TEST(test_server_refuses_to_start_when_misconfigured)
{
    int st;
    char *err = refused("--listen 0.0.0.0:0", &st);
    CHECK_INT(1, st);
    CHECK_CONTAINS("refusing to listen on 0.0.0.0:0 without tokens", err);
    free(err);
    err = refused("--listen 127.0.0.1:0 --tokens-file /nonexistent/tokens", &st);
    CHECK_INT(1, st);
    CHECK_CONTAINS("tokens file /nonexistent/tokens: No such file or directory", err);
    free(err);
    setenv("EVENTS_TOKEN", "short", 1);
    err = refused("--listen 127.0.0.1:0", &st);
    unsetenv("EVENTS_TOKEN");
    CHECK_INT(1, st);
    CHECK_CONTAINS("token EVENTS_TOKEN is shorter than 16 characters", err);
    free(err);
    err = refused("--listen 127.0.0.1:0 --seal-age soon", &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("--seal-age: \"soon\" is not a duration", err);
    free(err);
    err = refused("--listen 127.0.0.1:0 --log-format xml", &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("--log-format must be logfmt or json", err);
    free(err);
    err = refused("--listen 127.0.0.1:0 --query-max-bytes 100", &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("--query-max-bytes must be at least 1KiB", err);
    free(err);
    setenv("EVENTS_QUERY_MAX_BYTES", "lots", 1);
    err = refused("--listen 127.0.0.1:0", &st);
    unsetenv("EVENTS_QUERY_MAX_BYTES");
    CHECK_INT(2, st);
    CHECK_CONTAINS("EVENTS_QUERY_MAX_BYTES: \"lots\" is not a size", err);
    free(err);
    err = refused("--bogus", &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("unknown or incomplete option \"--bogus\"", err);
    free(err);
    setenv("EVENTS_MAX_BODY", "lots", 1);
    err = refused("--listen 127.0.0.1:0", &st);
    unsetenv("EVENTS_MAX_BODY");
    CHECK_INT(2, st);
    CHECK_CONTAINS("EVENTS_MAX_BODY: \"lots\" is not a size", err);
    free(err);
}

TEST(test_server_answers_cors_preflight)
{
    srv s = {0};
    char *lake = lake_dir();
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char url[128], hdr[4096] = "";
    snprintf(url, sizeof url, "%s/ingest", s.url);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s -D - -o /dev/null -X OPTIONS -H 'Origin: http://example.test' "
             "-H 'Access-Control-Request-Method: POST' %s",
             url);
    FILE *p = popen(cmd, "r");
    size_t n = fread(hdr, 1, sizeof hdr - 1, p);
    hdr[n] = 0;
    pclose(p);
    CHECK_CONTAINS("HTTP/1.1 204", hdr);
    CHECK_CONTAINS("Access-Control-Allow-Origin: *", hdr);
    CHECK_CONTAINS("Access-Control-Allow-Methods: GET, POST, PUT, OPTIONS", hdr);
    CHECK_CONTAINS("Access-Control-Allow-Headers: Authorization, Content-Type, Content-Encoding",
                   hdr);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, lake);
}

TEST(test_server_answers_each_bad_request_exactly_and_keeps_serving)
{
    srv s = {0};
    char *lake = lake_dir();
    const char *args[] = {"--max-body", "64KiB", "--max-event-bytes", "1KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    struct {
        const char *name, *method, *path, *ctype, *extra, *body;
        long status;
        const char *answer;
    } t[] = {
        {"malformed JSON", "POST", "/ingest", "application/json", NULL, "{\"events\":[{\"type\":",
         400, "{\"ok\":false,\"error\":\"malformed JSON at byte 19: unexpected end of input\"}"},
        {"object without events", "POST", "/ingest", "application/json", NULL, "{\"type\":\"a\"}",
         400,
         "{\"ok\":false,\"error\":\"body is a JSON object without \\\"events\\\": send "
         "{\\\"events\\\":[...]}, a "
         "JSON array of events, or NDJSON\"}"},
        {"events of the wrong type", "POST", "/ingest", "application/json", NULL,
         "{\"events\":\"a\"}", 400, "{\"ok\":false,\"error\":\"\\\"events\\\" must be an array\"}"},
        {"wrong field types", "POST", "/ingest", "application/json", NULL,
         "[{\"type\":1},{\"type\":\"a\",\"ts\":[]},{\"type\":\"a\",\"do\":3}]", 200,
         "{\"ok\":true,\"received\":3,\"accepted\":0,\"duplicates\":0,\"rejected\":[{\"index\":0,"
         "\"error\":"
         "\"\\\"type\\\" must be a string\"},{\"index\":1,\"error\":\"\\\"ts\\\" must be an RFC "
         "3339 string or "
         "epoch milliseconds\"},{\"index\":2,\"error\":\"\\\"do\\\" must be an object\"}]}"},
        {"invalid UTF-8", "POST", "/ingest", "application/json", NULL,
         "[{\"type\":\"a\",\"s\":\"\xc3\x28\"}]", 200,
         "{\"ok\":true,\"received\":1,\"accepted\":0,\"duplicates\":0,\"rejected\":[{\"index\":0,"
         "\"error\":"
         "\"invalid UTF-8 in string at byte 17 of the event\"}]}"},
        {"wrong method", "GET", "/ingest", NULL, NULL, NULL, 405,
         "{\"ok\":false,\"error\":\"method GET not allowed on /ingest\"}"},
        {"wrong method on health", "POST", "/health", "application/json", NULL, "{}", 405,
         "{\"ok\":false,\"error\":\"method POST not allowed on /health\"}"},
        {"unknown path", "GET", "/nope", NULL, NULL, NULL, 404,
         "{\"ok\":false,\"error\":\"no such endpoint: GET /nope\"}"},
        {"wrong content type", "POST", "/ingest", "application/x-www-form-urlencoded", NULL, "a=b",
         415,
         "{\"ok\":false,\"error\":\"unsupported Content-Type "
         "\\\"application/x-www-form-urlencoded\\\": use "
         "application/json or application/x-ndjson\"}"},
        {"wrong content encoding", "POST", "/ingest", "application/json", "Content-Encoding: br",
         "[]", 415,
         "{\"ok\":false,\"error\":\"unsupported Content-Encoding \\\"br\\\": use gzip or none\"}"},
        {"not gzip", "POST", "/ingest", "application/json", "Content-Encoding: gzip", "[]", 400,
         "{\"ok\":false,\"error\":\"invalid gzip body: incorrect header check\"}"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char url[128], ct[160];
        snprintf(url, sizeof url, "%s%s", s.url, t[i].path);
        snprintf(ct, sizeof ct, "Content-Type: %s", t[i].ctype ? t[i].ctype : "");
        const char *h[] = {t[i].ctype ? ct : t[i].extra, t[i].ctype ? t[i].extra : NULL, NULL};
        http_do(t[i].method, url, h, t[i].body, t[i].body ? strlen(t[i].body) : 0, 0, &r);
        if (r.status != t[i].status || strcmp(r.body.p, t[i].answer))
            test_fail(__FILE__, __LINE__, "%s:\n  expected %ld %s\n  actual   %ld %s", t[i].name,
                      t[i].status, t[i].answer, r.status, r.body.p);
        resp_free(&r);
        check_alive(&s);
    }

    /* an event over --max-event-bytes is rejected on its own */
    buf big = BUF_INIT;
    buf_puts(&big, "[{\"type\":\"ok\"},{\"type\":\"a\",\"pad\":\"");
    for (int i = 0; i < 1100; i++) buf_putc(&big, 'x');
    buf_puts(&big, "\"}]");
    post(&s, "/ingest", "application/json", NULL, big.p, big.len, &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":1,\"duplicates\":0,\"rejected\":[{"
              "\"index\":1,\"error\":"
              "\"event is 1121 bytes, over the limit of 1024\"}]}",
              r.body.p);
    resp_free(&r);

    /* nesting deeper than 64 */
    buf deep = BUF_INIT;
    buf_puts(&deep, "[{\"type\":\"a\",\"x\":");
    for (int i = 0; i < 70; i++) buf_putc(&deep, '[');
    for (int i = 0; i < 70; i++) buf_putc(&deep, ']');
    buf_puts(&deep, "}]");
    post(&s, "/ingest", "application/json", NULL, deep.p, deep.len, &r);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":0,\"duplicates\":0,\"rejected\":[{"
              "\"index\":0,\"error\":"
              "\"event nests 71 levels deep, over the limit of 64\"}]}",
              r.body.p);
    resp_free(&r);
    buf_free(&deep);

    /* a body over --max-body, announced by Content-Length or sent chunked */
    buf huge = BUF_INIT;
    buf_puts(&huge, "[");
    while (huge.len < 70 * 1024) buf_puts(&huge, "{\"type\":\"a\"},");
    buf_puts(&huge, "{\"type\":\"a\"}]");
    post(&s, "/ingest", "application/json", NULL, huge.p, huge.len, &r);
    CHECK_INT(413, r.status);
    char expect[200];
    snprintf(expect, sizeof expect,
             "{\"ok\":false,\"error\":\"body of %zu bytes is over the limit of 65536 bytes\"}",
             huge.len);
    CHECK_STR(expect, r.body.p);
    resp_free(&r);
    check_alive(&s);
    post(&s, "/ingest", "application/json", "Transfer-Encoding: chunked", huge.p, huge.len, &r);
    CHECK_INT(413, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"body is over the limit of 65536 bytes\"}", r.body.p);
    resp_free(&r);
    check_alive(&s);

    /* a gzip bomb: 1 KiB on the wire, 16 MiB inflated */
    size_t n = 16u << 20;
    char *zeros = calloc(1, n);
    memcpy(zeros, "[{\"type\":\"a\",\"z\":\"", 18);
    buf gz = BUF_INIT;
    gzip_bytes(zeros, n, &gz);
    free(zeros);
    post(&s, "/ingest", "application/json", "Content-Encoding: gzip", gz.p, gz.len, &r);
    CHECK_INT(413, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"body inflates past the limit of 65536 bytes\"}", r.body.p);
    resp_free(&r);
    check_alive(&s);

    buf_free(&gz);
    buf_free(&big);
    buf_free(&huge);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(1, json_array_size(ev)); /* only the one good event of all that */
    json_decref(ev);
    cleanup(&s, lake);
}

static int connect_to(const srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

TEST(test_server_times_out_a_client_that_sends_its_body_slowly)
{
    srv s = {0};
    char *lake = lake_dir();
    const char *args[] = {"--request-timeout", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *head = "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100\r\n\r\n";
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
    double t0 = now_s();
    char answer[2048] = "";
    size_t got = 0;
    /* one byte every 200 ms, as a slowloris client does, for at most 5 s */
    for (int i = 0; i < 25 && got == 0; i++) {
        if (send(fd, "[", 1, MSG_NOSIGNAL) != 1) break;
        struct timeval tv = {0, 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(fd, answer, sizeof answer - 1, 0);
        if (n > 0) got = (size_t)n;
    }
    double took = now_s() - t0;
    answer[got] = 0;
    CHECK_CONTAINS("HTTP/1.1 408", answer);
    CHECK_CONTAINS("{\"ok\":false,\"error\":\"request not received within 1 s\"}", answer);
    CHECK(took >= 0.9 && took < 3.0);
    close(fd);
    check_alive(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, lake);
}

TEST(test_server_closes_idle_connections)
{
    srv s = {0};
    char *lake = lake_dir();
    const char *args[] = {"--idle-timeout", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *head =
        "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"; /* headers never end */
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
    double t0 = now_s();
    char b[256];
    ssize_t n = recv(fd, b, sizeof b, 0); /* 0: closed by the server */
    double took = now_s() - t0;
    CHECK(n <= 0);
    CHECK(took < 5.0);
    close(fd);
    check_alive(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    cleanup(&s, lake);
}

typedef struct poster {
    const srv *s;
    int id, sent, acked;
    volatile int stop;
} poster;

static void *post_loop(void *arg)
{
    poster *p = arg;
    for (int i = 0; i < 2000 && !p->stop; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "[{\"type\":\"t\",\"id\":\"p%d-%d\"},{\"type\":\"t\",\"id\":\"p%d-%db\"}]", p->id,
                 i, p->id, i);
        resp r;
        p->sent++;
        http_ingest(p->s, body, &r);
        if (r.status == 200 && strstr(r.body.p, "\"accepted\":2")) p->acked += 2;
        int failed = r.status != 200;
        resp_free(&r);
        if (failed) break;
    }
    return NULL;
}

TEST(test_server_finishes_requests_and_seals_at_sigterm)
{
    srv s = {0};
    char *lake = lake_dir();
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    poster ps[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = (poster){&s, i, 0, 0, 0};
        pthread_create(&th[i], NULL, post_loop, &ps[i]);
    }
    usleep(300000);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int acked = 0;
    for (int i = 0; i < 4; i++) {
        ps[i].stop = 1;
        pthread_join(th[i], NULL);
        acked += ps[i].acked;
    }
    CHECK(acked > 0);
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(acked, json_array_size(ev)); /* every acknowledged event, nothing else */
    json_decref(ev);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls %s/.spool | grep jsonl)\"", lake);
    CHECK_INT(0, sh("%s", cmd)); /* the spool is empty: everything sealed */
    cleanup(&s, lake);
}

static void *vanish_loop(void *arg)
{
    const srv *s = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s->url);
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int i = 0; i < 300; i++) {
        resp r;
        char body[128];
        snprintf(body, sizeof body, "[{\"type\":\"t\",\"n\":%d}]", i);
        http_do("POST", url, h, body, strlen(body), 1 + i % 3, &r); /* gives up after 1-3 ms */
        resp_free(&r);
    }
    return NULL;
}

TEST(test_server_stops_after_clients_vanish_while_waiting_for_their_commit)
{
    srv s = {0};
    char *lake = lake_dir();
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, vanish_loop, &s);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    resp r;
    CHECK_INT(200, get(&s, "/metrics", NULL, &r));
    CHECK_CONTAINS("code=\"other\"", r.body.p); /* requests whose client left (recorded as 499) */
    resp_free(&r);
    CHECK_INT(0, srv_stop_within(&s, SIGTERM, 10000));
    cleanup(&s, lake);
}
