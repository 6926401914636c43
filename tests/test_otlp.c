/*
 * test_otlp.c - POST /v1/logs: OTLP log records as events.
 *
 * The mapping is tested on the parser itself (otlp_logs_parse), in both
 * encodings: a record with every field, odd values, missing fields, the
 * type rules, and each way a body is refused. Protobuf bodies are built here
 * by a small encoder that knows the field numbers of the OTLP specification,
 * not the server's schema, so that a wrong number there shows. Then a real
 * server: both encodings and gzip end to end, OTLP's answers and statuses,
 * and a retried export stored once.
 */
#include "harness.h"
#include "layout.h"
#include "otlp.h"
#include "siphash.h"
#include "test.h"

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

/* 2026-11-25T10:01:40.000Z: the receive time of the parser's tests */
#define NOW_MS 1795600900000LL

/* ---- a protobuf encoder, after the OTLP specification's field numbers --------- */

static void pb_varint(buf *b, uint64_t v)
{
    do {
        buf_putc(b, (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}

static void pb_tag(buf *b, unsigned num, unsigned wt)
{
    pb_varint(b, (uint64_t)num << 3 | wt);
}

static void pb_bytes(buf *b, unsigned num, const void *p, size_t n)
{
    pb_tag(b, num, 2);
    pb_varint(b, n);
    buf_append(b, p, n);
}

static void pb_str(buf *b, unsigned num, const char *s)
{
    pb_bytes(b, num, s, strlen(s));
}

/* Appends m as field num, and frees it. */
static void pb_msg(buf *b, unsigned num, buf m)
{
    pb_bytes(b, num, m.p ? m.p : "", m.len);
    buf_free(&m);
}

static void pb_fixed(buf *b, unsigned num, uint64_t v, int bytes)
{
    pb_tag(b, num, bytes == 8 ? 1 : 5);
    for (int i = 0; i < bytes; i++) buf_putc(b, (char)(v >> (8 * i)));
}

static void pb_uvarint(buf *b, unsigned num, uint64_t v)
{
    pb_tag(b, num, 0);
    pb_varint(b, v);
}

/* AnyValue: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7 */
static buf any_str(const char *s)
{
    buf b = BUF_INIT;
    pb_str(&b, 1, s);
    return b;
}

static buf any_int(int64_t v)
{
    buf b = BUF_INIT;
    pb_uvarint(&b, 3, (uint64_t)v);
    return b;
}

static buf any_double(double d)
{
    buf b = BUF_INIT;
    uint64_t u;
    memcpy(&u, &d, 8);
    pb_fixed(&b, 4, u, 8);
    return b;
}

static buf any_bool(int v)
{
    buf b = BUF_INIT;
    pb_uvarint(&b, 2, (uint64_t)v);
    return b;
}

static buf any_bytes(const void *p, size_t n)
{
    buf b = BUF_INIT;
    pb_bytes(&b, 7, p, n);
    return b;
}

/* KeyValue: key 1, value 2 (an AnyValue, which it frees; .len 0 and no .p: no value) */
static buf kv(const char *key, buf value)
{
    buf b = BUF_INIT;
    pb_str(&b, 1, key);
    if (value.p || value.len)
        pb_msg(&b, 2, value);
    else
        buf_free(&value);
    return b;
}

/* ArrayValue (values 1) or KeyValueList (values 1) as the AnyValue field 5 or 6 */
static buf any_list(unsigned field, buf *items, size_t n)
{
    buf list = BUF_INIT, b = BUF_INIT;
    for (size_t i = 0; i < n; i++) pb_msg(&list, 1, items[i]);
    pb_msg(&b, field, list);
    return b;
}

/* ExportLogsServiceRequest(1: ResourceLogs(1: Resource, 2: ScopeLogs(1: scope, 2: records))) */
static buf request(buf resource, buf scope, buf *records, size_t n)
{
    buf sl = BUF_INIT, rl = BUF_INIT, req = BUF_INIT;
    if (scope.len)
        pb_msg(&sl, 1, scope);
    else
        buf_free(&scope);
    for (size_t i = 0; i < n; i++) pb_msg(&sl, 2, records[i]);
    if (resource.len)
        pb_msg(&rl, 1, resource);
    else
        buf_free(&resource);
    pb_msg(&rl, 2, sl);
    pb_msg(&req, 1, rl);
    return req;
}

/* ---- running the parser ------------------------------------------------------------ */

typedef struct parsed {
    ingest_result r;
    char lines[8][4096]; /* each normalised line, its id masked as otel-* */
    char ids[8][64];
} parsed;

static void parse_with(enum otlp_encoding enc, const char *body, size_t n, const char *type,
                       size_t max_events, size_t max_event_bytes, parsed *p)
{
    memset(p, 0, sizeof *p);
    event_ctx ctx;
    event_ctx_init(&ctx);
    ctx.max_event_bytes = max_event_bytes;
    event_ctx_set_now(&ctx, NOW_MS);
    ingest_limits lim = {INGEST_MAX_BODY_DEFAULT, max_events};
    otlp_logs_parse(&ctx, enc, body, n, type, &lim, NULL, &p->r);
    event_ctx_free(&ctx);
    for (size_t i = 0; i < p->r.n && i < 8; i++) {
        const char *l = p->r.lines.p + p->r.ev[i].off;
        size_t len = p->r.ev[i].len - 1; /* without the newline */
        /* the position placeholder the server ends each line with, checked and taken off */
        CHECK(len > LAKE_POS_TAIL &&
              !memcmp(l + len - LAKE_POS_TAIL, LAKE_POS_PLACEHOLDER, LAKE_POS_TAIL));
        if (len > LAKE_POS_TAIL) len -= LAKE_POS_TAIL; /* the line's '}' is written back */
        snprintf(p->ids[i], sizeof p->ids[i], "%.*s", (int)p->r.ev[i].id_len,
                 p->r.lines.p + p->r.ev[i].id_off);
        const char *id = strstr(l, "\"id\":\"otel-");
        if (id == l + 1 && len > 49) { /* {"id":"otel-<32 hex>" */
            snprintf(p->lines[i], sizeof p->lines[i], "{\"id\":\"otel-*%.*s}", (int)(len - 44),
                     l + 44);
        } else {
            snprintf(p->lines[i], sizeof p->lines[i], "%.*s}", (int)len, l);
        }
    }
}

static void parse(enum otlp_encoding enc, const char *body, size_t n, parsed *p)
{
    parse_with(enc, body, n, NULL, ingest_max_events_for(INGEST_MAX_BODY_DEFAULT),
               EVENT_MAX_BYTES_DEFAULT, p);
}

static void parsed_free(parsed *p)
{
    ingest_result_free(&p->r);
}

/* "otel-" and 32 lowercase hex digits */
static int id_ok(const char *id)
{
    if (strncmp(id, "otel-", 5) || strlen(id) != 37) return 0;
    for (int i = 5; i < 37; i++)
        if (!strchr("0123456789abcdef", id[i])) return 0;
    return 1;
}

/* ---- the mapping ------------------------------------------------------------------- */

/* One record with every field, in OTLP JSON, its members in an unusual order. */
static const char FULL_JSON[] =
    "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{"
    "\"attributes\":["
    "{\"key\":\"order.id\",\"value\":{\"intValue\":\"42\"}},"
    "{\"key\":\"amount\",\"value\":{\"doubleValue\":19.5}},"
    "{\"value\":{\"boolValue\":false},\"key\":\"ok\"},"
    "{\"key\":\"tags\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
    "{\"intValue\":1}]}}},"
    "{\"key\":\"raw\",\"value\":{\"bytesValue\":\"aGkA\"}},"
    "{\"key\":\"meta\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"x\",\"value\":{}}]}}},"
    "{\"key\":\"big\",\"value\":{\"intValue\":9223372036854775807}},"
    "{\"key\":\"neg\",\"value\":{\"intValue\":\"-9223372036854775808\"}}],"
    "\"body\":{\"stringValue\":\"order \\\"42\\\" failed\\n\"},"
    "\"timeUnixNano\":\"1795600800123456789\",\"observedTimeUnixNano\":1795600800124000000,"
    "\"severityNumber\":17,\"severityText\":\"ERR\\u004fR\",\"droppedAttributesCount\":2,"
    "\"traceId\":\"5B8EFFF798038103D269B633813FC60C\",\"spanId\":\"eee19b7ec3c1b174\","
    "\"flags\":1,\"futureField\":[1,2]}],"
    "\"scope\":{\"name\":\"app.orders\",\"version\":\"1.2.0\",\"attributes\":[{\"key\":"
    "\"lib.kind\",\"value\":{\"stringValue\":\"http\"}}],\"droppedAttributesCount\":0}}],"
    "\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"
    "\"checkout\"}},{\"key\":\"host.cpu\",\"value\":{\"intValue\":8}}],"
    "\"droppedAttributesCount\":0},\"schemaUrl\":\"https://opentelemetry.io/schemas/1.21.0\"}]}";

static const char FULL_EVENT[] =
    "{\"id\":\"otel-*\",\"type\":\"otel.log\",\"ts\":\"2026-11-25T10:00:00.123Z\","
    "\"receivedAt\":\"2026-11-25T10:01:40.000Z\",\"severityNumber\":17,\"severityText\":\"ERROR\","
    "\"body\":\"order \\\"42\\\" failed\\n\",\"attributes\":{\"order.id\":42,\"amount\":19.5,"
    "\"ok\":false,\"tags\":[\"a\",1],\"raw\":\"aGkA\",\"meta\":{\"x\":null},"
    "\"big\":9223372036854775807,\"neg\":-9223372036854775808},\"droppedAttributesCount\":2,"
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\",\"flags\":1,"
    "\"timeUnixNano\":\"1795600800123456789\",\"observedTimeUnixNano\":\"1795600800124000000\","
    "\"resource\":{\"service.name\":\"checkout\",\"host.cpu\":8},"
    "\"scope\":{\"name\":\"app.orders\",\"version\":\"1.2.0\",\"attributes\":{\"lib.kind\":"
    "\"http\"}}}";

/* The same record in protobuf, its fields in yet another order. */
static buf full_protobuf(void)
{
    buf rec = BUF_INIT;
    pb_uvarint(&rec, 2, 17); /* severity_number */
    pb_fixed(&rec, 11, 1795600800124000000ull, 8);
    static const uint8_t trace[16] = {0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03,
                                      0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c};
    static const uint8_t span[8] = {0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74};
    pb_bytes(&rec, 9, trace, 16);
    pb_bytes(&rec, 10, span, 8);
    pb_fixed(&rec, 8, 1, 4); /* flags */
    pb_str(&rec, 3, "ERROR");
    pb_msg(&rec, 5, any_str("order \"42\" failed\n"));
    pb_msg(&rec, 6, kv("order.id", any_int(42)));
    pb_msg(&rec, 6, kv("amount", any_double(19.5)));
    pb_msg(&rec, 6, kv("ok", any_bool(0)));
    buf tags[2] = {any_str("a"), any_int(1)};
    pb_msg(&rec, 6, kv("tags", any_list(5, tags, 2)));
    pb_msg(&rec, 6, kv("raw", any_bytes("hi\0", 3)));
    buf meta = BUF_INIT;
    pb_str(&meta, 1, "x");
    pb_bytes(&meta, 2, "", 0); /* a value present but empty: null */
    pb_msg(&rec, 6, kv("meta", any_list(6, &meta, 1)));
    pb_msg(&rec, 6, kv("big", any_int(INT64_MAX)));
    pb_msg(&rec, 6, kv("neg", any_int(INT64_MIN)));
    pb_uvarint(&rec, 7, 2);                       /* dropped_attributes_count */
    pb_fixed(&rec, 1, 1795600800123456789ull, 8); /* time_unix_nano, last */
    pb_uvarint(&rec, 99, 5);                      /* a field from the future */
    buf res = BUF_INIT, scope = BUF_INIT;
    pb_msg(&res, 1, kv("service.name", any_str("checkout")));
    pb_msg(&res, 1, kv("host.cpu", any_int(8)));
    pb_uvarint(&res, 2, 0); /* dropped_attributes_count: not in our schema */
    pb_str(&scope, 1, "app.orders");
    pb_str(&scope, 2, "1.2.0");
    pb_msg(&scope, 3, kv("lib.kind", any_str("http")));
    return request(res, scope, &rec, 1);
}

TEST(test_otlp_json_record_maps_every_field)
{
    parsed p;
    parse(OTLP_JSON, FULL_JSON, strlen(FULL_JSON), &p);
    CHECK_STR("", p.r.error);
    REQUIRE_INT(1, p.r.n);
    CHECK_INT(1, p.r.received);
    CHECK_INT(0, p.r.rejected);
    CHECK_STR(FULL_EVENT, p.lines[0]);
    CHECK(id_ok(p.ids[0]));
    CHECK_INT(1, p.r.ev[0].client_id); /* so the writer deduplicates it */
    parsed_free(&p);
}

TEST(test_otlp_protobuf_record_maps_as_json_with_the_same_id)
{
    buf pb = full_protobuf();
    parsed p, j;
    parse(OTLP_PROTOBUF, pb.p, pb.len, &p);
    parse(OTLP_JSON, FULL_JSON, strlen(FULL_JSON), &j);
    CHECK_STR("", p.r.error);
    REQUIRE_INT(1, p.r.n);
    CHECK_STR(FULL_EVENT, p.lines[0]);
    CHECK_STR(j.ids[0], p.ids[0]);
    parsed_free(&p);
    parsed_free(&j);
    buf_free(&pb);
}

TEST(test_otlp_id_is_the_documented_hash_of_the_event_before_it)
{
    const char *body = "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"timeUnixNano\":"
                       "\"1795600800123456789\",\"body\":{\"stringValue\":\"hi\"}}]}]}]}";
    parsed p;
    parse(OTLP_JSON, body, strlen(body), &p);
    REQUIRE_INT(1, p.r.n);
    const char *hashed = "{\"body\":\"hi\",\"timeUnixNano\":\"1795600800123456789\","
                         "\"type\":\"otel.log\",\"ts\":1795600800123";
    static const uint8_t key[16] = "events.otlp.id.1";
    uint8_t h[16];
    siphash128(hashed, strlen(hashed), key, h);
    char want[40] = "otel-";
    for (int i = 0; i < 16; i++) snprintf(want + 5 + 2 * i, 3, "%02x", h[i]);
    CHECK_STR(want, p.ids[0]);
    parsed_free(&p);
}

TEST(test_otlp_odd_any_values_become_json)
{
    const char *body =
        "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"attributes\":["
        "{\"key\":\"nan\",\"value\":{\"doubleValue\":\"NaN\"}},"
        "{\"key\":\"inf\",\"value\":{\"doubleValue\":\"Infinity\"}},"
        "{\"key\":\"ninf\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
        "{\"key\":\"huge\",\"value\":{\"doubleValue\":1e400}},"
        "{\"key\":\"dstr\",\"value\":{\"doubleValue\":\"2.50\"}},"
        "{\"key\":\"tenth\",\"value\":{\"doubleValue\":0.1}},"
        "{\"key\":\"negzero\",\"value\":{\"intValue\":\"-0\"}},"
        "{\"key\":\"urlsafe\",\"value\":{\"bytesValue\":\"-_8\"}},"
        "{\"key\":\"empty\",\"value\":{}},"
        "{\"key\":\"nullv\",\"value\":null},"
        "{\"key\":\"novalue\"},"
        "{\"value\":{\"stringValue\":\"no key\"}},"
        "{\"key\":\"two\",\"value\":{\"stringValue\":\"a\",\"intValue\":\"5\"}},"
        "{\"key\":\"unknown\",\"value\":{\"futureValue\":1}},"
        "{\"key\":\"emptylist\",\"value\":{\"arrayValue\":{}}},"
        "{\"key\":\"emptykv\",\"value\":{\"kvlistValue\":{\"values\":[]}}},"
        "{\"key\":\"deep\",\"value\":{\"arrayValue\":{\"values\":[{\"arrayValue\":{\"values\":"
        "[{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":{\"boolValue\":true}}]}}]}}]}}},"
        "{\"key\":\"esc\\u002ekey\",\"value\":{\"stringValue\":\"\\u00e9\\/\\ud83d\\ude00\"}}"
        "],\"body\":{}}]}]}]}";
    parsed p;
    parse(OTLP_JSON, body, strlen(body), &p);
    CHECK_STR("", p.r.error);
    REQUIRE_INT(1, p.r.n);
    CHECK_STR("{\"id\":\"otel-*\",\"type\":\"otel.log\",\"ts\":\"2026-11-25T10:01:40.000Z\","
              "\"receivedAt\":\"2026-11-25T10:01:40.000Z\",\"body\":null,\"attributes\":{"
              "\"nan\":\"NaN\",\"inf\":\"Infinity\",\"ninf\":\"-Infinity\",\"huge\":\"Infinity\","
              "\"dstr\":2.5,\"tenth\":0.1,\"negzero\":0,\"urlsafe\":\"+/8=\",\"empty\":null,"
              "\"nullv\":null,\"novalue\":null,\"\":\"no key\",\"two\":5,\"unknown\":null,"
              "\"emptylist\":[],\"emptykv\":{},\"deep\":[[{\"k\":true}]],"
              "\"esc.key\":\"\xc3\xa9/\xf0\x9f\x98\x80\"}}",
              p.lines[0]);
    parsed_free(&p);

    /* the same values in protobuf (those protobuf can carry) */
    buf rec = BUF_INIT;
    pb_msg(&rec, 6, kv("nan", any_double(NAN)));
    pb_msg(&rec, 6, kv("ninf", any_double(-INFINITY)));
    pb_msg(&rec, 6, kv("tenth", any_double(0.1)));
    pb_msg(&rec, 6, kv("novalue", (buf){0}));
    buf two = any_str("a");
    pb_uvarint(&two, 3, 5); /* a second member of the oneof: the last wins */
    pb_msg(&rec, 6, kv("two", two));
    pb_msg(&rec, 6, kv("emptylist", any_list(5, NULL, 0)));
    pb_bytes(&rec, 5, "", 0); /* body: an AnyValue present but empty */
    buf req = request((buf){0}, (buf){0}, &rec, 1);
    parse(OTLP_PROTOBUF, req.p, req.len, &p);
    CHECK_STR("", p.r.error);
    REQUIRE_INT(1, p.r.n);
    CHECK_STR("{\"id\":\"otel-*\",\"type\":\"otel.log\",\"ts\":\"2026-11-25T10:01:40.000Z\","
              "\"receivedAt\":\"2026-11-25T10:01:40.000Z\",\"body\":null,\"attributes\":{"
              "\"nan\":\"NaN\",\"ninf\":\"-Infinity\",\"tenth\":0.1,\"novalue\":null,\"two\":5,"
              "\"emptylist\":[]}}",
              p.lines[0]);
    parsed_free(&p);
    buf_free(&req);
}

TEST(test_otlp_record_without_fields_is_an_event_received_now)
{
    const char *body = "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{},"
                       "{\"timeUnixNano\":\"0\",\"observedTimeUnixNano\":\"1795600800000000000\","
                       "\"traceId\":\"\",\"spanId\":\"0000000000000000\",\"severityText\":\"\","
                       "\"attributes\":[],\"flags\":0,\"severityNumber\":0}]}]},"
                       "{\"resource\":null,\"scopeLogs\":null},{}],\"other\":1}";
    parsed p;
    parse(OTLP_JSON, body, strlen(body), &p);
    CHECK_STR("", p.r.error);
    REQUIRE_INT(2, p.r.n);
    CHECK_STR("{\"id\":\"otel-*\",\"type\":\"otel.log\",\"ts\":\"2026-11-25T10:01:40.000Z\","
              "\"receivedAt\":\"2026-11-25T10:01:40.000Z\"}",
              p.lines[0]);
    /* observed time when the time is 0; empty and zero ids are no ids */
    CHECK_STR("{\"id\":\"otel-*\",\"type\":\"otel.log\",\"ts\":\"2026-11-25T10:00:00.000Z\","
              "\"receivedAt\":\"2026-11-25T10:01:40.000Z\","
              "\"observedTimeUnixNano\":\"1795600800000000000\"}",
              p.lines[1]);
    /* two records the same in every field are one event */
    parsed q;
    parse(OTLP_JSON, body, strlen(body), &q);
    CHECK_STR(p.ids[0], q.ids[0]);
    parsed_free(&q);
    parsed_free(&p);

    /* an empty request (no records at all) is fine, in both encodings */
    parse(OTLP_JSON, "{}", 2, &p);
    CHECK_INT(0, p.r.code);
    CHECK_INT(0, p.r.received);
    parsed_free(&p);
    parse(OTLP_PROTOBUF, "", 0, &p);
    CHECK_INT(0, p.r.code);
    CHECK_INT(0, p.r.received);
    parsed_free(&p);
}

/* A record's JSON with the given members, in a request of its own scope. */
#define ONE_SCOPE(records) "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[" records "]}]}]}"

TEST(test_otlp_type_comes_from_the_record_else_the_request)
{
    const char *body = ONE_SCOPE(
        "{\"eventName\":\"user.login\"},"
        "{\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"legacy.name\"}}]},"
        "{\"eventName\":\"Not A Type\",\"attributes\":[{\"key\":\"event.name\",\"value\":"
        "{\"stringValue\":\"fallback.name\"}}]},"
        "{\"eventName\":\"user.login\",\"attributes\":[{\"key\":\"events.type\",\"value\":"
        "{\"stringValue\":\"explicit.type\"}}]},"
        "{\"eventName\":\"Checkout Failed\"},"
        "{\"attributes\":[{\"key\":\"events.type\",\"value\":{\"stringValue\":\"Bad Type\"}}]},"
        "{\"attributes\":[{\"key\":\"events.type\",\"value\":{\"intValue\":5}}]}");
    parsed p;
    parse_with(OTLP_JSON, body, strlen(body), "app.log", 100, EVENT_MAX_BYTES_DEFAULT, &p);
    CHECK_INT(0, p.r.code);
    CHECK_INT(7, p.r.received);
    REQUIRE_INT(5, p.r.n);
    const char *want[5] = {"user.login", "legacy.name", "fallback.name", "explicit.type",
                           "app.log"};
    for (int i = 0; i < 5; i++) {
        char t[160];
        snprintf(t, sizeof t, "\"type\":\"%s\"", want[i]);
        CHECK_CONTAINS(t, p.lines[i]);
    }
    CHECK_CONTAINS("\"eventName\":\"Checkout Failed\"", p.lines[4]); /* kept, not the type */
    CHECK_INT(2, p.r.rejected);
    buf_cstr(&p.r.rejects);
    CHECK_STR("{\"index\":5,\"error\":\"\\\"type\\\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be "
              "at most 128 bytes\"},{\"index\":6,\"error\":\"\\\"type\\\" must be a string\"}",
              p.r.rejects.p);
    buf answer = BUF_INIT;
    otlp_logs_answer(OTLP_JSON, &p.r, &answer);
    buf_cstr(&answer);
    CHECK_STR("{\"partialSuccess\":{\"rejectedLogRecords\":\"2\",\"errorMessage\":\"refused 2 of "
              "7 log records; the first, record 5 (counting from 0 in the order of the request): "
              "\\\"type\\\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes\"}}",
              answer.p);
    buf_free(&answer);
    parsed_free(&p);

    /* without ?type=, otel.log */
    parse(OTLP_JSON, ONE_SCOPE("{}"), strlen(ONE_SCOPE("{}")), &p);
    CHECK_CONTAINS("\"type\":\"otel.log\"", p.lines[0]);
    parsed_free(&p);
}

TEST(test_otlp_records_the_event_rules_refuse_are_counted_and_the_rest_kept)
{
    /* too large for --max-event-bytes, a string that is not UTF-8, one with \u0000 */
    char body[2000];
    snprintf(body, sizeof body,
             ONE_SCOPE("{\"body\":{\"stringValue\":\"%0400d\"}},{\"body\":{\"stringValue\":"
                       "\"\xc3\x28\"}},{\"body\":{\"stringValue\":\"a\\u0000b\"}},{}"),
             0);
    parsed p;
    parse_with(OTLP_JSON, body, strlen(body), NULL, 100, 300, &p);
    CHECK_INT(0, p.r.code);
    CHECK_INT(4, p.r.received);
    CHECK_INT(1, p.r.n);
    CHECK_INT(3, p.r.rejected);
    buf_cstr(&p.r.rejects);
    CHECK_STR("{\"index\":0,\"error\":\"event is 474 bytes, over the limit of 300\"},"
              "{\"index\":1,\"error\":\"invalid UTF-8 in string at byte 9 of the event\"},"
              "{\"index\":2,\"error\":\"\\\\u0000 is not allowed in strings at byte 10 of the "
              "event\"}",
              p.r.rejects.p);
    parsed_free(&p);

    /* the same refusals from protobuf, whose strings are bytes */
    buf recs[3] = {BUF_INIT, BUF_INIT, BUF_INIT};
    pb_msg(&recs[0], 5, any_str("\xc3\x28"));
    pb_msg(&recs[1], 5, any_bytes("x", 1));
    buf nul = BUF_INIT;
    pb_bytes(&nul, 1, "a\0b", 3);
    pb_msg(&recs[2], 5, nul);
    buf req = request((buf){0}, (buf){0}, recs, 3);
    parse(OTLP_PROTOBUF, req.p, req.len, &p);
    CHECK_INT(0, p.r.code);
    CHECK_INT(3, p.r.received);
    CHECK_INT(2, p.r.rejected);
    CHECK_INT(1, p.r.n);
    buf_cstr(&p.r.rejects);
    CHECK_STR("{\"index\":0,\"error\":\"invalid UTF-8 in string at byte 9 of the event\"},"
              "{\"index\":2,\"error\":\"\\\\u0000 is not allowed in strings at byte 10 of the "
              "event\"}",
              p.r.rejects.p);
    buf answer = BUF_INIT;
    otlp_logs_answer(OTLP_PROTOBUF, &p.r, &answer);
    buf_cstr(&answer);
    /* ExportLogsServiceResponse{partial_success(1){rejected_log_records(1)=2, error_message(2)}},
     * the lengths being two-byte varints here */
    REQUIRE(answer.len > 8);
    CHECK(!memcmp(answer.p, "\x0a", 1) && (answer.p[1] & 0x80) && !(answer.p[2] & 0x80));
    CHECK(!memcmp(answer.p + 3, "\x08\x02\x12", 3));
    CHECK_CONTAINS("refused 2 of 3 log records; the first, record 0", answer.p + 8);
    buf_free(&answer);
    parsed_free(&p);
    buf_free(&req);

    /* past --max-events the whole request fails, as on /ingest */
    const char *three = ONE_SCOPE("{},{},{}");
    parse_with(OTLP_JSON, three, strlen(three), NULL, 2, EVENT_MAX_BYTES_DEFAULT, &p);
    CHECK_INT(INGEST_EBIG, p.r.code);
    CHECK_STR("more than 2 events in one request", p.r.error);
    parsed_free(&p);
}

TEST(test_otlp_refuses_json_bodies_it_cannot_read_whole)
{
    struct {
        const char *body, *error;
    } t[] = {
        {"", "empty body"},
        {"[]", "the body must be a JSON object: an OTLP ExportLogsServiceRequest "
               "{\"resourceLogs\":[...]}"},
        {"{\"resourceLogs\":[", "malformed JSON at byte 17: unexpected end of input"},
        {"{} {}", "unexpected data after the JSON body at byte 3"},
        {"{\"resourceLogs\":{}}",
         "invalid OTLP logs request at byte 16: \"resourceLogs\" must be an array"},
        {"{\"resourceLogs\":[1]}",
         "invalid OTLP logs request at byte 17: an element of \"resourceLogs\" must be an object"},
        {"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":{}}]}]}",
         "invalid OTLP logs request at byte 45: \"logRecords\" must be an array"},
        {ONE_SCOPE("{\"timeUnixNano\":\"12x\"}"),
         "invalid OTLP logs request at byte 62: \"timeUnixNano\" must be an integer from 0 to "
         "18446744073709551615 (a number or a decimal string)"},
        {ONE_SCOPE("{\"timeUnixNano\":-1}"),
         "invalid OTLP logs request at byte 62: \"timeUnixNano\" must be an integer from 0 to "
         "18446744073709551615 (a number or a decimal string)"},
        {ONE_SCOPE("{\"severityNumber\":1.5}"),
         "invalid OTLP logs request at byte 64: \"severityNumber\" must be an integer from "
         "-2147483648 to 2147483647 (a number or a decimal string)"},
        {ONE_SCOPE("{\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":"
                   "\"9223372036854775808\"}}]}"),
         "invalid OTLP logs request at byte 92: \"intValue\" must be an integer from "
         "-9223372036854775808 to 9223372036854775807 (a number or a decimal string)"},
        {ONE_SCOPE("{\"traceId\":\"zz\"}"),
         "invalid OTLP logs request at byte 57: \"traceId\" must be a string of hex digits"},
        {ONE_SCOPE("{\"body\":{\"stringValue\":1}}"),
         "invalid OTLP logs request at byte 69: \"stringValue\" must be a string"},
        {ONE_SCOPE("{\"body\":{\"bytesValue\":\"!!\"}}"),
         "invalid OTLP logs request at byte 68: \"bytesValue\" must be a base64 string"},
        {ONE_SCOPE("{\"body\":{\"doubleValue\":\"fast\"}}"),
         "invalid OTLP logs request at byte 69: \"doubleValue\" must be a number, \"NaN\", "
         "\"Infinity\" or \"-Infinity\""},
        {ONE_SCOPE("{\"body\":\"text\"}"),
         "invalid OTLP logs request at byte 54: a value must be an object such as "
         "{\"stringValue\":\"...\"}"},
        {ONE_SCOPE("{\"attributes\":{\"a\":1}}"),
         "invalid OTLP logs request at byte 60: \"attributes\" must be an array"},
        {ONE_SCOPE("{\"attributes\":[{\"key\":1}]}"),
         "invalid OTLP logs request at byte 68: \"key\" must be a string"},
        {"{\"resourceLogs\":[{\"resource\":[]}]}",
         "invalid OTLP logs request at byte 29: \"resource\" must be an object"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        parsed p;
        parse(OTLP_JSON, t[i].body, strlen(t[i].body), &p);
        if (p.r.code != INGEST_EINVAL || strcmp(p.r.error, t[i].error))
            test_fail(__FILE__, __LINE__, "body %s:\n  expected %d %s\n  got      %d %s", t[i].body,
                      INGEST_EINVAL, t[i].error, p.r.code, p.r.error);
        parsed_free(&p);
    }
}

TEST(test_otlp_refuses_protobuf_bodies_it_cannot_read_whole)
{
    /* a record whose body nests 150 arrays: 300 messages */
    buf deep = any_str("x");
    for (int i = 0; i < 150; i++) deep = any_list(5, &deep, 1);
    buf rec = BUF_INIT;
    pb_msg(&rec, 5, deep);
    buf deep_req = request((buf){0}, (buf){0}, &rec, 1);
    /* a record whose body (field 5) is a varint, not a message */
    buf wrong = BUF_INIT;
    pb_uvarint(&wrong, 5, 1);
    buf wrong_req = request((buf){0}, (buf){0}, &wrong, 1);
    struct {
        const char *name;
        const char *body;
        size_t n;
        const char *error;
    } t[] = {
        {"cut short", "\x0a\x05\x01", 3,
         "invalid OTLP logs request at byte 0: field 1: its length runs past the end of its "
         "message"},
        {"resource_logs a varint", "\x08\x01", 2,
         "invalid OTLP logs request at byte 0: resource_logs (field 1) must be a message"},
        {"a group", "\x0b", 1,
         "invalid OTLP logs request at byte 0: field 1 has wire type 3, which OTLP does not use"},
        {"a varint cut short", "\x0a\x02\x08\x80", 4,
         "invalid OTLP logs request at byte 2: field 1: a varint is cut short"},
        {"a length cut short", "\x0a\x02\x12\x80", 4,
         "invalid OTLP logs request at byte 2: field 2: its length runs past the end of its "
         "message"},
        {"too deep", deep_req.p, deep_req.len,
         "invalid OTLP logs request at byte 609: messages nest deeper than 200 levels"},
        {"wrong wire type", wrong_req.p, wrong_req.len,
         "invalid OTLP logs request at byte 6: a log record does not decode (a field of the "
         "wrong type?)"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        parsed p;
        parse(OTLP_PROTOBUF, t[i].body, t[i].n, &p);
        if (p.r.code != INGEST_EINVAL || strcmp(p.r.error, t[i].error))
            test_fail(__FILE__, __LINE__, "%s:\n  expected %d %s\n  got      %d %s", t[i].name,
                      INGEST_EINVAL, t[i].error, p.r.code, p.r.error);
        parsed_free(&p);
    }
    buf_free(&deep_req);
    buf_free(&wrong_req);

    /* 100,000 empty attributes: 2 bytes each on the wire, far more decoded */
    buf many = BUF_INIT;
    for (int i = 0; i < 100000; i++) pb_bytes(&many, 6, "", 0);
    buf many_req = request((buf){0}, (buf){0}, &many, 1);
    parsed p;
    parse(OTLP_PROTOBUF, many_req.p, many_req.len, &p);
    CHECK_INT(INGEST_EBIG, p.r.code);
    CHECK_STR("a log record of 200000 bytes needs more than 6465536 bytes of memory to decode",
              p.r.error);
    parsed_free(&p);
    buf_free(&many_req);
}

TEST(test_otlp_answers_are_otlp_messages)
{
    ingest_result r = {0};
    buf b = BUF_INIT;
    otlp_logs_answer(OTLP_JSON, &r, &b);
    buf_cstr(&b);
    CHECK_STR("{}", b.p); /* partialSuccess left unset: the specification */
    b.len = 0;
    otlp_logs_answer(OTLP_PROTOBUF, &r, &b);
    CHECK_INT(0, b.len);
    otlp_status(OTLP_JSON, 400, "bad \"x\"", &b);
    buf_cstr(&b);
    CHECK_STR("{\"code\":3,\"message\":\"bad \\\"x\\\"\"}", b.p);
    b.len = 0;
    otlp_status(OTLP_PROTOBUF, 503, "down", &b);
    CHECK_INT(8, b.len);
    CHECK(!memcmp(b.p,
                  "\x08\x0e\x12\x04"
                  "down",
                  8)); /* code 14, message */
    buf_free(&b);
    CHECK_INT(OTLP_JSON, otlp_encoding_of("application/json; charset=utf-8"));
    CHECK_INT(OTLP_PROTOBUF, otlp_encoding_of("Application/X-Protobuf"));
    CHECK_INT(OTLP_NONE, otlp_encoding_of("application/x-ndjson"));
    CHECK_INT(OTLP_NONE, otlp_encoding_of(NULL));
}

/* ---- against a server ----------------------------------------------------------------- */

static long post_logs(const srv *s, const char *query, const char *ctype, const char *extra,
                      const void *body, size_t n, resp *r)
{
    char url[200], ct[128];
    snprintf(url, sizeof url, "%s/v1/logs%s", s->url, query ? query : "");
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *h[] = {ct, extra, NULL};
    http_do("POST", url, h, body, n, 0, r);
    return r->status;
}

/* Lines of the lake with "id":"otel-, after a clean stop sealed them. */
static int otel_lines(const char *lake, buf *out)
{
    buf all = BUF_INIT;
    int files, n = 0;
    lake_read_all(lake, &all, &files);
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        if (!strncmp(p, "{\"id\":\"otel-", 12)) {
            buf_append(out, p, (size_t)(nl - p + 1));
            n++;
        }
        p = nl + 1;
    }
    buf_free(&all);
    buf_cstr(out);
    return n;
}

TEST(test_otlp_server_stores_json_protobuf_and_gzip_once_each)
{
    srv s = {0};
    char *lake = srv_lake_dir("otlp");
    const char *args[] = {"--seal-age", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;

    CHECK_INT(200, post_logs(&s, NULL, "application/json", NULL, FULL_JSON, strlen(FULL_JSON), &r));
    CHECK_STR("{}\n", r.body.p);
    CHECK_CONTAINS("Content-Type: application/json", r.head.p);
    resp_free(&r);

    /* the same record in protobuf has the same id: a duplicate, not stored again */
    buf pb = full_protobuf();
    CHECK_INT(200, post_logs(&s, NULL, "application/x-protobuf", NULL, pb.p, pb.len, &r));
    CHECK_INT(0, r.body.len);
    CHECK_CONTAINS("Content-Type: application/x-protobuf", r.head.p);
    resp_free(&r);

    /* an exporter's retry of the same batch, gzip-compressed this time */
    buf gz = BUF_INIT;
    gzip_bytes(FULL_JSON, strlen(FULL_JSON), &gz);
    CHECK_INT(200,
              post_logs(&s, NULL, "application/json", "Content-Encoding: gzip", gz.p, gz.len, &r));
    CHECK_STR("{}\n", r.body.p);
    resp_free(&r);
    buf_free(&gz);

    /* a new record, gzipped protobuf, with a default type */
    buf rec = BUF_INIT;
    pb_msg(&rec, 5, any_str("gzipped"));
    buf req = request((buf){0}, (buf){0}, &rec, 1);
    gzip_bytes(req.p, req.len, &gz);
    CHECK_INT(200, post_logs(&s, "?type=app.log", "application/x-protobuf",
                             "Content-Encoding: gzip", gz.p, gz.len, &r));
    resp_free(&r);
    buf_free(&gz);
    buf_free(&req);
    buf_free(&pb);

    char m[200];
    resp mr;
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", s.url);
    http_do("GET", url, NULL, NULL, 0, 0, &mr);
    snprintf(m, sizeof m, "events_http_requests_total{route=\"otlp_logs\",code=\"200\"} 4\n");
    CHECK_CONTAINS(m, mr.body.p);
    CHECK_CONTAINS("events_ingested_total 2\n", mr.body.p);
    CHECK_CONTAINS("events_duplicate_total 2\n", mr.body.p);
    resp_free(&mr);

    CHECK_INT(0, srv_stop(&s, SIGTERM));
    buf lines = BUF_INIT;
    CHECK_INT(2, otel_lines(lake, &lines));
    CHECK_CONTAINS("\"severityText\":\"ERROR\"", lines.p);
    CHECK_CONTAINS("\"type\":\"app.log\"", lines.p);
    CHECK_CONTAINS("\"body\":\"gzipped\"", lines.p);
    buf_free(&lines);
    srv_lake_cleanup(&s, lake);
}

TEST(test_otlp_server_answers_errors_as_otlp_status)
{
    srv s = {0};
    char *lake = srv_lake_dir("otlp");
    const char *args[] = {"--max-body", "4KiB", "--max-event-bytes", "1KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;

    CHECK_INT(415, post_logs(&s, NULL, "application/x-ndjson", NULL, "{}", 2, &r));
    CHECK_STR("{\"code\":12,\"message\":\"unsupported Content-Type \\\"application/x-ndjson\\\": "
              "use application/json or application/x-protobuf\"}\n",
              r.body.p);
    resp_free(&r);

    CHECK_INT(400, post_logs(&s, NULL, "application/json", NULL, "{\"resourceLogs\":{}}", 19, &r));
    CHECK_STR(
        "{\"code\":3,\"message\":\"invalid OTLP logs request at byte 16: \\\"resourceLogs\\\" "
        "must be an array\"}\n",
        r.body.p);
    resp_free(&r);

    /* a protobuf request gets a protobuf Status: code 3, then the message */
    CHECK_INT(400, post_logs(&s, NULL, "application/x-protobuf", NULL, "\x08\x01", 2, &r));
    CHECK_CONTAINS("Content-Type: application/x-protobuf", r.head.p);
    const char *msg = "invalid OTLP logs request at byte 0: resource_logs (field 1) must be a "
                      "message";
    REQUIRE_INT(4 + strlen(msg), r.body.len);
    CHECK(!memcmp(r.body.p, "\x08\x03\x12", 3));
    CHECK_INT(strlen(msg), (unsigned char)r.body.p[3]);
    CHECK(!memcmp(r.body.p + 4, msg, strlen(msg)));
    resp_free(&r);

    CHECK_INT(400, post_logs(&s, "?type=Bad", "application/json", NULL, "{}", 2, &r));
    CHECK_STR("{\"code\":3,\"message\":\"type \\\"Bad\\\" is not an event type: "
              "[a-z0-9_]+(.[a-z0-9_-]+)*, at most 128 bytes\"}\n",
              r.body.p);
    resp_free(&r);

    char big[5000];
    memset(big, ' ', sizeof big);
    big[0] = '{', big[sizeof big - 1] = '}';
    CHECK_INT(413, post_logs(&s, NULL, "application/json", NULL, big, sizeof big, &r));
    CHECK_STR("{\"code\":8,\"message\":\"body of 5000 bytes is over the limit of 4096 bytes\"}\n",
              r.body.p);
    resp_free(&r);

    CHECK_INT(400, post_logs(&s, NULL, "application/json", "Content-Encoding: gzip", "{}", 2, &r));
    CHECK_STR("{\"code\":3,\"message\":\"invalid gzip body: incorrect header check\"}\n", r.body.p);
    resp_free(&r);

    char url[128];
    snprintf(url, sizeof url, "%s/v1/logs", s.url);
    http_do("GET", url, NULL, NULL, 0, 0, &r);
    CHECK_INT(405, r.status);
    CHECK_STR("{\"code\":12,\"message\":\"method GET not allowed on /v1/logs\"}\n", r.body.p);
    resp_free(&r);

    /* a record refused: 200, with partialSuccess */
    const char *bad_type = ONE_SCOPE(
        "{},{\"attributes\":[{\"key\":\"events.type\",\"value\":{\"stringValue\":\"X\"}}]}");
    CHECK_INT(200, post_logs(&s, NULL, "application/json", NULL, bad_type, strlen(bad_type), &r));
    CHECK_STR("{\"partialSuccess\":{\"rejectedLogRecords\":\"1\",\"errorMessage\":\"refused 1 of 2 "
              "log records: record 1 (counting from 0 in the order of the request): \\\"type\\\" "
              "must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most 128 bytes\"}}\n",
              r.body.p);
    resp_free(&r);
    /* and kept in the quarantine, with the route it came by */
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    CHECK_INT(0, sh("test $(cat %s/rejected/*/*/*/*/*.jsonl | grep -c '\"route\":\"/v1/logs\"') "
                    "-eq 1",
                    lake));
    srv_lake_cleanup(&s, lake);
}
