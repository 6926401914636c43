/*
 * test_server.c - `events serve` on a loopback port with a temporary lake:
 * the three body formats end to end, dedup, health, metrics, auth, CORS,
 * every kind of bad input, slow clients, and shutdown.
 */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* An ingest answer with its request id (a fresh ULID) written REQUEST-ID, to compare whole. */
static const char *masked(const char *body, char *out, size_t cap)
{
    snprintf(out, cap, "%s", body ? body : "");
    static const char *const marks[] = {"\"requestId\":\"", "requestId = '"};
    for (size_t k = 0; k < 2; k++)
        for (char *p = strstr(out, marks[k]); p; p = strstr(p + 1, marks[k])) {
            char *id = p + strlen(marks[k]);
            if (strlen(id) >= 26) {
                memmove(id + 10, id + 26, strlen(id + 26) + 1);
                memcpy(id, "REQUEST-ID", 10);
            }
        }
    return out;
}

/* The end of an ingest answer that refused n records (masked). */
#define QUARANTINE(n)                                                                              \
    "\"rejectedCount\":" #n ",\"requestId\":\"REQUEST-ID\",\"quarantine\":\"the refused "          \
    "records are kept in the lake: SELECT * FROM rejected WHERE requestId = 'REQUEST-ID'\"}"
#define QUARANTINE_ONE                                                                             \
    "\"rejectedCount\":1,\"requestId\":\"REQUEST-ID\",\"quarantine\":\"the refused record is "     \
    "kept in the lake: SELECT * FROM rejected WHERE requestId = 'REQUEST-ID'\"}"

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
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--seal-age", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;

    const char *wrapped =
        "{\"events\":[{\"type\":\"rpc.call\",\"id\":\"w1\",\"method\":\"send\",\"durationMs\":12.5,"
        "\"success\":true,\"do\":{\"id\":\"r1\",\"class\":\"ChatRoom\",\"colo\":\"FRA\"},"
        "\"ts\":\"2026-11-25T10:00:00.123Z\"}]}";
    post(&s, "/ingest", "application/json", NULL, wrapped, strlen(wrapped), &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":1,\"duplicates\":0,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);

    const char *array =
        "[{\"type\":\"do.alarm\",\"id\":\"a1\",\"ts\":\"2026-11-25T11:59:59.999+00:00\"},"
        "{\"type\":\"ws.connect\",\"id\":\"a2\",\"ts\":1795600800000}]";
    post(&s, "/e", "application/json; charset=utf-8", NULL, array, strlen(array), &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}\n",
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
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);

    const char *plain =
        "{\"type\":\"ws.close\",\"id\":\"g1\",\"code\":1000,\"ts\":\"2026-11-25T10:07:00Z\"}\n";
    buf gz = BUF_INIT;
    gzip_bytes(plain, strlen(plain), &gz);
    post(&s, "/ingest", "application/x-ndjson", "Content-Encoding: gzip", gz.p, gz.len, &r);
    CHECK_INT(200, r.status);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":1,\"duplicates\":0,\"rejected\":[]}\n",
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
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_answers_retries_as_duplicates_and_stores_once)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    resp r;
    const char *b1 = "[{\"type\":\"a\",\"id\":\"d1\"},{\"type\":\"a\",\"id\":\"d2\"}]";
    const char *b2 = "[{\"type\":\"a\",\"id\":\"d2\"},{\"type\":\"a\",\"id\":\"d3\"},{\"type\":"
                     "\"a\",\"id\":\"d3\"},{\"type\":\"a\"}]";
    http_ingest(&s, b1, &r);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);
    http_ingest(&s, b2, &r);
    CHECK_STR("{\"ok\":true,\"received\":4,\"accepted\":2,\"duplicates\":2,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);
    http_ingest(&s, b1, &r);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":0,\"duplicates\":2,\"rejected\":[]}\n",
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
    CHECK_STR("{\"ok\":true,\"received\":4,\"accepted\":1,\"duplicates\":3,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    ev = lake_events(lake, &files);
    CHECK_INT(5, json_array_size(ev));
    json_decref(ev);
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_health_and_metrics)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
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
    CHECK_INT(2, json_integer_value(json_object_get(h, "segmentsOpen"))); /* events, quarantine */
    json_decref(h);
    resp_free(&r);

    CHECK_INT(200, get(&s, "/metrics", NULL, &r));
    CHECK_CONTAINS("\nevents_ingested_total 2\n", r.body.p);
    CHECK_CONTAINS("\nevents_rejected_total 1\n", r.body.p);
    CHECK_CONTAINS("\nevents_duplicate_total 1\n", r.body.p);
    CHECK_CONTAINS("events_http_requests_total{route=\"ingest\",code=\"200\"} 1\n", r.body.p);
    CHECK_CONTAINS("events_http_request_duration_seconds_count{route=\"ingest\"} 1\n", r.body.p);
    CHECK_CONTAINS("events_fsync_duration_seconds_count 2\n", r.body.p); /* one per segment */
    CHECK_CONTAINS("\nevents_rejected_by_reason_total{reason=\"type\"} 1\n", r.body.p);
    CHECK_CONTAINS("\nevents_quarantined_total 1\n", r.body.p);
    CHECK_CONTAINS("\nevents_http_connections_open ", r.body.p);
    CHECK_CONTAINS("\nevents_segments_sealed_total 0\n", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGINT)); /* SIGINT stops as cleanly as SIGTERM */
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_requires_tokens_with_scopes)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    char tokens[1200];
    srv_tokens_file(lake,
                    "# name token scopes\n"
                    "svc     ingest-token-0123456789  ingest\n"
                    "analyst query-token-01234567890  query   # read only\n"
                    "ops     admin-token-012345678901 admin\n",
                    tokens, sizeof tokens);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    const char *body = "[{\"type\":\"a\"}]";

    post(&s, "/ingest", "application/json", NULL, body, strlen(body), &r);
    CHECK_INT(401, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"missing bearer token (Authorization: Bearer TOKEN)\"}\n",
              r.body.p);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Bearer wrong-token-0123456789", body,
         strlen(body), &r);
    CHECK_INT(401, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"invalid bearer token\"}\n", r.body.p);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Basic dXNlcjpwYXNz", body, strlen(body),
         &r);
    CHECK_INT(401, r.status);
    resp_free(&r);
    post(&s, "/ingest", "application/json", "Authorization: Bearer query-token-01234567890", body,
         strlen(body), &r);
    CHECK_INT(403, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"token analyst lacks the ingest scope\"}\n", r.body.p);
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
    srv_lake_cleanup(&s, lake);
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
    err = refused("--listen 127.0.0.1:0 --memory-max 1GiB", &st);
    CHECK_INT(2, st);
    CHECK_CONTAINS("--memory-max must leave room for --query-memory, --compact-memory and 256MiB "
                   "more (at least 2304MiB here), or be 0 for no limit",
                   err);
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
    struct {
        const char *args, *message;
    } bad[] = {
        {"--listen 127.0.0.1:99999",
         "--listen 127.0.0.1:99999: the port must be a number from 0 to 65535"},
        {"--listen 127.0.0.1:-1",
         "--listen 127.0.0.1:-1: the port must be a number from 0 to 65535"},
        {"--listen [::1]:65536", "--listen [::1]:65536: the port must be a number from 0 to 65535"},
        {"--listen 127.0.0.1:0 --cors-origins evil.test",
         "--cors-origins: \"evil.test\" is not an origin (http://host or https://host:port, or *)"},
        {"--listen 127.0.0.1:0 --cors-origins http://a.test/page",
         "--cors-origins: \"http://a.test/page\" is not an origin"},
        {"--listen 127.0.0.1:0 --allowed-hosts a.test,b.test:80",
         "--allowed-hosts: \"b.test:80\" is not a host name or address (without a port)"},
        {"--listen 127.0.0.1:0 --max-url-args 0", "--max-url-args must be between 1 and 200"},
        {"--listen 127.0.0.1:0 --max-url-args 201", "--max-url-args must be between 1 and 200"},
        {"--listen 127.0.0.1:0 --header-timeout 10ms",
         "--header-timeout must be between 100ms and 1h"},
        {"--listen 127.0.0.1:0 --query-copies lots", "--query-copies: \"lots\" is not a size"},
        {"--listen 127.0.0.1:0 --query-copies-min 1k2",
         "--query-copies-min: \"1k2\" is not a size"},
        {"--listen 127.0.0.1:0 --ingest-lane 2MiB", "--ingest-lane must be at most 1MiB"},
        {"--listen 127.0.0.1:0 --ingest-lane -1", "--ingest-lane: \"-1\" is not a size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = refused(bad[i].args, &st);
        if (st != 2 || !err || !strstr(err, bad[i].message))
            test_fail(__FILE__, __LINE__, "%s:\n  expected exit 2 and %s\n  got %d and %s",
                      bad[i].args, bad[i].message, st, err ? err : "");
        free(err);
    }
}

TEST(test_server_refuses_tokens_files_that_would_turn_auth_off)
{
    char *dir = test_tmpdir("tokens");
    char path[1200], args[1400];
    int st;
    /* a directory */
    snprintf(args, sizeof args, "--listen 127.0.0.1:0 --tokens-file %s", dir);
    char *err = refused(args, &st);
    CHECK_INT(1, st);
    char want[1400];
    snprintf(want, sizeof want, "tokens file %s: it is a directory", dir);
    CHECK_CONTAINS(want, err);
    free(err);
    /* empty, or only comments */
    snprintf(path, sizeof path, "%s/empty", dir);
    FILE *f = fopen(path, "w");
    fputs("# no tokens yet\n\n", f);
    fclose(f);
    snprintf(args, sizeof args, "--listen 127.0.0.1:0 --tokens-file %s", path);
    err = refused(args, &st);
    CHECK_INT(1, st);
    snprintf(want, sizeof want,
             "tokens file %s has no tokens (lines of NAME TOKEN SCOPES): refusing to start "
             "without them",
             path);
    CHECK_CONTAINS(want, err);
    free(err);
    /* not a regular file */
    snprintf(args, sizeof args, "--listen 127.0.0.1:0 --tokens-file /dev/null");
    err = refused(args, &st);
    CHECK_INT(1, st);
    CHECK_CONTAINS("tokens file /dev/null: it is not a regular file", err);
    free(err);
    /* unreadable (root reads anything: only checked for other users) */
    snprintf(path, sizeof path, "%s/unreadable", dir);
    f = fopen(path, "w");
    fputs("ops admin-token-012345678901 admin\n", f);
    fclose(f);
    chmod(path, 0);
    if (geteuid() != 0) {
        snprintf(args, sizeof args, "--listen 127.0.0.1:0 --tokens-file %s", path);
        err = refused(args, &st);
        CHECK_INT(1, st);
        snprintf(want, sizeof want, "tokens file %s: Permission denied", path);
        CHECK_CONTAINS(want, err);
        free(err);
    }
    /* the same token twice, in the file or in the file and EVENTS_TOKEN */
    snprintf(path, sizeof path, "%s/dup", dir);
    f = fopen(path, "w");
    fputs("svc  same-token-0123456789 ingest\nops  other-token-012345678 admin\n"
          "oops same-token-0123456789 query\n",
          f);
    fclose(f);
    chmod(path, 0600);
    snprintf(args, sizeof args, "--listen 127.0.0.1:0 --tokens-file %s", path);
    err = refused(args, &st);
    CHECK_INT(1, st);
    snprintf(want, sizeof want,
             "tokens file %s:3: token oops is the same as token svc: each token must be different",
             path);
    CHECK_CONTAINS(want, err);
    free(err);
    f = fopen(path, "w");
    fputs("svc  same-token-0123456789 ingest\n", f);
    fclose(f);
    setenv("EVENTS_TOKEN", "same-token-0123456789", 1);
    err = refused(args, &st);
    unsetenv("EVENTS_TOKEN");
    CHECK_INT(1, st);
    CHECK_CONTAINS("token EVENTS_TOKEN is the same as token svc: each token must be different",
                   err);
    free(err);
    test_rmtree(dir);
    free(dir);
}

TEST(test_server_warns_of_a_tokens_file_every_user_can_read)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    char tokens[1200];
    snprintf(tokens, sizeof tokens, "%s.tokens", lake);
    FILE *f = fopen(tokens, "w");
    fputs("ops admin-token-012345678901 admin\n", f);
    fclose(f);
    chmod(tokens, 0644);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char *log = test_read_file(s.log, NULL);
    char want[1400];
    snprintf(want, sizeof want,
             "level=warn msg=\"tokens file readable by anyone\" warning=\"tokens file %s can be "
             "read by every user (mode 0644): chmod 600 it\"",
             tokens);
    CHECK_CONTAINS(want, log);
    free(log);
    unlink(tokens);
    srv_lake_cleanup(&s, lake);
}

/* A request with extra headers (NULL-terminated after ctype, which may be NULL). */
static long request_with(const srv *s, const char *method, const char *path, const char *body,
                         resp *r, const char *h1, const char *h2, const char *h3)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    const char *h[] = {h1, h2, h3, NULL};
    http_do(method, url, h, body, body ? strlen(body) : 0, 0, r);
    return r->status;
}

TEST(test_server_with_tokens_answers_cors_for_any_origin)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    setenv("EVENTS_TOKEN", "cors-test-token-0123456789", 1);
    int started = srv_start(&s, lake, NULL);
    unsetenv("EVENTS_TOKEN");
    REQUIRE_INT(0, started);
    resp r;
    /* a browser SDK on any page: the preflight and the answers allow every origin */
    CHECK_INT(204, request_with(&s, "OPTIONS", "/ingest", NULL, &r, "Origin: http://example.test",
                                "Access-Control-Request-Method: POST", NULL));
    CHECK_CONTAINS("Access-Control-Allow-Origin: *\r\n", r.head.p);
    CHECK_CONTAINS("Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, OPTIONS\r\n",
                   r.head.p);
    CHECK_CONTAINS("Access-Control-Allow-Headers: Authorization, Content-Type, Content-Encoding, "
                   "X-Correlation-ID, X-Request-ID\r\n",
                   r.head.p);
    CHECK_CONTAINS("Access-Control-Max-Age: 86400\r\n", r.head.p);
    resp_free(&r);
    CHECK_INT(200, request_with(&s, "POST", "/query", "{\"sql\":\"SELECT 1 AS one\"}", &r,
                                "Origin: http://example.test", "Content-Type: application/json",
                                "Authorization: Bearer cors-test-token-0123456789"));
    CHECK_CONTAINS("Access-Control-Allow-Origin: *\r\n", r.head.p);
    resp_free(&r);
    /* without the token, the answer is readable, and says 401 */
    CHECK_INT(401,
              request_with(&s, "POST", "/query", "{\"sql\":\"SELECT 1\"}", &r,
                           "Origin: http://example.test", "Content-Type: application/json", NULL));
    CHECK_CONTAINS("Access-Control-Allow-Origin: *\r\n", r.head.p);
    resp_free(&r);
    /* Host is not checked with tokens (a server beyond loopback has other names) */
    CHECK_INT(200,
              request_with(&s, "GET", "/health", NULL, &r, "Host: events.example.com", NULL, NULL));
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_without_tokens_answers_only_loopback_hosts)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--allowed-hosts", "events.example, [fd00::1]", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    struct {
        const char *host;
        long status;
    } t[] = {
        {"Host: localhost:8080", 200},
        {"Host: LocalHost", 200},
        {"Host: 127.0.0.2:1", 200},
        {"Host: [::1]:8080", 200},
        {"Host: app.localhost:3000", 200},
        {"Host: events.example:443", 200},
        {"Host: [fd00::1]", 200},
        {"Host: evil.test:8080", 403},
        {"Host: 10.0.0.1", 403},
        {"Host: 127.0.0.1.evil.test", 403},
        {"Host: localhost.evil.test", 403},
        {"Host: ::1", 403},
        {"Host: 0.0.0.0:8080", 403},
        {"Host: events.example.evil.test", 403},
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        resp r;
        long st = request_with(&s, "GET", "/health", NULL, &r, t[i].host, NULL, NULL);
        if (st != t[i].status)
            test_fail(__FILE__, __LINE__, "%s: expected %ld, got %ld %s", t[i].host, t[i].status,
                      st, r.body.p);
        refused += st == 403;
        resp_free(&r);
    }
    resp r;
    CHECK_INT(403,
              request_with(&s, "POST", "/query", "{\"sql\":\"SELECT 1\"}", &r,
                           "Host: rebound.evil.test:8080", "Content-Type: application/json", NULL));
    refused++;
    CHECK_STR("{\"ok\":false,\"error\":\"Host \\\"rebound.evil.test:8080\\\" is not allowed: this "
              "server answers only requests addressed to a loopback name or address, or to a "
              "host of --allowed-hosts\"}\n",
              r.body.p);
    resp_free(&r);
    CHECK_INT(refused, srv_metric(&s, "events_http_refused_total{reason=\"host\"}"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_without_tokens_refuses_other_web_pages)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--cors-origins", "http://app.test:3000", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    const char *evil = "Origin: http://evil.test", *json = "Content-Type: application/json",
               *text = "Content-Type: text/plain";
    const char *q = "{\"sql\":\"SELECT 1 AS one\"}";
    resp r;

    /* another page can neither read nor have anything done: /query, preflights, /ingest
     * (sendBeacon's text/plain), /tail, /snapshots, /metrics */
    CHECK_INT(403, request_with(&s, "POST", "/query", q, &r, evil, text, NULL));
    CHECK_STR(
        "{\"ok\":false,\"error\":\"requests from the web page origin \\\"http://evil.test\\\" "
        "are refused: it is neither this server's own origin nor one of --cors-origins\"}\n",
        r.body.p);
    CHECK(!strstr(r.head.p, "Access-Control-Allow-Origin"));
    resp_free(&r);
    CHECK_INT(403, request_with(&s, "OPTIONS", "/query", NULL, &r, evil,
                                "Access-Control-Request-Method: POST", NULL));
    CHECK(!strstr(r.head.p, "Access-Control-Allow-Origin"));
    resp_free(&r);
    CHECK_INT(403, request_with(&s, "POST", "/ingest", "[{\"type\":\"evil.beacon\"}]", &r, evil,
                                text, NULL));
    resp_free(&r);
    CHECK_INT(403, request_with(&s, "GET", "/tail", NULL, &r, evil, NULL, NULL));
    resp_free(&r);
    CHECK_INT(403, request_with(&s, "GET", "/snapshots", NULL, &r, evil, NULL, NULL));
    resp_free(&r);
    CHECK_INT(403, request_with(&s, "GET", "/metrics", NULL, &r, "Origin: null", NULL, NULL));
    resp_free(&r);

    /* the dashboard (the server's own origin) and tools without an Origin: as before */
    char self[128];
    snprintf(self, sizeof self, "Origin: %s", s.url);
    CHECK_INT(200, request_with(&s, "POST", "/query", q, &r, self, json, NULL));
    CHECK_CONTAINS("\"rows\":[[1]]", r.body.p);
    CHECK(!strstr(r.head.p, "Access-Control-Allow-Origin"));
    resp_free(&r);
    CHECK_INT(200, request_with(&s, "POST", "/query", q, &r, json, NULL, NULL));
    CHECK(!strstr(r.head.p, "Access-Control-Allow-Origin"));
    resp_free(&r);

    /* an origin of --cors-origins: allowed by name, for a browser SDK */
    const char *app = "Origin: http://app.test:3000";
    CHECK_INT(204, request_with(&s, "OPTIONS", "/ingest", NULL, &r, app,
                                "Access-Control-Request-Method: POST", NULL));
    CHECK_CONTAINS("Access-Control-Allow-Origin: http://app.test:3000\r\n", r.head.p);
    CHECK_CONTAINS("Vary: Origin\r\n", r.head.p);
    resp_free(&r);
    CHECK_INT(200, request_with(&s, "POST", "/ingest", "[{\"type\":\"app.beacon\"}]", &r, app, text,
                                NULL));
    CHECK_CONTAINS("Access-Control-Allow-Origin: http://app.test:3000\r\n", r.head.p);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":1,\"duplicates\":0,\"rejected\":[]}\n",
              r.body.p);
    resp_free(&r);
    CHECK_INT(200, request_with(&s, "POST", "/query", q, &r, app, json, NULL));
    CHECK_CONTAINS("Access-Control-Allow-Origin: http://app.test:3000\r\n", r.head.p);
    resp_free(&r);

    CHECK_INT(6, srv_metric(&s, "events_http_refused_total{reason=\"origin\"}"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(1, json_array_size(ev)); /* the allowed page's event, not the other's */
    CHECK_STR("app.beacon", json_string_value(json_object_get(json_array_get(ev, 0), "type")));
    json_decref(ev);
    srv_lake_cleanup(&s, lake);
}

/* Each kind of bad request, answered with its status and its exact JSON. */
static void bad_requests_answered_exactly(srv *s)
{
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
         "\"\\\"type\\\" must be a string\"},{\"index\":1,\"error\":\"\\\"ts\\\" must be an ISO "
         "8601 string or an epoch number\"},{\"index\":2,\"error\":\"\\\"do\\\" must be an "
         "object\"}]," QUARANTINE(3)},
        {"invalid UTF-8", "POST", "/ingest", "application/json", NULL,
         "[{\"type\":\"a\",\"s\":\"\xc3\x28\"}]", 200,
         "{\"ok\":true,\"received\":1,\"accepted\":0,\"duplicates\":0,\"rejected\":[{\"index\":0,"
         "\"error\":"
         "\"invalid UTF-8 in string at byte 17 of the event\"}]," QUARANTINE_ONE},
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
        snprintf(url, sizeof url, "%s%s", s->url, t[i].path);
        snprintf(ct, sizeof ct, "Content-Type: %s", t[i].ctype ? t[i].ctype : "");
        const char *h[] = {t[i].ctype ? ct : t[i].extra, t[i].ctype ? t[i].extra : NULL, NULL};
        http_do(t[i].method, url, h, t[i].body, t[i].body ? strlen(t[i].body) : 0, 0, &r);
        char m[1024], want[1024];
        snprintf(want, sizeof want, "%s\n", t[i].answer); /* every answer ends its line */
        if (r.status != t[i].status || strcmp(masked(r.body.p, m, sizeof m), want))
            test_fail(__FILE__, __LINE__, "%s:\n  expected %ld %s\n  actual   %ld %s", t[i].name,
                      t[i].status, t[i].answer, r.status, r.body.p);
        resp_free(&r);
        check_alive(s);
    }
}

/* An event over --max-event-bytes (1 KiB here) is rejected on its own; the other is kept. */
static void event_over_max_event_bytes(srv *s)
{
    resp r;
    buf big = BUF_INIT;
    buf_puts(&big, "[{\"type\":\"ok\"},{\"type\":\"a\",\"pad\":\"");
    for (int i = 0; i < 1100; i++) buf_putc(&big, 'x');
    buf_puts(&big, "\"}]");
    post(s, "/ingest", "application/json", NULL, big.p, big.len, &r);
    CHECK_INT(200, r.status);
    char m[1024];
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":1,\"duplicates\":0,\"rejected\":[{"
              "\"index\":1,\"error\":"
              "\"event is 1121 bytes, over the limit of 1024\"}]," QUARANTINE_ONE "\n",
              masked(r.body.p, m, sizeof m));
    resp_free(&r);
    buf_free(&big);
}

/* Nesting deeper than 64 is refused. */
static void event_nested_too_deep(srv *s)
{
    resp r;
    char m[1024];
    buf deep = BUF_INIT;
    buf_puts(&deep, "[{\"type\":\"a\",\"x\":");
    for (int i = 0; i < 70; i++) buf_putc(&deep, '[');
    for (int i = 0; i < 70; i++) buf_putc(&deep, ']');
    buf_puts(&deep, "}]");
    post(s, "/ingest", "application/json", NULL, deep.p, deep.len, &r);
    CHECK_STR("{\"ok\":true,\"received\":1,\"accepted\":0,\"duplicates\":0,\"rejected\":[{"
              "\"index\":0,\"error\":"
              "\"event nests 71 levels deep, over the limit of 64\"}]," QUARANTINE_ONE "\n",
              masked(r.body.p, m, sizeof m));
    resp_free(&r);
    buf_free(&deep);
}

/* A body over --max-body (64 KiB here), announced by Content-Length or sent chunked: 413. */
static void body_over_max_body(srv *s)
{
    resp r;
    buf huge = BUF_INIT;
    buf_puts(&huge, "[");
    while (huge.len < 70 * 1024) buf_puts(&huge, "{\"type\":\"a\"},");
    buf_puts(&huge, "{\"type\":\"a\"}]");
    post(s, "/ingest", "application/json", NULL, huge.p, huge.len, &r);
    CHECK_INT(413, r.status);
    char expect[200];
    snprintf(expect, sizeof expect,
             "{\"ok\":false,\"error\":\"body of %zu bytes is over the limit of 65536 bytes\"}\n",
             huge.len);
    CHECK_STR(expect, r.body.p);
    resp_free(&r);
    check_alive(s);
    post(s, "/ingest", "application/json", "Transfer-Encoding: chunked", huge.p, huge.len, &r);
    CHECK_INT(413, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"body is over the limit of 65536 bytes\"}\n", r.body.p);
    resp_free(&r);
    check_alive(s);
    buf_free(&huge);
}

/* A gzip bomb: 1 KiB on the wire, 16 MiB inflated, stopped at --max-body. */
static void gzip_bomb_stopped(srv *s)
{
    resp r;
    size_t n = 16u << 20;
    char *zeros = calloc(1, n);
    memcpy(zeros, "[{\"type\":\"a\",\"z\":\"", 18);
    buf gz = BUF_INIT;
    gzip_bytes(zeros, n, &gz);
    free(zeros);
    post(s, "/ingest", "application/json", "Content-Encoding: gzip", gz.p, gz.len, &r);
    CHECK_INT(413, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"body inflates past the limit of 65536 bytes\"}\n",
              r.body.p);
    resp_free(&r);
    check_alive(s);

    buf_free(&gz);
}

TEST(test_server_answers_each_bad_request_exactly_and_keeps_serving)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--max-body", "64KiB", "--max-event-bytes", "1KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    bad_requests_answered_exactly(&s);
    event_over_max_event_bytes(&s);
    event_nested_too_deep(&s);
    body_over_max_body(&s);
    gzip_bomb_stopped(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int files;
    json_t *ev = lake_events(lake, &files);
    CHECK_INT(1, json_array_size(ev)); /* only the one good event of all that */
    json_decref(ev);
    srv_lake_cleanup(&s, lake);
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
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--request-timeout", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *head =
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
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
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_closes_idle_connections)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--idle-timeout", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    /* the headers never end */
    const char *head = "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n";
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
    srv_lake_cleanup(&s, lake);
}

/*
 * Reads from fd, appending to the string in out, until the peer closes or
 * timeout_s passes. Returns 1 if the connection was closed (EOF or reset), 0
 * on timeout.
 */
static int read_until_closed(int fd, char *out, size_t cap, double timeout_s)
{
    size_t got = strlen(out);
    double end = now_s() + timeout_s;
    int closed = 0;
    for (double left; !closed && (left = end - now_s()) > 0;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left < 0.1 ? (int)(left * 1000) + 1 : 100) <= 0) continue;
        char b[4096];
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0) {
            size_t k = (size_t)n < cap - 1 - got ? (size_t)n : cap - 1 - got;
            memcpy(out + got, b, k);
            got += k;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            closed = 1;
        }
    }
    out[got] = 0;
    return closed;
}

/* The body of an HTTP answer in raw (after the blank line), or "" */
static const char *body_of(const char *raw)
{
    const char *p = strstr(raw, "\r\n\r\n");
    return p ? p + 4 : "";
}

TEST(test_server_answers_408_to_a_connection_that_trickles_its_headers)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--header-timeout", "1s", "--idle-timeout", "2s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));

    /* a new connection: a request line, then a header line every 200 ms, never the end */
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *line = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    CHECK(send(fd, line, strlen(line), MSG_NOSIGNAL) == (ssize_t)strlen(line));
    double t0 = now_s();
    char answer[4096] = "";
    int closed = 0;
    for (int i = 0; i < 25 && !closed; i++) { /* at most 5 s */
        if (send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) != 11) break;
        closed = read_until_closed(fd, answer, sizeof answer, 0.2);
    }
    if (!closed) closed = read_until_closed(fd, answer, sizeof answer, 0.5);
    double took = now_s() - t0;
    CHECK(closed);
    CHECK_CONTAINS("HTTP/1.1 408 Request Timeout\r\n", answer);
    CHECK_STR("{\"ok\":false,\"error\":\"request headers not received within 1 s\"}",
              body_of(answer));
    CHECK(took >= 0.9 && took < 4.0);
    fprintf(stderr, "  trickled headers answered 408 after %.2f s\n", took);
    close(fd);

    /* a kept-alive connection: one request, then the next one's headers trickled: closed
     * within --idle-timeout (plus the watcher's second) of the first answer, without an answer */
    fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    CHECK(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    char first[4096];
    ssize_t n = recv(fd, first, sizeof first - 1, 0);
    CHECK(n > 12 && !memcmp(first, "HTTP/1.1 200", 12));
    t0 = now_s();
    CHECK(send(fd, line, strlen(line), MSG_NOSIGNAL) == (ssize_t)strlen(line));
    closed = 0;
    answer[0] = 0;
    for (int i = 0; i < 40 && !closed; i++) { /* at most 8 s */
        if (send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) != 11) break;
        closed = read_until_closed(fd, answer, sizeof answer, 0.2);
    }
    if (!closed) closed = read_until_closed(fd, answer, sizeof answer, 0.5);
    took = now_s() - t0;
    CHECK(closed);
    CHECK_STR("", answer);
    CHECK(took >= 1.9 && took < 6.0);
    fprintf(stderr, "  trickled follow-up headers closed after %.2f s\n", took);
    close(fd);

    CHECK_INT(2, srv_metric(&s, "events_http_refused_total{reason=\"header_timeout\"}"));
    check_alive(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

/* Sends raw on a new connection and reads the answer until the server closes it. */
static void raw_exchange(const srv *s, const char *raw, size_t n, char *answer, size_t cap)
{
    answer[0] = 0;
    int fd = connect_to(s);
    if (fd < 0) return;
    if (send(fd, raw, n, MSG_NOSIGNAL) == (ssize_t)n) read_until_closed(fd, answer, cap, 5.0);
    close(fd);
}

TEST(test_server_answers_urls_and_framing_it_cannot_read_with_json_errors)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    static char answer[8192];

    /* 3,000 URL arguments: over --max-url-args (default 100), answered 414 */
    buf url = BUF_INIT;
    buf_puts(&url, "GET /query?a0=0");
    for (int i = 1; i < 3000; i++) buf_printf(&url, "&a%d=%d", i, i);
    buf_puts(&url, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    raw_exchange(&s, url.p, url.len, answer, sizeof answer);
    CHECK_CONTAINS("HTTP/1.1 414 URI Too Long\r\n", answer);
    CHECK_STR("{\"ok\":false,\"error\":\"the URL has 3000 arguments, more than the limit of 100 "
              "(--max-url-args)\"}",
              body_of(answer));
    buf_free(&url);
    /* 100 are fine */
    buf_puts(&url, "GET /health?a0=0");
    for (int i = 1; i < 100; i++) buf_printf(&url, "&a%d=%d", i, i);
    buf_puts(&url, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    raw_exchange(&s, url.p, url.len, answer, sizeof answer);
    CHECK_CONTAINS("HTTP/1.1 200 OK\r\n", answer);
    buf_free(&url);

    /* a Transfer-Encoding libmicrohttpd cannot read: 501, not a wait for ever */
    const char *te =
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\n[{}]\n\r\n0\r\n\r\n";
    raw_exchange(&s, te, strlen(te), answer, sizeof answer);
    CHECK_CONTAINS("HTTP/1.1 501 Not Implemented\r\n", answer);
    CHECK_CONTAINS("\r\nConnection: close\r\n", answer);
    CHECK_STR("{\"ok\":false,\"error\":\"unsupported Transfer-Encoding \\\"gzip, chunked\\\": send "
              "the body with Content-Length or Transfer-Encoding: chunked (and compress it with "
              "Content-Encoding: gzip)\"}\n",
              body_of(answer));

    /* %00 would cut the path the handler sees: /health%00x is not /health */
    const char *nul = "GET /health%00x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    raw_exchange(&s, nul, strlen(nul), answer, sizeof answer);
    CHECK_CONTAINS("HTTP/1.1 400 Bad Request\r\n", answer);
    CHECK_STR("{\"ok\":false,\"error\":\"the URL has an encoded NUL byte (%00)\"}\n",
              body_of(answer));
    const char *nul_arg =
        "GET /tail?type=a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    raw_exchange(&s, nul_arg, strlen(nul_arg), answer, sizeof answer);
    CHECK_CONTAINS("HTTP/1.1 400 Bad Request\r\n", answer);

    CHECK_INT(1, srv_metric(&s, "events_http_refused_total{reason=\"url_arguments\"}"));
    CHECK_INT(1, srv_metric(&s, "events_http_refused_total{reason=\"transfer_encoding\"}"));
    CHECK_INT(2, srv_metric(&s, "events_http_refused_total{reason=\"url_nul\"}"));
    /* no connection is left behind: only the /metrics request's own, within 5 s */
    long long open = -1;
    for (int i = 0; i < 50 && (open = srv_metric(&s, "events_http_connections_open")) != 1; i++)
        usleep(100000);
    CHECK_INT(1, open);
    check_alive(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_answers_a_client_while_slow_headers_hold_every_connection)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    /* the header deadline out of the way: room is made by closing the oldest waiting one */
    const char *args[] = {"--max-connections", "300", "--header-timeout", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    enum { N = 300 };
    int fds[N];
    const char *line = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n";
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(&s);
        REQUIRE(fds[i] >= 0);
        CHECK(send(fds[i], line, strlen(line), MSG_NOSIGNAL) == (ssize_t)strlen(line));
    }
    usleep(500000);
    for (int i = 0; i < N; i++) /* a header line more, as the attack goes on */
        send(fds[i], "X-Slow: 2\r\n", 11, MSG_NOSIGNAL);

    /* a normal client is answered while all 300 are held (generous bound: loaded machines) */
    double t0 = now_s();
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/health", s.url);
    http_do("GET", url, NULL, NULL, 0, 10000, &r);
    double took = now_s() - t0;
    CHECK_INT(200, r.status);
    resp_free(&r);
    fprintf(stderr, "  a normal request under %d slow-header connections: %.1f ms\n", N,
            took * 1000);

    /* the counters, read while the attack holds: each /metrics request may itself close one
     * more attacker (if the server had not yet seen the previous connection go), so the
     * evictions are read last */
    CHECK_INT(0, srv_metric(&s, "events_http_refused_total{reason=\"connection_limit\"}"));
    long long evicted = srv_metric(&s, "events_http_refused_total{reason=\"evicted\"}");

    /* each attacker that made room was answered 503, exactly those the counter counts; the
     * others are still held */
    int answered = 0, closed_plain = 0;
    char got[4096];
    for (int i = 0; i < N; i++) {
        got[0] = 0;
        /* one that has been answered has its answer waiting (written before the counter was
         * read): given time to read it to its end; one still held has nothing */
        struct pollfd p = {fds[i], POLLIN, 0};
        if (poll(&p, 1, 1) <= 0 || !read_until_closed(fds[i], got, sizeof got, 5.0)) continue;
        if (strstr(got, "HTTP/1.1 503 Service Unavailable\r\n") &&
            !strcmp(body_of(got),
                    "{\"ok\":false,\"error\":\"connection closed to make room: the server is at "
                    "its connection limit (--max-connections 300) and this connection had not "
                    "sent its request headers\"}"))
            answered++;
        else
            closed_plain++;
    }
    CHECK(answered >= 1 && answered <= 3);
    CHECK_INT(answered, evicted);
    CHECK_INT(0, closed_plain);
    for (int i = 0; i < N; i++) close(fds[i]);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_refuses_a_connection_when_every_connection_is_busy)
{
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--max-connections", "2", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fds[2];
    const char *req = "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nContent-Length: 100\r\n\r\n[";
    for (int i = 0; i < 2; i++) { /* two requests whose bodies are arriving: both busy */
        fds[i] = connect_to(&s);
        REQUIRE(fds[i] >= 0);
        CHECK(send(fds[i], req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    }
    usleep(300000);
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    char answer[4096] = "";
    CHECK(read_until_closed(fd, answer, sizeof answer, 5.0));
    CHECK_CONTAINS("HTTP/1.1 503 Service Unavailable\r\n", answer);
    CHECK_CONTAINS("\r\nRetry-After: 1\r\n", answer);
    CHECK_STR("{\"ok\":false,\"error\":\"the server is at its connection limit (--max-connections "
              "2) and every connection is busy\"}",
              body_of(answer));
    close(fd);
    /* a client goes: its slot is free for the next one (as soon as the server has seen it go;
     * until then each try is refused, and counted) */
    close(fds[0]);
    int refused = 1;
    resp r;
    for (int i = 0; i < 50; i++) { /* at most 5 s */
        char url[128];
        snprintf(url, sizeof url, "%s/health", s.url);
        http_do("GET", url, NULL, NULL, 0, 2000, &r);
        long st = r.status;
        resp_free(&r);
        if (st == 200) break;
        refused++;
        usleep(100000);
    }
    CHECK(refused < 51);
    close(fds[1]);
    long long counted = -1;
    for (int i = 0; i < 50 && counted < 0; i++) { /* the /health connection may not be gone yet */
        if ((counted = srv_metric(&s, "events_http_refused_total{reason=\"connection_limit\"}")) <
            0)
            refused++, usleep(100000);
    }
    CHECK_INT(refused, counted);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
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
    char *lake = srv_lake_dir("srv");
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
    snprintf(cmd, sizeof cmd, "test -z \"$(ls %s/.spool | grep jsonl | grep -v ^stream-)\"", lake);
    CHECK_INT(0, sh("%s", cmd)); /* the spool is empty: everything sealed (the stream's open,
                                    empty segment aside) */
    srv_lake_cleanup(&s, lake);
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
    char *lake = srv_lake_dir("srv");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, vanish_loop, &s);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    resp r;
    CHECK_INT(200, get(&s, "/metrics", NULL, &r));
    CHECK_CONTAINS("code=\"other\"", r.body.p); /* requests whose client left (recorded as 499) */
    resp_free(&r);
    CHECK_INT(0, srv_stop_within(&s, SIGTERM, 10000));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_answers_408_to_a_client_that_stops_sending_its_body)
{
    /* --request-timeout holds when nothing more arrives, not only when bytes do */
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--request-timeout", "1s", "--idle-timeout", "60s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    const char *head =
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n[{\"type\":";
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
    double t0 = now_s();
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char answer[2048] = "";
    ssize_t n = recv(fd, answer, sizeof answer - 1, 0);
    double took = now_s() - t0;
    answer[n > 0 ? n : 0] = 0;
    CHECK_CONTAINS("HTTP/1.1 408", answer);
    CHECK_CONTAINS("{\"ok\":false,\"error\":\"request not received within 1 s\"}", answer);
    if (took >= 5.0) test_fail(__FILE__, __LINE__, "answered after %.1f s", took);
    char rest[64];
    CHECK_INT(0, recv(fd, rest, sizeof rest, 0)); /* and closed */
    close(fd);
    CHECK_INT(1, srv_metric(&s, "events_http_refused_total{reason=\"body_timeout\"}"));
    check_alive(&s);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_server_default_memory_max_leaves_room_for_the_duckdb_limits)
{
    /* --memory-max is not given: its default never stops a start, whatever the machine */
    srv s = {0};
    char *lake = srv_lake_dir("srv");
    const char *args[] = {"--query-memory", "20GiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    long long want = (20ll << 30) + (1ll << 30) + (256ll << 20);
    long long got = srv_metric(&s, "events_memory_max_bytes");
    if (got < want) test_fail(__FILE__, __LINE__, "memory_max %lld, want at least %lld", got, want);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}
