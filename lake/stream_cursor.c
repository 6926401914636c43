/*
 * stream_cursor.c - the text of a stream cursor (stream.h).
 *
 * "<sid>.<seq 16 lowercase hex>" pairs joined by ",", sorted by sid, each sid
 * once, at most LAKE_STREAM_MAX_SIDS: fixed-width pairs, so a cursor is parsed
 * in one pass with no allocation but the array, and anything else is refused
 * with the pair and what is wrong in it, never guessed at.
 */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAIR_LEN (LAKE_SID_LEN + 1 + 16)

/* One pair p[0..n) into *out: 0, or LAKE_STREAM_EINVAL with the reason. */
static int parse_pair(const char *p, size_t n, size_t k, lake_stream_pos *out, char *err,
                      size_t errlen)
{
    if (n != PAIR_LEN || p[LAKE_SID_LEN] != '.') {
        snprintf(err, errlen,
                 "bad cursor: pair %zu \"%.*s\" is not <sid>.<seq>: 8 characters of [0-9a-z], "
                 "a dot, 16 lowercase hex digits",
                 k + 1, (int)(n < 40 ? n : 40), p);
        return LAKE_STREAM_EINVAL;
    }
    char sid[LAKE_SID_LEN + 1];
    memcpy(sid, p, LAKE_SID_LEN);
    sid[LAKE_SID_LEN] = 0;
    if (!lake_sid_valid(sid)) {
        snprintf(err, errlen, "bad cursor: pair %zu: \"%.8s\" is not a stream id ([0-9a-z]{8})",
                 k + 1, p);
        return LAKE_STREAM_EINVAL;
    }
    if (lake_parse_hex16(p + LAKE_SID_LEN + 1, &out->seq)) {
        snprintf(err, errlen, "bad cursor: pair %zu: \"%.16s\" is not 16 lowercase hex digits",
                 k + 1, p + LAKE_SID_LEN + 1);
        return LAKE_STREAM_EINVAL;
    }
    memcpy(out->sid, p, LAKE_SID_LEN);
    out->sid[LAKE_SID_LEN] = 0;
    return 0;
}

int lake_cursor_parse(const char *text, size_t n, lake_cursor *out, char *err, size_t errlen)
{
    out->p = NULL;
    out->n = 0;
    if (!n) return 0;
    size_t pairs = 1;
    for (size_t i = 0; i < n; i++) pairs += text[i] == ',';
    if (pairs > LAKE_STREAM_MAX_SIDS) {
        snprintf(err, errlen, "bad cursor: %zu positions, more than the limit of %d streams", pairs,
                 LAKE_STREAM_MAX_SIDS);
        return LAKE_STREAM_EINVAL;
    }
    if (!(out->p = calloc(pairs, sizeof *out->p))) {
        snprintf(err, errlen, "out of memory");
        return LAKE_STREAM_EIO;
    }
    const char *p = text, *end = text + n;
    for (size_t k = 0; k < pairs; k++) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
        int rc = parse_pair(p, len, k, &out->p[k], err, errlen);
        if (!rc && k && strcmp(out->p[k - 1].sid, out->p[k].sid) >= 0) {
            snprintf(err, errlen, "bad cursor: pair %zu: stream %s is %s; pairs are sorted by sid",
                     k + 1, out->p[k].sid,
                     strcmp(out->p[k - 1].sid, out->p[k].sid) ? "out of order" : "there twice");
            rc = LAKE_STREAM_EINVAL;
        }
        if (rc) {
            lake_cursor_free(out);
            return rc;
        }
        out->n++;
        p += len + 1;
    }
    return 0;
}

int lake_cursor_format(const lake_cursor *c, buf *out)
{
    for (size_t i = 0; i < c->n; i++)
        if (buf_printf(out, "%s%s.%016llx", i ? "," : "", c->p[i].sid,
                       (unsigned long long)c->p[i].seq))
            return -1;
    return 0;
}

void lake_cursor_free(lake_cursor *c)
{
    free(c->p);
    c->p = NULL;
    c->n = 0;
}

/* Where sid is in c, or where it would go (*found 0). */
static size_t find(const lake_cursor *c, const char *sid, int *found)
{
    size_t lo = 0, hi = c ? c->n : 0;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(c->p[mid].sid, sid);
        if (!d) {
            *found = 1;
            return mid;
        }
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int lake_cursor_get(const lake_cursor *c, const char *sid, uint64_t *seq)
{
    int found;
    size_t i = find(c, sid, &found);
    if (found) *seq = c->p[i].seq;
    return found ? 0 : -1;
}

int lake_cursor_set(lake_cursor *c, const char *sid, uint64_t seq)
{
    int found;
    size_t i = find(c, sid, &found);
    if (found) {
        c->p[i].seq = seq;
        return 0;
    }
    if (c->n == LAKE_STREAM_MAX_SIDS) return -1;
    lake_stream_pos *np = realloc(c->p, (c->n + 1) * sizeof *np);
    if (!np) return -1;
    c->p = np;
    memmove(&c->p[i + 1], &c->p[i], (c->n - i) * sizeof *c->p);
    memcpy(c->p[i].sid, sid, LAKE_SID_LEN);
    c->p[i].sid[LAKE_SID_LEN] = 0;
    c->p[i].seq = seq;
    c->n++;
    return 0;
}
