/*
 * ingest.c - request bodies: gzip, the three body shapes, per-event results.
 *
 * Reading order of the ingest path: this file, then lake/writer.c, then
 * lake/store_fs.c.
 */
#include "ingest.h"
#include "codec.h"
#include "layout.h"
#include "quarantine.h"

#include "ulid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int ingest_gunzip(const char *in, size_t n, size_t max, buf *out, char *err, size_t errlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        snprintf(err, errlen, "cannot start gzip decoder");
        return INGEST_EINVAL;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    int rc = 0;
    if (n > UINT32_MAX) {
        snprintf(err, errlen, "gzip body too large");
        inflateEnd(&z);
        return INGEST_EBIG;
    }
    for (;;) {
        size_t room = n * 4 + 4096;
        if (room > max - out->len + 1)
            room = max - out->len + 1; /* one byte more detects overflow */
        if (room > (1u << 24)) room = 1u << 24;
        if (buf_reserve(out, room)) {
            snprintf(err, errlen, "out of memory inflating the body");
            rc = INGEST_ENOMEM;
            break;
        }
        z.next_out = (Bytef *)(out->p + out->len);
        z.avail_out = (uInt)room;
        int r = inflate(&z, Z_NO_FLUSH);
        out->len += room - z.avail_out;
        if (out->len > max) {
            snprintf(err, errlen, "body inflates past the limit of %zu bytes", max);
            rc = INGEST_EBIG;
            break;
        }
        if (r == Z_STREAM_END) {
            if (z.avail_in == 0) break;
            /* another gzip member follows (concatenated gzip files are one stream) */
            if (inflateReset(&z) != Z_OK) {
                snprintf(err, errlen, "invalid gzip body");
                rc = INGEST_EINVAL;
                break;
            }
            continue;
        }
        if (r == Z_OK) continue;
        if (r == Z_BUF_ERROR && z.avail_in == 0) {
            snprintf(err, errlen, "truncated gzip body");
            rc = INGEST_EINVAL;
            break;
        }
        if (r == Z_BUF_ERROR) continue;
        snprintf(err, errlen, "invalid gzip body: %s", z.msg ? z.msg : "corrupt data");
        rc = INGEST_EINVAL;
        break;
    }
    inflateEnd(&z);
    return rc;
}

int ingest_options_check(const char *type, const char *ts_key, char *err, size_t errlen)
{
    if (type && !event_type_valid(type, strlen(type))) {
        buf q = BUF_INIT;
        buf_json_str(&q, type, strlen(type) > 140 ? 140 : strlen(type));
        snprintf(err, errlen,
                 "type %.*s is not an event type: it must match [a-z0-9_]+(.[a-z0-9_-]+)* and be "
                 "at most %d bytes",
                 (int)q.len, q.p ? q.p : "", EVENT_TYPE_MAX);
        buf_free(&q);
        return -1;
    }
    if (ts_key && !event_ts_key_valid(ts_key, strlen(ts_key))) {
        buf q = BUF_INIT;
        buf_json_str(&q, ts_key, strlen(ts_key) > 80 ? 80 : strlen(ts_key));
        snprintf(err, errlen,
                 "ts_key %.*s cannot name the time member: it must be 1-64 of [A-Za-z0-9_.@$-] "
                 "and not id, type, do or receivedAt",
                 (int)q.len, q.p ? q.p : "");
        buf_free(&q);
        return -1;
    }
    return 0;
}

void ingest_result_reset(ingest_result *r)
{
    r->code = 0;
    r->error[0] = 0;
    r->received = r->rejected = r->n = r->qn = 0;
    memset(r->rejected_by, 0, sizeof r->rejected_by);
    r->rejects.len = 0;
    r->lines.len = 0;
    r->qlines.len = 0;
    r->list_all = 0;
    r->request_id[0] = 0;
    r->has_batch = 0;
    r->batch_raw[0] = r->batch_hash[0] = 0;
}

void ingest_result_free(ingest_result *r)
{
    buf_free(&r->rejects);
    buf_free(&r->lines);
    buf_free(&r->qlines);
    free(r->ev);
    free(r->qev);
    r->ev = r->qev = NULL;
    r->n = r->cap = r->qn = r->qcap = 0;
}

static void fail(ingest_result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(ingest_result *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->code = code;
}

/*
 * Appends reason to the answer's list as a JSON string of at most max bytes (0: no limit),
 * cut between characters (and never inside an escape) with "…" when it is longer.
 */
static int put_reason(buf *b, const char *why, size_t max)
{
    size_t mark = b->len;
    if (buf_json_str(b, why, strlen(why))) return -1;
    if (!max || b->len - mark <= max) return 0;
    buf one = BUF_INIT;
    size_t n = strlen(why), i = 0, used = 2 + 3; /* the quotes, and the ellipsis */
    b->len = mark;
    while (i < n) {
        size_t k = 1;
        while (i + k < n && ((unsigned char)why[i + k] & 0xc0) == 0x80) k++;
        one.len = 0;
        if (buf_json_str(&one, why + i, k)) break;
        if (used + one.len - 2 > max) break;
        used += one.len - 2;
        i += k;
    }
    buf_free(&one);
    return buf_json_str(b, why, i) || (b->len--, buf_puts(b, "\xe2\x80\xa6\""));
}

/* A refused record: counted, listed in the answer (the first few), and its quarantine line. */
static int add_reject(event_ctx *ctx, ingest_result *r, const ingest_options *o, size_t index,
                      const char *why, int reason, const char *raw, size_t raw_len)
{
    r->rejected++;
    if (reason >= 0 && reason < EVENT_R_COUNT) r->rejected_by[reason]++;
    if (r->list_all || r->rejected <= INGEST_REJECTED_LISTED) {
        if (r->rejects.len) buf_putc(&r->rejects, ',');
        if (buf_printf(&r->rejects, "{\"index\":%zu,\"error\":", index) ||
            put_reason(&r->rejects, why, r->list_all ? 0 : INGEST_REASON_SHOWN) ||
            buf_putc(&r->rejects, '}'))
            return -1;
    }
    if (r->qn == r->qcap) {
        size_t cap = r->qcap ? r->qcap * 2 : 64;
        lake_event *v = realloc(r->qev, cap * sizeof *v);
        if (!v) return -1;
        r->qev = v;
        r->qcap = cap;
    }
    const char *name = event_reason_name(reason);
    lake_quarantine_rec q = {.received_ms = ctx->now_ms,
                             .request_id = r->request_id,
                             .index = index,
                             .reason_class = name ? name : "other",
                             .reason = why,
                             .token = o ? o->token : NULL,
                             .route = o && o->route ? o->route : "/ingest",
                             .raw = raw,
                             .raw_len = raw_len};
    size_t off = r->qlines.len, id_off;
    char err[128]; /* out of memory, failed as add_reject's other allocations are */
    if (lake_quarantine_line(&r->qlines, &q, &id_off, err, sizeof err)) return -1;
    lake_event *e = &r->qev[r->qn++];
    memset(e, 0, sizeof *e);
    e->off = (uint32_t)off;
    e->len = (uint32_t)(r->qlines.len - off);
    e->id_off = (uint32_t)id_off;
    e->id_len = 26;
    e->hour = lake_hour(ctx->now_ms);
    return 0;
}

/*
 * Adds the event just normalised (the last line of r->lines), ending its line with the position
 * placeholder the writer fills in place when it stores the event (layout.h): the server's lines
 * only, libevents' client normalises without it.
 */
static int add_event(ingest_result *r, const event_info *in)
{
    r->lines.len -= 2; /* "}\n" */
    if (buf_append(&r->lines, LAKE_POS_PLACEHOLDER "\n", LAKE_POS_TAIL + 1)) return -1;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 128;
        lake_event *v = realloc(r->ev, cap * sizeof *v);
        if (!v) return -1;
        r->ev = v;
        r->cap = cap;
    }
    lake_event *e = &r->ev[r->n++];
    e->off = (uint32_t)in->line_off;
    e->len = (uint32_t)(in->line_len - 2 + LAKE_POS_TAIL + 1);
    e->id_off = (uint32_t)in->id_off;
    e->id_len = (uint16_t)in->id_len;
    e->client_id = (uint8_t)in->client_id;
    e->hour = lake_hour(in->ts_ms);
    return 0;
}

/* Normalises one element; returns 0 to go on, -1 on a fatal error (r->code set). */
static int one_event(event_ctx *ctx, jscan *s, const char *body, const char *p, const char *end,
                     const char **next, const ingest_limits *lim, const ingest_options *o,
                     ingest_result *r)
{
    if (r->received == lim->max_events) {
        fail(r, INGEST_EBIG, "more than %zu events in one request", lim->max_events);
        return -1;
    }
    size_t index = r->received++;
    event_info info;
    char why[256], bid[EVENT_ID_MAX + 1];
    if (r->has_batch) { /* an event without an id gets the batch's */
        ctx->default_id_len = ingest_batch_id(r, index, bid);
        ctx->default_id = bid;
    }
    int rc = event_normalise(ctx, s, p, end, next, &r->lines, &info, why, sizeof why);
    ctx->default_id = NULL;
    ctx->default_id_len = 0;
    if (rc == EVENT_SYNTAX) {
        fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: %s", (size_t)(s->err_at - body),
             s->err);
        return -1;
    }
    if (rc == EVENT_NOMEM || (rc == EVENT_OK && add_event(r, &info)) ||
        (rc == EVENT_REJECTED &&
         add_reject(ctx, r, o, index, why, ctx->reason, p, (size_t)(*next - p)))) {
        fail(r, INGEST_ENOMEM, "out of memory parsing the body");
        return -1;
    }
    return 0;
}

static const char *parse_array(event_ctx *ctx, jscan *s, const char *body, const char *p,
                               const char *end, const ingest_limits *lim, const ingest_options *o,
                               ingest_result *r)
{
    p = jscan_ws(s, p + 1, end);
    if (p < end && *p == ']') return p + 1;
    for (;;) {
        const char *next;
        if (one_event(ctx, s, body, p, end, &next, lim, o, r)) return NULL;
        p = jscan_ws(s, next, end);
        if (p < end && *p == ',') {
            p = jscan_ws(s, p + 1, end);
            continue;
        }
        if (p < end && *p == ']') return p + 1;
        fail(r, INGEST_EINVAL,
             "malformed JSON at byte %zu: expected ',' or ']' in the events array",
             (size_t)(p - body));
        return NULL;
    }
}

/*
 * The wrapper's batchId, its value at v: kept in r (ingest_batch_id). Returns the position
 * after it, or NULL with r failed.
 */
static const char *read_batch_id(jscan *s, const char *body, const char *v, const char *end,
                                 ingest_result *r)
{
    enum jtype t;
    s->bad = NULL;
    const char *after = jscan_value(s, v, end, &t);
    if (!after) {
        fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: %s", (size_t)(s->err_at - body),
             s->err);
        return NULL;
    }
    size_t cap = (size_t)(after - v), n = (size_t)-1;
    char *dec = t == J_STR && !s->bad && cap > 2 ? malloc(cap) : NULL;
    if (dec) n = jscan_unescape(v + 1, after - 1, dec, cap);
    if (n == (size_t)-1 || n == 0) {
        free(dec);
        fail(r, INGEST_EINVAL, "\"batchId\" must be a non-empty string");
        return NULL;
    }
    char hex[65];
    sha256_hex_of(dec, n, hex);
    snprintf(r->batch_hash, sizeof r->batch_hash, "b_%.32s", hex);
    r->batch_raw[0] = 0;
    if (n <= EVENT_ID_MAX && event_id_valid(dec, n)) {
        memcpy(r->batch_raw, dec, n);
        r->batch_raw[n] = 0;
    }
    r->has_batch = 1;
    free(dec);
    return after;
}

size_t ingest_batch_id(const ingest_result *r, size_t index, char *out)
{
    char idx[24];
    int k = snprintf(idx, sizeof idx, ":%zu", index);
    size_t raw = strlen(r->batch_raw);
    const char *pre = raw && raw + (size_t)k <= EVENT_ID_MAX ? r->batch_raw : r->batch_hash;
    return (size_t)snprintf(out, EVENT_ID_MAX + 1, "%s%s", pre, idx);
}

/*
 * One member of the wrapper, its key at p: "events" (parsed), "batchId" (read, or
 * skipped when an earlier pass read it), or another (skipped). Returns the position
 * after its value, or NULL with r failed. *late is set when batchId comes after the events.
 */
static const char *wrapper_member(event_ctx *ctx, jscan *s, const char *body, const char *p,
                                  const char *end, const ingest_limits *lim,
                                  const ingest_options *o, ingest_result *r, int seen[2],
                                  int batch_known, int *late)
{
    const char *k = p;
    enum jtype t;
    s->bad = NULL;
    if (!(p = jscan_string(s, p, end))) goto syntax;
    int is_events = p - k == 8 && !memcmp(k, "\"events\"", 8);
    int is_batch = p - k == 9 && !memcmp(k, "\"batchId\"", 9);
    if (s->bad) goto defect;
    p = jscan_ws(s, p, end);
    if (p >= end || *p != ':') {
        fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: expected ':' after key",
             (size_t)(p - body));
        return NULL;
    }
    p = jscan_ws(s, p + 1, end);
    if ((is_events || is_batch) && seen[is_batch]++) {
        fail(r, INGEST_EINVAL, "duplicate key \"%s\" in the body",
             is_events ? "events" : "batchId");
        return NULL;
    }
    if (is_events) {
        if (p >= end || *p != '[') {
            fail(r, INGEST_EINVAL, "\"events\" must be an array");
            return NULL;
        }
        return parse_array(ctx, s, body, p, end, lim, o, r);
    }
    if (is_batch && !batch_known) {
        *late = seen[0] > 0;
        return read_batch_id(s, body, p, end, r);
    }
    s->bad = NULL;
    if (!(p = jscan_value(s, p, end, &t))) goto syntax;
    if (s->bad) goto defect;
    return p;
syntax:
    fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: %s", (size_t)(s->err_at - body), s->err);
    return NULL;
defect:
    fail(r, INGEST_EINVAL, "%s at byte %zu of the body", s->bad, (size_t)(s->bad_at - body));
    return NULL;
}

/*
 * The seed's wrapper {"events":[…]}, with an optional "batchId" (other members are
 * ignored); p at its '{'. Returns the position after it, or NULL with r failed.
 */
static const char *parse_wrapper(event_ctx *ctx, jscan *s, const char *body, const char *p,
                                 const char *end, const ingest_limits *lim, const ingest_options *o,
                                 ingest_result *r, int *late)
{
    int seen[2] = {0, 0}, batch_known = r->has_batch;
    p = jscan_ws(s, p + 1, end);
    int closed = p < end && *p == '}';
    if (closed) p++;
    while (!closed) {
        if (p >= end || *p != '"') {
            fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: expected a string key in object",
                 (size_t)(p - body));
            return NULL;
        }
        if (!(p = wrapper_member(ctx, s, body, p, end, lim, o, r, seen, batch_known, late)))
            return NULL;
        p = jscan_ws(s, p, end);
        if (p < end && (*p == ',' || *p == '}')) {
            closed = *p == '}';
            p = closed ? p + 1 : jscan_ws(s, p + 1, end);
            continue;
        }
        fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: expected ',' or '}' in object",
             (size_t)(p - body));
        return NULL;
    }
    if (!seen[0]) {
        fail(r, INGEST_EINVAL,
             "body is a JSON object without \"events\": send {\"events\":[...]}, "
             "a JSON array of events, or NDJSON");
        return NULL;
    }
    return p;
}

/*
 * A wrapper whose batchId follows its events: the events were given their own ids, so
 * the body is parsed once more, r emptied but for its request and batch.
 */
static const char *parse_wrapper_again(event_ctx *ctx, jscan *s, const char *body, const char *p,
                                       const char *end, const ingest_limits *lim,
                                       const ingest_options *o, ingest_result *r)
{
    char raw[sizeof r->batch_raw], hash[sizeof r->batch_hash], req[sizeof r->request_id];
    int list_all = r->list_all, late = 0;
    memcpy(raw, r->batch_raw, sizeof raw);
    memcpy(hash, r->batch_hash, sizeof hash);
    memcpy(req, r->request_id, sizeof req);
    ingest_result_reset(r);
    memcpy(r->batch_raw, raw, sizeof raw);
    memcpy(r->batch_hash, hash, sizeof hash);
    memcpy(r->request_id, req, sizeof req);
    r->list_all = list_all;
    r->has_batch = 1;
    return parse_wrapper(ctx, s, body, p, end, lim, o, r, &late);
}

static void parse_json(event_ctx *ctx, const char *body, const char *p, const char *end,
                       const ingest_limits *lim, const ingest_options *o, ingest_result *r)
{
    jscan s = {0};
    p = jscan_ws(&s, p, end);
    if (p >= end) {
        fail(r, INGEST_EINVAL, "empty body");
        return;
    }
    if (*p == '[') {
        if (!(p = parse_array(ctx, &s, body, p, end, lim, o, r))) return;
    } else if (*p == '{') {
        int late = 0;
        const char *open = p;
        if (!(p = parse_wrapper(ctx, &s, body, open, end, lim, o, r, &late))) return;
        if (late && !(p = parse_wrapper_again(ctx, &s, body, open, end, lim, o, r))) return;
    } else {
        enum jtype t;
        if (!jscan_value(&s, p, end, &t)) {
            fail(r, INGEST_EINVAL, "malformed JSON at byte %zu: %s", (size_t)(s.err_at - body),
                 s.err);
            return;
        }
        fail(r, INGEST_EINVAL,
             "body must be {\"events\":[...]}, a JSON array of events, or NDJSON");
        return;
    }
    p = jscan_ws(&s, p, end);
    if (p < end) {
        fail(r, INGEST_EINVAL,
             "unexpected data after the JSON body at byte %zu (for one event per line, "
             "send Content-Type: application/x-ndjson)",
             (size_t)(p - body));
    }
}

static void parse_ndjson(event_ctx *ctx, const char *body, const char *p, const char *end,
                         const ingest_limits *lim, const ingest_options *o, ingest_result *r)
{
    size_t lines = 0, syntax_errors = 0;
    char first_error[200] = "";
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next_line = nl ? nl + 1 : end;
        jscan s = {0};
        const char *q = jscan_ws(&s, p, le);
        if (q == le) { /* blank line */
            p = next_line;
            continue;
        }
        lines++;
        if (r->received == lim->max_events) {
            fail(r, INGEST_EBIG, "more than %zu events in one request", lim->max_events);
            return;
        }
        size_t index = r->received++;
        size_t mark = r->lines.len;
        event_info info;
        char why[256];
        const char *after = NULL;
        int rc = event_normalise(ctx, &s, q, le, &after, &r->lines, &info, why, sizeof why);
        int reason = ctx->reason;
        if (rc == EVENT_NOMEM) {
            fail(r, INGEST_ENOMEM, "out of memory parsing the body");
            return;
        }
        if (rc == EVENT_SYNTAX) {
            syntax_errors++;
            snprintf(why, sizeof why, "malformed JSON at byte %zu of the line: %s",
                     (size_t)(s.err_at - p), s.err);
            if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", why);
            rc = EVENT_REJECTED;
            reason = EVENT_R_SYNTAX;
        } else if (jscan_ws(&s, after, le) != le) {
            if (rc == EVENT_OK) r->lines.len = mark; /* drop the line written for it */
            snprintf(why, sizeof why, "unexpected data after the event on its line");
            rc = EVENT_REJECTED;
            reason = EVENT_R_SYNTAX;
        }
        const char *raw_end = le; /* the record: its line without the whitespace around it */
        while (raw_end > q && (raw_end[-1] == ' ' || raw_end[-1] == '\t' || raw_end[-1] == '\r'))
            raw_end--;
        if ((rc == EVENT_OK && add_event(r, &info)) ||
            (rc == EVENT_REJECTED &&
             add_reject(ctx, r, o, index, why, reason, q, (size_t)(raw_end - q)))) {
            fail(r, INGEST_ENOMEM, "out of memory parsing the body");
            return;
        }
        p = next_line;
    }
    if (lines == 0) {
        fail(r, INGEST_EINVAL, "empty body");
    } else if (syntax_errors == lines) {
        fail(r, INGEST_EINVAL, "body is not NDJSON: line 1: %s", first_error);
    }
}

void ingest_parse(event_ctx *ctx, const char *body, size_t n, enum ingest_format fmt,
                  const ingest_limits *lim, const ingest_options *opts, ingest_result *r)
{
    const char *p = body, *end = body + n;
    if (n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3; /* a UTF-8 byte order mark */
    if (buf_reserve(&r->lines, n + n / 2 + 1024)) {
        fail(r, INGEST_ENOMEM, "out of memory parsing the body");
        return;
    }
    ingest_begin(ctx, opts, r);
    if (fmt == INGEST_NDJSON)
        parse_ndjson(ctx, body, p, end, lim, opts, r);
    else
        parse_json(ctx, body, p, end, lim, opts, r);
    ingest_end(ctx);
}

void ingest_begin(event_ctx *ctx, const ingest_options *opts, ingest_result *r)
{
    r->list_all = opts && opts->list_all;
    if (opts && opts->request_id)
        snprintf(r->request_id, sizeof r->request_id, "%s", opts->request_id);
    else
        ulid_make(ctx->now_ms, r->request_id);
    ctx->default_type = opts ? opts->type : NULL;
    ctx->default_type_len = ctx->default_type ? strlen(ctx->default_type) : 0;
    ctx->ts_key = opts ? opts->ts_key : NULL;
    ctx->ts_key_len = ctx->ts_key ? strlen(ctx->ts_key) : 0;
}

void ingest_end(event_ctx *ctx)
{
    ctx->default_type = ctx->ts_key = NULL; /* the context outlives the request */
    ctx->default_type_len = ctx->ts_key_len = 0;
}

int ingest_add(event_ctx *ctx, const char *text, size_t n, const ingest_limits *lim,
               const ingest_options *opts, ingest_result *r)
{
    jscan s = {0};
    const char *next;
    return one_event(ctx, &s, text, text, text + n, &next, lim, opts, r);
}

int ingest_answer(const ingest_result *r, size_t accepted, size_t duplicates, buf *out)
{
    buf_printf(out,
               "{\"ok\":true,\"received\":%zu,\"accepted\":%zu,\"duplicates\":%zu,\"rejected\":[",
               r->received, accepted, duplicates);
    if (r->rejects.len) buf_append(out, r->rejects.p, r->rejects.len);
    buf_putc(out, ']');
    if (r->rejected)
        buf_printf(out,
                   ",\"rejectedCount\":%zu,\"requestId\":\"%s\",\"quarantine\":\"%s kept in the "
                   "lake: SELECT * FROM rejected WHERE requestId = '%s'\"",
                   r->rejected, r->request_id,
                   r->rejected == 1 ? "the refused record is" : "the refused records are",
                   r->request_id);
    return buf_puts(out, "}");
}

int ingest_error_json(buf *out, const char *msg)
{
    buf_puts(out, "{\"ok\":false,\"error\":");
    buf_json_str(out, msg, strlen(msg));
    return buf_putc(out, '}');
}
