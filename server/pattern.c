/*
 * pattern.c - subscription type patterns (pattern.h): segments, "*", "**".
 *
 * A pattern and a type are both walked as sequences of dot-separated
 * segments, without copying either. The match is the wildcard walk that
 * matches "*" against characters in text globbing, applied to segments: "**"
 * remembers where it stood, and a later mismatch goes back to it and lets it
 * take one more segment of the type. With one "**" that is linear; with k of
 * them each return advances the last one, so the walk is bounded by
 * segments(pattern) x segments(type).
 */
#include "pattern.h"

#include <stdio.h>
#include <string.h>

/* A segment of s[0..n) starting at i: its end (the dot or n). */
static size_t seg_end(const char *s, size_t n, size_t i)
{
    const char *d = memchr(s + i, '.', n - i);
    return d ? (size_t)(d - s) : n;
}

static int is_star2(const char *p, size_t a, size_t b)
{
    return b - a == 2 && p[a] == '*' && p[a + 1] == '*';
}

/* 1 if the pattern p[0..pn) matches the type t[0..tn). */
static int match_one(const char *p, size_t pn, const char *t, size_t tn)
{
    size_t pi = 0, ti = 0;      /* where the next segment starts (past the end: none left) */
    size_t back_p = (size_t)-1; /* the segment after the last "**", to go back to */
    size_t back_t = 0;          /* the type's segment that "**" would take next */
    while (ti <= tn) {
        if (pi <= pn) {
            size_t pe = seg_end(p, pn, pi);
            if (is_star2(p, pi, pe)) {
                back_p = pe + 1, back_t = ti; /* first take no segment */
                pi = pe + 1;
                continue;
            }
            size_t te = seg_end(t, tn, ti);
            int one = pe - pi == 1 && p[pi] == '*';
            if (one || (pe - pi == te - ti && !memcmp(p + pi, t + ti, pe - pi))) {
                pi = pe + 1, ti = te + 1;
                continue;
            }
        }
        if (back_p == (size_t)-1 || back_t > tn) return 0;
        back_t = seg_end(t, tn, back_t) + 1; /* "**" takes one more segment */
        pi = back_p, ti = back_t;
    }
    /* the type is used up: what is left of the pattern must be "**" only */
    while (pi <= pn) {
        size_t pe = seg_end(p, pn, pi);
        if (!is_star2(p, pi, pe)) return 0;
        pi = pe + 1;
    }
    return 1;
}

/* Checks one pattern p[0..n), the k-th of its list. */
static int check_one(const char *p, size_t n, int k, char *err, size_t errlen)
{
    if (n > PATTERN_MAX_BYTES) {
        snprintf(err, errlen, "pattern %d: %zu bytes, at most %d", k, n, PATTERN_MAX_BYTES);
        return -1;
    }
    for (size_t i = 0; i <= n;) {
        size_t e = seg_end(p, n, i);
        int star = (e - i == 1 && p[i] == '*') || is_star2(p, i, e);
        if (e == i) {
            snprintf(err, errlen, "pattern %d (`%.*s`): an empty segment", k, (int)n, p);
            return -1;
        }
        for (size_t j = i; !star && j < e; j++) {
            char c = p[j];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
                snprintf(err, errlen,
                         "pattern %d (`%.*s`): a segment is `*`, `**` or made of a-z, 0-9, _ "
                         "and -",
                         k, (int)n, p);
                return -1;
            }
        }
        i = e + 1;
    }
    return 0;
}

int pattern_check(const char *list, char *err, size_t errlen)
{
    if (!list || !*list) {
        snprintf(err, errlen, "an empty pattern (`**` matches every event)");
        return -1;
    }
    int k = 0;
    for (const char *s = list;; s++) {
        const char *c = strchr(s, ',');
        size_t n = c ? (size_t)(c - s) : strlen(s);
        if (++k > PATTERN_MAX_LIST) {
            snprintf(err, errlen, "more than %d patterns", PATTERN_MAX_LIST);
            return -1;
        }
        if (!n) {
            snprintf(err, errlen, "pattern %d is empty", k);
            return -1;
        }
        if (check_one(s, n, k, err, errlen)) return -1;
        if (!c) return 0;
        s = c;
    }
}

int pattern_match(const char *list, const char *type, size_t n)
{
    for (const char *s = list;; s++) {
        const char *c = strchr(s, ',');
        size_t pn = c ? (size_t)(c - s) : strlen(s);
        if (match_one(s, pn, type, n)) return 1;
        if (!c) return 0;
        s = c;
    }
}
