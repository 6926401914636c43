/*
 * event.c - validation and normalisation of one event, in one pass plus a copy.
 *
 * The top-level object is walked here member by member (jscan does the values)
 * so that the envelope fields are found without building a tree; the line is
 * then assembled from the envelope and the untouched spans of the other
 * members. It must never accept what a strict JSON parser would refuse: the
 * fuzz target (tests/fuzz_ingest.c) holds it to jansson.
 */
#include "event.h"
#include "ulid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum role { R_REST, R_ID, R_TYPE, R_TS, R_RECEIVED, R_DO };

typedef struct event_member {
    const char *m, *mend; /* the member: from the key's quote to the value's end */
    const char *v, *vend; /* the value */
    enum jtype vt;
    size_t koff, klen; /* decoded key: in keys buf if escaped, else offset from m+1 */
    int kesc;
    enum role role;
} event_member;

void event_ctx_init(event_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->max_event_bytes = EVENT_MAX_BYTES_DEFAULT;
    c->max_depth = EVENT_MAX_DEPTH_DEFAULT;
    event_ctx_set_now(c, evtime_now_ms());
}

void event_ctx_set_now(event_ctx *c, int64_t now_ms)
{
    if (now_ms == c->now_ms && c->now[0])
        return; /* formatted already: many events share a millisecond */
    c->now_ms = now_ms;
    evtime_format(now_ms, c->now);
}

void event_ctx_free(event_ctx *c)
{
    free(c->mem);
    c->mem = NULL;
    c->memcap = 0;
    buf_free(&c->keys);
}

int event_type_valid(const char *t, size_t n)
{
    if (n == 0 || n > EVENT_TYPE_MAX) return 0;
    size_t seg = 0;
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '.') {
            if (seg == 0) return 0;
            seg = 0;
            first = 0;
            continue;
        }
        int ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (!first && c == '-');
        if (!ok) return 0;
        seg++;
    }
    return seg > 0;
}

int event_id_valid(const char *id, size_t n)
{
    if (n == 0 || n > EVENT_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static enum role role_of(const char *k, size_t n)
{
    if (n == 2 && k[0] == 'i' && k[1] == 'd') return R_ID;
    if (n == 2 && k[0] == 't' && k[1] == 's') return R_TS;
    if (n == 2 && k[0] == 'd' && k[1] == 'o') return R_DO;
    if (n == 4 && !memcmp(k, "type", 4)) return R_TYPE;
    if (n == 10 && !memcmp(k, "receivedAt", 10)) return R_RECEIVED;
    return R_REST;
}

static const char *key_ptr(const event_ctx *c, const event_member *m)
{
    return m->kesc ? c->keys.p + m->koff : m->m + 1 + m->koff;
}

static int key_cmp(const void *a, const void *b, void *ctx)
{
    const event_ctx *c = ctx;
    const event_member *x = *(event_member *const *)a, *y = *(event_member *const *)b;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return memcmp(key_ptr(c, x), key_ptr(c, y), x->klen);
}

/* Returns the first duplicated member, or NULL. */
static const event_member *find_duplicate(event_ctx *c, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (c->mem[i].klen == c->mem[j].klen &&
                    !memcmp(key_ptr(c, &c->mem[i]), key_ptr(c, &c->mem[j]), c->mem[i].klen))
                    return &c->mem[i];
        return NULL;
    }
    event_member **idx = malloc(n * sizeof *idx);
    if (!idx) return NULL; /* the check is skipped only when memory is gone */
    for (size_t i = 0; i < n; i++) idx[i] = &c->mem[i];
    qsort_r(idx, n, sizeof *idx, key_cmp, c);
    const event_member *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!key_cmp(&idx[i - 1], &idx[i], c)) dup = idx[i];
    free(idx);
    return dup;
}

static int reject(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reject(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return EVENT_REJECTED;
}

/* Parses an integer count of epoch milliseconds ("-0" is 0, as JSON readers see it). */
static int parse_ms_number(const char *p, const char *end, int64_t *ms)
{
    if (end - p == 2 && p[0] == '-' && p[1] == '0') {
        *ms = 0;
        return 0;
    }
    if (end - p > 15 || end == p) return -1;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    if (v > EVTIME_MAX_MS) return -1;
    *ms = v;
    return 0;
}

/*
 * The content of a short string member, decoded if it has escapes: envelope
 * fields are compared as a JSON reader sees them ("rpc\u002ecall" is
 * "rpc.call"). Returns the length, or -1 if it is longer than cap.
 */
static long envelope_string(const event_member *m, char *tmp, size_t cap, const char **out)
{
    const char *p = m->v + 1, *end = m->vend - 1;
    if (!memchr(p, '\\', (size_t)(end - p))) {
        if ((size_t)(end - p) > cap) return -1;
        *out = p;
        return end - p;
    }
    if ((size_t)(end - p) > cap * 6) return -1; /* cannot decode to within cap */
    size_t n = jscan_unescape(p, end, tmp, cap);
    if (n == (size_t)-1) return -1;
    *out = tmp;
    return (long)n;
}

static int grow_members(event_ctx *c)
{
    size_t cap = c->memcap ? c->memcap * 2 : 32;
    event_member *m = realloc(c->mem, cap * sizeof *m);
    if (!m) return -1;
    c->mem = m;
    c->memcap = cap;
    return 0;
}

int event_normalise(event_ctx *c, jscan *s, const char *p, const char *end, const char **next,
                    buf *out, event_info *info, char *why, size_t whylen)
{
    const char *start = p;
    enum jtype t;
    s->bad = NULL;
    s->ws = 0;

    if (p >= end) {
        s->err = "unexpected end of input";
        s->err_at = p;
        return EVENT_SYNTAX;
    }
    if (*p != '{') {
        if (!(p = jscan_value(s, p, end, &t))) return EVENT_SYNTAX;
        *next = p;
        return reject(why, whylen, "event must be a JSON object");
    }

    /* Walk the members of the top-level object. */
    size_t n = 0;
    unsigned depth = 1;
    c->keys.len = 0;
    p = jscan_ws(s, p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"') {
                s->err = p >= end ? "unexpected end of input" : "expected a string key in object";
                s->err_at = p;
                return EVENT_SYNTAX;
            }
            if (n == c->memcap && grow_members(c)) return EVENT_NOMEM;
            event_member *m = &c->mem[n++];
            m->m = p;
            unsigned defects_before = s->defects;
            const char *kend = jscan_string(s, p, end);
            if (!kend) return EVENT_SYNTAX;
            m->kesc = s->escaped;
            m->koff = 0;
            m->klen = (size_t)(kend - p - 2);
            int key_ok = s->defects == defects_before;
            if (m->kesc && key_ok) {
                /* decoded is never longer than the escaped text */
                if (buf_reserve(&c->keys, m->klen)) return EVENT_NOMEM;
                size_t kl = jscan_unescape(p + 1, kend - 1, c->keys.p + c->keys.len, m->klen);
                if (kl == (size_t)-1) {
                    m->kesc = 0; /* cannot happen for a key without defects; keep it raw */
                    key_ok = 0;
                } else {
                    m->koff = c->keys.len;
                    m->klen = kl;
                    c->keys.len += kl;
                }
            }
            m->role = key_ok ? role_of(key_ptr(c, m), m->klen) : R_REST;
            p = jscan_ws(s, kend, end);
            if (p >= end || *p != ':') {
                s->err = "expected ':' after key";
                s->err_at = p;
                return EVENT_SYNTAX;
            }
            p = jscan_ws(s, p + 1, end);
            m->v = p;
            if (!(p = jscan_value(s, p, end, &m->vt))) return EVENT_SYNTAX;
            m->vend = m->mend = p;
            if (s->depth + 1 > depth) depth = s->depth + 1;
            p = jscan_ws(s, p, end);
            if (p < end && *p == ',') {
                p = jscan_ws(s, p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            s->err = "expected ',' or '}' in object";
            s->err_at = p;
            return EVENT_SYNTAX;
        }
    }
    *next = p;

    size_t size = (size_t)(p - start);
    if (size > c->max_event_bytes)
        return reject(why, whylen, "event is %zu bytes, over the limit of %zu", size,
                      c->max_event_bytes);
    if (s->bad)
        return reject(why, whylen, "%s at byte %zu of the event", s->bad,
                      (size_t)(s->bad_at - start));
    if (depth > c->max_depth)
        return reject(why, whylen, "event nests %u levels deep, over the limit of %u", depth,
                      c->max_depth);
    const event_member *dup = find_duplicate(c, n);
    if (dup) {
        /* the key is valid UTF-8 here; quote it through buf_json_str's rules */
        size_t kl = dup->klen;
        const char *kp = key_ptr(c, dup);
        if (kl > 64) {
            kl = 64; /* cut on a character boundary */
            while (kl > 0 && ((unsigned char)kp[kl] & 0xc0) == 0x80) kl--;
        }
        buf q = BUF_INIT;
        if (buf_json_str(&q, kp, kl)) return EVENT_NOMEM;
        int r = reject(why, whylen, "duplicate key %.*s", (int)q.len, q.p);
        buf_free(&q);
        return r;
    }

    const event_member *type = NULL, *id = NULL, *ts = NULL;
    info->has_do = info->has_received = 0;
    for (size_t i = 0; i < n; i++) {
        event_member *m = &c->mem[i];
        switch (m->role) {
        case R_TYPE: type = m; break;
        case R_ID: id = m; break;
        case R_TS: ts = m; break;
        case R_RECEIVED: info->has_received = 1; break;
        case R_DO:
            if (m->vt != J_OBJ && m->vt != J_NULL)
                return reject(why, whylen, "\"do\" must be an object");
            info->has_do = 1;
            break;
        default: break;
        }
    }
    if (!type) return reject(why, whylen, "\"type\" is required");
    if (type->vt != J_STR) return reject(why, whylen, "\"type\" must be a string");
    char tbuf[EVENT_TYPE_MAX + 1], ibuf[EVENT_ID_MAX + 1], sbuf[64];
    const char *tp;
    long tl = envelope_string(type, tbuf, sizeof tbuf, &tp);
    size_t tn = tl < 0 ? 0 : (size_t)tl;
    if (tl < 0 || !event_type_valid(tp, tn))
        return reject(why, whylen,
                      "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most %d bytes",
                      EVENT_TYPE_MAX);

    const char *idp = NULL;
    size_t idn = 0;
    if (id && id->vt != J_NULL) {
        if (id->vt != J_STR) return reject(why, whylen, "\"id\" must be a string");
        long il = envelope_string(id, ibuf, sizeof ibuf, &idp);
        idn = il < 0 ? 0 : (size_t)il;
        if (il < 0 || !event_id_valid(idp, idn))
            return reject(why, whylen, "\"id\" must be 1-%d characters of [0-9A-Za-z_.:-]",
                          EVENT_ID_MAX);
    }

    int64_t ts_ms = c->now_ms;
    if (ts && ts->vt != J_NULL) {
        if (ts->vt == J_STR) {
            const char *sp;
            long sl = envelope_string(ts, sbuf, sizeof sbuf, &sp);
            if (sl < 0 || evtime_parse(sp, (size_t)sl, &ts_ms))
                return reject(why, whylen, "\"ts\" must be an RFC 3339 time between 1970 and 9999");
        } else if (ts->vt == J_NUM) {
            if (parse_ms_number(ts->v, ts->vend, &ts_ms))
                return reject(why, whylen,
                              "\"ts\" as a number must be whole epoch milliseconds up to 9999");
        } else {
            return reject(why, whylen, "\"ts\" must be an RFC 3339 string or epoch milliseconds");
        }
    }

    info->has_ts = ts != NULL;

    /* Assemble the line. It is never longer than the event plus the envelope. */
    if (buf_reserve(out, size + 160 + c->do_member_len)) return EVENT_NOMEM;
    char *o0 = out->p + out->len, *o = o0;
    memcpy(o, "{\"id\":\"", 7);
    o += 7;
    info->id_off = out->len + 7;
    if (idp) {
        memcpy(o, idp, idn);
        o += idn;
        info->id_len = (unsigned)idn;
        info->client_id = 1;
    } else {
        char u[ULID_LEN + 1];
        ulid_make(c->now_ms, u);
        memcpy(o, u, ULID_LEN);
        o += ULID_LEN;
        info->id_len = ULID_LEN;
        info->client_id = 0;
    }
    memcpy(o, "\",\"type\":\"", 10);
    o += 10;
    memcpy(o, tp, tn);
    o += tn;
    memcpy(o, "\",\"ts\":\"", 8);
    o += 8;
    if (ts_ms == c->now_ms)
        memcpy(o, c->now, EVTIME_LEN);
    else
        evtime_format(ts_ms, o);
    o += EVTIME_LEN;
    *o++ = '"';
    if (!c->client) {
        memcpy(o, ",\"receivedAt\":\"", 15);
        o += 15;
        memcpy(o, c->now, EVTIME_LEN);
        o += EVTIME_LEN;
        *o++ = '"';
    } else if (c->do_member_len && !info->has_do) {
        *o++ = ',';
        memcpy(o, c->do_member, c->do_member_len);
        o += c->do_member_len;
    }
    for (size_t i = 0; i < n; i++) {
        const event_member *m = &c->mem[i];
        if (m->role == R_ID || m->role == R_TYPE || m->role == R_TS || m->role == R_RECEIVED)
            continue;
        *o++ = ',';
        if (s->ws) {
            o += jscan_minify(m->m, m->mend, o);
        } else {
            memcpy(o, m->m, (size_t)(m->mend - m->m));
            o += m->mend - m->m;
        }
    }
    *o++ = '}';
    if (!c->client) *o++ = '\n';
    info->line_off = out->len;
    info->line_len = (size_t)(o - o0);
    info->ts_ms = ts_ms;
    out->len += info->line_len;
    return EVENT_OK;
}
