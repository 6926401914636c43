/*
 * glob.c - event type patterns as Shift-And automata (glob.h).
 *
 * Event types are [a-z0-9_.-] (ingest validates them): 39 classes, and one
 * for any other byte, which only '?' matches; a literal outside the 39 can
 * match no type. A pattern of m non-'*' characters is a bit-parallel NFA of
 * m + 1 states: state i means "the first i of them matched". One pass over
 * the type, a few word operations per character, whatever the pattern.
 */
#include "glob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLASSES   40
#define MAX_WORDS (GLOB_PATTERN_BYTES_MAX / 64 + 1)

static int class_of(unsigned char c)
{
    if (c >= 'a' && c <= 'z') return c - 'a';
    if (c >= '0' && c <= '9') return 26 + (c - '0');
    return c == '_' ? 36 : c == '.' ? 37 : c == '-' ? 38 : 39;
}

/*
 * mask[k] has bit i+1 when pattern character i takes a character of class k;
 * loop (the row after the CLASSES rows) has bit i when a '*' follows
 * character i (or starts the pattern, i = 0): that state stays on any character.
 */
static int compile(const char *p, size_t n, glob *g)
{
    g->m = 0;
    for (size_t i = 0; i < n; i++) g->m += p[i] != '*';
    g->words = g->m / 64 + 1;
    if (g->words > MAX_WORDS) return -1;
    g->mask = calloc((size_t)(CLASSES + 1) * (size_t)g->words, sizeof *g->mask);
    if (!g->mask) return -1;
    uint64_t *loop = g->mask + (size_t)CLASSES * (size_t)g->words;
    int state = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '*') {
            loop[state / 64] |= UINT64_C(1) << (state % 64);
            continue;
        }
        int next = state + 1, k = class_of((unsigned char)p[i]);
        uint64_t bit = UINT64_C(1) << (next % 64);
        size_t at = (size_t)(next / 64);
        if (p[i] == '?') {
            for (int c = 0; c < CLASSES; c++) g->mask[(size_t)c * (size_t)g->words + at] |= bit;
        } else if (k < CLASSES - 1) {
            g->mask[(size_t)k * (size_t)g->words + at] |= bit;
        }
        state = next;
    }
    return 0;
}

static int match(const glob *g, const char *s, size_t n)
{
    uint64_t d[MAX_WORDS] = {1};
    const uint64_t *loop = g->mask + (size_t)CLASSES * (size_t)g->words;
    for (size_t i = 0; i < n; i++) {
        const uint64_t *a = g->mask + (size_t)class_of((unsigned char)s[i]) * (size_t)g->words;
        uint64_t carry = 0, any = 0;
        for (int w = 0; w < g->words; w++) {
            uint64_t x = d[w];
            d[w] = (((x << 1) | carry) & a[w]) | (x & loop[w]);
            carry = x >> 63;
            any |= d[w];
        }
        if (!any) return 0;
    }
    return (int)((d[g->m / 64] >> (g->m % 64)) & 1);
}

int glob_list_check(const char *patterns, int max_patterns, size_t max_bytes, char *err,
                    size_t errlen)
{
    int n = 0;
    for (const char *p = patterns; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len > max_bytes) {
            snprintf(err, errlen,
                     "type: a pattern of %zu bytes is longer than the %zu this server takes "
                     "(--tail-max-pattern-bytes)",
                     len, max_bytes);
            return -1;
        }
        n += len > 0;
        p += len + (p[len] == ',');
    }
    if (n > max_patterns) {
        snprintf(err, errlen,
                 "type: %d patterns, more than the %d this server takes (--tail-max-patterns)", n,
                 max_patterns);
        return -1;
    }
    return 0;
}

int glob_list_compile(const char *patterns, glob_list *l)
{
    l->g = NULL;
    l->n = 0;
    if (!patterns || !*patterns) return 0;
    size_t n = 1;
    for (const char *p = patterns; *p; p++) n += *p == ',';
    if (!(l->g = calloc(n, sizeof *l->g))) return -1;
    for (const char *p = patterns; *p;) {
        size_t len = strcspn(p, ",");
        if (len && compile(p, len, &l->g[l->n++])) return -1;
        p += len + (p[len] == ',');
    }
    return 0;
}

int glob_list_match(const glob_list *l, const char *type, size_t n)
{
    if (!l->n) return 1;
    for (size_t i = 0; i < l->n; i++)
        if (match(&l->g[i], type, n)) return 1;
    return 0;
}

void glob_list_free(glob_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->g[i].mask);
    free(l->g);
    l->g = NULL;
    l->n = 0;
}
