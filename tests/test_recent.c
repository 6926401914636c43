/*
 * test_recent.c - the rest of the original service's HTTP surface (issue 15,
 * part 2) against a real server: GET /recent (the latest events from memory:
 * order, limit, patterns, bucket, both bounds, duplicates, tokens, a
 * restart), a body's batchId (a retried body stored once, also across a
 * restart), and the newline that ends every text answer.
 */
#include "harness.h"
#include "test.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long request(const srv *s, const char *method, const char *path, const char *ctype,
                    const char *auth, const void *body, size_t n, resp *r)
{
    char url[512], ct[160];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/json");
    const char *h[] = {ct, auth, NULL};
    http_do(method, url, h, body, n, 30000, r);
    return r->status;
}

static long post(const srv *s, const char *path, const char *body, resp *r)
{
    return request(s, "POST", path, NULL, NULL, body, strlen(body), r);
}

static long get(const srv *s, const char *path, const char *auth, resp *r)
{
    return request(s, "GET", path, NULL, auth, NULL, 0, r);
}

/* GET path, parsed (NULL unless 200 and JSON). */
static json_t *get_json(const srv *s, const char *path)
{
    resp r;
    json_t *a = get(s, path, NULL, &r) == 200 ? json_loads(r.body.p, 0, NULL) : NULL;
    if (!a) test_fail(__FILE__, __LINE__, "GET %s: %ld %s", path, r.status, r.body.p);
    resp_free(&r);
    return a;
}

/* Events of the lake with this type, counted by POST /query. */
static long long stored(const srv *s, const char *type)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT count(*) FROM events WHERE type = $1\",\"params\":[\"%s\"]}", type);
    resp r;
    json_t *a = post(s, "/query", body, &r) == 200 ? json_loads(r.body.p, 0, NULL) : NULL;
    json_t *v = json_array_get(json_array_get(json_object_get(a, "rows"), 0), 0);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    if (n < 0) test_fail(__FILE__, __LINE__, "query: %ld %s", r.status, r.body.p);
    json_decref(a);
    resp_free(&r);
    return n;
}

/* Ingests body and checks the answer's accepted and duplicates. */
static void ingest(const srv *s, const char *body, int accepted, int duplicates)
{
    resp r;
    CHECK_INT(200, post(s, "/ingest", body, &r));
    char want[96];
    snprintf(want, sizeof want, "\"accepted\":%d,\"duplicates\":%d,", accepted, duplicates);
    CHECK_CONTAINS(want, r.body.p);
    resp_free(&r);
}

/* The type of event i of a /recent answer. */
static const char *type_at(json_t *a, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(a, "events"), i), "type"));
}

static const char *id_at(json_t *a, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(a, "events"), i), "id"));
}

static long long count_of(json_t *a)
{
    return json_integer_value(json_object_get(a, "count"));
}

/* ---- GET /recent ------------------------------------------------------------------------ */

TEST(test_recent_lists_the_latest_events_newest_first)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    ingest(&s, "[{\"type\":\"a.one\",\"ts\":\"2026-11-25T10:15:00Z\"},{\"type\":\"b.two\"}]", 2, 0);
    ingest(&s, "{\"events\":[{\"type\":\"a.three\",\"ts\":\"2026-11-25T11:30:00Z\",\"n\":3}]}", 1,
           0);
    json_t *a = get_json(&s, "/recent");
    CHECK_INT(3, count_of(a));
    CHECK_INT(3, json_array_size(json_object_get(a, "events")));
    CHECK_STR("a.three", type_at(a, 0));
    CHECK_STR("b.two", type_at(a, 1));
    CHECK_STR("a.one", type_at(a, 2));
    /* the stored line, as /query would give it: id, ts, receivedAt and the members sent */
    json_t *e = json_array_get(json_object_get(a, "events"), 0);
    CHECK_STR("2026-11-25T11:30:00.000Z", json_string_value(json_object_get(e, "ts")));
    CHECK_INT(3, json_integer_value(json_object_get(e, "n")));
    CHECK(json_string_length(json_object_get(e, "id")) == 26);
    CHECK(json_is_string(json_object_get(e, "receivedAt")));
    /* the bucket: the hour partition of the newest event returned */
    CHECK_STR("events/2026/11/25/11", json_string_value(json_object_get(a, "bucket")));
    json_decref(a);
    a = get_json(&s, "/recent?type=a.*");
    CHECK_INT(2, count_of(a));
    CHECK_STR("a.three", type_at(a, 0));
    CHECK_STR("a.one", type_at(a, 1));
    json_decref(a);
    a = get_json(&s, "/recent?type=b.*,*.one&limit=1");
    CHECK_INT(1, count_of(a));
    CHECK_STR("b.two", type_at(a, 0));
    json_decref(a);
    CHECK_INT(3, srv_metric(&s, "events_recent_events"));
    CHECK(srv_metric(&s, "events_recent_bytes") > 100);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_without_a_match_answers_an_empty_list_with_the_bucket_of_now)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    ingest(&s, "[{\"type\":\"a\"}]", 1, 0);
    json_t *a = get_json(&s, "/recent?type=zzz");
    CHECK_INT(0, count_of(a));
    CHECK_INT(0, json_array_size(json_object_get(a, "events")));
    const char *bucket = json_string_value(json_object_get(a, "bucket"));
    CHECK(bucket && strlen(bucket) == strlen("events/yyyy/mm/dd/hh") &&
          !strncmp(bucket, "events/", 7));
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_keeps_at_most_recent_events)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    const char *args[] = {"--recent-events", "5", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    ingest(&s, "[{\"type\":\"e.1\"},{\"type\":\"e.2\"},{\"type\":\"e.3\"}]", 3, 0);
    /* a batch bigger than the ring: only its last five are kept */
    ingest(&s,
           "[{\"type\":\"e.4\"},{\"type\":\"e.5\"},{\"type\":\"e.6\"},{\"type\":\"e.7\"},"
           "{\"type\":\"e.8\"},{\"type\":\"e.9\"}]",
           6, 0);
    json_t *a = get_json(&s, "/recent");
    CHECK_INT(5, count_of(a));
    CHECK_STR("e.9", type_at(a, 0));
    CHECK_STR("e.5", type_at(a, 4));
    json_decref(a);
    ingest(&s, "[{\"type\":\"e.10\"}]", 1, 0);
    a = get_json(&s, "/recent?limit=5");
    CHECK_STR("e.10", type_at(a, 0));
    CHECK_STR("e.6", type_at(a, 4));
    json_decref(a);
    CHECK_INT(5, srv_metric(&s, "events_recent_events"));
    resp r;
    CHECK_INT(400, get(&s, "/recent?limit=6", NULL, &r)); /* over --recent-events */
    CHECK_CONTAINS("limit=6: must be a number from 1 to 5 (--recent-events)", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_keeps_at_most_recent_bytes)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    const char *args[] = {"--recent-bytes", "1000", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char body[4096], pad[301];
    memset(pad, 'x', 300);
    pad[300] = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof body, "[{\"type\":\"big.e%d\",\"pad\":\"%s\"}]", i, pad);
        ingest(&s, body, 1, 0);
    }
    json_t *a = get_json(&s, "/recent");
    CHECK(count_of(a) >= 1 && count_of(a) <= 2); /* lines of about 400 bytes, 1000 in all */
    CHECK_STR("big.e5", type_at(a, 0));
    json_decref(a);
    long long bytes = srv_metric(&s, "events_recent_bytes");
    CHECK(bytes > 300 && bytes <= 1000);
    /* an event larger than the bound alone is not kept; the others stay */
    char huge[2048];
    memset(huge, 'y', 1200);
    huge[1200] = 0;
    snprintf(body, sizeof body, "[{\"type\":\"huge\",\"pad\":\"%s\"}]", huge);
    ingest(&s, body, 1, 0);
    a = get_json(&s, "/recent");
    CHECK_STR("big.e5", type_at(a, 0));
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_holds_a_retried_event_once)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    ingest(&s, "[{\"type\":\"r\",\"id\":\"same-1\"},{\"type\":\"r\",\"id\":\"same-2\"}]", 2, 0);
    ingest(&s, "[{\"type\":\"r\",\"id\":\"same-1\"},{\"type\":\"r\",\"id\":\"new-3\"}]", 1, 1);
    json_t *a = get_json(&s, "/recent");
    CHECK_INT(3, count_of(a));
    CHECK_STR("new-3", id_at(a, 0));
    CHECK_STR("same-2", id_at(a, 1));
    CHECK_STR("same-1", id_at(a, 2));
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_refuses_a_bad_limit_or_pattern)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    const char *bad[] = {"0", "abc", "-1", "1001", "5x", "", "99999999999999999999999"};
    resp r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128], want[128];
        snprintf(path, sizeof path, "/recent?limit=%s", bad[i]);
        CHECK_INT(400, get(&s, path, NULL, &r));
        snprintf(want, sizeof want, "limit=%s: must be a number from 1 to 1000", bad[i]);
        CHECK_CONTAINS(want, r.body.p);
        resp_free(&r);
    }
    char path[600] = "/recent?type=";
    memset(path + strlen(path), 'a', 300); /* over --tail-max-pattern-bytes (256) */
    CHECK_INT(400, get(&s, path, NULL, &r));
    CHECK_CONTAINS("type: a pattern of 300 bytes is longer than the 256", r.body.p);
    resp_free(&r);
    CHECK_INT(400, get(&s, "/recent?type=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", NULL, &r));
    CHECK_CONTAINS("type: 17 patterns, more than the 16", r.body.p);
    resp_free(&r);
    CHECK_INT(405, request(&s, "POST", "/recent", NULL, NULL, "{}", 2, &r));
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_is_off_with_recent_events_0)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    const char *args[] = {"--recent-events", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    ingest(&s, "[{\"type\":\"a\"}]", 1, 0);
    resp r;
    CHECK_INT(404, get(&s, "/recent", NULL, &r));
    CHECK_STR("{\"ok\":false,\"error\":\"/recent is off (--recent-events 0)\"}\n", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_metric(&s, "events_recent_events"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_takes_a_query_or_admin_token)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    char tokens[1200];
    srv_tokens_file(lake,
                    "feeder  feeder-key-0123456789ab  ingest\n"
                    "reader  reader-key-0123456789ab  query\n"
                    "keeper  keeper-key-0123456789ab admin\n",
                    tokens, sizeof tokens);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    CHECK_INT(200,
              request(&s, "POST", "/ingest", NULL, "Authorization: Bearer feeder-key-0123456789ab",
                      "[{\"type\":\"t\"}]", 14, &r));
    resp_free(&r);
    CHECK_INT(401, get(&s, "/recent", NULL, &r));
    resp_free(&r);
    CHECK_INT(403, get(&s, "/recent", "Authorization: Bearer feeder-key-0123456789ab", &r));
    CHECK_CONTAINS("token feeder lacks the query or admin scope", r.body.p);
    resp_free(&r);
    CHECK_INT(200, get(&s, "/recent", "Authorization: Bearer reader-key-0123456789ab", &r));
    CHECK_CONTAINS("\"count\":1,", r.body.p);
    resp_free(&r);
    CHECK_INT(200, get(&s, "/recent", "Authorization: Bearer keeper-key-0123456789ab", &r));
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_recent_is_empty_after_a_restart)
{
    srv s = {0};
    char *lake = srv_lake_dir("recent");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    ingest(&s, "[{\"type\":\"before.restart\"}]", 1, 0);
    json_t *a = get_json(&s, "/recent");
    CHECK_INT(1, count_of(a));
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    a = get_json(&s, "/recent"); /* memory only: the lake has the event, /recent not */
    CHECK_INT(0, count_of(a));
    json_decref(a);
    CHECK_INT(1, stored(&s, "before.restart"));
    ingest(&s, "[{\"type\":\"after.restart\"}]", 1, 0);
    a = get_json(&s, "/recent");
    CHECK_INT(1, count_of(a));
    CHECK_STR("after.restart", type_at(a, 0));
    json_decref(a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

/* ---- batchId ------------------------------------------------------------------------------ */

TEST(test_batch_id_retried_body_is_answered_as_duplicates_and_stored_once)
{
    srv s = {0};
    char *lake = srv_lake_dir("batch");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    const char *body = "{\"batchId\":\"batch-0001\",\"events\":[{\"type\":\"b.x\"},"
                       "{\"type\":\"b.x\",\"id\":\"own-id\"},{\"type\":\"b.x\"}]}";
    ingest(&s, body, 3, 0);
    ingest(&s, body, 0, 3);
    /* the same body with batchId after its events: the same ids */
    ingest(
        &s,
        "{\"events\":[{\"type\":\"b.x\"},{\"type\":\"b.x\",\"id\":\"own-id\"},{\"type\":\"b.x\"}],"
        "\"batchId\":\"batch-0001\"}",
        0, 3);
    CHECK_INT(3, stored(&s, "b.x"));
    json_t *a = get_json(&s, "/recent");
    CHECK_STR("batch-0001:2", id_at(a, 0));
    CHECK_STR("own-id", id_at(a, 1)); /* an event's own id is kept */
    CHECK_STR("batch-0001:0", id_at(a, 2));
    json_decref(a);
    /* another batch is another body */
    ingest(&s, "{\"batchId\":\"batch-0002\",\"events\":[{\"type\":\"b.x\"}]}", 1, 0);
    CHECK_INT(4, stored(&s, "b.x"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_batch_id_outside_the_id_grammar_is_hashed)
{
    srv s = {0};
    char *lake = srv_lake_dir("batch");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    /* a space is not an id character; an escape is decoded first */
    const char *body = "{\"batchId\":\"my batch\\u0021\",\"events\":[{\"type\":\"h.x\"}]}";
    ingest(&s, body, 1, 0);
    ingest(&s, "{\"batchId\":\"my batch!\",\"events\":[{\"type\":\"h.x\"}]}", 0, 1);
    json_t *a = get_json(&s, "/recent");
    const char *id = id_at(a, 0);
    /* "b_" and the first 32 hex digits of SHA-256("my batch!") */
    CHECK_STR("b_bb078cb91794e5204233de849dfc856c:0", id);
    json_decref(a);
    CHECK_INT(1, stored(&s, "h.x"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_batch_id_retried_after_a_restart_is_stored_once)
{
    srv s = {0};
    char *lake = srv_lake_dir("batch");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    const char *body =
        "{\"batchId\":\"01HRETRY\",\"events\":[{\"type\":\"r.x\"},{\"type\":\"r.y\"}]}";
    ingest(&s, body, 2, 0);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    ingest(&s, body, 0, 2);
    CHECK_INT(1, stored(&s, "r.x"));
    CHECK_INT(1, stored(&s, "r.y"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_batch_id_that_is_not_a_non_empty_string_is_refused)
{
    srv s = {0};
    char *lake = srv_lake_dir("batch");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    const char *bad[] = {
        "{\"batchId\":12,\"events\":[{\"type\":\"a\"}]}",
        "{\"batchId\":\"\",\"events\":[{\"type\":\"a\"}]}",
        "{\"batchId\":null,\"events\":[{\"type\":\"a\"}]}",
        "{\"events\":[{\"type\":\"a\"}],\"batchId\":[\"x\"]}",
    };
    resp r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(400, post(&s, "/ingest", bad[i], &r));
        CHECK_STR("{\"ok\":false,\"error\":\"\\\"batchId\\\" must be a non-empty string\"}\n",
                  r.body.p);
        resp_free(&r);
    }
    CHECK_INT(400, post(&s, "/ingest",
                        "{\"batchId\":\"a\",\"events\":[{\"type\":\"a\"}],\"batchId\":\"b\"}", &r));
    CHECK_CONTAINS("duplicate key \\\"batchId\\\" in the body", r.body.p);
    resp_free(&r);
    CHECK_INT(0, stored(&s, "a"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

/* ---- newlines ----------------------------------------------------------------------------- */

/* 1 if the answer's body ends with a newline. */
static int ends_line(const resp *r)
{
    return r->body.len && r->body.p[r->body.len - 1] == '\n';
}

TEST(test_every_text_answer_ends_with_a_newline)
{
    srv s = {0};
    char *lake = srv_lake_dir("newline");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    resp r;
    CHECK_INT(200, post(&s, "/ingest", "[{\"type\":\"n.l\"}]", &r));
    CHECK(ends_line(&r));
    resp_free(&r);
    const char *gets[] = {"/health",    "/metrics",          "/recent",
                          "/snapshots", "/no/such/endpoint", "/recent?limit=0"};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        get(&s, gets[i], NULL, &r);
        if (!ends_line(&r))
            test_fail(__FILE__, __LINE__, "GET %s: %ld %s", gets[i], r.status, r.body.p);
        resp_free(&r);
    }
    const char *sql = "{\"sql\":\"SELECT 1 AS one\"}";
    const char *queries[] = {"/query", "/query?format=csv", "/query?format=ndjson"};
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        CHECK_INT(200, post(&s, queries[i], sql, &r));
        if (!ends_line(&r)) test_fail(__FILE__, __LINE__, "%s: %s", queries[i], r.body.p);
        resp_free(&r);
    }
    CHECK_INT(400, post(&s, "/query", "{\"sql\":\"DROP TABLE events\"}", &r));
    CHECK(ends_line(&r));
    resp_free(&r);
    CHECK_INT(400, post(&s, "/ingest", "not json", &r)); /* an error */
    CHECK(ends_line(&r));
    resp_free(&r);
    /* OTLP/HTTP JSON ends its line; its protobuf answer is bytes, left as they are */
    CHECK_INT(200, post(&s, "/v1/logs", "{\"resourceLogs\":[]}", &r));
    CHECK_STR("{}\n", r.body.p);
    resp_free(&r);
    CHECK_INT(200, request(&s, "POST", "/v1/logs", "application/x-protobuf", NULL, "", 0, &r));
    CHECK_INT(0, r.body.len);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}

TEST(test_preflight_allows_the_original_clients_headers)
{
    srv s = {0};
    char *lake = srv_lake_dir("cors");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", s.url);
    char origin[128];
    snprintf(origin, sizeof origin, "Origin: %s", s.url); /* the server's own page */
    const char *h[] = {origin, "Access-Control-Request-Method: POST",
                       "Access-Control-Request-Headers: content-type,x-correlation-id,x-request-id",
                       NULL};
    resp r;
    http_do("OPTIONS", url, h, NULL, 0, 0, &r);
    CHECK_INT(204, r.status);
    CHECK_CONTAINS("Access-Control-Allow-Headers: Authorization, Content-Type, Content-Encoding, "
                   "X-Correlation-ID, X-Request-ID\r\n",
                   r.head.p);
    CHECK_CONTAINS("Access-Control-Max-Age: 86400\r\n", r.head.p);
    CHECK_INT(0, r.body.len); /* a 204 has no body, newline or not */
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    srv_lake_cleanup(&s, lake);
}
