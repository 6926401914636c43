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

enum role { R_REST, R_ID, R_TYPE, R_TS, R_RECEIVED, R_DO, R_TS_KEY, R_RESERVED };

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

const char *event_reason_name(int reason)
{
    static const char *const names[EVENT_R_COUNT] = {
        "not_object", "type",     "id",       "ts",     "do",      "duplicate_key",
        "too_large",  "too_deep", "encoding", "syntax", "reserved"};
    return reason >= 0 && reason < EVENT_R_COUNT ? names[reason] : NULL;
}

int event_ts_key_valid(const char *k, size_t n)
{
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '.' || c == '@' || c == '$' || c == '-'))
            return 0;
    }
    return !((n == 2 && !memcmp(k, "id", 2)) || (n == 4 && !memcmp(k, "type", 4)) ||
             (n == 2 && !memcmp(k, "do", 2)) || (n == 10 && !memcmp(k, "receivedAt", 10)));
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

/*
 * The role of a member: the envelope's, the ts_key member's when the request names one, or
 * reserved (the server's derived members, EVENT_RESERVED_PREFIX: refused from a sender).
 */
static enum role member_role(const event_ctx *c, const char *k, size_t n)
{
    enum role r = role_of(k, n);
    if (r == R_REST && c->ts_key && n == c->ts_key_len && !memcmp(k, c->ts_key, n)) return R_TS_KEY;
    if (r == R_REST && !c->client && n >= sizeof EVENT_RESERVED_PREFIX - 1 &&
        !memcmp(k, EVENT_RESERVED_PREFIX, sizeof EVENT_RESERVED_PREFIX - 1))
        return R_RESERVED;
    return r;
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

static int reject(event_ctx *c, int reason, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int reject(event_ctx *c, int reason, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    c->reason = reason;
    return EVENT_REJECTED;
}

/*
 * Decimal arithmetic on the number's digits, never floating point: 1700000000.123 read as a
 * double is 1700000000.1229999, which would land a millisecond early.
 */
int event_epoch_ms(const char *p, const char *end, int64_t *ms)
{
    int neg = p < end && *p == '-';
    if (neg) p++;
    const char *ip = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    const char *ie = p, *fp = p, *fe = p;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        fe = p;
    }
    long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = ++p < end && *p == '-';
        if (p < end && (*p == '-' || *p == '+')) p++;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (exp < 100000) exp = exp * 10 + (*p - '0');
        if (eneg) exp = -exp;
    }
    if (p != end || ie == ip) return -1;
    /* the digits without leading zeros, and where the decimal point falls among them */
    char dig[48];
    size_t nd = 0;
    long pos = (long)(ie - ip) + exp;
    for (const char *q = ip; q < fe; q++) {
        if (q == ie) q = fp;
        if (q >= fe) break;
        if (nd == 0 && *q == '0') {
            pos--;
            continue;
        }
        if (nd < sizeof dig) dig[nd++] = *q; /* digits past these are far below a nanosecond */
    }
    if (nd == 0) { /* zero, also "-0" as JSON readers see it */
        *ms = 0;
        return 0;
    }
    if (neg) return -1;
    long shift = pos <= 11 ? 3 : pos <= 14 ? 0 : pos <= 17 ? -3 : -6; /* to milliseconds */
    long keep = pos + shift;                                          /* digits of the ms */
    if (keep > 15) return -1;
    int64_t v = 0;
    for (long i = 0; i < keep; i++) v = v * 10 + ((size_t)i < nd ? dig[i] - '0' : 0);
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

/*
 * The time of member m (ts, or the ts_key member): an ISO 8601 string or an epoch number.
 * 0, or -1 with the rejection in why.
 */
static int event_time(event_ctx *c, const event_member *m, int64_t *ms, char *why, size_t whylen)
{
    if (m->vt == J_STR) {
        char sbuf[64];
        const char *sp;
        long sl = envelope_string(m, sbuf, sizeof sbuf, &sp);
        if (sl >= 0 && !evtime_parse_iso8601(sp, (size_t)sl, ms)) return 0;
    } else if (m->vt == J_NUM && !event_epoch_ms(m->v, m->vend, ms)) {
        return 0;
    }
    /* refused: the reason names the member (the name only now, off the hot path) */
    const char *name = m->role == R_TS ? "ts" : c->ts_key;
    int nl = m->role == R_TS ? 2 : (int)c->ts_key_len;
    if (m->vt == J_STR)
        reject(c, EVENT_R_TS, why, whylen,
               "\"%.*s\" must be an ISO 8601 time between 1970 and 9999", nl, name);
    else if (m->vt == J_NUM)
        reject(c, EVENT_R_TS, why, whylen,
               "\"%.*s\" as a number must be epoch seconds, milliseconds, microseconds or "
               "nanoseconds between 1970 and 9999",
               nl, name);
    else
        reject(c, EVENT_R_TS, why, whylen, "\"%.*s\" must be an ISO 8601 string or an epoch number",
               nl, name);
    return -1;
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

/*
 * Reads member m's key at p (a string, decoded into c->keys when it has escapes) and gives it
 * its role. Returns the end of the key, NULL on a syntax error.
 */
static inline const char *scan_key(event_ctx *c, jscan *s, event_member *m, const char *p,
                                   const char *end, int *nomem)
{
    m->m = p;
    unsigned defects_before = s->defects;
    const char *kend = jscan_string(s, p, end);
    if (!kend) return NULL;
    m->kesc = s->escaped;
    m->koff = 0;
    m->klen = (size_t)(kend - p - 2);
    int key_ok = s->defects == defects_before;
    if (m->kesc && key_ok) {
        /* decoded is never longer than the escaped text */
        if (buf_reserve(&c->keys, m->klen)) {
            *nomem = 1;
            return NULL;
        }
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
    m->role = key_ok ? member_role(c, key_ptr(c, m), m->klen) : R_REST;
    return kend;
}

/* A syntax error at p: EVENT_SYNTAX with the scanner's message. */
static int syntax_error(jscan *s, const char *p, const char *msg)
{
    s->err = msg;
    s->err_at = p;
    return EVENT_SYNTAX;
}

/*
 * Walks the members of the top-level object at *pp (just after its '{') into c->mem: *n of
 * them, nesting *depth deep; *pp is left after the closing '}'.
 */
static inline int scan_members(event_ctx *c, jscan *s, const char **pp, const char *end, size_t *n,
                               unsigned *depth)
{
    const char *p = jscan_ws(s, *pp, end);
    if (p < end && *p == '}') {
        *pp = p + 1;
        return EVENT_OK;
    }
    for (;;) {
        if (p >= end || *p != '"')
            return syntax_error(
                s, p, p >= end ? "unexpected end of input" : "expected a string key in object");
        if (*n == c->memcap && grow_members(c)) return EVENT_NOMEM;
        event_member *m = &c->mem[(*n)++];
        int nomem = 0;
        const char *kend = scan_key(c, s, m, p, end, &nomem);
        if (!kend) return nomem ? EVENT_NOMEM : EVENT_SYNTAX;
        p = jscan_ws(s, kend, end);
        if (p >= end || *p != ':') return syntax_error(s, p, "expected ':' after key");
        p = jscan_ws(s, p + 1, end);
        m->v = p;
        if (!(p = jscan_value(s, p, end, &m->vt))) return EVENT_SYNTAX;
        m->vend = m->mend = p;
        if (s->depth + 1 > *depth) *depth = s->depth + 1;
        p = jscan_ws(s, p, end);
        if (p < end && *p == ',') {
            p = jscan_ws(s, p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            *pp = p + 1;
            return EVENT_OK;
        }
        return syntax_error(s, p, "expected ',' or '}' in object");
    }
}

/* Appends m's key (cut to 64 bytes on a character boundary) to q as JSON quotes it. */
static int quote_key(const event_ctx *c, const event_member *m, buf *q)
{
    /* the key is valid UTF-8 here; quote it through buf_json_str's rules */
    size_t kl = m->klen;
    const char *kp = key_ptr(c, m);
    if (kl > 64) {
        kl = 64; /* cut on a character boundary */
        while (kl > 0 && ((unsigned char)kp[kl] & 0xc0) == 0x80) kl--;
    }
    return buf_json_str(q, kp, kl);
}

/* Refuses the event for a key it has twice, named (cut to 64 bytes) as JSON would quote it. */
static int reject_duplicate(event_ctx *c, const event_member *dup, char *why, size_t whylen)
{
    buf q = BUF_INIT;
    if (quote_key(c, dup, &q)) return EVENT_NOMEM;
    int r = reject(c, EVENT_R_DUPLICATE_KEY, why, whylen, "duplicate key %.*s", (int)q.len, q.p);
    buf_free(&q);
    return r;
}

/* Refuses the event for a member of the server's (its key starts with EVENT_RESERVED_PREFIX). */
static int reject_reserved(event_ctx *c, const event_member *m, char *why, size_t whylen)
{
    buf q = BUF_INIT;
    if (quote_key(c, m, &q)) return EVENT_NOMEM;
    int r = reject(c, EVENT_R_RESERVED, why, whylen,
                   "member %.*s: the prefix \"" EVENT_RESERVED_PREFIX
                   "\" is reserved for members the server adds",
                   (int)q.len, q.p);
    buf_free(&q);
    return r;
}

/* The limits of the whole event: its size, its encoding, its depth, its keys once each. */
static inline int check_limits(event_ctx *c, const jscan *s, const char *start, size_t size,
                               unsigned depth, size_t n, char *why, size_t whylen)
{
    if (size > c->max_event_bytes)
        return reject(c, EVENT_R_TOO_LARGE, why, whylen,
                      "event is %zu bytes, over the limit of %zu", size, c->max_event_bytes);
    if (s->bad)
        return reject(c, EVENT_R_ENCODING, why, whylen, "%s at byte %zu of the event", s->bad,
                      (size_t)(s->bad_at - start));
    if (depth > c->max_depth)
        return reject(c, EVENT_R_TOO_DEEP, why, whylen,
                      "event nests %u levels deep, over the limit of %u", depth, c->max_depth);
    const event_member *dup = find_duplicate(c, n);
    if (dup) return reject_duplicate(c, dup, why, whylen);
    return EVENT_OK;
}

/* The members of the envelope, and what the line writes of them. */
typedef struct envelope {
    const event_member *type, *id, *ts, *ts_key;
    const char *tp, *idp; /* type and id as written (idp NULL: a new ULID) */
    size_t tn, idn;
    int64_t ts_ms;
    char tbuf[EVENT_TYPE_MAX + 1], ibuf[EVENT_ID_MAX + 1];
} envelope;

/* Finds the envelope's members among the n scanned; "do" must be an object. */
static inline int find_envelope(event_ctx *c, size_t n, envelope *env, event_info *info, char *why,
                                size_t whylen)
{
    env->type = env->id = env->ts = env->ts_key = NULL;
    info->has_do = info->has_received = 0;
    for (size_t i = 0; i < n; i++) {
        event_member *m = &c->mem[i];
        switch (m->role) {
        case R_TYPE: env->type = m; break;
        case R_ID: env->id = m; break;
        case R_TS: env->ts = m; break;
        case R_TS_KEY: env->ts_key = m; break;
        case R_RECEIVED: info->has_received = 1; break;
        case R_DO:
            if (m->vt != J_OBJ && m->vt != J_NULL)
                return reject(c, EVENT_R_DO, why, whylen, "\"do\" must be an object");
            info->has_do = 1;
            break;
        case R_RESERVED: return reject_reserved(c, m, why, whylen);
        default: break;
        }
    }
    return EVENT_OK;
}

/* The event's type: its own, or the request's default when it has none (or null). */
static inline int check_type(event_ctx *c, envelope *env, char *why, size_t whylen)
{
    const event_member *type = env->type;
    env->tp = ""; /* set on every path, for the analyzer: a refusal returns before it is read */
    env->tn = 0;
    if (c->default_type && (!type || type->vt == J_NULL)) {
        env->tp = c->default_type;
        env->tn = c->default_type_len;
        return EVENT_OK;
    }
    if (!type) return reject(c, EVENT_R_TYPE, why, whylen, "\"type\" is required");
    if (type->vt != J_STR) return reject(c, EVENT_R_TYPE, why, whylen, "\"type\" must be a string");
    long tl = envelope_string(type, env->tbuf, sizeof env->tbuf, &env->tp);
    env->tn = tl < 0 ? 0 : (size_t)tl;
    if (tl < 0 || !event_type_valid(env->tp, env->tn))
        return reject(c, EVENT_R_TYPE, why, whylen,
                      "\"type\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most %d bytes",
                      EVENT_TYPE_MAX);
    return EVENT_OK;
}

/* The event's id, if it brings one (not null). */
static inline int check_id(event_ctx *c, envelope *env, char *why, size_t whylen)
{
    const event_member *id = env->id;
    env->idp = c->default_id; /* NULL unless the body gives ids (ingest.c's batchId) */
    env->idn = c->default_id_len;
    if (!id || id->vt == J_NULL) return EVENT_OK;
    if (id->vt != J_STR) return reject(c, EVENT_R_ID, why, whylen, "\"id\" must be a string");
    long il = envelope_string(id, env->ibuf, sizeof env->ibuf, &env->idp);
    env->idn = il < 0 ? 0 : (size_t)il;
    if (il < 0 || !event_id_valid(env->idp, env->idn))
        return reject(c, EVENT_R_ID, why, whylen,
                      "\"id\" must be 1-%d characters of [0-9A-Za-z_.:-]", EVENT_ID_MAX);
    return EVENT_OK;
}

/* The event's time: "ts", else the ts_key member, else now. */
static inline int check_time(event_ctx *c, envelope *env, char *why, size_t whylen)
{
    const event_member *ts = env->ts, *ts_key = env->ts_key;
    env->ts_ms = c->now_ms;
    const event_member *when = ts && ts->vt != J_NULL           ? ts
                               : ts_key && ts_key->vt != J_NULL ? ts_key
                                                                : NULL;
    if (when && event_time(c, when, &env->ts_ms, why, whylen)) return EVENT_REJECTED;
    return EVENT_OK;
}

/* Writes the envelope: id, type, ts, then receivedAt (server) or the emitter's "do" (client). */
static inline char *write_envelope(event_ctx *c, const envelope *env, char *o, size_t id_off,
                                   event_info *info)
{
    memcpy(o, "{\"id\":\"", 7);
    o += 7;
    info->id_off = id_off + 7;
    if (env->idp) {
        memcpy(o, env->idp, env->idn);
        o += env->idn;
        info->id_len = (unsigned)env->idn;
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
    memcpy(o, env->tp, env->tn);
    o += env->tn;
    memcpy(o, "\",\"ts\":\"", 8);
    o += 8;
    if (env->ts_ms == c->now_ms)
        memcpy(o, c->now, EVTIME_LEN);
    else
        evtime_format(env->ts_ms, o);
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
    return o;
}

/* Writes the event's other members as they came (minified if it had whitespace). */
static inline char *write_members(const event_ctx *c, const jscan *s, size_t n, char *o)
{
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
    return o;
}

/* Assembles the line into out. It is never longer than the event plus the envelope. */
static inline int write_line(event_ctx *c, const jscan *s, size_t n, size_t size,
                             const envelope *env, buf *out, event_info *info)
{
    if (buf_reserve(out, size + 160 + c->default_type_len + c->do_member_len)) return EVENT_NOMEM;
    char *o0 = out->p + out->len;
    char *o = write_envelope(c, env, o0, out->len, info);
    o = write_members(c, s, n, o);
    *o++ = '}';
    if (!c->client) *o++ = '\n';
    info->line_off = out->len;
    info->line_len = (size_t)(o - o0);
    info->ts_ms = env->ts_ms;
    out->len += info->line_len;
    return EVENT_OK;
}

int event_normalise(event_ctx *c, jscan *s, const char *p, const char *end, const char **next,
                    buf *out, event_info *info, char *why, size_t whylen)
{
    const char *start = p;
    enum jtype t;
    s->bad = NULL;
    s->ws = 0;

    if (p >= end) return syntax_error(s, p, "unexpected end of input");
    if (*p != '{') {
        if (!(p = jscan_value(s, p, end, &t))) return EVENT_SYNTAX;
        *next = p;
        return reject(c, EVENT_R_NOT_OBJECT, why, whylen, "event must be a JSON object");
    }

    size_t n = 0;
    unsigned depth = 1;
    c->keys.len = 0;
    p++;
    int rc = scan_members(c, s, &p, end, &n, &depth);
    if (rc) return rc;
    *next = p;

    size_t size = (size_t)(p - start);
    envelope env;
    if ((rc = check_limits(c, s, start, size, depth, n, why, whylen)) ||
        (rc = find_envelope(c, n, &env, info, why, whylen)) ||
        (rc = check_type(c, &env, why, whylen)) || (rc = check_id(c, &env, why, whylen)) ||
        (rc = check_time(c, &env, why, whylen)))
        return rc;
    info->has_ts = env.ts != NULL;
    return write_line(c, s, n, size, &env, out, info);
}
