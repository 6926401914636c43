/*
 * stream_read.c - lake_stream_read (stream.h): the files of each sid, a
 * source per sid, and their merge by receivedAt.
 *
 * The listing is made anew for each read (the lake's stream/ keys, then the
 * caller's local files), so a file sealed between two reads is seen by the
 * second. A source (src) reads one sid from the seq after its position: its
 * head is the next line, checked against the seq expected; it ends at the
 * end of the sid's data or at a hole in its seqs (a file not visible yet),
 * and its position is then the last seq it gave, which the next read goes on
 * from. The merge takes the head with the smallest receivedAt (ties: the
 * smaller sid, sources being in sid order) until the limit, the bytes, the
 * scan budget or the data runs out. Events the filter refuses are passed
 * over, and the position moves past them all the same.
 */
#include "evtime.h"
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCAN_DEFAULT (64ull << 20)

typedef struct listing {
    stream__sid *s;
    size_t n, cap;
} listing;

static void listing_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        for (size_t j = 0; j < l->s[i].n; j++) free(l->s[i].f[j].key);
        free(l->s[i].f);
    }
    free(l->s);
}

/* The entry of sid (added when new, unless there are LAKE_STREAM_MAX_SIDS); NULL if none. */
static stream__sid *sid_of(listing *l, const char *sid)
{
    for (size_t i = l->n; i-- > 0;) /* the lake's keys come in sid order: the last, mostly */
        if (!strcmp(l->s[i].sid, sid)) return &l->s[i];
    if (l->n == LAKE_STREAM_MAX_SIDS) return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        stream__sid *ns = realloc(l->s, cap * sizeof *ns);
        if (!ns) return NULL;
        l->s = ns, l->cap = cap;
    }
    stream__sid *e = &l->s[l->n++];
    memset(e, 0, sizeof *e);
    memcpy(e->sid, sid, LAKE_SID_LEN + 1);
    return e;
}

/* Adds a file (key taken over); -1 out of memory. */
static int add_file(listing *l, const char *sid, stream__file f)
{
    stream__sid *e = sid_of(l, sid);
    if (!e) {
        free(f.key);
        return l->n == LAKE_STREAM_MAX_SIDS ? 0 : -1;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        stream__file *nf = realloc(e->f, cap * sizeof *nf);
        if (!nf) {
            free(f.key);
            return -1;
        }
        e->f = nf, e->cap = cap;
    }
    e->f[e->n++] = f;
    return 0;
}

static int on_key(const store_entry *e, void *ud)
{
    char sid[LAKE_SID_LEN + 1];
    uint64_t first;
    if (lake_parse_stream_key(e->key, sid, &first)) return 0; /* not a stream file */
    char *key = strdup(e->key);
    return !key || add_file(ud, sid, (stream__file){first, e->size, key, NULL});
}

static int by_first(const void *a, const void *b)
{
    const stream__file *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return (x->key == NULL) - (y->key == NULL); /* the lake's copy first */
}

static int by_sid(const void *a, const void *b)
{
    return strcmp(((const stream__sid *)a)->sid, ((const stream__sid *)b)->sid);
}

/* Sorts each sid's files, keeping one of two with the same first seq (the lake's). */
static void listing_sort(listing *l)
{
    if (!l->n) return; /* an empty lake: no array to sort (qsort's NULL is undefined) */
    qsort(l->s, l->n, sizeof *l->s, by_sid);
    for (size_t i = 0; i < l->n; i++) {
        stream__sid *e = &l->s[i];
        qsort(e->f, e->n, sizeof *e->f, by_first);
        size_t k = 0;
        for (size_t j = 0; j < e->n; j++) {
            if (k && e->f[k - 1].first == e->f[j].first) {
                free(e->f[j].key);
                continue;
            }
            e->f[k++] = e->f[j];
        }
        e->n = k;
    }
}

/* The lake's stream files and the caller's local ones, by sid. */
static int list_files(store *s, const lake_stream_req *req, listing *l, char *err, size_t errlen)
{
    char why[1024];
    int rc = store_list(s, LAKE_STREAM_PREFIX, on_key, l, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "stream: cannot list %s: %s", LAKE_STREAM_PREFIX, why);
        return LAKE_STREAM_EIO;
    }
    for (size_t i = 0; i < req->nlocal; i++) {
        const lake_stream_local *lf = &req->local[i];
        if (add_file(l, lf->sid, (stream__file){lf->first, lf->len, NULL, lf->path})) {
            snprintf(err, errlen, "stream: out of memory");
            return LAKE_STREAM_EIO;
        }
    }
    listing_sort(l);
    return 0;
}

/* ---- a source: one sid ------------------------------------------------------------ */

typedef struct src {
    stream__sid *s;
    size_t fi; /* the file mapped */
    stream__map m;
    size_t off;        /* the next line's offset in m */
    uint64_t seq;      /* the next line's seq */
    uint64_t last;     /* the last seq given: the position */
    int named, moved;  /* in the cursor (or placed by since); gave an event */
    int mapped, ended; /* m holds file fi; nothing more to read */
    const char *line;  /* the head: a line (llen bytes), received at `at`; NULL: none yet */
    size_t llen;
    const char *at;
} src;

static const char *file_name(const stream__file *f)
{
    return f->key ? f->key : f->path;
}

/* Maps file i of the source, from line seq `from`; the source ends if it has gone. */
static int src_open(lake_stream *st, src *c, size_t i, uint64_t from, char *err, size_t errlen)
{
    if (c->mapped) stream__unmap(st, &c->m);
    c->mapped = 0;
    int rc = stream__map_file(st, &c->s->f[i], &c->m, err, errlen);
    if (rc == STREAM__GONE) c->ended = 1;
    if (rc) return rc == STREAM__GONE ? 0 : rc;
    c->mapped = 1;
    c->fi = i;
    c->seq = from;
    c->off = stream__skip(st, &c->s->f[i], &c->m, from - c->s->f[i].first);
    return 0;
}

/* Places the source after seq `last`: the file holding last+1 (binary search). */
static int src_start(lake_stream *st, src *c, uint64_t last, char *err, size_t errlen)
{
    c->last = last;
    size_t lo = 0, hi = c->s->n; /* the last file whose first is at most last+1 */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->s->f[mid].first <= last + 1)
            lo = mid;
        else
            hi = mid;
    }
    return src_open(st, c, lo, last + 1, err, errlen);
}

/* Makes the source's head (c->line) the line of c->seq, or ends the source. */
static int src_head(lake_stream *st, src *c, char *err, size_t errlen)
{
    while (!c->line && !c->ended) {
        if (c->off >= c->m.len) {
            size_t i = c->fi + 1;
            if (i >= c->s->n || c->s->f[i].first != c->seq) { /* the end, or a hole */
                c->ended = 1;
                break;
            }
            int rc = src_open(st, c, i, c->seq, err, errlen);
            if (rc) return rc;
            continue;
        }
        const char *p = c->m.p + c->off, *nl = memchr(p, '\n', c->m.len - c->off);
        if (!nl) { /* a line not whole: the end of what is committed */
            c->ended = 1;
            break;
        }
        size_t len = (size_t)(nl - p);
        uint64_t seq;
        const char *at = stream__line_at(p, len);
        if (stream__line_seq(p, len, c->s->sid, &seq) || seq != c->seq || !at) {
            snprintf(err, errlen,
                     "stream: %s: the line at byte %zu is not event %s.%016llx with its "
                     "receivedAt and its \"_events_pos\" last",
                     file_name(&c->s->f[c->fi]), c->off, c->s->sid, (unsigned long long)c->seq);
            return LAKE_STREAM_EIO;
        }
        c->line = p, c->llen = len, c->at = at;
    }
    return 0;
}

/* Takes the head: the position moves past it. */
static void src_pop(src *c)
{
    c->last = c->seq++;
    c->off += c->llen + 1;
    c->line = NULL;
    c->moved = 1;
}

/* ---- where each source starts ------------------------------------------------------ */

/* The receivedAt of file i's first line into at (EVTIME_LEN bytes); a file gone: "9999". */
static int first_at(lake_stream *st, const stream__sid *s, size_t i, char *at, char *err,
                    size_t errlen)
{
    stream__map m;
    int rc = stream__map_file(st, &s->f[i], &m, err, errlen);
    if (rc) {
        memset(at, '9', EVTIME_LEN); /* after any time: the search looks before it */
        return rc == STREAM__GONE ? 0 : rc;
    }
    const char *nl = memchr(m.p, '\n', m.len);
    const char *a = nl ? stream__line_at(m.p, (size_t)(nl - m.p)) : NULL;
    if (a)
        memcpy(at, a, EVTIME_LEN);
    else
        memset(at, '9', EVTIME_LEN);
    stream__unmap(st, &m);
    return 0;
}

/*
 * The position before the first event of s received at or after since: the
 * last file whose first line is older (binary search), then its lines.
 */
static int since_start(lake_stream *st, const stream__sid *s, int64_t since_ms, uint64_t *last,
                       char *err, size_t errlen)
{
    char want[EVTIME_LEN + 1], at[EVTIME_LEN];
    evtime_format(since_ms, want);
    size_t lo = 0, hi = s->n; /* files [0, lo) begin before since; [hi, n) at or after */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int rc = first_at(st, s, mid, at, err, errlen);
        if (rc) return rc;
        if (memcmp(at, want, EVTIME_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *last = s->f[lo ? lo - 1 : 0].first - 1;
    if (!lo) return 0; /* every file begins at or after since */
    stream__map m;
    int rc = stream__map_file(st, &s->f[lo - 1], &m, err, errlen);
    if (rc) return rc == STREAM__GONE ? 0 : rc;
    for (size_t o = 0; o < m.len;) {
        const char *p = m.p + o, *nl = memchr(p, '\n', m.len - o);
        if (!nl) break;
        const char *a = stream__line_at(p, (size_t)(nl - p));
        if (a && memcmp(a, want, EVTIME_LEN) >= 0) break;
        ++*last;
        o = (size_t)(nl - m.p) + 1;
    }
    stream__unmap(st, &m);
    return 0;
}

/* The cursor of the oldest events kept: each sid before its oldest file. */
static int oldest_cursor(const listing *l, lake_cursor *out)
{
    if (l->n && !(out->p = calloc(l->n, sizeof *out->p))) return -1;
    for (size_t i = 0; i < l->n; i++) {
        memcpy(out->p[i].sid, l->s[i].sid, LAKE_SID_LEN + 1);
        out->p[i].seq = l->s[i].f[0].first - 1;
    }
    out->n = l->n;
    return 0;
}

/* LAKE_STREAM_EEXPIRED if a position of the cursor is before its sid's oldest file. */
static int check_expired(const listing *l, const lake_cursor *after, lake_stream_res *res,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < l->n; i++) {
        uint64_t last;
        const stream__sid *s = &l->s[i];
        if (lake_cursor_get(after, s->sid, &last) || last + 1 >= s->f[0].first) continue;
        snprintf(err, errlen,
                 "cursor expired: the events of stream %s after %016llx are no longer kept; "
                 "its oldest is %016llx",
                 s->sid, (unsigned long long)last, (unsigned long long)s->f[0].first);
        if (oldest_cursor(l, &res->oldest)) {
            snprintf(err, errlen, "stream: out of memory");
            return LAKE_STREAM_EIO;
        }
        return LAKE_STREAM_EEXPIRED;
    }
    return 0;
}

/* A source per listed sid, placed by the cursor, since, or at the sid's oldest event. */
static int start_sources(lake_stream *st, const lake_stream_req *req, listing *l, src *c, char *err,
                         size_t errlen)
{
    int by_time = req->since_ms >= 0 && (!req->after || !req->after->n);
    for (size_t i = 0; i < l->n; i++) {
        uint64_t last = l->s[i].f[0].first - 1;
        c[i].s = &l->s[i];
        c[i].named = !lake_cursor_get(req->after, l->s[i].sid, &last);
        int rc = 0;
        if (by_time) {
            c[i].named = 1;
            rc = since_start(st, &l->s[i], req->since_ms, &last, err, errlen);
        }
        if (!rc) rc = src_start(st, &c[i], last, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

/* ---- the merge --------------------------------------------------------------------- */

/* The source whose head comes next (smallest receivedAt, then sid), or NULL: all ended. */
static int next_source(lake_stream *st, src *c, size_t n, src **best, char *err, size_t errlen)
{
    *best = NULL;
    for (size_t i = 0; i < n; i++) {
        int rc = src_head(st, &c[i], err, errlen);
        if (rc) return rc;
        if (c[i].line && (!*best || memcmp(c[i].at, (*best)->at, EVTIME_LEN) < 0)) *best = &c[i];
    }
    return 0;
}

/* Reads events into res until a limit of req, or the end of every source. */
static int merge(lake_stream *st, const lake_stream_req *req, src *c, size_t n,
                 lake_stream_res *res, char *err, size_t errlen)
{
    uint64_t scanned = 0, max_scan = req->max_scan ? req->max_scan : MAX_SCAN_DEFAULT;
    while (res->count < req->limit && scanned < max_scan) {
        src *b;
        int rc = next_source(st, c, n, &b, err, errlen);
        if (rc || !b) return rc;
        int take = 1;
        if (req->filter) {
            lake_stream_event e = {.line = b->line, .len = b->llen, .at = b->at};
            e.type = stream__line_type(b->line, b->llen, &e.tn);
            take = req->filter(&e, req->filter_ud);
        }
        if (take == LAKE_STREAM_STOP) {
            res->stopped = 1;
            break;
        }
        if (!take) {
            scanned += b->llen + 1;
            res->scanned++;
            src_pop(b);
            continue;
        }
        if (res->count && res->events.len + 1 + b->llen > req->max_bytes) {
            res->cut = 1;
            break;
        }
        if ((res->count && buf_putc(&res->events, req->sep ? req->sep : ',')) ||
            buf_append(&res->events, b->line, b->llen)) {
            snprintf(err, errlen, "stream: out of memory");
            return LAKE_STREAM_EIO;
        }
        scanned += b->llen + 1;
        res->scanned++;
        res->count++;
        src_pop(b);
    }
    return 0;
}

static int pos_cmp(const void *a, const void *b)
{
    return strcmp(((const lake_stream_pos *)a)->sid, ((const lake_stream_pos *)b)->sid);
}

/* The cursor to go on from: the sources' positions and the cursor's other sids. */
static int next_cursor(const lake_cursor *after, const src *c, size_t n, lake_cursor *out)
{
    size_t cap = n + (after ? after->n : 0);
    if (cap && !(out->p = calloc(cap, sizeof *out->p))) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].named && !c[i].moved) continue; /* from its oldest next time too */
        memcpy(out->p[out->n].sid, c[i].s->sid, LAKE_SID_LEN + 1);
        out->p[out->n++].seq = c[i].last;
    }
    for (size_t i = 0; after && i < after->n; i++) {
        int listed = 0;
        for (size_t j = 0; j < n && !listed; j++) listed = !strcmp(c[j].s->sid, after->p[i].sid);
        if (!listed) out->p[out->n++] = after->p[i]; /* no files (yet, or any more) */
    }
    if (out->n) qsort(out->p, out->n, sizeof *out->p, pos_cmp);
    return 0;
}

int lake_stream_read(lake_stream *st, const lake_stream_req *req, lake_stream_res *res, char *err,
                     size_t errlen)
{
    if (!req->limit || !req->max_bytes) {
        snprintf(err, errlen, "stream: limit and max_bytes must be above 0");
        return LAKE_STREAM_EINVAL;
    }
    listing l = {0};
    src *c = NULL;
    int rc = list_files(stream__store(st), req, &l, err, errlen);
    if (!rc) rc = check_expired(&l, req->after, res, err, errlen);
    if (!rc && l.n && !(c = calloc(l.n, sizeof *c))) {
        snprintf(err, errlen, "stream: out of memory");
        rc = LAKE_STREAM_EIO;
    }
    if (!rc) rc = start_sources(st, req, &l, c, err, errlen);
    if (!rc) rc = merge(st, req, c, l.n, res, err, errlen);
    if (!rc && next_cursor(req->after, c, l.n, &res->next)) {
        snprintf(err, errlen, "stream: out of memory");
        rc = LAKE_STREAM_EIO;
    }
    for (size_t i = 0; c && i < l.n; i++) {
        if (!c[i].mapped) continue;
        const stream__file *f = &c[i].s->f[c[i].fi];
        if (!rc) stream__note(st, f, c[i].seq - f->first, c[i].off);
        stream__unmap(st, &c[i].m);
    }
    free(c);
    listing_free(&l);
    return rc;
}

void lake_stream_res_free(lake_stream_res *res)
{
    buf_free(&res->events);
    lake_cursor_free(&res->next);
    lake_cursor_free(&res->oldest);
}
