/*
 * test_subs_api.c - the webhook subscriptions' API (server/server_subs.c,
 * docs/subscriptions.md) and `events subscriptions` against a real server:
 * every endpoint's answer, every kind of bad input (one test each), tokens
 * (the admin scope), --subscriptions-max, and the records seen by a second
 * server of the same lake. Dead letters are written into the lake with
 * lake_subs_dead_put, as the deliverer writes them; nothing here delivers.
 */
#include "harness.h"
#include "subs.h"
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define HOOK "http://127.0.0.1:9/hook" /* a URL nothing listens on: nothing is delivered here */

/*
 * The server of the bad-input tests, which change nothing: started by the first of them
 * (shared_srv), stopped and its lake removed at exit. The tests run one at a time, on the
 * main thread.
 */
static srv shared;
static char *shared_lake;

static void stop_shared(void)
{
    srv_lake_cleanup(&shared, shared_lake);
}

static const srv *shared_srv(void)
{
    if (!shared_lake) {
        shared_lake = srv_lake_dir("subs-api");
        if (srv_start(&shared, shared_lake, NULL)) return NULL;
        atexit(stop_shared);
    }
    return &shared;
}

/* method path (body: NULL or JSON) with auth ("Authorization: …" or NULL). The status. */
static long call(const srv *s, const char *method, const char *path, const char *body,
                 const char *auth, resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    const char *h[] = {"Content-Type: application/json", auth, NULL};
    http_do(method, url, h, body, body ? strlen(body) : 0, 30000, r);
    return r->status;
}

/* The answer of method path parsed, when its status is want (else a failure and NULL). */
static json_t *call_json(const srv *s, const char *method, const char *path, const char *body,
                         long want)
{
    resp r;
    long st = call(s, method, path, body, NULL, &r);
    json_t *a = st == want ? json_loads(r.body.p, 0, NULL) : NULL;
    if (!a)
        test_fail(__FILE__, __LINE__, "%s %s: want %ld, got %ld %s", method, path, want, st,
                  r.body.p);
    resp_free(&r);
    return a;
}

/* Creates subscription id (pattern p), 201. */
static void create(const srv *s, const char *id, const char *p)
{
    char body[512];
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"pattern\":\"%s\",\"url\":\"" HOOK "\"}", id, p);
    json_decref(call_json(s, "POST", "/subscriptions", body, 201));
}

/* The member m of the answer's subscription, as text (strings bare, the rest JSON). */
static const char *field(json_t *a, const char *m, char *out, size_t n)
{
    json_t *v = json_object_get(json_object_get(a, "subscription"), m);
    char *t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(out, n, "%s", json_is_string(v) ? json_string_value(v) : t ? t : "(absent)");
    free(t);
    return out;
}

/* method path with body is refused with status, its error containing want. */
static void refused(const char *method, const char *path, const char *body, long status,
                    const char *want)
{
    const srv *s = shared_srv();
    REQUIRE(s);
    resp r;
    CHECK_INT(status, call(s, method, path, body, NULL, &r));
    CHECK_CONTAINS(want, r.body.p);
    resp_free(&r);
}

/* POST /subscriptions with a valid body plus extra (",\"k\":v" or ""), refused 400 with want. */
static void create_refused(const char *extra, const char *want)
{
    char body[4096];
    snprintf(body, sizeof body, "{\"pattern\":\"a.*\",\"url\":\"" HOOK "\"%s}", extra);
    refused("POST", "/subscriptions", body, 400, want);
}

/* A handle on s's lake, as a second process of it would open it. */
static lake_subs *open_lake(const srv *s, store **st)
{
    char err[512];
    lake_subs *h = NULL;
    if (store_open(s->lake, st, err, sizeof err) || lake_subs_open(*st, &h, err, sizeof err))
        test_fail(__FILE__, __LINE__, "open %s: %s", s->lake, err);
    return h;
}

/* Puts a dead letter of id failed at ms, as the deliverer writes one. */
static void put_dead(lake_subs *h, const char *id, long long ms, int status)
{
    char doc[512], name[LAKE_KEY_MAX], err[256];
    snprintf(doc, sizeof doc,
             "{\"subscription\":\"%s\",\"failedAt\":%lld,\"attempts\":8,\"status\":%d,"
             "\"error\":\"HTTP %d\",\"excerpt\":\"nope\",\"count\":2,\"first\":\"s.1\","
             "\"last\":\"s.2\",\"from\":\"\",\"next\":\"s.2\",\"events\":[{},{}]}",
             id, ms, status, status);
    CHECK_INT(0, lake_subs_dead_put(h, id, ms, doc, strlen(doc), name, err, sizeof err));
}

/* ---- create, list, show ------------------------------------------------------------------- */

TEST(test_create_answers_the_record_with_its_defaults_and_its_secret_in_full)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    json_t *a = call_json(&s, "POST", "/subscriptions",
                          "{\"id\":\"orders\",\"pattern\":\"collection.*\",\"url\":\"" HOOK
                          "\",\"filters\":{\"collection\":\"orders\"}}",
                          201);
    CHECK_STR("orders", field(a, "id", v, sizeof v));
    CHECK_STR("100", field(a, "batchSize", v, sizeof v));
    CHECK_STR("1000", field(a, "maxWaitMs", v, sizeof v));
    CHECK_STR("10000", field(a, "timeoutMs", v, sizeof v));
    CHECK_STR("8", field(a, "maxAttempts", v, sizeof v));
    CHECK_STR("1", field(a, "concurrency", v, sizeof v));
    CHECK_STR("active", field(a, "state", v, sizeof v));
    CHECK_STR("", field(a, "cursor", v, sizeof v));
    CHECK_STR("{\"collection\":\"orders\"}", field(a, "filters", v, sizeof v));
    CHECK_INT(38, (long long)strlen(field(a, "secret", v, sizeof v))); /* whsec_ + 32 */
    CHECK(!strncmp(v, "whsec_", 6));
    long long created = atoll(field(a, "createdAt", v, sizeof v));
    long long start = atoll(field(a, "start", v, sizeof v)); /* "now": when the request came */
    CHECK(start > 0 && start <= created && created - start < 60000);
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_create_without_an_id_makes_one_of_sub_and_16_characters)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    json_t *a =
        call_json(&s, "POST", "/subscriptions", "{\"pattern\":\"**\",\"url\":\"" HOOK "\"}", 201);
    field(a, "id", v, sizeof v);
    CHECK_INT(20, (long long)strlen(v));
    CHECK(!strncmp(v, "sub_", 4) && strspn(v + 4, "0123456789abcdefghijklmnopqrstuvwxyz") == 16);
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_create_takes_start_oldest_a_time_and_a_cursor)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    json_t *a = call_json(
        &s, "POST", "/subscriptions",
        "{\"id\":\"a\",\"pattern\":\"**\",\"url\":\"" HOOK "\",\"start\":\"oldest\"}", 201);
    CHECK_STR("oldest", field(a, "start", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "POST", "/subscriptions",
                  "{\"id\":\"b\",\"pattern\":\"**\",\"url\":\"" HOOK
                  "\",\"start\":\"2026-11-25T10:00:00Z\"}",
                  201);
    CHECK_STR("1795600800000", field(a, "start", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "POST", "/subscriptions",
                  "{\"id\":\"c\",\"pattern\":\"**\",\"url\":\"" HOOK
                  "\",\"start\":\"abcd1234.000000000000002a\"}",
                  201);
    CHECK_STR("abcd1234.000000000000002a", field(a, "cursor", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_create_of_an_existing_id_is_409)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "orders", "a.*");
    resp r;
    CHECK_INT(409, call(&s, "POST", "/subscriptions",
                        "{\"id\":\"orders\",\"pattern\":\"b\",\"url\":\"" HOOK "\"}", NULL, &r));
    CHECK_CONTAINS("exists already", r.body.p);
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

TEST(test_list_and_show_redact_the_secret)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    json_decref(call_json(&s, "POST", "/subscriptions",
                          "{\"id\":\"x\",\"pattern\":\"a\",\"url\":\"" HOOK
                          "\",\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}",
                          201));
    create(&s, "y", "b.**");
    json_t *l = call_json(&s, "GET", "/subscriptions", NULL, 200);
    json_t *arr = json_object_get(l, "subscriptions");
    CHECK_INT(2, (long long)json_array_size(arr));
    CHECK_STR("whsec_MfKQ\xe2\x80\xa6",
              json_string_value(json_object_get(json_array_get(arr, 0), "secret")));
    json_decref(l);
    json_t *a = call_json(&s, "GET", "/subscriptions/x", NULL, 200);
    CHECK_STR("whsec_MfKQ\xe2\x80\xa6", field(a, "secret", v, sizeof v));
    CHECK_STR("0", field(a, "deadLetters", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_show_of_an_unknown_id_is_404)
{
    refused("GET", "/subscriptions/nope", NULL, 404, "no subscription \\\"nope\\\"");
}

/* ---- patch, pause, resume, delete ------------------------------------------------------- */

TEST(test_patch_changes_only_the_fields_it_names)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "p", "a.*");
    json_t *a = call_json(&s, "PATCH", "/subscriptions/p",
                          "{\"batchSize\":5,\"url\":\"https://example.com/h\",\"filters\":"
                          "{\"do.class\":\"Orders\"}}",
                          200);
    CHECK_STR("5", field(a, "batchSize", v, sizeof v));
    CHECK_STR("https://example.com/h", field(a, "url", v, sizeof v));
    CHECK_STR("{\"do.class\":\"Orders\"}", field(a, "filters", v, sizeof v));
    CHECK_STR("a.*", field(a, "pattern", v, sizeof v));
    CHECK_STR("8", field(a, "maxAttempts", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "GET", "/subscriptions/p", NULL, 200);
    CHECK_STR("5", field(a, "batchSize", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

/* An edit writing the cursor ud, as the deliverer does after a 2xx. */
static int set_cursor(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    json_object_set_new(rec, "cursor", json_string(ud));
    return 0;
}

TEST(test_patch_keeps_the_cursor_another_writer_wrote)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[256], err[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "p", "a.*");
    store *st = NULL;
    lake_subs *h = open_lake(&s, &st);
    CHECK_INT(0, lake_subs_update(h, "p", NULL, set_cursor, "abcd1234.0000000000000007", NULL, err,
                                  sizeof err));
    lake_subs_close(h);
    store_close(st);
    json_t *a = call_json(&s, "PATCH", "/subscriptions/p", "{\"maxWaitMs\":0}", 200);
    CHECK_STR("0", field(a, "maxWaitMs", v, sizeof v));
    CHECK_STR("abcd1234.0000000000000007", field(a, "cursor", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_pause_and_resume_set_the_state)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "p", "a.*");
    json_t *a = call_json(&s, "POST", "/subscriptions/p/pause", NULL, 200);
    CHECK_STR("paused", field(a, "state", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "POST", "/subscriptions/p/resume", NULL, 200);
    CHECK_STR("active", field(a, "state", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "PATCH", "/subscriptions/p", "{\"state\":\"paused\"}", 200);
    CHECK_STR("paused", field(a, "state", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

/* An edit making a subscription what a 410 makes it. */
static int disable(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)ud, (void)err, (void)errlen;
    json_object_set_new(rec, "state", json_string("disabled"));
    json_object_set_new(rec, "reason", json_string("receiver answered 410 Gone"));
    return 0;
}

TEST(test_resume_enables_a_disabled_subscription_and_clears_its_reason)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128], err[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "p", "a.*");
    store *st = NULL;
    lake_subs *h = open_lake(&s, &st);
    CHECK_INT(0, lake_subs_update(h, "p", NULL, disable, NULL, NULL, err, sizeof err));
    lake_subs_close(h);
    store_close(st);
    json_t *a = call_json(&s, "GET", "/subscriptions/p", NULL, 200);
    CHECK_STR("disabled", field(a, "state", v, sizeof v));
    json_decref(a);
    a = call_json(&s, "POST", "/subscriptions/p/resume", NULL, 200);
    CHECK_STR("active", field(a, "state", v, sizeof v));
    CHECK_STR("null", field(a, "reason", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_delete_answers_the_id_then_the_subscription_is_gone)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "d", "a.*");
    json_t *a = call_json(&s, "DELETE", "/subscriptions/d", NULL, 200);
    CHECK_STR("d", json_string_value(json_object_get(a, "deleted")));
    json_decref(a);
    resp r;
    CHECK_INT(404, call(&s, "GET", "/subscriptions/d", NULL, NULL, &r));
    resp_free(&r);
    CHECK_INT(404, call(&s, "DELETE", "/subscriptions/d", NULL, NULL, &r));
    resp_free(&r);
    a = call_json(&s, "GET", "/subscriptions", NULL, 200);
    CHECK_INT(0, (long long)json_array_size(json_object_get(a, "subscriptions")));
    json_decref(a);
    create(&s, "d", "b"); /* the id is free again */
    srv_lake_cleanup(&s, lake);
}

TEST(test_patch_pause_of_an_unknown_id_is_404)
{
    refused("PATCH", "/subscriptions/nope", "{\"batchSize\":2}", 404, "no subscription");
    refused("POST", "/subscriptions/nope/pause", NULL, 404, "no subscription");
}

/* ---- retry, replay, dead letters ----------------------------------------------------------- */

TEST(test_dead_letters_are_listed_oldest_first_with_their_reason_and_total)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "d", "a.*");
    store *st = NULL;
    lake_subs *h = open_lake(&s, &st);
    put_dead(h, "d", 1796032800000, 500);
    put_dead(h, "d", 1796032700000, 502);
    put_dead(h, "d", 1796032900000, 503);
    lake_subs_close(h);
    store_close(st);
    json_t *a = call_json(&s, "GET", "/subscriptions/d/dead-letters?limit=2", NULL, 200);
    json_t *l = json_object_get(a, "deadLetters");
    CHECK_INT(3, json_integer_value(json_object_get(a, "total")));
    CHECK_INT(2, (long long)json_array_size(l));
    json_t *d0 = json_array_get(l, 0);
    CHECK_INT(502, json_integer_value(json_object_get(d0, "status")));
    CHECK_INT(1796032700000, json_integer_value(json_object_get(d0, "failedAt")));
    CHECK_STR("HTTP 502", json_string_value(json_object_get(d0, "error")));
    CHECK_STR("nope", json_string_value(json_object_get(d0, "excerpt")));
    CHECK_INT(2, json_integer_value(json_object_get(d0, "count")));
    CHECK(json_string_length(json_object_get(d0, "name")) > 0);
    CHECK(!json_object_get(d0, "events"));
    json_decref(a);
    a = call_json(&s, "GET", "/subscriptions/d", NULL, 200);
    CHECK_STR("3", field(a, "deadLetters", v, sizeof v));
    json_decref(a);
    srv_lake_cleanup(&s, lake);
}

TEST(test_retry_asks_for_all_dead_letters_or_one_by_name)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "d", "a.*");
    store *st = NULL;
    lake_subs *h = open_lake(&s, &st);
    put_dead(h, "d", 1796032800000, 500);
    lake_subs_close(h);
    store_close(st);
    json_t *a = call_json(&s, "POST", "/subscriptions/d/retry", NULL, 202);
    CHECK_STR("1", field(a, "retryRequested", v, sizeof v));
    CHECK_STR("null", field(a, "retryName", v, sizeof v));
    json_decref(a);
    json_t *l = call_json(&s, "GET", "/subscriptions/d/dead-letters", NULL, 200);
    const char *name = json_string_value(
        json_object_get(json_array_get(json_object_get(l, "deadLetters"), 0), "name"));
    char body[512];
    snprintf(body, sizeof body, "{\"deadLetter\":\"%s\"}", name ? name : "");
    a = call_json(&s, "POST", "/subscriptions/d/retry", body, 202);
    CHECK_STR("2", field(a, "retryRequested", v, sizeof v));
    CHECK_STR(name ? name : "?", field(a, "retryName", v, sizeof v));
    json_decref(a);
    json_decref(l);
    resp r;
    CHECK_INT(404, call(&s, "POST", "/subscriptions/d/retry",
                        "{\"deadLetter\":\"1796032800000-9.json\"}", NULL, &r));
    CHECK_CONTAINS("no dead letter", r.body.p);
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

TEST(test_replay_is_202_then_409_while_it_runs)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[256];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "r", "a.*");
    json_t *a = call_json(&s, "POST", "/subscriptions/r/replay",
                          "{\"from\":\"2026-11-25T10:00:00Z\",\"to\":1796036400000}", 202);
    CHECK_STR("{\"from\":1795600800000,\"to\":1796036400000,\"cursor\":\"\"}",
              field(a, "replay", v, sizeof v));
    json_decref(a);
    resp r;
    CHECK_INT(409, call(&s, "POST", "/subscriptions/r/replay", "{\"from\":1,\"to\":2}", NULL, &r));
    CHECK_CONTAINS("a replay runs already", r.body.p);
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

TEST(test_replay_from_after_to_is_400)
{
    refused("POST", "/subscriptions/x/replay", "{\"from\":5,\"to\":4}", 400,
            "from: must not be after to");
}

TEST(test_replay_without_a_time_is_400)
{
    refused("POST", "/subscriptions/x/replay", "{\"from\":5}", 400, "to: must be an RFC 3339");
    refused("POST", "/subscriptions/x/replay", "{\"from\":\"yesterday\",\"to\":5}", 400,
            "from: must be an RFC 3339");
}

TEST(test_replay_with_an_unknown_field_is_400)
{
    refused("POST", "/subscriptions/x/replay", "{\"from\":1,\"to\":2,\"speed\":3}", 400,
            "speed: unknown field");
}

TEST(test_retry_with_an_unknown_field_or_no_name_is_400)
{
    refused("POST", "/subscriptions/x/retry", "{\"all\":true}", 400, "all: unknown field");
    refused("POST", "/subscriptions/x/retry", "{\"deadLetter\":7}", 400,
            "deadLetter: must be a dead letter's name");
}

TEST(test_dead_letters_limit_out_of_range_is_400)
{
    refused("GET", "/subscriptions/x/dead-letters?limit=0", NULL, 400, "limit=0: must be");
    refused("GET", "/subscriptions/x/dead-letters?limit=1001", NULL, 400, "limit=1001");
    refused("GET", "/subscriptions/x/dead-letters?limit=a", NULL, 400, "limit=a");
}

TEST(test_dead_letters_of_an_unknown_id_is_404)
{
    refused("GET", "/subscriptions/nope/dead-letters", NULL, 404, "no subscription");
}

/* ---- bad input: one test each -------------------------------------------------------------- */

TEST(test_create_with_a_body_not_json_is_400)
{
    refused("POST", "/subscriptions", "{\"pattern\":", 400, "body: not JSON");
}

TEST(test_create_with_a_body_not_an_object_is_400)
{
    refused("POST", "/subscriptions", "[1,2]", 400, "body: must be a JSON object");
}

TEST(test_create_without_a_pattern_is_400)
{
    refused("POST", "/subscriptions", "{\"url\":\"" HOOK "\"}", 400, "pattern: is required");
}

TEST(test_create_without_a_url_is_400)
{
    refused("POST", "/subscriptions", "{\"pattern\":\"a\"}", 400, "url: is required");
}

TEST(test_create_with_a_bad_pattern_is_400)
{
    refused("POST", "/subscriptions", "{\"pattern\":\"a..b\",\"url\":\"" HOOK "\"}", 400,
            "pattern: pattern 1");
    refused("POST", "/subscriptions", "{\"pattern\":7,\"url\":\"" HOOK "\"}", 400,
            "pattern: must be a string");
}

TEST(test_create_with_a_url_not_http_is_400)
{
    refused("POST", "/subscriptions", "{\"pattern\":\"a\",\"url\":\"ftp://x/y\"}", 400,
            "url: must be an http:// or https:// URL");
    refused("POST", "/subscriptions", "{\"pattern\":\"a\",\"url\":\"http://\"}", 400, "url: must");
}

TEST(test_create_with_a_url_over_2048_bytes_is_400)
{
    char body[3000] = "{\"pattern\":\"a\",\"url\":\"http://h/";
    size_t n = strlen(body);
    memset(body + n, 'x', 2100);
    strcpy(body + n + 2100, "\"}");
    refused("POST", "/subscriptions", body, 400, "of at most 2048 bytes");
}

TEST(test_create_with_a_space_in_the_url_is_400)
{
    refused("POST", "/subscriptions", "{\"pattern\":\"a\",\"url\":\"http://h/a b\"}", 400,
            "url: must");
}

TEST(test_create_with_a_secret_without_whsec_is_400)
{
    create_refused(",\"secret\":\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
                   "secret: must be \\\"whsec_\\\"");
}

TEST(test_create_with_a_secret_key_under_16_bytes_is_400)
{
    create_refused(",\"secret\":\"whsec_c2hvcnQ=\"", "secret: must be");
}

TEST(test_create_with_a_secret_not_base64_is_400)
{
    create_refused(",\"secret\":\"whsec_!!!!notbase64!!!!!!!!!!!!!!!\"", "secret: must be");
}

TEST(test_create_with_an_unknown_filter_is_400)
{
    create_refused(",\"filters\":{\"type\":\"x\"}", "filters: unknown filter \\\"type\\\"");
}

TEST(test_create_with_a_filter_not_a_string_is_400)
{
    create_refused(",\"filters\":{\"do.id\":5}", "filters: \\\"do.id\\\" must be a string");
    create_refused(",\"filters\":[]", "filters: must be an object");
}

TEST(test_create_with_numbers_out_of_range_is_400)
{
    create_refused(",\"batchSize\":0", "batchSize: must be an integer from 1 to 10000");
    create_refused(",\"batchSize\":10001", "batchSize: must be an integer from 1 to 10000");
    create_refused(",\"maxWaitMs\":-1", "maxWaitMs: must be an integer from 0 to 60000");
    create_refused(",\"timeoutMs\":99", "timeoutMs: must be an integer from 100 to 120000");
    create_refused(",\"maxAttempts\":101", "maxAttempts: must be an integer from 1 to 100");
    create_refused(",\"concurrency\":17", "concurrency: must be an integer from 1 to 16");
}

TEST(test_create_with_a_number_not_an_integer_is_400)
{
    create_refused(",\"batchSize\":1.5", "batchSize: must be an integer");
    create_refused(",\"batchSize\":\"10\"", "batchSize: must be an integer");
}

TEST(test_create_with_an_unknown_field_is_400)
{
    create_refused(",\"batchsize\":10", "batchsize: unknown field");
}

TEST(test_create_with_a_field_the_server_writes_is_400)
{
    create_refused(",\"cursor\":\"\"", "cursor: cannot be given");
    create_refused(",\"state\":\"paused\"", "state: cannot be given");
}

TEST(test_create_with_a_bad_start_is_400)
{
    create_refused(",\"start\":\"yesterday\"", "start: must be");
    create_refused(",\"start\":-5", "start: must be");
}

TEST(test_create_with_a_bad_id_is_400)
{
    create_refused(",\"id\":\"a/b\"", "id: must be 1 to 64 of");
    create_refused(",\"id\":\"\"", "id: must be");
}

TEST(test_patch_of_a_field_that_cannot_change_is_400)
{
    refused("PATCH", "/subscriptions/x", "{\"id\":\"y\"}", 400, "id: cannot be changed");
    refused("PATCH", "/subscriptions/x", "{\"cursor\":\"\"}", 400, "cursor: cannot be changed");
}

TEST(test_patch_of_a_state_other_than_active_or_paused_is_400)
{
    refused("PATCH", "/subscriptions/x", "{\"state\":\"disabled\"}", 400,
            "state: must be \\\"active\\\" or \\\"paused\\\"");
}

TEST(test_patch_without_a_field_is_400)
{
    refused("PATCH", "/subscriptions/x", "{}", 400, "body: names no field to change");
}

TEST(test_a_bad_id_in_the_url_is_400)
{
    refused("GET", "/subscriptions/a.b", NULL, 400, "is not a subscription id");
}

TEST(test_an_unknown_action_is_404)
{
    refused("POST", "/subscriptions/x/explode", NULL, 404, "no such endpoint");
}

TEST(test_a_method_an_endpoint_does_not_take_is_405)
{
    refused("PUT", "/subscriptions", "{}", 405, "method PUT not allowed");
    refused("DELETE", "/subscriptions", NULL, 405, "method DELETE not allowed");
    refused("POST", "/subscriptions/x", "{}", 405, "method POST not allowed");
    refused("GET", "/subscriptions/x/pause", NULL, 405, "method GET not allowed");
    refused("POST", "/subscriptions/x/dead-letters", NULL, 405, "method POST not allowed");
}

TEST(test_a_body_over_64_kib_is_413)
{
    size_t n = 70000;
    char *body = malloc(n + 1);
    REQUIRE(body);
    memset(body, ' ', n);
    body[0] = '{', body[n - 1] = '}', body[n] = 0;
    refused("POST", "/subscriptions", body, 413, "over the limit of 65536 bytes");
    free(body);
}

TEST(test_a_body_not_json_by_its_content_type_is_415)
{
    const srv *s = shared_srv();
    REQUIRE(s);
    char url[256];
    snprintf(url, sizeof url, "%s/subscriptions", s->url);
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    resp r;
    http_do("POST", url, h, "a=b", 3, 10000, &r);
    CHECK_INT(415, r.status);
    resp_free(&r);
}

TEST(test_the_cors_preflight_allows_patch_and_delete)
{
    const srv *s = shared_srv();
    REQUIRE(s);
    resp r;
    CHECK_INT(204, call(s, "OPTIONS", "/subscriptions/x", NULL, NULL, &r));
    CHECK_CONTAINS("PATCH, DELETE", r.head.p);
    resp_free(&r);
}

/* ---- tokens, the limit, a second server ------------------------------------------------------ */

TEST(test_the_api_needs_a_token_with_the_admin_scope)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), tokens[1200];
    srv_tokens_file(lake,
                    "ops tok-admin-0123456789 admin\nreader tok-query-0123456789 query,ingest\n",
                    tokens, sizeof tokens);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    const char *body = "{\"id\":\"t\",\"pattern\":\"a\",\"url\":\"" HOOK "\"}";
    resp r;
    CHECK_INT(401, call(&s, "POST", "/subscriptions", body, NULL, &r));
    resp_free(&r);
    CHECK_INT(403, call(&s, "GET", "/subscriptions", NULL,
                        "Authorization: Bearer tok-query-0123456789", &r));
    CHECK_CONTAINS("lacks the admin scope", r.body.p);
    resp_free(&r);
    CHECK_INT(201, call(&s, "POST", "/subscriptions", body,
                        "Authorization: Bearer tok-admin-0123456789", &r));
    resp_free(&r);
    CHECK_INT(200, call(&s, "GET", "/subscriptions/t", NULL,
                        "Authorization: Bearer tok-admin-0123456789", &r));
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

TEST(test_subscriptions_max_refuses_one_more_with_409_and_counts_it)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api");
    const char *args[] = {"--subscriptions-max", "2", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    create(&s, "a", "a");
    create(&s, "b", "b");
    resp r;
    CHECK_INT(409, call(&s, "POST", "/subscriptions",
                        "{\"id\":\"c\",\"pattern\":\"c\",\"url\":\"" HOOK "\"}", NULL, &r));
    CHECK_CONTAINS("too many subscriptions: the lake has 2 (--subscriptions-max 2)", r.body.p);
    resp_free(&r);
    CHECK_INT(1, srv_metric(&s, "events_subscriptions_refused_total"));
    CHECK_INT(2, srv_metric(&s, "events_subscriptions"));
    json_decref(call_json(&s, "DELETE", "/subscriptions/a", NULL, 200));
    create(&s, "c", "c");
    srv_lake_cleanup(&s, lake);
}

TEST(test_a_second_server_of_the_lake_sees_and_changes_the_same_records)
{
    srv a = {0}, b = {0};
    char *lake = srv_lake_dir("subs-api"), spool[1200], v[128];
    REQUIRE_INT(0, srv_start(&a, lake, NULL));
    snprintf(spool, sizeof spool, "%s/.spool-b", lake);
    const char *args[] = {"--spool", spool, NULL};
    REQUIRE_INT(0, srv_start(&b, lake, args));
    create(&a, "shared", "collection.*");
    json_t *x = call_json(&b, "GET", "/subscriptions/shared", NULL, 200);
    CHECK_STR("collection.*", field(x, "pattern", v, sizeof v));
    json_decref(x);
    json_decref(call_json(&b, "POST", "/subscriptions/shared/pause", NULL, 200));
    x = call_json(&a, "GET", "/subscriptions/shared", NULL, 200);
    CHECK_STR("paused", field(x, "state", v, sizeof v));
    json_decref(x);
    json_decref(call_json(&b, "DELETE", "/subscriptions/shared", NULL, 200));
    resp r;
    CHECK_INT(404, call(&a, "GET", "/subscriptions/shared", NULL, NULL, &r));
    resp_free(&r);
    srv_stop(&b, 15);
    srv_lake_cleanup(&a, lake);
}

/* ---- the command line ------------------------------------------------------------------------ */

/* Runs `events subscriptions ARGS --server URL` (stderr too) into out; its exit status. */
static int cli(const srv *s, buf *out, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s subscriptions %s --server %s 2>&1", events_bin(), args, s->url);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) buf_append(out, chunk, n);
    buf_cstr(out);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(test_cli_creates_lists_shows_pauses_resumes_and_deletes)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    buf o = BUF_INIT;
    CHECK_INT(0, cli(&s, &o,
                     "create --id orders --pattern 'collection.*' --url " HOOK
                     " --filter collection=orders --batch-size 10 --max-wait 2s"));
    CHECK_CONTAINS("secret          whsec_", o.p);
    CHECK_CONTAINS("maxWaitMs       2000", o.p);
    CHECK_CONTAINS("filters         {\"collection\":\"orders\"}", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "list"));
    CHECK_CONTAINS("│ orders", o.p);
    CHECK_CONTAINS("1 row", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "pause orders"));
    CHECK_CONTAINS("state           paused", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "resume orders"));
    CHECK_CONTAINS("state           active", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "show orders --json"));
    CHECK_CONTAINS("{\"subscription\":{\"id\":\"orders\"", o.p);
    CHECK_CONTAINS("\"deadLetters\":0", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "delete orders"));
    CHECK_STR("deleted orders\n", o.p);
    buf_free(&o);
    srv_lake_cleanup(&s, lake);
}

TEST(test_cli_retry_and_replay_ask_the_server)
{
    srv s = {0};
    char *lake = srv_lake_dir("subs-api"), v[128];
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    create(&s, "r", "a.*");
    buf o = BUF_INIT;
    CHECK_INT(0, cli(&s, &o, "retry r"));
    CHECK_CONTAINS("retry of the dead letters of r requested", o.p);
    o.len = 0;
    CHECK_INT(0, cli(&s, &o, "replay r --from 2026-11-25T10:00:00Z --to 1796036400000"));
    CHECK_CONTAINS("replay of r requested", o.p);
    json_t *a = call_json(&s, "GET", "/subscriptions/r", NULL, 200);
    CHECK_STR("{\"from\":1795600800000,\"to\":1796036400000,\"cursor\":\"\"}",
              field(a, "replay", v, sizeof v));
    CHECK_STR("1", field(a, "retryRequested", v, sizeof v));
    json_decref(a);
    buf_free(&o);
    srv_lake_cleanup(&s, lake);
}

TEST(test_cli_prints_the_servers_refusal_and_exits_1)
{
    const srv *s = shared_srv();
    REQUIRE(s);
    buf o = BUF_INIT;
    CHECK_INT(1, cli(s, &o, "create --pattern 'a..b' --url " HOOK));
    CHECK_CONTAINS("events subscriptions create: pattern: pattern 1 (`a..b`)", o.p);
    CHECK_CONTAINS("(HTTP 400)", o.p);
    o.len = 0;
    CHECK_INT(1, cli(s, &o, "show nope"));
    CHECK_CONTAINS("no subscription \"nope\" (HTTP 404)", o.p);
    o.len = 0;
    CHECK_INT(2, cli(s, &o, "replay x --from 1"));
    CHECK_CONTAINS("give --from TIME and --to TIME", o.p);
    o.len = 0;
    CHECK_INT(2, cli(s, &o, "create --filter nokey --pattern a --url " HOOK));
    CHECK_CONTAINS("--filter nokey: give KEY=VALUE", o.p);
    buf_free(&o);
}

TEST(test_cli_help_of_each_command)
{
    const char *cmds[] = {"create", "list", "show", "pause", "resume", "delete", "retry", "replay"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s subscriptions %s --help >/dev/null 2>&1", events_bin(),
                 cmds[i]);
        CHECK_INT(0, sh("%s", cmd));
    }
    CHECK_INT(0, sh("%s subscriptions --help | grep -q 'replay   deliver a range'", events_bin()));
}
