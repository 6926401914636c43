/*
 * test_model.c - the event model: JSON scanning, event validation and
 * normalisation, time, ULIDs, SipHash.
 */
#include "codec.h"
#include "event.h"
#include "evrand.h"
#include "evtime.h"
#include "jscan.h"
#include "siphash.h"
#include "test.h"
#include "ulid.h"

#include <stdlib.h>
#include <time.h>

/* ---- jscan ---- */

static const char *scan(const char *s, enum jtype *t, jscan *js)
{
    memset(js, 0, sizeof *js);
    return jscan_value(js, s, s + strlen(s), t);
}

TEST(test_jscan_accepts_every_json_type)
{
    static const struct {
        const char *in;
        enum jtype t;
        unsigned depth;
    } ok[] = {
        {"{}", J_OBJ, 1},
        {"[]", J_ARR, 1},
        {"\"x\"", J_STR, 0},
        {"0", J_NUM, 0},
        {"-12.5e+3", J_NUM, 0},
        {"true", J_TRUE, 0},
        {"false", J_FALSE, 0},
        {"null", J_NULL, 0},
        {"[[[1]]]", J_ARR, 3},
        {"{\"a\":{\"b\":[{}]}}", J_OBJ, 4},
        {"[1, 2 ,\n3]", J_ARR, 1},
        {"\"\\u00e9\\ud83d\\ude00\\n\\/\"", J_STR, 0},
        {"\"h\xc3\xa9 \xf0\x9f\x98\x80\"", J_STR, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        jscan s;
        enum jtype t;
        const char *end = scan(ok[i].in, &t, &s);
        if (!end || *end || t != ok[i].t || s.depth != ok[i].depth || s.bad)
            test_fail(__FILE__, __LINE__, "input %s: end=%s type=%d depth=%u bad=%s err=%s",
                      ok[i].in, end ? end : "NULL", t, s.depth, s.bad ? s.bad : "-",
                      s.err ? s.err : "-");
    }
}

TEST(test_jscan_rejects_syntax_errors_with_position)
{
    static const struct {
        const char *in;
        const char *err;
        int at;
    } bad[] = {
        {"{", "unexpected end of input", 1},
        {"{\"a\" 1}", "expected ':' after key", 5},
        {"[1,]", "unexpected character", 3},
        {"[1 2]", "expected ',' or ']' in array", 3},
        {"{\"a\":1,}", "expected a string key in object", 7},
        {"01", NULL, 0}, /* a value "0" followed by data: the caller sees the rest */
        {"-", "invalid number", 0},
        {"1.", "invalid number", 0},
        {"1e", "invalid number", 0},
        {"tru", "invalid literal", 0},
        {"\"abc", "unterminated string", 0},
        {"NaN", "unexpected character", 0},
        {"{'a':1}", "expected a string key in object", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jscan s;
        enum jtype t;
        const char *end = scan(bad[i].in, &t, &s);
        if (!bad[i].err) {
            CHECK(end && *end == '1');
            continue;
        }
        if (end || !s.err || strcmp(s.err, bad[i].err) || s.err_at - bad[i].in != bad[i].at)
            test_fail(__FILE__, __LINE__, "input %s: expected error \"%s\" at %d, got \"%s\" at %d",
                      bad[i].in, bad[i].err, bad[i].at, s.err ? s.err : "none",
                      s.err ? (int)(s.err_at - bad[i].in) : -1);
    }
}

TEST(test_jscan_reports_defects_but_finds_the_end)
{
    static const struct {
        const char *in;
        const char *bad;
    } d[] = {
        {"[\"a\xff\"]", "invalid UTF-8 in string"},
        {"[\"\xc0\x80\"]", "invalid UTF-8 in string"},         /* overlong */
        {"[\"\xed\xa0\x80\"]", "invalid UTF-8 in string"},     /* encoded surrogate */
        {"[\"\xf4\x90\x80\x80\"]", "invalid UTF-8 in string"}, /* above U+10FFFF */
        {"[\"a\tb\"]", "control character in string (must be escaped)"},
        {"[\"\\x\"]", "invalid escape in string"},
        {"[\"\\u12\"]", "invalid \\u escape in string"},
        {"[\"\\ud800\"]", "lone surrogate in \\u escape"},
        {"[\"\\udc00x\"]", "lone surrogate in \\u escape"},
        {"[\"\\u0000\"]", "\\u0000 is not allowed in strings"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        jscan s;
        enum jtype t;
        const char *end = scan(d[i].in, &t, &s);
        if (!end || *end || !s.bad || strcmp(s.bad, d[i].bad))
            test_fail(__FILE__, __LINE__, "input #%zu: expected defect \"%s\", got \"%s\" (end %s)",
                      i, d[i].bad, s.bad ? s.bad : "none", end ? "ok" : s.err);
    }
}

TEST(test_jscan_limits_nesting_to_4096)
{
    char *deep = malloc(2 * 4097 + 1);
    for (int i = 0; i < 4097; i++) deep[i] = '[', deep[4097 + i] = ']';
    deep[2 * 4097] = 0;
    jscan s;
    enum jtype t;
    CHECK(scan(deep, &t, &s) == NULL);
    CHECK_STR("nesting deeper than 4096 levels", s.err);
    deep[0] = ' ', deep[2 * 4097 - 1] = 0;
    CHECK(scan(deep + 1, &t, &s) != NULL);
    CHECK_INT(4096, s.depth);
    free(deep);
}

TEST(test_jscan_minify_keeps_whitespace_inside_strings)
{
    const char *in = "{ \"a b\" : [ 1 , \"x \\\" y\" ] ,\n\t\"c\":true }";
    char out[128];
    size_t n = jscan_minify(in, in + strlen(in), out);
    out[n] = 0;
    CHECK_STR("{\"a b\":[1,\"x \\\" y\"],\"c\":true}", out);
}

TEST(test_jscan_unescape_decodes_utf8)
{
    const char *in = "a\\u00e9\\ud83d\\ude00\\n\\\"";
    char out[32];
    size_t n = jscan_unescape(in, in + strlen(in), out, sizeof out);
    CHECK_INT(1 + 2 + 4 + 1 + 1, n);
    CHECK(!memcmp(out, "a\xc3\xa9\xf0\x9f\x98\x80\n\"", n));
}

/* ---- event normalisation ---- */

typedef struct norm {
    int rc;
    char line[4096];
    char why[256];
    event_info info;
} norm;

static norm normalise(const char *ev)
{
    norm r = {0};
    event_ctx c;
    event_ctx_init(&c);
    event_ctx_set_now(&c, INT64_C(1795600800123)); /* 2026-11-25T10:00:00.123Z */
    buf out = BUF_INIT;
    jscan s = {0};
    const char *next = NULL;
    r.rc = event_normalise(&c, &s, ev, ev + strlen(ev), &next, &out, &r.info, r.why, sizeof r.why);
    if (r.rc == EVENT_OK) snprintf(r.line, sizeof r.line, "%.*s", (int)out.len, out.p);
    if (r.rc == EVENT_SYNTAX) snprintf(r.why, sizeof r.why, "syntax: %s", s.err);
    buf_free(&out);
    event_ctx_free(&c);
    return r;
}

TEST(test_event_normalise_fills_id_ts_and_received_at)
{
    norm r = normalise("{\"type\":\"rpc.call\",\"method\":\"send\",\"durationMs\":12}");
    REQUIRE_INT(EVENT_OK, r.rc);
    CHECK_INT(0, r.info.client_id);
    CHECK_INT(26, r.info.id_len);
    /* {"id":"<26>","type":… */
    char expect[512];
    snprintf(expect, sizeof expect,
             "{\"id\":\"%.26s\",\"type\":\"rpc.call\",\"ts\":\"2026-11-25T10:00:00.123Z\","
             "\"receivedAt\":\"2026-11-25T10:00:00.123Z\",\"method\":\"send\",\"durationMs\":12}\n",
             r.line + 7);
    CHECK_STR(expect, r.line);
    CHECK(ulid_valid(r.line + 7, 26));
    CHECK_INT(INT64_C(1795600800123), ulid_time(r.line + 7));
    CHECK_INT(INT64_C(1795600800123), r.info.ts_ms);
}

TEST(test_event_normalise_keeps_client_id_and_converts_ts_to_utc)
{
    norm r = normalise("{ \"do\" : {\"id\":\"r1\", \"class\":\"ChatRoom\"},\n "
                       "\"ts\":\"2026-11-25T12:30:00.5+02:00\","
                       " \"type\":\"do.alarm\", \"id\":\"01JDX3K8Q2ZP4W6V7N9B1C2D3E\", "
                       "\"receivedAt\":\"x\", \"n\":[1, 2]}");
    REQUIRE_INT(EVENT_OK, r.rc);
    CHECK_STR("{\"id\":\"01JDX3K8Q2ZP4W6V7N9B1C2D3E\",\"type\":\"do.alarm\",\"ts\":\"2026-11-25T10:"
              "30:00.500Z\","
              "\"receivedAt\":\"2026-11-25T10:00:00.123Z\",\"do\":{\"id\":\"r1\",\"class\":"
              "\"ChatRoom\"},\"n\":[1,2]}\n",
              r.line);
    CHECK_INT(1, r.info.client_id);
    CHECK_INT(7, r.info.id_off);
}

TEST(test_event_normalise_accepts_epoch_milliseconds)
{
    norm r = normalise("{\"type\":\"a\",\"ts\":1795600800123}");
    REQUIRE_INT(EVENT_OK, r.rc);
    CHECK_CONTAINS("\"ts\":\"2026-11-25T10:00:00.123Z\"", r.line);
}

/* The stored ts of {"type":"a","ts":TS}, or the rejection. */
static const char *ts_of(const char *ts, char *out, size_t cap)
{
    char ev[256];
    snprintf(ev, sizeof ev, "{\"type\":\"a\",\"ts\":%s}", ts);
    norm r = normalise(ev);
    const char *t = strstr(r.line, "\"ts\":\"");
    if (r.rc == EVENT_OK && t)
        snprintf(out, cap, "%.24s", t + 6);
    else
        snprintf(out, cap, "refused: %s", r.why);
    return out;
}

TEST(test_event_normalise_reads_every_timestamp_form_shippers_send)
{
    static const struct {
        const char *in, *out;
    } t[] = {
        /* ISO 8601 */
        {"\"2026-11-25T10:00:00.123Z\"", "2026-11-25T10:00:00.123Z"},
        {"\"2026-11-25T12:00:00.5+02:00\"", "2026-11-25T10:00:00.500Z"},
        {"\"2026-11-25T12:00:00+0200\"", "2026-11-25T10:00:00.000Z"},
        {"\"2026-11-25T12:00:00.25+02\"", "2026-11-25T10:00:00.250Z"},
        {"\"2026-11-25T10:00:00,75Z\"", "2026-11-25T10:00:00.750Z"},
        {"\"2026-11-25T10:00:00\"", "2026-11-25T10:00:00.000Z"},        /* no zone: UTC */
        {"\"2026-11-25 10:00:00.123456\"", "2026-11-25T10:00:00.123Z"}, /* java_sql_timestamp */
        {"\"2026-11-25 10:00:00.123456Z\"", "2026-11-25T10:00:00.123Z"},
        /* epoch seconds, with a fraction (Fluent Bit's double), milli-, micro-, nanoseconds */
        {"1795600800", "2026-11-25T10:00:00.000Z"},
        {"1795600800.123456", "2026-11-25T10:00:00.123Z"},
        {"1795600800.1", "2026-11-25T10:00:00.100Z"},
        {"1.7956008001239e9", "2026-11-25T10:00:00.123Z"},
        {"1795600800123", "2026-11-25T10:00:00.123Z"},
        {"1795600800123.999", "2026-11-25T10:00:00.123Z"},
        {"1795600800123456", "2026-11-25T10:00:00.123Z"},
        {"1795600800123456789", "2026-11-25T10:00:00.123Z"},
        {"1795600800123456789.5", "2026-11-25T10:00:00.123Z"},
        {"0", "1970-01-01T00:00:00.000Z"},
        {"-0", "1970-01-01T00:00:00.000Z"},
        {"0.0009", "1970-01-01T00:00:00.000Z"},
        /* the boundaries between the units: below 1e11 s, 1e14 ms, 1e17 us, else ns */
        {"99999999999", "5138-11-16T09:46:39.000Z"},
        {"99999999999.999", "5138-11-16T09:46:39.999Z"},
        {"100000000000", "1973-03-03T09:46:40.000Z"},
        {"1e11", "1973-03-03T09:46:40.000Z"},
        {"99999999999999", "5138-11-16T09:46:39.999Z"},
        {"100000000000000", "1973-03-03T09:46:40.000Z"},
        {"99999999999999999", "5138-11-16T09:46:39.999Z"},
        {"100000000000000000", "1973-03-03T09:46:40.000Z"},
        {"253402300799999", "1978-01-11T21:31:40.799Z"}, /* 15 digits: microseconds */
        {"253402300799999999999", "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char got[320];
        ts_of(t[i].in, got, sizeof got);
        if (strcmp(got, t[i].out))
            test_fail(__FILE__, __LINE__, "ts %s:\n  expected %s\n  got      %s", t[i].in, t[i].out,
                      got);
    }
    static const char *bad[] = {"253402300800000000000",
                                "1e300",
                                "-1",
                                "-0.5",
                                "\"2026-11-25T10:00Z\"",
                                "\"2026-11-25\"",
                                "\"2026-11-25T10:00:00+2\"",
                                "\"1795600800\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char got[320];
        ts_of(bad[i], got, sizeof got);
        if (strncmp(got, "refused: ", 9))
            test_fail(__FILE__, __LINE__, "ts %s was accepted as %s", bad[i], got);
    }
}

TEST(test_event_normalise_reads_the_time_from_the_ts_key_member)
{
    event_ctx c;
    event_ctx_init(&c);
    event_ctx_set_now(&c, INT64_C(1795600800123));
    c.ts_key = "date";
    c.ts_key_len = 4;
    static const struct {
        const char *in, *out;
    } t[] = {
        /* the member is kept as sent; ts is the normalised time */
        {"{\"type\":\"a\",\"date\":1795600800.5,\"log\":\"x\"}",
         "\"type\":\"a\",\"ts\":\"2026-11-25T10:00:00.500Z\",\"receivedAt\":\"2026-11-25T10:00:00."
         "123Z\","
         "\"date\":1795600800.5,\"log\":\"x\"}"},
        /* ts, when the event has one, wins */
        {"{\"type\":\"a\",\"ts\":\"2026-11-25T09:00:00Z\",\"date\":1795600800}",
         "\"type\":\"a\",\"ts\":\"2026-11-25T09:00:00.000Z\",\"receivedAt\":\"2026-11-25T10:00:00."
         "123Z\","
         "\"date\":1795600800}"},
        /* neither: the receive time */
        {"{\"type\":\"a\",\"date\":null}", "\"type\":\"a\",\"ts\":\"2026-11-25T10:00:00.123Z\","
                                           "\"receivedAt\":\"2026-11-25T10:00:00.123Z\","
                                           "\"date\":null}"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf out = BUF_INIT;
        jscan s = {0};
        const char *next;
        event_info info;
        char why[256];
        int rc = event_normalise(&c, &s, t[i].in, t[i].in + strlen(t[i].in), &next, &out, &info,
                                 why, sizeof why);
        CHECK_INT(EVENT_OK, rc);
        if (rc == EVENT_OK) {
            buf_cstr(&out);
            CHECK_CONTAINS(t[i].out, out.p);
        }
        buf_free(&out);
    }
    const char *bad = "{\"type\":\"a\",\"date\":\"last tuesday\"}";
    buf out = BUF_INIT;
    jscan s = {0};
    const char *next;
    event_info info;
    char why[256];
    CHECK_INT(EVENT_REJECTED,
              event_normalise(&c, &s, bad, bad + strlen(bad), &next, &out, &info, why, sizeof why));
    CHECK_STR("\"date\" must be an ISO 8601 time between 1970 and 9999", why);
    CHECK_INT(EVENT_R_TS, c.reason);
    buf_free(&out);
    event_ctx_free(&c);
    CHECK(event_ts_key_valid("@timestamp", 10));
    CHECK(event_ts_key_valid("ts", 2));
    CHECK(!event_ts_key_valid("type", 4));
    CHECK(!event_ts_key_valid("a b", 3));
    CHECK(!event_ts_key_valid("", 0));
}

TEST(test_event_normalise_gives_a_default_type_to_events_without_one)
{
    event_ctx c;
    event_ctx_init(&c);
    event_ctx_set_now(&c, INT64_C(1795600800123));
    c.default_type = "log.app";
    c.default_type_len = 7;
    static const struct {
        const char *in, *type;
    } t[] = {{"{}", "log.app"},
             {"{\"log\":\"x\"}", "log.app"},
             {"{\"type\":null,\"log\":\"x\"}", "log.app"},
             {"{\"type\":\"own.type\"}", "own.type"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf out = BUF_INIT;
        jscan s = {0};
        const char *next;
        event_info info;
        char why[256], want[64];
        int rc = event_normalise(&c, &s, t[i].in, t[i].in + strlen(t[i].in), &next, &out, &info,
                                 why, sizeof why);
        CHECK_INT(EVENT_OK, rc);
        snprintf(want, sizeof want, "\"type\":\"%s\",\"ts\"", t[i].type);
        if (rc == EVENT_OK) CHECK_CONTAINS(want, buf_cstr(&out));
        buf_free(&out);
    }
    /* a type of the wrong form stays refused: the default is for events without one */
    const char *bad = "{\"type\":\"Log\"}";
    buf out = BUF_INIT;
    jscan s = {0};
    const char *next;
    event_info info;
    char why[256];
    CHECK_INT(EVENT_REJECTED,
              event_normalise(&c, &s, bad, bad + strlen(bad), &next, &out, &info, why, sizeof why));
    CHECK_INT(EVENT_R_TYPE, c.reason);
    buf_free(&out);
    event_ctx_free(&c);
}

TEST(test_event_normalise_treats_null_id_and_ts_as_absent)
{
    norm r = normalise("{\"type\":\"a\",\"id\":null,\"ts\":null}");
    REQUIRE_INT(EVENT_OK, r.rc);
    CHECK_INT(0, r.info.client_id);
    CHECK_CONTAINS("\"ts\":\"2026-11-25T10:00:00.123Z\"", r.line);
}

#define NUMBER_RULE                                                                                \
    "\"ts\" as a number must be epoch seconds, milliseconds, microseconds or nanoseconds "         \
    "between 1970 and 9999"

TEST(test_event_normalise_rejects_each_bad_envelope)
{
    static const struct {
        const char *in;
        const char *why;
    } bad[] = {
        {"[1]", "event must be a JSON object"},
        {"\"x\"", "event must be a JSON object"},
        {"{}", "\"type\" is required"},
        {"{\"type\":5}", "\"type\" must be a string"},
        {"{\"type\":\"Rpc.Call\"}",
         "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes"},
        {"{\"type\":\"a..b\"}",
         "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes"},
        {"{\"type\":\"-a\"}",
         "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes"},
        {"{\"type\":\"a.\"}",
         "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes"},
        {"{\"type\":\"\"}",
         "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes"},
        {"{\"type\":\"a\",\"id\":7}", "\"id\" must be a string"},
        {"{\"type\":\"a\",\"id\":\"\"}", "\"id\" must be 1-64 characters of [0-9A-Za-z_.:-]"},
        {"{\"type\":\"a\",\"id\":\"a b\"}", "\"id\" must be 1-64 characters of [0-9A-Za-z_.:-]"},
        {"{\"type\":\"a\",\"ts\":\"yesterday\"}",
         "\"ts\" must be an ISO 8601 time between 1970 and 9999"},
        {"{\"type\":\"a\",\"ts\":\"1969-12-31T23:59:59Z\"}",
         "\"ts\" must be an ISO 8601 time between 1970 and 9999"},
        {"{\"type\":\"a\",\"ts\":\"2026-02-30T00:00:00Z\"}",
         "\"ts\" must be an ISO 8601 time between 1970 and 9999"},
        {"{\"type\":\"a\",\"ts\":-1}", NUMBER_RULE},
        {"{\"type\":\"a\",\"ts\":-1.5e9}", NUMBER_RULE},
        {"{\"type\":\"a\",\"ts\":1e22}", NUMBER_RULE},
        {"{\"type\":\"a\",\"ts\":253402300800000000000}", NUMBER_RULE}, /* 10000-01-01 in ns */
        {"{\"type\":\"a\",\"ts\":true}", "\"ts\" must be an ISO 8601 string or an epoch number"},
        {"{\"type\":\"a\",\"do\":\"r1\"}", "\"do\" must be an object"},
        {"{\"type\":\"a\",\"type\":\"b\"}", "duplicate key \"type\""},
        {"{\"type\":\"a\",\"x\":1,\"x\":2}", "duplicate key \"x\""},
        {"{\"type\":\"a\",\"\\u0074ype\":\"b\"}", "duplicate key \"type\""},
        {"{\"type\":\"a\",\"s\":\"\xff\"}", "invalid UTF-8 in string at byte 17 of the event"},
        {"{\"type\":\"a\",\"s\":\"\\u0000\"}",
         "\\u0000 is not allowed in strings at byte 17 of the event"},
        {"{\"type\":\"a\",\"k\xc3\":1}", "invalid UTF-8 in string at byte 14 of the event"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        norm r = normalise(bad[i].in);
        if (r.rc != EVENT_REJECTED || strcmp(r.why, bad[i].why))
            test_fail(__FILE__, __LINE__,
                      "event #%zu %s:\n  expected rejection: %s\n  got rc=%d: %s", i, bad[i].in,
                      bad[i].why, r.rc, r.rc == EVENT_OK ? r.line : r.why);
    }
}

TEST(test_event_normalise_enforces_size_and_depth_limits)
{
    /* depth: the event object is level 1; 63 nested arrays inside make 64 */
    char ok[256], deep[256];
    snprintf(ok, sizeof ok, "{\"type\":\"a\",\"x\":%.63s%.63s}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    snprintf(deep, sizeof deep, "{\"type\":\"a\",\"x\":%.64s%.64s}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    CHECK_INT(EVENT_OK, normalise(ok).rc);
    norm r = normalise(deep);
    CHECK_INT(EVENT_REJECTED, r.rc);
    CHECK_STR("event nests 65 levels deep, over the limit of 64", r.why);

    size_t n = 256 * 1024 + 1;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    const char *head = "{\"type\":\"a\",\"s\":\"";
    memcpy(big, head, strlen(head));
    memcpy(big + n - 2, "\"}", 2);
    big[n] = 0;
    r = normalise(big);
    CHECK_INT(EVENT_REJECTED, r.rc);
    CHECK_STR("event is 262145 bytes, over the limit of 262144", r.why);
    big[n - 3] = '"', big[n - 2] = '}', big[n - 1] = 0; /* exactly at the limit */
    CHECK_INT(EVENT_OK, normalise(big).rc);
    free(big);
}

TEST(test_event_normalise_reports_syntax_errors)
{
    norm r = normalise("{\"type\":\"a\",}");
    CHECK_INT(EVENT_SYNTAX, r.rc);
    CHECK_STR("syntax: expected a string key in object", r.why);
}

TEST(test_event_type_and_id_rules)
{
    CHECK(event_type_valid("collection.update", 17));
    CHECK(event_type_valid("ws.close", 8));
    CHECK(event_type_valid("a_b.c-d.e9", 10));
    CHECK(!event_type_valid("a-b", 3)); /* '-' only after the first segment */
    char t129[130];
    memset(t129, 'a', 129);
    CHECK(event_type_valid(t129, 128));
    CHECK(!event_type_valid(t129, 129));
    CHECK(event_id_valid("01JDX3K8Q2ZP4W6V7N9B1C2D3E", 26));
    CHECK(event_id_valid("f47ac10b-58cc-4372-a567-0e02b2c3d479", 36));
    CHECK(!event_id_valid("a/b", 3));
}

/* ---- time ---- */

TEST(test_evtime_round_trips_and_normalises_offsets)
{
    static const struct {
        const char *in;
        const char *out;
    } t[] = {
        {"1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"},
        {"2026-11-25T10:00:00.123Z", "2026-11-25T10:00:00.123Z"},
        {"2026-11-25t10:00:00.1239999z", "2026-11-25T10:00:00.123Z"},
        {"2026-11-25 10:00:00Z", "2026-11-25T10:00:00.000Z"},
        {"2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"},
        {"2024-02-29T23:59:59.999-00:30", "2024-03-01T00:29:59.999Z"},
        {"9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"},
        {"2016-12-31T23:59:60Z", "2017-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t ms;
        char out[EVTIME_LEN + 1];
        if (evtime_parse(t[i].in, strlen(t[i].in), &ms)) {
            test_fail(__FILE__, __LINE__, "cannot parse %s", t[i].in);
            continue;
        }
        evtime_format(ms, out);
        CHECK_STR(t[i].out, out);
    }
    static const char *bad[] = {"2026-11-25",
                                "2026-11-25T10:00:00",
                                "2026-13-01T00:00:00Z",
                                "2023-02-29T00:00:00Z",
                                "2026-11-25T24:00:00Z",
                                "2026-11-25T10:00:00.Z",
                                "2026-11-25T10:00:00+1:00",
                                "2026-11-25T10:00:00Zx",
                                "10000-01-01T00:00:00Z",
                                "1969-12-31T23:59:59.999Z",
                                "2026-11-25T10:60:00Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (!evtime_parse(bad[i], strlen(bad[i]), &ms))
            test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    }
}

TEST(test_evtime_parse_iso8601_takes_the_forms_shippers_send)
{
    static const struct {
        const char *in;
        int64_t ms;
    } t[] = {
        {"2026-11-25 10:00:00", INT64_C(1795600800000)},
        {"2026-11-25T10:00:00.123456", INT64_C(1795600800123)},
        {"2026-11-25T12:00:00+0200", INT64_C(1795600800000)},
        {"2026-11-25T12:00:00+02", INT64_C(1795600800000)},
        {"2026-11-25T07:30:00-0230", INT64_C(1795600800000)},
        {"2026-11-25T10:00:00,5Z", INT64_C(1795600800500)},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t ms = -1;
        if (evtime_parse_iso8601(t[i].in, strlen(t[i].in), &ms) || ms != t[i].ms)
            test_fail(__FILE__, __LINE__, "%s: expected %lld, got %lld", t[i].in,
                      (long long)t[i].ms, (long long)ms);
        /* the strict parser keeps refusing what RFC 3339 does not allow */
        if (!evtime_parse(t[i].in, strlen(t[i].in), &ms))
            test_fail(__FILE__, __LINE__, "evtime_parse accepted %s", t[i].in);
    }
    static const char *bad[] = {"2026-11-25",
                                "2026-11-25T10:00",
                                "2026-11-25T10:00:00+2",
                                "2026-11-25T10:00:00+020",
                                "2026-11-25T10:00:00.",
                                "2026-11-25T10:00:00 Z",
                                "1969-12-31 23:59:59",
                                "2026-11-25T10:00:00+24:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        if (!evtime_parse_iso8601(bad[i], strlen(bad[i]), &ms))
            test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    }
}

TEST(test_evtime_civil_matches_libc_for_many_days)
{
    for (int64_t day = 0; day < 2932896; day += 997) { /* 1970 .. 9999 */
        int64_t ms = day * 86400000 + 12345678;
        evtime_civil c;
        evtime_to_civil(ms, &c);
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        if (c.year != tm.tm_year + 1900 || c.month != tm.tm_mon + 1 || c.day != tm.tm_mday ||
            c.hour != tm.tm_hour || c.min != tm.tm_min || c.sec != tm.tm_sec) {
            test_fail(__FILE__, __LINE__, "day %lld differs from gmtime", (long long)day);
            return;
        }
        CHECK_INT(day, evtime_days_from_civil(c.year, c.month, c.day));
    }
}

/* ---- ids ---- */

TEST(test_ulid_is_canonical_and_time_ordered)
{
    char a[27], b[27];
    ulid_make(1000, a);
    ulid_make(1001, b);
    CHECK(ulid_valid(a, 26) && ulid_valid(b, 26));
    CHECK(strcmp(a, b) < 0);
    CHECK_INT(1000, ulid_time(a));
    ulid_make(EVTIME_MAX_MS, a);
    CHECK_INT(EVTIME_MAX_MS, ulid_time(a));
    CHECK(!ulid_valid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", 26));
    CHECK(!ulid_valid("01jdx3k8q2zp4w6v7n9b1c2d3e", 26));
    CHECK(!ulid_valid("01JDX3K8Q2ZP4W6V7N9B1C2D3I", 26));
}

TEST(test_uuid7_has_version_and_variant)
{
    char u[37];
    evrand_uuid7(u);
    CHECK_INT(36, strlen(u));
    CHECK(u[14] == '7');
    CHECK(strchr("89ab", u[19]) != NULL);
}

TEST(test_siphash128_matches_reference_vectors)
{
    uint8_t key[16], in[16], out[16];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i, in[i] = (uint8_t)i;
    static const char *expect[] = {"a3817f04ba25a8e66df67214c7550293",
                                   "da87c1d86b99af44347659119b22fc45",
                                   "8177228da4a45dc7fca38bdef60affe4"};
    for (int n = 0; n < 3; n++) {
        siphash128(in, (size_t)n, key, out);
        char hex[33];
        for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", out[i]);
        CHECK_STR(expect[n], hex);
    }
}

/* HMAC-SHA256 against RFC 4231's test cases 1, 2, 3, 4, 6 and 7 (5 truncates its output). */
TEST(test_codec_hmac_sha256_matches_rfc_4231)
{
    static const struct {
        const char *key_hex, *msg, *mac;
    } t[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"4a656665", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"0102030405060708090a0b0c0d0e0f10111213141516171819", NULL,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"aa*131", "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"aa*131",
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        unsigned char key[200], msg[50], mac[32];
        size_t klen = 0, mlen;
        if (!strcmp(t[i].key_hex, "aa*131"))
            memset(key, 0xaa, klen = 131);
        else
            for (const char *h = t[i].key_hex; h[0] && h[1]; h += 2)
                key[klen++] = (unsigned char)strtoul((char[3]){h[0], h[1], 0}, NULL, 16);
        const void *m = t[i].msg;
        mlen = m ? strlen(t[i].msg) : 50;
        if (!m) memset(msg, i == 2 ? 0xdd : 0xcd, 50), m = msg; /* cases 3 and 4 */
        sha256_hmac(key, klen, m, mlen, mac);
        char hex[65];
        sha256_hex(mac, hex);
        CHECK_STR(t[i].mac, hex);
    }
    unsigned char a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
    CHECK(sha256_equal(a, a, 4));
    CHECK(!sha256_equal(a, b, 4));
    CHECK(sha256_equal(a, b, 3));
}
