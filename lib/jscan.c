/*
 * jscan.c - iterative, validating, zero-copy JSON scanning.
 *
 * The string loop is the hot spot: a table marks the bytes that need a look
 * (quote, backslash, control characters, non-ASCII); everything else is
 * skipped eight bytes at a time when no such byte is among them.
 */
#include "jscan.h"

#include <stdint.h>
#include <string.h>

/* 1: ends the plain run in a string (", \, < 0x20, >= 0x80) */
static const unsigned char special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static inline int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

const char *jscan_ws(jscan *s, const char *p, const char *end)
{
    if (p < end && is_ws(*p)) {
        s->ws = 1;
        do p++;
        while (p < end && is_ws(*p));
    }
    return p;
}

static void defect(jscan *s, const char *at, const char *msg)
{
    s->defects++;
    if (!s->bad) {
        s->bad = msg;
        s->bad_at = at;
    }
}

static const char *fail(jscan *s, const char *at, const char *msg)
{
    s->err = msg;
    s->err_at = at;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, const char *end)
{
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    long left = end - p;
    if (c >= 0xc2 && c <= 0xdf) return left >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (left < 3 || (p[2] & 0xc0) != 0x80) return 0;
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (left < 4 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

int jscan_utf8_valid(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p, *end = u + n;
    while (u < end) {
        if (*u < 0x80) {
            u++;
            continue;
        }
        int k = utf8_len(u, end);
        if (!k) return 0;
        u += k;
    }
    return 1;
}

static inline int word_plain(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    /* any byte >= 0x80, < 0x20, == '"' or == '\\' */
    uint64_t high = w & 0x8080808080808080u;
    uint64_t ctl = (w - 0x2020202020202020u) & ~w;
    uint64_t q = w ^ 0x2222222222222222u, bs = w ^ 0x5c5c5c5c5c5c5c5cu;
    uint64_t hq = (q - 0x0101010101010101u) & ~q, hb = (bs - 0x0101010101010101u) & ~bs;
    return ((high | ctl | hq | hb) & 0x8080808080808080u) == 0;
}

const char *jscan_string(jscan *s, const char *p, const char *end)
{
    const char *start = p++;
    s->escaped = 0;
    for (;;) {
        while (end - p >= 8 && word_plain(p)) p += 8;
        while (p < end && !special[(unsigned char)*p]) p++;
        if (p >= end) return fail(s, start, "unterminated string");
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c == '\\') {
            s->escaped = 1;
            if (end - p < 2) return fail(s, start, "unterminated string");
            char e = p[1];
            if (e == 'u') {
                int v = hex4(p + 2, end);
                if (v < 0) {
                    defect(s, p, "invalid \\u escape in string");
                    p += 2;
                    continue;
                }
                if (v == 0) {
                    defect(s, p, "\\u0000 is not allowed in strings");
                } else if (v >= 0xd800 && v <= 0xdbff) {
                    int lo = (end - p >= 12 && p[6] == '\\' && p[7] == 'u') ? hex4(p + 8, end) : -1;
                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        p += 12;
                        continue;
                    }
                    defect(s, p, "lone surrogate in \\u escape");
                } else if (v >= 0xdc00 && v <= 0xdfff) {
                    defect(s, p, "lone surrogate in \\u escape");
                }
                p += 6;
            } else {
                if (!strchr("\"\\/bfnrt", e) || e == 0) defect(s, p, "invalid escape in string");
                p += 2;
            }
            continue;
        }
        if (c < 0x20) {
            defect(s, p, "control character in string (must be escaped)");
            p++;
            continue;
        }
        int n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
        if (!n) {
            defect(s, p, "invalid UTF-8 in string");
            n = 1;
        }
        p += n;
    }
}

static const char *number(jscan *s, const char *p, const char *end)
{
    const char *start = p;
    if (*p == '-') p++;
    if (p >= end) return fail(s, start, "invalid number");
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return fail(s, start, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return fail(s, start, "invalid number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return fail(s, start, "invalid number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

static const char *literal(jscan *s, const char *p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0) return fail(s, p, "invalid literal");
    return p + n;
}

const char *jscan_value(jscan *s, const char *p, const char *end, enum jtype *type)
{
    unsigned char stack[JSCAN_MAX_NEST / 8]; /* bit set: object at that level */
    unsigned d = 0, maxd = 0;
    enum jtype top = J_NONE;

value:
    if (p >= end) return fail(s, p, "unexpected end of input");
    switch (*p) {
    case '{':
    case '[': {
        int obj = *p == '{';
        if (d == 0) top = obj ? J_OBJ : J_ARR;
        if (d == JSCAN_MAX_NEST) return fail(s, p, "nesting deeper than 4096 levels");
        unsigned char bit = (unsigned char)(1u << (d % 8));
        if (d % 8 == 0) /* first level of this byte: assign, never read uninitialized bits */
            stack[d / 8] = obj ? bit : 0;
        else if (obj)
            stack[d / 8] |= bit;
        else
            stack[d / 8] &= (unsigned char)~bit;
        d++;
        if (d > maxd) maxd = d;
        p = jscan_ws(s, p + 1, end);
        if (p < end && *p == (obj ? '}' : ']')) {
            p++;
            d--;
            goto after;
        }
        if (obj) goto key;
        goto value;
    }
    case '"':
        if (d == 0) top = J_STR;
        p = jscan_string(s, p, end);
        break;
    case 't':
        if (d == 0) top = J_TRUE;
        p = literal(s, p, end, "true", 4);
        break;
    case 'f':
        if (d == 0) top = J_FALSE;
        p = literal(s, p, end, "false", 5);
        break;
    case 'n':
        if (d == 0) top = J_NULL;
        p = literal(s, p, end, "null", 4);
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            if (d == 0) top = J_NUM;
            p = number(s, p, end);
            break;
        }
        return fail(s, p, "unexpected character");
    }
    if (!p) return NULL;

after:
    if (d == 0) {
        s->depth = maxd;
        *type = top;
        return p;
    }
    p = jscan_ws(s, p, end);
    if (p >= end) return fail(s, p, "unexpected end of input");
    {
        int obj = (stack[(d - 1) / 8] >> ((d - 1) % 8)) & 1;
        if (*p == ',') {
            p = jscan_ws(s, p + 1, end);
            if (obj) goto key;
            goto value;
        }
        if (*p == (obj ? '}' : ']')) {
            p++;
            d--;
            goto after;
        }
        return fail(s, p, obj ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
    }

key:
    if (p >= end) return fail(s, p, "unexpected end of input");
    if (*p != '"') return fail(s, p, "expected a string key in object");
    if (!(p = jscan_string(s, p, end))) return NULL;
    p = jscan_ws(s, p, end);
    if (p >= end || *p != ':') return fail(s, p, "expected ':' after key");
    p = jscan_ws(s, p + 1, end);
    goto value;
}

size_t jscan_unescape(const char *p, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    while (p < end) {
        unsigned v;
        if (*p != '\\') {
            if (n == cap) return (size_t)-1;
            out[n++] = *p++;
            continue;
        }
        if (end - p < 2) return (size_t)-1;
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 't': v = '\t'; break;
        case 'u': {
            int h = hex4(p, end);
            if (h < 0) return (size_t)-1;
            v = (unsigned)h;
            p += 4;
            if (v >= 0xd800 && v <= 0xdbff) {
                int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, end) : -1;
                if (lo < 0xdc00 || lo > 0xdfff) return (size_t)-1;
                v = 0x10000 + ((v - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
                p += 6;
            }
            break;
        }
        default: v = (unsigned char)e;
        }
        char u[4];
        size_t k;
        if (v < 0x80) {
            u[0] = (char)v, k = 1;
        } else if (v < 0x800) {
            u[0] = (char)(0xc0 | (v >> 6)), u[1] = (char)(0x80 | (v & 63)), k = 2;
        } else if (v < 0x10000) {
            u[0] = (char)(0xe0 | (v >> 12)), u[1] = (char)(0x80 | ((v >> 6) & 63));
            u[2] = (char)(0x80 | (v & 63)), k = 3;
        } else {
            u[0] = (char)(0xf0 | (v >> 18)), u[1] = (char)(0x80 | ((v >> 12) & 63));
            u[2] = (char)(0x80 | ((v >> 6) & 63)), u[3] = (char)(0x80 | (v & 63)), k = 4;
        }
        if (cap - n < k) return (size_t)-1;
        memcpy(out + n, u, k);
        n += k;
    }
    return n;
}

size_t jscan_minify(const char *p, const char *end, char *out)
{
    char *o = out;
    while (p < end) {
        char c = *p++;
        if (is_ws(c)) continue;
        *o++ = c;
        if (c != '"') continue;
        while (p < end) {
            c = *p++;
            *o++ = c;
            if (c == '\\' && p < end) {
                *o++ = *p++;
            } else if (c == '"') {
                break;
            }
        }
    }
    return (size_t)(o - out);
}
