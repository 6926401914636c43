/*
 * test_ingest.c - request bodies: the three shapes, per-event rejection,
 * whole-body errors, limits, and gzip (including a gzip bomb).
 */
#include "harness.h"
#include "ingest.h"
#include "layout.h"
#include "test.h"
#include "ulid.h"

#include <jansson.h>
#include <stdlib.h>

typedef struct parsed {
    ingest_result r;
    char answer[8192];
} parsed;

static parsed *parse_as(const char *body, size_t n, enum ingest_format fmt, size_t max_events)
{
    parsed *p = calloc(1, sizeof *p);
    event_ctx c;
    event_ctx_init(&c);
    ingest_limits lim = {INGEST_MAX_BODY_DEFAULT, max_events};
    ingest_options o = {.request_id = "01JDX3K8Q2ZP4W6V7N9B1C2D3E"};
    ingest_parse(&c, body, n, fmt, &lim, &o, &p->r);
    buf a = BUF_INIT;
    if (!p->r.code) {
        ingest_answer(&p->r, p->r.n, 0, &a);
        snprintf(p->answer, sizeof p->answer, "%.*s", (int)a.len, a.p);
    }
    buf_free(&a);
    event_ctx_free(&c);
    return p;
}

static parsed *parse(const char *body, enum ingest_format fmt)
{
    return parse_as(body, strlen(body), fmt, 10000);
}

static void done(parsed *p)
{
    ingest_result_free(&p->r);
    free(p);
}

/* The i-th normalised line, without its newline. */
static const char *line(parsed *p, size_t i, char *out, size_t cap)
{
    const lake_event *e = &p->r.ev[i];
    snprintf(out, cap, "%.*s", (int)e->len - 1, p->r.lines.p + e->off);
    return out;
}

TEST(test_ingest_accepts_the_seed_body)
{
    parsed *p =
        parse("{\"events\":[{\"type\":\"a\"},{\"type\":\"b\",\"id\":\"x1\"}]}", INGEST_JSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(2, p->r.received);
    CHECK_INT(2, p->r.n);
    CHECK_STR("{\"ok\":true,\"received\":2,\"accepted\":2,\"duplicates\":0,\"rejected\":[]}",
              p->answer);
    char l[512];
    CHECK_CONTAINS("\"type\":\"b\"", line(p, 1, l, sizeof l));
    CHECK_INT(1, p->r.ev[1].client_id);
    CHECK(!memcmp(p->r.lines.p + p->r.ev[1].id_off, "x1", 2));
    done(p);
}

TEST(test_ingest_accepts_a_bare_array_and_ignores_other_wrapper_members)
{
    parsed *p = parse(" [ {\"type\":\"a\"} , {\"type\":\"b\"} ] \n", INGEST_JSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(2, p->r.n);
    done(p);
    p = parse("{\"source\":{\"x\":[1]},\"events\":[{\"type\":\"a\"}],\"v\":2}", INGEST_JSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(1, p->r.n);
    done(p);
    p = parse("\xef\xbb\xbf[]", INGEST_JSON); /* a byte order mark */
    CHECK_INT(0, p->r.code);
    CHECK_INT(0, p->r.received);
    done(p);
}

TEST(test_ingest_accepts_ndjson_and_skips_blank_lines)
{
    parsed *p =
        parse("{\"type\":\"a\"}\r\n\n  \n{\"type\":\"b\"}\n{\"type\":\"c\"}", INGEST_NDJSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(3, p->r.received);
    CHECK_INT(3, p->r.n);
    done(p);
}

TEST(test_ingest_rejects_bad_events_one_by_one)
{
    parsed *p = parse("{\"events\":[{\"type\":\"ok\"},{\"no\":\"type\"},17,{\"type\":\"ok\",\"id\":"
                      "\"a b\"},{\"type\":\"fine\"}]}",
                      INGEST_JSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(5, p->r.received);
    CHECK_INT(2, p->r.n);
    CHECK_INT(3, p->r.rejected);
    CHECK_STR(
        "{\"ok\":true,\"received\":5,\"accepted\":2,\"duplicates\":0,\"rejected\":["
        "{\"index\":1,\"error\":\"\\\"type\\\" is required\"},"
        "{\"index\":2,\"error\":\"event must be a JSON object\"},"
        "{\"index\":3,\"error\":\"\\\"id\\\" must be 1-64 characters of [0-9A-Za-z_.:-]\"}],"
        "\"rejectedCount\":3,\"requestId\":\"01JDX3K8Q2ZP4W6V7N9B1C2D3E\",\"quarantine\":"
        "\"the refused records are kept in the lake: SELECT * FROM rejected WHERE requestId = "
        "'01JDX3K8Q2ZP4W6V7N9B1C2D3E'\"}",
        p->answer);
    done(p);
}

TEST(test_ingest_rejects_bad_ndjson_lines_one_by_one)
{
    parsed *p = parse("{\"type\":\"a\"}\n{\"type\":\n{\"type\":\"b\"} trailing\n{\"type\":\"c\"}\n",
                      INGEST_NDJSON);
    CHECK_INT(0, p->r.code);
    CHECK_INT(4, p->r.received);
    CHECK_INT(2, p->r.n);
    CHECK_STR(
        "{\"ok\":true,\"received\":4,\"accepted\":2,\"duplicates\":0,\"rejected\":["
        "{\"index\":1,\"error\":\"malformed JSON at byte 8 of the line: unexpected end of input\"},"
        "{\"index\":2,\"error\":\"unexpected data after the event on its line\"}],"
        "\"rejectedCount\":2,\"requestId\":\"01JDX3K8Q2ZP4W6V7N9B1C2D3E\",\"quarantine\":"
        "\"the refused records are kept in the lake: SELECT * FROM rejected WHERE requestId = "
        "'01JDX3K8Q2ZP4W6V7N9B1C2D3E'\"}",
        p->answer);
    char l[512];
    CHECK_CONTAINS("\"type\":\"c\"", line(p, 1, l, sizeof l));
    done(p);
}

TEST(test_ingest_fails_whole_bodies_that_are_not_json)
{
    static const struct {
        const char *body;
        enum ingest_format fmt;
        int code;
        const char *error;
    } t[] = {
        {"", INGEST_JSON, INGEST_EINVAL, "empty body"},
        {"   ", INGEST_JSON, INGEST_EINVAL, "empty body"},
        {"{\"events\":[{\"type\":\"a\"}", INGEST_JSON, INGEST_EINVAL,
         "malformed JSON at byte 23: expected ',' or ']' in the events array"},
        {"{\"events\":[{\"type\":\"a\",]}", INGEST_JSON, INGEST_EINVAL,
         "malformed JSON at byte 23: expected a string key in object"},
        {"not json", INGEST_JSON, INGEST_EINVAL, "malformed JSON at byte 0: invalid literal"},
        {"@", INGEST_JSON, INGEST_EINVAL, "malformed JSON at byte 0: unexpected character"},
        {"{\"type\":\"a\"}", INGEST_JSON, INGEST_EINVAL,
         "body is a JSON object without \"events\": send {\"events\":[...]}, a JSON array of "
         "events, or NDJSON"},
        {"{\"events\":{}}", INGEST_JSON, INGEST_EINVAL, "\"events\" must be an array"},
        {"{\"events\":[],\"events\":[]}", INGEST_JSON, INGEST_EINVAL,
         "duplicate key \"events\" in the body"},
        {"\"events\"", INGEST_JSON, INGEST_EINVAL,
         "body must be {\"events\":[...]}, a JSON array of events, or NDJSON"},
        {"[{\"type\":\"a\"}]\n[{\"type\":\"b\"}]", INGEST_JSON, INGEST_EINVAL,
         "unexpected data after the JSON body at byte 15 (for one event per line, send "
         "Content-Type: "
         "application/x-ndjson)"},
        {"{\"x\":\"\xff\",\"events\":[]}", INGEST_JSON, INGEST_EINVAL,
         "invalid UTF-8 in string at byte 6 of the body"},
        {"garbage\nmore garbage\n", INGEST_NDJSON, INGEST_EINVAL,
         "body is not NDJSON: line 1: malformed JSON at byte 0 of the line: unexpected character"},
        {"\n\n", INGEST_NDJSON, INGEST_EINVAL, "empty body"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        parsed *p = parse(t[i].body, t[i].fmt);
        if (p->r.code != t[i].code || strcmp(p->r.error, t[i].error))
            test_fail(__FILE__, __LINE__, "body #%zu: expected %d \"%s\", got %d \"%s\"", i,
                      t[i].code, t[i].error, p->r.code, p->r.error);
        done(p);
    }
}

TEST(test_ingest_limits_events_per_request)
{
    buf b = BUF_INIT;
    buf_puts(&b, "[");
    for (int i = 0; i < 11; i++) buf_printf(&b, "%s{\"type\":\"a\"}", i ? "," : "");
    buf_puts(&b, "]");
    parsed *p = parse_as(b.p, b.len, INGEST_JSON, 10);
    CHECK_INT(INGEST_EBIG, p->r.code);
    CHECK_STR("more than 10 events in one request", p->r.error);
    done(p);
    p = parse_as(b.p, b.len, INGEST_JSON, 11);
    CHECK_INT(0, p->r.code);
    done(p);
    buf_free(&b);
}

TEST(test_ingest_gunzip_round_trips)
{
    const char *body = "{\"events\":[{\"type\":\"a\"}]}";
    buf gz = BUF_INIT, out = BUF_INIT;
    REQUIRE_INT(0, gzip_bytes(body, strlen(body), &gz));
    char err[256] = "";
    CHECK_INT(0, ingest_gunzip(gz.p, gz.len, 1 << 20, &out, err, sizeof err));
    CHECK(out.len == strlen(body) && !memcmp(out.p, body, out.len));
    /* two concatenated gzip members are one body */
    buf two = BUF_INIT;
    buf_append(&two, gz.p, gz.len);
    buf_append(&two, gz.p, gz.len);
    out.len = 0;
    CHECK_INT(0, ingest_gunzip(two.p, two.len, 1 << 20, &out, err, sizeof err));
    CHECK_INT(2 * strlen(body), out.len);
    buf_free(&two);
    buf_free(&gz);
    buf_free(&out);
}

TEST(test_ingest_gunzip_refuses_bombs_and_garbage)
{
    size_t n = 64u << 20; /* 64 MiB of zeros compresses to about 64 KiB */
    char *zeros = calloc(1, n);
    buf gz = BUF_INIT, out = BUF_INIT;
    REQUIRE_INT(0, gzip_bytes(zeros, n, &gz));
    free(zeros);
    CHECK(gz.len < 200000);
    char err[256] = "";
    CHECK_INT(INGEST_EBIG, ingest_gunzip(gz.p, gz.len, 8u << 20, &out, err, sizeof err));
    CHECK_STR("body inflates past the limit of 8388608 bytes", err);
    CHECK(out.cap <= (8u << 20) * 2 + 4096); /* never allocated the whole bomb */

    out.len = 0;
    CHECK_INT(INGEST_EINVAL, ingest_gunzip("not gzip at all", 15, 1 << 20, &out, err, sizeof err));
    CHECK_STR("invalid gzip body: incorrect header check", err);
    out.len = 0;
    CHECK_INT(INGEST_EINVAL, ingest_gunzip(gz.p, 100, 1 << 30, &out, err, sizeof err));
    CHECK_STR("truncated gzip body", err);
    buf_free(&gz);
    buf_free(&out);
}

/* ---- refused records: the quarantine and a small answer (issue 13) ---- */

static parsed *parse_with(const char *body, size_t n, enum ingest_format fmt,
                          const ingest_options *o, size_t max_body)
{
    parsed *p = calloc(1, sizeof *p);
    event_ctx c;
    event_ctx_init(&c);
    event_ctx_set_now(&c, INT64_C(1795600800123));
    ingest_limits lim = {max_body, ingest_max_events_for(max_body)};
    ingest_parse(&c, body, n, fmt, &lim, o, &p->r);
    buf a = BUF_INIT;
    if (!p->r.code) {
        ingest_answer(&p->r, p->r.n, 0, &a);
        snprintf(p->answer, sizeof p->answer, "%.*s", (int)a.len, a.p);
    }
    buf_free(&a);
    event_ctx_free(&c);
    return p;
}

TEST(test_ingest_answer_stays_under_4_kib_for_50000_refused_records)
{
    /* every kind of refusal, the longest reasons among them: a duplicate key of 64 control
     * characters is quoted in its reason with an escape of 6 bytes each */
    buf b = BUF_INIT, key = BUF_INIT;
    for (int i = 0; i < 64; i++) buf_puts(&key, "\\u0001");
    buf_cstr(&key);
    buf_putc(&b, '[');
    for (int i = 0; i < 50000; i++) {
        if (i) buf_putc(&b, ',');
        switch (i % 5) {
        case 0: buf_printf(&b, "{\"type\":\"a\",\"%s\":1,\"%s\":2}", key.p, key.p); break;
        case 1: buf_printf(&b, "{\"log\":\"line %d\"}", i); break;
        case 2: buf_printf(&b, "{\"type\":\"Bad Type %d\"}", i); break;
        case 3: buf_printf(&b, "{\"type\":\"a\",\"ts\":\"the %dth\"}", i); break;
        default: buf_printf(&b, "%d", i);
        }
    }
    buf_putc(&b, ']');
    ingest_options o = {.request_id = "01JDX3K8Q2ZP4W6V7N9B1C2D3E"};
    parsed *p = parse_with(b.p, b.len, INGEST_JSON, &o, INGEST_MAX_BODY_DEFAULT);
    REQUIRE_INT(0, p->r.code);
    CHECK_INT(50000, p->r.received);
    CHECK_INT(50000, p->r.rejected);
    CHECK_INT(50000, p->r.qn);
    size_t len = strlen(p->answer);
    if (len > 3072) /* the rest of 4 KiB is for the status line and headers */
        test_fail(__FILE__, __LINE__, "the answer is %zu bytes, over 3072: %s", len, p->answer);
    json_t *a = json_loads(p->answer, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_INT(50000, json_integer_value(json_object_get(a, "rejectedCount")));
    json_t *list = json_object_get(a, "rejected");
    CHECK_INT(INGEST_REJECTED_LISTED, json_array_size(list));
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        CHECK_INT(i, json_integer_value(json_object_get(x, "index")));
        buf e = BUF_INIT;
        const char *why = json_string_value(json_object_get(x, "error"));
        buf_json_str(&e, why, strlen(why));
        if (e.len > INGEST_REASON_SHOWN)
            test_fail(__FILE__, __LINE__, "reason %zu is %zu bytes as JSON: %s", i, e.len, why);
        buf_free(&e);
    }
    /* the first reason is the duplicate key, cut with an ellipsis */
    CHECK_CONTAINS("duplicate key \\\"\\\\u0001", p->answer);
    CHECK_CONTAINS("\xe2\x80\xa6\"}", p->answer);
    CHECK_INT(10000, p->r.rejected_by[EVENT_R_DUPLICATE_KEY]);
    CHECK_INT(10000, p->r.rejected_by[EVENT_R_TYPE] - 10000); /* missing, and of the wrong form */
    CHECK_INT(10000, p->r.rejected_by[EVENT_R_TS]);
    CHECK_INT(10000, p->r.rejected_by[EVENT_R_NOT_OBJECT]);
    json_decref(a);
    done(p);
    /* asked for, every one of them is listed */
    o.list_all = 1;
    ingest_result r;
    memset(&r, 0, sizeof r);
    event_ctx c;
    event_ctx_init(&c);
    ingest_limits lim = {INGEST_MAX_BODY_DEFAULT, ingest_max_events_for(INGEST_MAX_BODY_DEFAULT)};
    ingest_parse(&c, b.p, b.len, INGEST_JSON, &lim, &o, &r);
    buf all = BUF_INIT;
    ingest_answer(&r, 0, 0, &all);
    a = json_loadb(all.p, all.len, 0, NULL);
    CHECK_INT(50000, json_array_size(json_object_get(a, "rejected")));
    json_decref(a);
    buf_free(&all);
    ingest_result_free(&r);
    event_ctx_free(&c);
    buf_free(&b);
    buf_free(&key);
}

/* The quarantine line of record i of r, parsed. */
static json_t *quarantined(const parsed *p, size_t i)
{
    const lake_event *e = &p->r.qev[i];
    json_error_t err;
    json_t *v = json_loadb(p->r.qlines.p + e->off, e->len - 1, JSON_REJECT_DUPLICATES, &err);
    if (!v) test_fail(__FILE__, __LINE__, "quarantine line %zu: %s", i, err.text);
    return v;
}

TEST(test_ingest_keeps_every_refused_record_in_a_quarantine_line)
{
    const char body[] = "{\"type\":\"ok\"}\n"
                        "{\"log\":\"hello\",\"level\":\"info\"}\n"
                        "  {\"type\":\"a\",\"s\":\"caf\xe9\"} \r\n"
                        "{\"type\":\n"
                        "{\"type\":\"ok\"} trailing\n";
    ingest_options o = {
        .token = "shipper", .route = "/e", .request_id = "01JDX3K8Q2ZP4W6V7N9B1C2D3F"};
    parsed *p = parse_with(body, sizeof body - 1, INGEST_NDJSON, &o, INGEST_MAX_BODY_DEFAULT);
    REQUIRE_INT(0, p->r.code);
    CHECK_INT(1, p->r.n);
    REQUIRE_INT(4, p->r.qn);
    static const struct {
        int index;
        const char *cls, *reason, *raw, *b64;
    } want[] = {
        {1, "type", "\"type\" is required", "{\"log\":\"hello\",\"level\":\"info\"}", NULL},
        {2, "encoding", "invalid UTF-8 in string at byte 20 of the event", NULL,
         "eyJ0eXBlIjoiYSIsInMiOiJjYWbpIn0="},
        {3, "syntax", "malformed JSON at byte 8 of the line: unexpected end of input",
         "{\"type\":", NULL},
        {4, "syntax", "unexpected data after the event on its line", "{\"type\":\"ok\"} trailing",
         NULL},
    };
    for (size_t i = 0; i < 4; i++) {
        json_t *q = quarantined(p, i);
        if (!q) continue;
        const char *line = p->r.qlines.p + p->r.qev[i].off;
        CHECK(!strncmp(line, "{\"id\":\"", 7)); /* the id first, as in an event line */
        const char *id = json_string_value(json_object_get(q, "id"));
        CHECK(id && ulid_valid(id, strlen(id)));
        CHECK(!memcmp(line + p->r.qev[i].id_off - p->r.qev[i].off, id, 26));
        CHECK_STR("2026-11-25T10:00:00.123Z", json_string_value(json_object_get(q, "receivedAt")));
        CHECK_STR("01JDX3K8Q2ZP4W6V7N9B1C2D3F", json_string_value(json_object_get(q, "requestId")));
        CHECK_INT(want[i].index, json_integer_value(json_object_get(q, "index")));
        CHECK_STR(want[i].cls, json_string_value(json_object_get(q, "class")));
        CHECK_STR(want[i].reason, json_string_value(json_object_get(q, "reason")));
        CHECK_STR("shipper", json_string_value(json_object_get(q, "token")));
        CHECK_STR("/e", json_string_value(json_object_get(q, "route")));
        if (want[i].raw) {
            CHECK_STR(want[i].raw, json_string_value(json_object_get(q, "raw")));
            CHECK(!json_object_get(q, "rawBase64"));
        } else {
            CHECK(json_is_null(json_object_get(q, "raw")));
            CHECK_STR(want[i].b64, json_string_value(json_object_get(q, "rawBase64")));
        }
        CHECK_INT(lake_hour(INT64_C(1795600800123)), p->r.qev[i].hour);
        json_decref(q);
    }
    /* without a token and a route: null, and /ingest */
    done(p);
    p = parse_with("[{}]", 4, INGEST_JSON, NULL, INGEST_MAX_BODY_DEFAULT);
    REQUIRE_INT(1, p->r.qn);
    json_t *q = quarantined(p, 0);
    CHECK(json_is_null(json_object_get(q, "token")));
    CHECK_STR("/ingest", json_string_value(json_object_get(q, "route")));
    CHECK_STR("{}", json_string_value(json_object_get(q, "raw")));
    json_decref(q);
    done(p);
}

TEST(test_ingest_gives_typeless_events_the_type_and_time_member_of_the_request)
{
    const char body[] =
        "[{\"log\":\"a\",\"date\":1795600800.5},{\"type\":\"own.type\",\"log\":\"b\"},"
        "{\"type\":null,\"date\":\"2026-11-25 10:00:01.250\"}]";
    ingest_options o = {.type = "log.app", .ts_key = "date", .request_id = "r"};
    parsed *p = parse_with(body, sizeof body - 1, INGEST_JSON, &o, INGEST_MAX_BODY_DEFAULT);
    REQUIRE_INT(0, p->r.code);
    REQUIRE_INT(3, p->r.n);
    char l[512];
    CHECK_CONTAINS("\"type\":\"log.app\",\"ts\":\"2026-11-25T10:00:00.500Z\"",
                   line(p, 0, l, sizeof l));
    CHECK_CONTAINS("\"date\":1795600800.5", line(p, 0, l, sizeof l));
    CHECK_CONTAINS("\"type\":\"own.type\"", line(p, 1, l, sizeof l));
    CHECK_CONTAINS("\"type\":\"log.app\",\"ts\":\"2026-11-25T10:00:01.250Z\"",
                   line(p, 2, l, sizeof l));
    done(p);
    /* without them, the typeless are refused, and kept */
    p = parse_with(body, sizeof body - 1, INGEST_JSON, NULL, INGEST_MAX_BODY_DEFAULT);
    CHECK_INT(1, p->r.n);
    CHECK_INT(2, p->r.qn);
    done(p);
    char err[400];
    CHECK_INT(0, ingest_options_check("log.app", "@timestamp", err, sizeof err));
    CHECK_INT(-1, ingest_options_check("Log.App", NULL, err, sizeof err));
    CHECK_STR("type \"Log.App\" is not an event type: it must match [a-z0-9_]+(.[a-z0-9_-]+)* and "
              "be at most 128 bytes",
              err);
    CHECK_INT(-1, ingest_options_check(NULL, "type", err, sizeof err));
    CHECK_STR("ts_key \"type\" cannot name the time member: it must be 1-64 of [A-Za-z0-9_.@$-] "
              "and not id, type, do or receivedAt",
              err);
}

TEST(test_ingest_takes_a_full_body_of_the_smallest_events_by_default)
{
    /* "{}," to the last byte of the body limit: as many events as the limit can hold */
    size_t max = 1u << 20;
    buf b = BUF_INIT;
    buf_putc(&b, '[');
    while (b.len + 3 <= max) buf_puts(&b, "{},");
    b.p[b.len - 1] = ']';
    ingest_options o = {.type = "t", .request_id = "r"};
    parsed *p = parse_with(b.p, b.len, INGEST_JSON, &o, max);
    CHECK_INT(0, p->r.code);
    CHECK_INT((max - 1) / 3, p->r.n);
    done(p);
    /* NDJSON, where the last line needs no newline: the most events any body can hold */
    max += 1; /* 3k + 2 bytes: k lines and a last "{}" */
    b.len = 0;
    size_t k = 0;
    for (; b.len + 3 <= max; k++) buf_puts(&b, "{}\n");
    if (b.len + 2 <= max) buf_puts(&b, "{}"), k++;
    p = parse_with(b.p, b.len, INGEST_NDJSON, &o, max);
    CHECK_INT(0, p->r.code);
    CHECK_INT(ingest_max_events_for(max), k);
    CHECK_INT(k, p->r.n);
    done(p);
    buf_free(&b);
}
