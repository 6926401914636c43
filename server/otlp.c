/*
 * otlp.c - OTLP log records as events: the event builder, and the answers.
 *
 * Reading order: this file (what an event made from a record holds, how its
 * type, ts and id are chosen), then otlp_json.c and otlp_pb.c, which read the
 * two encodings and write each record through the builder here.
 *
 * Each record becomes the JSON text of an event that ingest_add then checks
 * and normalises like any element of an /ingest body: the record's members
 * (severityNumber, severityText, eventName, body, attributes,
 * droppedAttributesCount, traceId, spanId, flags, timeUnixNano,
 * observedTimeUnixNano), its resource's attributes, its scope, then type, ts
 * and id. The id is "otel-" and the hex of a SipHash-128, under a fixed key,
 * of everything before it: the same record always has the same id, on any
 * server, in either encoding, and the lake's dedup answers a retried export
 * with duplicates. The key is public, so the hash is no defence against a
 * client that wants two records to collide; such a client could choose any
 * id on /ingest anyway.
 */
#include "otlp_int.h"
#include "codec.h"
#include "otlp_logs.pb-c.h"
#include "siphash.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The id's hash key: fixed, so that every server gives a record the same id. */
static const uint8_t ID_KEY[16] = {'e', 'v', 'e', 'n', 't', 's', '.', 'o',
                                   't', 'l', 'p', '.', 'i', 'd', '.', '1'};

#define ID_PREFIX "otel-"

enum otlp_encoding otlp_encoding_of(const char *ct)
{
    static const struct {
        const char *name;
        enum otlp_encoding enc;
    } types[] = {{"application/json", OTLP_JSON}, {"application/x-protobuf", OTLP_PROTOBUF}};
    if (!ct) return OTLP_NONE;
    while (*ct == ' ') ct++;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        size_t n = strlen(types[i].name);
        if (!strncasecmp(ct, types[i].name, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' '))
            return types[i].enc;
    }
    return OTLP_NONE;
}

const char *otlp_content_type(enum otlp_encoding enc)
{
    return enc == OTLP_PROTOBUF ? "application/x-protobuf" : "application/json";
}

/* ---- the builder ------------------------------------------------------------ */

void otlp__builder_init(otlp__builder *b, event_ctx *ctx, const char *default_type,
                        const ingest_limits *lim, ingest_result *r)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->lim = lim;
    b->r = r;
    b->default_type = default_type ? default_type : OTLP_DEFAULT_TYPE;
}

void otlp__builder_free(otlp__builder *b)
{
    buf_free(&b->resource);
    buf_free(&b->scope);
    buf_free(&b->ev);
    buf_free(&b->tmp);
}

int otlp__fail(otlp__builder *b, int code, const char *fmt, ...)
{
    if (b->r->code) return -1; /* the first failure is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->r->error, sizeof b->r->error, fmt, ap);
    va_end(ap);
    b->r->code = code;
    return -1;
}

void otlp__put(otlp__builder *b, buf *o, const char *p, size_t n)
{
    if (buf_append(o, p, n)) b->nomem = 1;
}

void otlp__puts(otlp__builder *b, buf *o, const char *s)
{
    otlp__put(b, o, s, strlen(s));
}

void otlp__put_str(otlp__builder *b, buf *o, const char *s, size_t n)
{
    if (buf_json_str(o, s, n)) b->nomem = 1;
}

void otlp__put_uint(otlp__builder *b, buf *o, uint64_t v)
{
    char d[20];
    int n = 0;
    do d[sizeof d - 1 - n++] = (char)('0' + v % 10);
    while (v /= 10);
    otlp__put(b, o, d + sizeof d - n, (size_t)n);
}

void otlp__put_int(otlp__builder *b, buf *o, int64_t v)
{
    if (v < 0) otlp__put(b, o, "-", 1);
    otlp__put_uint(b, o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

void otlp__put_double(otlp__builder *b, buf *o, double v)
{
    if (isnan(v) || isinf(v)) {
        otlp__puts(b, o, isnan(v) ? "\"NaN\"" : v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    /* the first of 15, 16, 17 significant digits that reads back as v: one text per value */
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
    otlp__puts(b, o, s);
}

void otlp__put_base64(otlp__builder *b, buf *o, const void *p, size_t n)
{
    if (buf_putc(o, '"') || base64_encode(o, p, n) || buf_putc(o, '"')) b->nomem = 1;
}

void otlp__key(otlp__builder *b, buf *o, int *first, const char *key, size_t n)
{
    if (!*first) otlp__put(b, o, ",", 1);
    *first = 0;
    otlp__put_str(b, o, key, n);
    otlp__put(b, o, ":", 1);
}

int otlp__put_id(otlp__builder *b, const char *key, const uint8_t *p, size_t n, size_t n_want)
{
    static const char hex[] = "0123456789abcdef";
    if (n != n_want) return 0;
    size_t zero = 0;
    while (zero < n && !p[zero]) zero++;
    if (zero == n) return 0;
    otlp__member(b, key);
    char h[2 * 16 + 2];
    size_t k = 0;
    h[k++] = '"';
    for (size_t i = 0; i < n; i++) h[k++] = hex[p[i] >> 4], h[k++] = hex[p[i] & 15];
    h[k++] = '"';
    otlp__put(b, &b->ev, h, k);
    return 1;
}

void otlp__record_begin(otlp__builder *b)
{
    b->ev.len = 0;
    b->members = 0;
    memset(b->src_len, 0, sizeof b->src_len);
    otlp__put(b, &b->ev, "{", 1);
}

void otlp__member(otlp__builder *b, const char *key)
{
    int first = b->members++ == 0;
    otlp__key(b, &b->ev, &first, key, strlen(key));
}

enum otlp__type_source otlp__type_source_of(const char *key, size_t n)
{
    if (n == 11 && !memcmp(key, "events.type", 11)) return OTLP__SRC_EVENTS_TYPE;
    if (n == 10 && !memcmp(key, "event.name", 10)) return OTLP__SRC_EVENT_NAME_ATTR;
    return OTLP__SRC_NONE;
}

void otlp__note(otlp__builder *b, enum otlp__type_source src, size_t off)
{
    if (src == OTLP__SRC_NONE || b->nomem) return;
    b->src_off[src] = off;
    b->src_len[src] = b->ev.len - off;
}

/* 1 if the value noted for src is a JSON string that is a valid event type. */
static int source_is_type(const otlp__builder *b, enum otlp__type_source src)
{
    size_t n = b->src_len[src];
    const char *v = b->ev.p + b->src_off[src];
    return n >= 2 && v[0] == '"' && v[n - 1] == '"' && event_type_valid(v + 1, n - 2);
}

/* Copies the value noted for src to the end of ev (which it may move). */
static void copy_source(otlp__builder *b, enum otlp__type_source src)
{
    size_t n = b->src_len[src];
    if (buf_reserve(&b->ev, n)) {
        b->nomem = 1;
        return;
    }
    memcpy(b->ev.p + b->ev.len, b->ev.p + b->src_off[src], n);
    b->ev.len += n;
}

/*
 * The type, in order: the attribute events.type, whatever its value (the event
 * rules judge it); the record's eventName, then its attribute event.name, when
 * it is a valid type; the request's default.
 */
static void write_type(otlp__builder *b)
{
    otlp__member(b, "type");
    if (b->src_len[OTLP__SRC_EVENTS_TYPE])
        copy_source(b, OTLP__SRC_EVENTS_TYPE);
    else if (source_is_type(b, OTLP__SRC_EVENT_NAME))
        copy_source(b, OTLP__SRC_EVENT_NAME);
    else if (source_is_type(b, OTLP__SRC_EVENT_NAME_ATTR))
        copy_source(b, OTLP__SRC_EVENT_NAME_ATTR);
    else
        otlp__put_str(b, &b->ev, b->default_type, strlen(b->default_type));
}

int otlp__record_end(otlp__builder *b, uint64_t time_ns, uint64_t observed_ns)
{
    buf *o = &b->ev;
    if (time_ns) {
        otlp__member(b, "timeUnixNano");
        otlp__put(b, o, "\"", 1), otlp__put_uint(b, o, time_ns), otlp__put(b, o, "\"", 1);
    }
    if (observed_ns) {
        otlp__member(b, "observedTimeUnixNano");
        otlp__put(b, o, "\"", 1), otlp__put_uint(b, o, observed_ns), otlp__put(b, o, "\"", 1);
    }
    if (b->resource.len) { /* "resource":{…}, written whole by the reader */
        if (b->members++) otlp__put(b, o, ",", 1);
        otlp__put(b, o, b->resource.p, b->resource.len);
    }
    if (b->scope.len) {
        if (b->members++) otlp__put(b, o, ",", 1);
        otlp__put(b, o, b->scope.p, b->scope.len);
    }
    write_type(b);
    /* the time it happened, else when it was seen (the OTLP specification's advice) */
    uint64_t ns = time_ns ? time_ns : observed_ns;
    if (ns) {
        otlp__member(b, "ts");
        otlp__put_uint(b, o, ns / 1000000); /* epoch milliseconds: at most 14 digits */
    }
    if (b->nomem) return otlp__fail(b, INGEST_ENOMEM, "out of memory parsing the body");
    uint8_t h[16];
    siphash128(o->p, o->len, ID_KEY, h);
    static const char hex[] = "0123456789abcdef";
    char id[sizeof ID_PREFIX + 32 + 2] = "\"" ID_PREFIX;
    size_t k = sizeof ID_PREFIX;
    for (int i = 0; i < 16; i++) id[k++] = hex[h[i] >> 4], id[k++] = hex[h[i] & 15];
    id[k++] = '"';
    otlp__member(b, "id");
    otlp__put(b, o, id, k);
    otlp__put(b, o, "}", 1);
    if (b->nomem) return otlp__fail(b, INGEST_ENOMEM, "out of memory parsing the body");
    return ingest_add(b->ctx, o->p, o->len, b->lim, b->opts, b->r);
}

/* ---- the request and its answers ------------------------------------------- */

void otlp_logs_parse(event_ctx *ctx, enum otlp_encoding enc, const char *body, size_t n,
                     const char *default_type, const ingest_limits *lim, const ingest_options *opts,
                     ingest_result *r)
{
    otlp__builder b;
    otlp__builder_init(&b, ctx, default_type, lim, r);
    b.opts = opts;
    ingest_begin(ctx, opts, r);
    if (enc == OTLP_PROTOBUF)
        otlp__pb_read(&b, body, n);
    else
        otlp__json_read(&b, body, n);
    ingest_end(ctx);
    otlp__builder_free(&b);
}

/*
 * The index and reason of the first refused record, from r->rejects
 * ({"index":I,"error":"…"},…, written by ingest.c). Returns 0, or -1 if there
 * is none.
 */
static int first_reject(const ingest_result *r, size_t *index, char *why, size_t cap)
{
    if (!r->rejects.p || !r->rejects.len || r->rejects.p[0] != '{') return -1;
    const char *p = r->rejects.p + 1, *end = r->rejects.p + r->rejects.len;
    jscan s = {0};
    int found = 0;
    while (p < end && *p == '"') {
        const char *k = p;
        if (!(p = jscan_string(&s, p, end)) || p >= end || *p != ':') return -1;
        size_t kn = (size_t)(p - k);
        const char *v = ++p;
        enum jtype t;
        if (!(p = jscan_value(&s, v, end, &t))) return -1;
        if (kn == 7 && !memcmp(k, "\"index\"", 7) && t == J_NUM) {
            *index = (size_t)strtoull(v, NULL, 10);
            found |= 1;
        } else if (kn == 7 && !memcmp(k, "\"error\"", 7) && t == J_STR) {
            size_t wn = jscan_unescape(v + 1, p - 1, why, cap - 1);
            if (wn == (size_t)-1) wn = 0;
            why[wn] = 0;
            found |= 2;
        }
        if (p < end && *p == ',') p++;
    }
    return found == 3 ? 0 : -1;
}

/* partialSuccess.errorMessage: how many were refused, and the first one's reason. */
static void refusal_message(const ingest_result *r, char *msg, size_t cap)
{
    size_t index = 0;
    char why[300];
    if (first_reject(r, &index, why, sizeof why)) snprintf(why, sizeof why, "(reason unknown)");
    if (r->rejected == 1)
        snprintf(msg, cap,
                 "refused 1 of %zu log records: record %zu (counting from 0 in the "
                 "order of the request): %s",
                 r->received, index, why);
    else
        snprintf(msg, cap,
                 "refused %zu of %zu log records; the first, record %zu (counting from "
                 "0 in the order of the request): %s",
                 r->rejected, r->received, index, why);
}

/* Appends a packed protobuf-c message. */
static int append_packed(const ProtobufCMessage *m, buf *out)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (buf_reserve(out, n + 1)) return -1;
    out->len += protobuf_c_message_pack(m, (uint8_t *)out->p + out->len);
    return 0;
}

int otlp_logs_answer(enum otlp_encoding enc, const ingest_result *r, buf *out)
{
    char msg[512] = "";
    if (r->rejected) refusal_message(r, msg, sizeof msg);
    if (enc == OTLP_PROTOBUF) {
        Events__Otlp__ExportLogsServiceResponse resp =
            EVENTS__OTLP__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
        Events__Otlp__ExportLogsPartialSuccess ps = EVENTS__OTLP__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;
        if (r->rejected) {
            ps.rejected_log_records = (int64_t)r->rejected;
            ps.error_message = msg;
            resp.partial_success = &ps; /* unset when all were taken: the specification */
        }
        return append_packed(&resp.base, out);
    }
    if (!r->rejected) return buf_puts(out, "{}");
    buf_printf(
        out, "{\"partialSuccess\":{\"rejectedLogRecords\":\"%zu\",\"errorMessage\":", r->rejected);
    buf_json_str(out, msg, strlen(msg));
    return buf_puts(out, "}}");
}

/* The gRPC status code (google.rpc.Code) nearest an HTTP status. */
static int grpc_code(unsigned http)
{
    switch (http) {
    case 400: return 3;  /* INVALID_ARGUMENT */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 5;  /* NOT_FOUND */
    case 405:
    case 415: return 12; /* UNIMPLEMENTED */
    case 408: return 4;  /* DEADLINE_EXCEEDED */
    case 413:
    case 429: return 8;                   /* RESOURCE_EXHAUSTED */
    case 503: return 14;                  /* UNAVAILABLE */
    default: return http >= 500 ? 13 : 2; /* INTERNAL, UNKNOWN */
    }
}

int otlp_status(enum otlp_encoding enc, unsigned http_status, const char *msg, buf *out)
{
    if (enc == OTLP_PROTOBUF) {
        Events__Otlp__Status st = EVENTS__OTLP__STATUS__INIT;
        st.code = grpc_code(http_status);
        st.message = (char *)(uintptr_t)msg;
        return append_packed(&st.base, out);
    }
    buf_printf(out, "{\"code\":%d,\"message\":", grpc_code(http_status));
    buf_json_str(out, msg, strlen(msg));
    return buf_putc(out, '}');
}
