/*
 * otlp_json.c - reads an ExportLogsServiceRequest in OTLP's JSON encoding.
 *
 * A batch can be megabytes, so no tree is built: the body is checked once
 * with jscan (one pass; a body that is not JSON fails there with the byte
 * where it stops), then walked in place, each record written through the
 * builder (otlp_int.h) as soon as it is read. The walk trusts the syntax the
 * first pass checked but not the shape: a member of the wrong JSON type, a
 * number where an integer is due, an id or bytes that do not decode, fail the
 * request with 400 and the byte where it is (the OTLP specification's "bad
 * data": an exporter must not retry it). What passes the shape but not the
 * event rules (a string that is not UTF-8, an event too large or too deep, a
 * type that is not one) is the event rules' to refuse, record by record.
 *
 * The encoding (the OTLP specification, "JSON Protobuf Encoding"): keys in
 * lowerCamelCase, unknown keys ignored, trace and span ids in hex, enums as
 * integers, 64-bit integers as decimal strings or numbers, bytes in base64,
 * null as absent. Members are read in any order; where one depends on
 * another (a resource's records on the resource), the dependent one is read
 * again after the other only when it comes first, which exporters do not do.
 */
#include "otlp_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jr {
    otlp__builder *b;
    jscan s;
    const char *body, *end;
} jr;

static int bad(jr *j, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(jr *j, const char *at, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return otlp__fail(j->b, INGEST_EINVAL, "invalid OTLP logs request at byte %zu: %s",
                      (size_t)(at - j->body), what);
}

/* ---- walking checked JSON ------------------------------------------------- */

static const char *ws(jr *j, const char *p)
{
    return jscan_ws(&j->s, p, j->end);
}

/* The end of the value at p; the text was checked, so only a broken invariant fails. */
static const char *skip(jr *j, const char *p)
{
    enum jtype t;
    const char *e = jscan_value(&j->s, p, j->end, &t);
    if (!e) bad(j, p, "cannot read the value here");
    return e;
}

typedef struct jmem {
    const char *k, *kend; /* the key's token, quotes included */
    const char *key;      /* the key decoded (in kbuf when it had escapes), or NULL if too long */
    size_t keylen;
    const char *v; /* the value */
    char kbuf[32];
} jmem;

static long decode(const char *tok, const char *tokend, char *out, size_t cap);

/*
 * The next member of the object whose '{' or previous value ends at *pp: 1
 * with m set and *pp at the value, or 0 at the end (*pp past the '}').
 */
static int obj_next(jr *j, const char **pp, jmem *m)
{
    const char *p = ws(j, *pp);
    if (p < j->end && (*p == '{' || *p == ',')) p = ws(j, p + 1);
    if (p >= j->end || *p != '"') {
        *pp = p < j->end ? p + 1 : p; /* '}' */
        return 0;
    }
    m->k = p;
    m->kend = jscan_string(&j->s, p, j->end);
    m->key = p + 1;
    m->keylen = (size_t)(m->kend - p - 2);
    if (j->s.escaped) { /* keys are compared as a JSON reader reads them */
        long n = decode(p, m->kend, m->kbuf, sizeof m->kbuf);
        m->key = n < 0 ? NULL : m->kbuf;
        m->keylen = n < 0 ? 0 : (size_t)n;
    }
    p = ws(j, m->kend);
    m->v = *pp = ws(j, p + 1); /* past ':' */
    return 1;
}

/* The next element of the array whose '[' or previous element ends at *pp, as obj_next. */
static int arr_next(jr *j, const char **pp, const char **v)
{
    const char *p = ws(j, *pp);
    if (p < j->end && (*p == '[' || *p == ',')) p = ws(j, p + 1);
    if (p >= j->end || *p == ']') {
        *pp = p < j->end ? p + 1 : p;
        return 0;
    }
    *v = *pp = p;
    return 1;
}

/* Decodes a key or string token into out (cap bytes, NUL-terminated); its length, or -1. */
static long decode(const char *tok, const char *tokend, char *out, size_t cap)
{
    const char *p = tok + 1, *end = tokend - 1;
    size_t n;
    if (!memchr(p, '\\', (size_t)(end - p))) {
        n = (size_t)(end - p);
        if (n >= cap) return -1;
        memcpy(out, p, n);
    } else if ((n = jscan_unescape(p, end, out, cap - 1)) == (size_t)-1) {
        return -1;
    }
    out[n] = 0;
    return (long)n;
}

static int key_is(const jmem *m, const char *name)
{
    size_t n = strlen(name);
    return m->key && m->keylen == n && !memcmp(m->key, name, n);
}

static int is_null(const char *v)
{
    return *v == 'n';
}

/*
 * Writes the string token at p to o as canonical JSON: as it is when it has
 * no escape (or a defect, which the event rules then refuse), else decoded and
 * escaped again. Returns the end of the token.
 */
static const char *put_token(jr *j, buf *o, const char *p)
{
    unsigned defects = j->s.defects;
    const char *e = jscan_string(&j->s, p, j->end);
    if (!e) return NULL;
    if (!j->s.escaped || j->s.defects != defects) {
        otlp__put(j->b, o, p, (size_t)(e - p));
        return e;
    }
    buf *t = &j->b->tmp;
    t->len = 0;
    if (buf_reserve(t, (size_t)(e - p))) {
        j->b->nomem = 1;
        return e;
    }
    size_t n = jscan_unescape(p + 1, e - 1, t->p, t->cap);
    if (n == (size_t)-1)
        otlp__put(j->b, o, p, (size_t)(e - p));
    else
        otlp__put_str(j->b, o, t->p, n);
    return e;
}

/* ---- scalars --------------------------------------------------------------- */

/*
 * An integer member: a JSON number without fraction or exponent, or a string
 * of one (the encoding of 64-bit integers). Returns the end of the value, or
 * NULL (400) when it is neither or out of [lo, hi].
 */
static const char *read_int(jr *j, const char *v, const char *name, int64_t lo, uint64_t hi,
                            int64_t *sv, uint64_t *uv)
{
    const char *e = skip(j, v);
    if (!e) return NULL;
    const char *p = v, *q = e;
    if (*v == '"') p++, q--;
    int neg = p < q && *p == '-';
    if (neg) p++;
    uint64_t m = 0;
    int ok = p < q && (*v == '"' || *v == '-' || (*v >= '0' && *v <= '9'));
    for (const char *c = p; ok && c < q; c++) {
        ok = *c >= '0' && *c <= '9' && m <= (UINT64_MAX - 9) / 10;
        m = m * 10 + (uint64_t)(*c - '0');
    }
    uint64_t neg_max = lo >= 0 ? 0 : (uint64_t)(-(lo + 1)) + 1; /* |lo| */
    if (ok && (neg ? m > neg_max : m > hi)) ok = 0;
    if (!ok) {
        bad(j, v, "\"%s\" must be an integer from %lld to %llu (a number or a decimal string)",
            name, (long long)lo, (unsigned long long)hi);
        return NULL;
    }
    if (sv) *sv = !neg ? (int64_t)m : m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    if (uv) *uv = m;
    return e;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/*
 * traceId or spanId: hex of want bytes, in either case. One of another
 * length, all zeros or empty is no id (the OTLP specification) and is left
 * out; one that is not hex is bad data.
 */
static const char *read_id(jr *j, const char *v, const char *name, size_t want)
{
    const char *e = *v == '"' ? jscan_string(&j->s, v, j->end) : NULL;
    const char *s = v + 1;
    size_t n = e ? (size_t)(e - v - 2) : 0;
    if (e && j->s.escaped) { /* hex digits spelled as \u escapes */
        buf *t = &j->b->tmp;
        t->len = 0;
        if (buf_reserve(t, n) || (n = jscan_unescape(s, e - 1, t->p, t->cap)) == (size_t)-1)
            e = NULL;
        s = t->p;
    }
    uint8_t id[16];
    for (size_t i = 0; e && i < n; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            e = NULL;
        else if (n == 2 * want)
            id[i / 2] = (uint8_t)(i % 2 ? (unsigned)id[i / 2] | (unsigned)h : (unsigned)h << 4);
    }
    if (!e) return bad(j, v, "\"%s\" must be a string of hex digits", name), NULL;
    if (n != 2 * want) return e;
    otlp__put_id(j->b, name, id, want, want);
    return e;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Standard or URL-safe base64, padded or not (the protobuf JSON mapping) into out. 0 or -1. */
static int unbase64(const char *s, size_t n, buf *out)
{
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1 || buf_reserve(out, n / 4 * 3 + 3)) return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->p[out->len++] = (char)(acc >> bits);
        }
    }
    return 0;
}

static const char *put_bytes(jr *j, buf *o, const char *v)
{
    if (*v != '"') return bad(j, v, "\"bytesValue\" must be a base64 string"), NULL;
    const char *e = jscan_string(&j->s, v, j->end);
    buf *t = &j->b->tmp;
    t->len = 0;
    if (!e || j->s.escaped || unbase64(v + 1, (size_t)(e - v - 2), t))
        return bad(j, v, "\"bytesValue\" must be a base64 string"), NULL;
    otlp__put_base64(j->b, o, t->p, t->len);
    return e;
}

/* doubleValue: a number, or a string of one, "NaN", "Infinity" or "-Infinity". */
static const char *put_double(jr *j, buf *o, const char *v)
{
    const char *e = skip(j, v);
    if (!e) return NULL;
    char s[64];
    long n = -1;
    if (*v == '"') {
        n = decode(v, e, s, sizeof s);
    } else if ((*v == '-' || (*v >= '0' && *v <= '9')) && e - v < (long)sizeof s) {
        n = e - v;
        memcpy(s, v, (size_t)n);
        s[n] = 0;
    }
    double d = 0;
    if (n > 0 && !strcmp(s, "NaN")) {
        d = NAN;
    } else if (n > 0 && !strcmp(s, "Infinity")) {
        d = INFINITY;
    } else if (n > 0 && !strcmp(s, "-Infinity")) {
        d = -INFINITY;
    } else if (n > 0) {
        char *stop;
        d = strtod(s, &stop);
        if (stop != s + n) n = -1;
    }
    if (n <= 0)
        return bad(j, v,
                   "\"doubleValue\" must be a number, \"NaN\", \"Infinity\" or \"-Infinity\""),
               NULL;
    otlp__put_double(j->b, o, d);
    return e;
}

/* ---- AnyValue, KeyValue ---------------------------------------------------- */

static const char *put_any(jr *j, buf *o, const char *v);

/* A list of KeyValue as a JSON object: {"key":value,…}; in ev, notes type sources. */
static const char *put_kvs(jr *j, buf *o, const char *v, int note)
{
    if (*v != '[') return bad(j, v, "attributes must be an array of {\"key\",\"value\"}"), NULL;
    int first = 1;
    const char *p = v, *kv;
    otlp__put(j->b, o, "{", 1);
    while (arr_next(j, &p, &kv)) {
        if (*kv != '{')
            return bad(j, kv, "an attribute must be an object {\"key\",\"value\"}"), NULL;
        const char *key = NULL, *value = NULL, *q = kv;
        jmem m;
        while (obj_next(j, &q, &m)) {
            if (key_is(&m, "key") && !is_null(m.v)) {
                if (*m.v != '"') return bad(j, m.v, "\"key\" must be a string"), NULL;
                key = m.v;
            } else if (key_is(&m, "value") && !is_null(m.v)) {
                value = m.v;
            }
            if (!(q = skip(j, m.v))) return NULL;
        }
        /* the key, then the value: both read again, the members may come in either order */
        if (!first) otlp__put(j->b, o, ",", 1);
        first = 0;
        enum otlp__type_source src = OTLP__SRC_NONE;
        if (key) {
            if (!put_token(j, o, key)) return NULL;
            char k[16];
            long kn = decode(key, jscan_string(&j->s, key, j->end), k, sizeof k);
            if (note && kn > 0) src = otlp__type_source_of(k, (size_t)kn);
        } else {
            otlp__put(j->b, o, "\"\"", 2);
        }
        otlp__put(j->b, o, ":", 1);
        size_t off = o->len;
        if (value) {
            if (!put_any(j, o, value)) return NULL;
        } else {
            otlp__put(j->b, o, "null", 4);
        }
        if (note) otlp__note(j->b, src, off);
        p = q;
    }
    otlp__put(j->b, o, "}", 1);
    return p;
}

/* ArrayValue or KeyValueList: {"values":[…]}. */
static const char *put_values(jr *j, buf *o, const char *v, int kvlist)
{
    const char *name = kvlist ? "kvlistValue" : "arrayValue";
    if (*v != '{') return bad(j, v, "\"%s\" must be an object {\"values\":[...]}", name), NULL;
    const char *p = v, *values = NULL;
    jmem m;
    while (obj_next(j, &p, &m)) {
        if (key_is(&m, "values") && !is_null(m.v)) {
            if (*m.v != '[')
                return bad(j, m.v, "\"values\" of \"%s\" must be an array", name), NULL;
            values = m.v;
        }
        if (!(p = skip(j, m.v))) return NULL;
    }
    if (kvlist) {
        if (!values)
            otlp__put(j->b, o, "{}", 2);
        else if (!put_kvs(j, o, values, 0))
            return NULL;
        return p;
    }
    otlp__put(j->b, o, "[", 1);
    if (values) {
        const char *q = values, *e;
        int first = 1;
        while (arr_next(j, &q, &e)) {
            if (!first) otlp__put(j->b, o, ",", 1);
            first = 0;
            if (!(q = put_any(j, o, e))) return NULL;
        }
    }
    otlp__put(j->b, o, "]", 1);
    return p;
}

/*
 * An AnyValue: {"stringValue":…}, {"intValue":…} and so on; the last member
 * that is one wins (as in protobuf), none is null.
 */
static const char *put_any(jr *j, buf *o, const char *v)
{
    if (is_null(v)) {
        otlp__put(j->b, o, "null", 4);
        return skip(j, v);
    }
    if (*v != '{')
        return bad(j, v, "a value must be an object such as {\"stringValue\":\"...\"}"), NULL;
    size_t mark = o->len;
    int set = 0;
    const char *p = v;
    jmem m;
    while (obj_next(j, &p, &m)) {
        const char *e = NULL;
        int kind = is_null(m.v)                ? 0
                   : key_is(&m, "stringValue") ? 1
                   : key_is(&m, "boolValue")   ? 2
                   : key_is(&m, "intValue")    ? 3
                   : key_is(&m, "doubleValue") ? 4
                   : key_is(&m, "arrayValue")  ? 5
                   : key_is(&m, "kvlistValue") ? 6
                   : key_is(&m, "bytesValue")  ? 7
                                               : 0;
        if (kind) o->len = mark, set = 1;
        int64_t iv;
        switch (kind) {
        case 1:
            if (*m.v != '"') return bad(j, m.v, "\"stringValue\" must be a string"), NULL;
            e = put_token(j, o, m.v);
            break;
        case 2:
            if (*m.v != 't' && *m.v != 'f')
                return bad(j, m.v, "\"boolValue\" must be true or false"), NULL;
            otlp__puts(j->b, o, *m.v == 't' ? "true" : "false");
            e = skip(j, m.v);
            break;
        case 3:
            if ((e = read_int(j, m.v, "intValue", INT64_MIN, INT64_MAX, &iv, NULL)))
                otlp__put_int(j->b, o, iv);
            break;
        case 4: e = put_double(j, o, m.v); break;
        case 5:
        case 6: e = put_values(j, o, m.v, kind == 6); break;
        case 7: e = put_bytes(j, o, m.v); break;
        default: e = skip(j, m.v);
        }
        if (!(p = e)) return NULL;
    }
    if (!set) otlp__put(j->b, o, "null", 4);
    return p;
}

/* ---- the levels of a request ------------------------------------------------ */

enum rec_field {
    F_TIME,
    F_OBSERVED,
    F_SEVNUM,
    F_SEVTEXT,
    F_NAME,
    F_BODY,
    F_ATTRS,
    F_DROPPED,
    F_TRACE,
    F_SPAN,
    F_FLAGS,
    F_COUNT
};
static const char *const rec_keys[F_COUNT] = {
    "timeUnixNano", "observedTimeUnixNano",   "severityNumber", "severityText", "eventName", "body",
    "attributes",   "droppedAttributesCount", "traceId",        "spanId",       "flags"};

static const char *read_record(jr *j, const char *v)
{
    if (*v != '{') return bad(j, v, "a log record must be an object"), NULL;
    const char *f[F_COUNT] = {0}, *p = v;
    jmem m;
    while (obj_next(j, &p, &m)) {
        for (int i = 0; i < F_COUNT; i++)
            if (!is_null(m.v) && key_is(&m, rec_keys[i])) f[i] = m.v;
        if (!(p = skip(j, m.v))) return NULL;
    }
    otlp__builder *b = j->b;
    buf *o = &b->ev;
    uint64_t t = 0, obs = 0, u;
    int64_t sev = 0;
    if (f[F_TIME] && !read_int(j, f[F_TIME], "timeUnixNano", 0, UINT64_MAX, NULL, &t)) return NULL;
    if (f[F_OBSERVED] &&
        !read_int(j, f[F_OBSERVED], "observedTimeUnixNano", 0, UINT64_MAX, NULL, &obs))
        return NULL;
    otlp__record_begin(b);
    if (f[F_SEVNUM]) {
        if (!read_int(j, f[F_SEVNUM], "severityNumber", INT32_MIN, INT32_MAX, &sev, NULL))
            return NULL;
        if (sev) otlp__member(b, "severityNumber"), otlp__put_int(b, o, sev);
    }
    static const char *const strs[] = {"severityText", "eventName"};
    for (int i = 0; i < 2; i++) {
        const char *s = f[i ? F_NAME : F_SEVTEXT];
        if (!s) continue;
        if (*s != '"') return bad(j, s, "\"%s\" must be a string", strs[i]), NULL;
        if (s[1] == '"') continue; /* "" is absent */
        otlp__member(b, strs[i]);
        size_t off = o->len;
        if (!put_token(j, o, s)) return NULL;
        if (i) otlp__note(b, OTLP__SRC_EVENT_NAME, off);
    }
    if (f[F_BODY]) {
        otlp__member(b, "body");
        if (!put_any(j, o, f[F_BODY])) return NULL;
    }
    if (f[F_ATTRS]) {
        if (*f[F_ATTRS] != '[') return bad(j, f[F_ATTRS], "\"attributes\" must be an array"), NULL;
        const char *q = ws(j, f[F_ATTRS] + 1);
        if (*q != ']') {
            otlp__member(b, "attributes");
            if (!put_kvs(j, o, f[F_ATTRS], 1)) return NULL;
        }
    }
    if (f[F_DROPPED]) {
        if (!read_int(j, f[F_DROPPED], "droppedAttributesCount", 0, UINT32_MAX, NULL, &u))
            return NULL;
        if (u) otlp__member(b, "droppedAttributesCount"), otlp__put_uint(b, o, u);
    }
    if (f[F_TRACE] && !read_id(j, f[F_TRACE], "traceId", 16)) return NULL;
    if (f[F_SPAN] && !read_id(j, f[F_SPAN], "spanId", 8)) return NULL;
    if (f[F_FLAGS]) {
        if (!read_int(j, f[F_FLAGS], "flags", 0, UINT32_MAX, NULL, &u)) return NULL;
        if (u) otlp__member(b, "flags"), otlp__put_uint(b, o, u);
    }
    if (otlp__record_end(b, t, obs)) return NULL;
    return p;
}

/* "resource":{attributes…} of the records that follow, into b->resource. */
static const char *read_resource(jr *j, const char *v)
{
    buf *o = &j->b->resource;
    o->len = 0;
    if (is_null(v)) return skip(j, v);
    if (*v != '{') return bad(j, v, "\"resource\" must be an object"), NULL;
    const char *p = v, *attrs = NULL;
    jmem m;
    while (obj_next(j, &p, &m)) {
        if (key_is(&m, "attributes") && !is_null(m.v)) attrs = m.v;
        if (!(p = skip(j, m.v))) return NULL;
    }
    if (attrs && *ws(j, attrs + (*attrs == '[')) != ']') {
        otlp__puts(j->b, o, "\"resource\":");
        if (!put_kvs(j, o, attrs, 0)) return NULL;
    }
    return p;
}

/* "scope":{"name","version","attributes"} of the records that follow, into b->scope. */
static const char *read_scope(jr *j, const char *v)
{
    buf *o = &j->b->scope;
    o->len = 0;
    if (is_null(v)) return skip(j, v);
    if (*v != '{') return bad(j, v, "\"scope\" must be an object"), NULL;
    const char *p = v, *f[3] = {0};
    static const char *const keys[3] = {"name", "version", "attributes"};
    jmem m;
    while (obj_next(j, &p, &m)) {
        for (int i = 0; i < 3; i++)
            if (!is_null(m.v) && key_is(&m, keys[i])) f[i] = m.v;
        if (!(p = skip(j, m.v))) return NULL;
    }
    int first = 1;
    otlp__puts(j->b, o, "\"scope\":{");
    for (int i = 0; i < 2; i++) {
        if (!f[i]) continue;
        if (*f[i] != '"') return bad(j, f[i], "\"%s\" of a scope must be a string", keys[i]), NULL;
        if (f[i][1] == '"') continue;
        otlp__key(j->b, o, &first, keys[i], strlen(keys[i]));
        if (!put_token(j, o, f[i])) return NULL;
    }
    if (f[2] && *ws(j, f[2] + (*f[2] == '[')) != ']') {
        otlp__key(j->b, o, &first, "attributes", 10);
        if (!put_kvs(j, o, f[2], 0)) return NULL;
    }
    if (first)
        o->len = 0; /* an empty scope: no member */
    else
        otlp__put(j->b, o, "}", 1);
    return p;
}

/* An array of objects, each read by fn. */
static const char *read_list(jr *j, const char *v, const char *name,
                             const char *(*fn)(jr *, const char *))
{
    if (is_null(v)) return skip(j, v);
    if (*v != '[') return bad(j, v, "\"%s\" must be an array", name), NULL;
    const char *p = v, *e;
    while (arr_next(j, &p, &e)) {
        if (*e != '{') return bad(j, e, "an element of \"%s\" must be an object", name), NULL;
        if (!(p = fn(j, e))) return NULL;
    }
    return p;
}

/*
 * An object whose list (lkey, read by fn) depends on its head (hkey, read by
 * head): the list is read as it comes when the head came first, else after.
 */
static const char *read_pair(jr *j, const char *v, const char *hkey,
                             const char *(*head)(jr *, const char *), const char *lkey,
                             const char *(*fn)(jr *, const char *), buf *headbuf)
{
    const char *p = v, *later = NULL;
    int head_seen = 0;
    jmem m;
    headbuf->len = 0;
    while (obj_next(j, &p, &m)) {
        if (key_is(&m, hkey)) {
            p = head(j, m.v);
            head_seen = 1;
        } else if (key_is(&m, lkey) && !head_seen) {
            later = m.v;
            p = skip(j, m.v);
        } else if (key_is(&m, lkey)) {
            p = read_list(j, m.v, lkey, fn);
        } else {
            p = skip(j, m.v);
        }
        if (!p) return NULL;
    }
    if (later && !read_list(j, later, lkey, fn)) return NULL;
    return p;
}

static const char *read_scope_logs(jr *j, const char *v)
{
    return read_pair(j, v, "scope", read_scope, "logRecords", read_record, &j->b->scope);
}

static const char *read_resource_logs(jr *j, const char *v)
{
    return read_pair(j, v, "resource", read_resource, "scopeLogs", read_scope_logs,
                     &j->b->resource);
}

int otlp__json_read(otlp__builder *b, const char *body, size_t n)
{
    jr j = {.b = b, .body = body, .end = body + n};
    const char *p = body;
    if (n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3; /* a UTF-8 byte order mark */
    p = ws(&j, p);
    if (p >= j.end) return otlp__fail(b, INGEST_EINVAL, "empty body");
    enum jtype t;
    const char *e = jscan_value(&j.s, p, j.end, &t);
    if (!e)
        return otlp__fail(b, INGEST_EINVAL, "malformed JSON at byte %zu: %s",
                          (size_t)(j.s.err_at - body), j.s.err);
    if (ws(&j, e) != j.end)
        return otlp__fail(b, INGEST_EINVAL, "unexpected data after the JSON body at byte %zu",
                          (size_t)(ws(&j, e) - body));
    if (t != J_OBJ)
        return otlp__fail(b, INGEST_EINVAL,
                          "the body must be a JSON object: an OTLP ExportLogsServiceRequest "
                          "{\"resourceLogs\":[...]}");
    jmem m;
    while (obj_next(&j, &p, &m)) {
        if (key_is(&m, "resourceLogs"))
            p = read_list(&j, m.v, "resourceLogs", read_resource_logs);
        else
            p = skip(&j, m.v);
        if (!p) return -1;
    }
    return b->r->code ? -1 : 0;
}
