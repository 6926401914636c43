/*
 * test_ingest.c - request bodies: the three shapes, per-event rejection,
 * whole-body errors, limits, and gzip (including a gzip bomb).
 */
#include "harness.h"
#include "ingest.h"
#include "test.h"

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
    ingest_parse(&c, body, n, fmt, &lim, &p->r);
    buf a = BUF_INIT;
    if (!p->r.status) {
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
    CHECK_INT(0, p->r.status);
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
    CHECK_INT(0, p->r.status);
    CHECK_INT(2, p->r.n);
    done(p);
    p = parse("{\"source\":{\"x\":[1]},\"events\":[{\"type\":\"a\"}],\"v\":2}", INGEST_JSON);
    CHECK_INT(0, p->r.status);
    CHECK_INT(1, p->r.n);
    done(p);
    p = parse("\xef\xbb\xbf[]", INGEST_JSON); /* a byte order mark */
    CHECK_INT(0, p->r.status);
    CHECK_INT(0, p->r.received);
    done(p);
}

TEST(test_ingest_accepts_ndjson_and_skips_blank_lines)
{
    parsed *p =
        parse("{\"type\":\"a\"}\r\n\n  \n{\"type\":\"b\"}\n{\"type\":\"c\"}", INGEST_NDJSON);
    CHECK_INT(0, p->r.status);
    CHECK_INT(3, p->r.received);
    CHECK_INT(3, p->r.n);
    done(p);
}

TEST(test_ingest_rejects_bad_events_one_by_one)
{
    parsed *p = parse("{\"events\":[{\"type\":\"ok\"},{\"no\":\"type\"},17,{\"type\":\"ok\",\"id\":"
                      "\"a b\"},{\"type\":\"fine\"}]}",
                      INGEST_JSON);
    CHECK_INT(0, p->r.status);
    CHECK_INT(5, p->r.received);
    CHECK_INT(2, p->r.n);
    CHECK_INT(3, p->r.rejected);
    CHECK_STR("{\"ok\":true,\"received\":5,\"accepted\":2,\"duplicates\":0,\"rejected\":["
              "{\"index\":1,\"error\":\"\\\"type\\\" is required\"},"
              "{\"index\":2,\"error\":\"event must be a JSON object\"},"
              "{\"index\":3,\"error\":\"\\\"id\\\" must be 1-64 characters of [0-9A-Za-z_.:-]\"}]}",
              p->answer);
    done(p);
}

TEST(test_ingest_rejects_bad_ndjson_lines_one_by_one)
{
    parsed *p = parse("{\"type\":\"a\"}\n{\"type\":\n{\"type\":\"b\"} trailing\n{\"type\":\"c\"}\n",
                      INGEST_NDJSON);
    CHECK_INT(0, p->r.status);
    CHECK_INT(4, p->r.received);
    CHECK_INT(2, p->r.n);
    CHECK_STR(
        "{\"ok\":true,\"received\":4,\"accepted\":2,\"duplicates\":0,\"rejected\":["
        "{\"index\":1,\"error\":\"malformed JSON at byte 8 of the line: unexpected end of input\"},"
        "{\"index\":2,\"error\":\"unexpected data after the event on its line\"}]}",
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
        unsigned status;
        const char *error;
    } t[] = {
        {"", INGEST_JSON, 400, "empty body"},
        {"   ", INGEST_JSON, 400, "empty body"},
        {"{\"events\":[{\"type\":\"a\"}", INGEST_JSON, 400,
         "malformed JSON at byte 23: expected ',' or ']' in the events array"},
        {"{\"events\":[{\"type\":\"a\",]}", INGEST_JSON, 400,
         "malformed JSON at byte 23: expected a string key in object"},
        {"not json", INGEST_JSON, 400, "malformed JSON at byte 0: invalid literal"},
        {"@", INGEST_JSON, 400, "malformed JSON at byte 0: unexpected character"},
        {"{\"type\":\"a\"}", INGEST_JSON, 400,
         "body is a JSON object without \"events\": send {\"events\":[...]}, a JSON array of "
         "events, or NDJSON"},
        {"{\"events\":{}}", INGEST_JSON, 400, "\"events\" must be an array"},
        {"{\"events\":[],\"events\":[]}", INGEST_JSON, 400, "duplicate key \"events\" in the body"},
        {"\"events\"", INGEST_JSON, 400,
         "body must be {\"events\":[...]}, a JSON array of events, or NDJSON"},
        {"[{\"type\":\"a\"}]\n[{\"type\":\"b\"}]", INGEST_JSON, 400,
         "unexpected data after the JSON body at byte 15 (for one event per line, send "
         "Content-Type: "
         "application/x-ndjson)"},
        {"{\"x\":\"\xff\",\"events\":[]}", INGEST_JSON, 400,
         "invalid UTF-8 in string at byte 6 of the body"},
        {"garbage\nmore garbage\n", INGEST_NDJSON, 400,
         "body is not NDJSON: line 1: malformed JSON at byte 0 of the line: unexpected character"},
        {"\n\n", INGEST_NDJSON, 400, "empty body"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        parsed *p = parse(t[i].body, t[i].fmt);
        if (p->r.status != t[i].status || strcmp(p->r.error, t[i].error))
            test_fail(__FILE__, __LINE__, "body #%zu: expected %u \"%s\", got %u \"%s\"", i,
                      t[i].status, t[i].error, p->r.status, p->r.error);
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
    CHECK_INT(413, p->r.status);
    CHECK_STR("more than 10 events in one request", p->r.error);
    done(p);
    p = parse_as(b.p, b.len, INGEST_JSON, 11);
    CHECK_INT(0, p->r.status);
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
    CHECK_INT(413, ingest_gunzip(gz.p, gz.len, 8u << 20, &out, err, sizeof err));
    CHECK_STR("body inflates past the limit of 8388608 bytes", err);
    CHECK(out.cap <= (8u << 20) * 2 + 4096); /* never allocated the whole bomb */

    out.len = 0;
    CHECK_INT(400, ingest_gunzip("not gzip at all", 15, 1 << 20, &out, err, sizeof err));
    CHECK_STR("invalid gzip body: incorrect header check", err);
    out.len = 0;
    CHECK_INT(400, ingest_gunzip(gz.p, 100, 1 << 30, &out, err, sizeof err));
    CHECK_STR("truncated gzip body", err);
    buf_free(&gz);
    buf_free(&out);
}
