/*
 * stream.c - reading the stream log (stream.h): the files of each sid, and
 * the events after a cursor, merged across sids.
 *
 * Each read lists stream/ (the lake's sealed files, key order: by sid, then by
 * first seq, the hex being fixed width) and adds the caller's local files,
 * giving each sid its files sorted by first seq. A sid is then read by a
 * source (src): the file holding seq+1 (binary search on first seqs), the
 * lines skipped to it, then line after line, across files while their first
 * seqs follow on. Every line's position (its last member) is checked against
 * the seq expected, so a file that is not what its name says is an error, not
 * a silent skip. The sources are merged by receivedAt, which is fixed width
 * (evtime.h), so compared as bytes; ties go to the smaller sid.
 *
 * Skipping lines is memchr over a mapped file; for the lake's files, which
 * never change, the offset of every 1024th line is kept in memory (idx_*),
 * so that a read from the middle of a big file skips at most 1023 lines.
 * A file of an s3 lake is read from the local cache (cache.h), pinned while
 * mapped. Files are mapped read-only; nothing is written.
 */
#include "stream.h"
#include "evtime.h"
#include "stream_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDX_EVERY 1024
#define IDX_FILES 4096 /* lake files whose line offsets are kept */

typedef struct idx_entry {
    char *key;
    uint64_t *off; /* off[k]: where line k*IDX_EVERY begins */
    size_t n;
    uint64_t size; /* the file's size when indexed */
} idx_entry;

struct lake_stream {
    store *store;
    lake_cache *cache;
    const char *root;   /* a directory lake's root, else NULL */
    pthread_mutex_t mu; /* idx, nidx, idx_next */
    idx_entry idx[IDX_FILES];
    size_t nidx, idx_next; /* entries used; the next one replaced when full */
};

int lake_stream_open(store *s, lake_cache *cache, lake_stream **out, char *err, size_t errlen)
{
    lake_stream *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "stream: out of memory");
        return LAKE_STREAM_EIO;
    }
    st->store = s;
    st->cache = cache;
    st->root = s->ops->root(s);
    pthread_mutex_init(&st->mu, NULL);
    *out = st;
    return 0;
}

store *stream__store(lake_stream *st)
{
    return st->store;
}

void lake_stream_close(lake_stream *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->nidx; i++) {
        free(st->idx[i].key);
        free(st->idx[i].off);
    }
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* ---- the index of line offsets --------------------------------------------------- */

/* Copies the kept offsets of key (of this size) into *off: how many, 0 when none. */
static size_t idx_get(lake_stream *st, const char *key, uint64_t size, uint64_t **off)
{
    size_t n = 0;
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->nidx; i++) {
        idx_entry *e = &st->idx[i];
        if (e->size != size || strcmp(e->key, key)) continue;
        if ((*off = malloc(e->n * sizeof **off))) {
            memcpy(*off, e->off, e->n * sizeof **off);
            n = e->n;
        }
        break;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

/* Keeps the offsets of key (taken over); the oldest entry goes when the table is full. */
static void idx_put(lake_stream *st, const char *key, uint64_t size, uint64_t *off, size_t n)
{
    char *k = strdup(key);
    if (!k) {
        free(off);
        return;
    }
    pthread_mutex_lock(&st->mu);
    idx_entry *e;
    if (st->nidx < IDX_FILES) {
        e = &st->idx[st->nidx++];
    } else {
        e = &st->idx[st->idx_next];
        st->idx_next = (st->idx_next + 1) % IDX_FILES;
        free(e->key);
        free(e->off);
    }
    *e = (idx_entry){k, off, n, size};
    pthread_mutex_unlock(&st->mu);
}

/* The offsets of every IDX_EVERY-th line of p[0..len): a malloc'd array, *n of them. */
static uint64_t *idx_build(const char *p, size_t len, size_t *n)
{
    size_t cap = 16, k = 0, line = 0;
    uint64_t *off = malloc(cap * sizeof *off);
    if (!off) return NULL;
    for (size_t o = 0; o < len; line++) {
        if (line % IDX_EVERY == 0) {
            if (k == cap) {
                uint64_t *no = realloc(off, (cap *= 2) * sizeof *off);
                if (!no) {
                    free(off);
                    return NULL;
                }
                off = no;
            }
            off[k++] = o;
        }
        const char *nl = memchr(p + o, '\n', len - o);
        if (!nl) break;
        o = (size_t)(nl - p) + 1;
    }
    *n = k;
    return off;
}

/* ---- files: mapped, from the directory, the cache or the spool -------------------- */

void stream__unmap(lake_stream *st, stream__map *m)
{
    if (m->base) munmap(m->base, m->len);
    if (m->pinned) lake_cache_unpin(st->cache, &m->it, 1);
    memset(m, 0, sizeof *m);
}

/* Maps the first len bytes (0: all) of the file at path. */
static int map_path(stream__map *m, const char *path, uint64_t len, int local, char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return STREAM__GONE;
        snprintf(err, errlen, "stream: cannot open %s: %s", path, strerror(errno));
        return LAKE_STREAM_EIO;
    }
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (!rc && !local) len = (uint64_t)sb.st_size;
    if (!rc && (uint64_t)sb.st_size < len) len = (uint64_t)sb.st_size;
    if (!rc && len) {
        void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            rc = -1;
        else
            m->base = p;
    }
    if (rc) snprintf(err, errlen, "stream: cannot read %s: %s", path, strerror(errno));
    close(fd);
    m->p = m->base;
    m->len = rc ? 0 : (size_t)len;
    return rc ? LAKE_STREAM_EIO : 0;
}

/*
 * Maps f: a local file up to its committed length, a lake file from the
 * directory or the cache. STREAM__GONE when a local file has gone (it is on
 * its way to the lake: the sid stops there for this read).
 */
int stream__map_file(lake_stream *st, const stream__file *f, stream__map *m, char *err,
                     size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (f->path) return map_path(m, f->path, f->size, 1, err, errlen);
    char path[4096];
    if (st->root) {
        snprintf(path, sizeof path, "%s/%s", st->root, f->key);
        int rc = map_path(m, path, 0, 0, err, errlen);
        if (rc == STREAM__GONE) { /* deleted by retention meanwhile */
            snprintf(err, errlen, "stream: %s was deleted while being read", f->key);
            return LAKE_STREAM_EIO;
        }
        return rc;
    }
    char why[1024];
    m->it.key = f->key;
    m->it.size = f->size;
    if (lake_cache_fetch(st->cache, st->store, &m->it, 1, 1, why, sizeof why)) {
        snprintf(err, errlen, "stream: cannot fetch %s: %s", f->key, why);
        return LAKE_STREAM_EIO;
    }
    m->pinned = 1;
    int rc = map_path(m, m->it.path, 0, 0, err, errlen);
    if (rc) stream__unmap(st, m);
    return rc ? LAKE_STREAM_EIO : 0;
}

/* The offset of line k of the mapped file f (k from its first line), or m->len past its end. */
size_t stream__skip(lake_stream *st, const stream__file *f, const stream__map *m, uint64_t k)
{
    size_t o = 0;
    uint64_t *off = NULL;
    size_t n = 0;
    if (k >= IDX_EVERY && !f->path) {
        n = idx_get(st, f->key, f->size, &off);
        if (!n && (off = idx_build(m->p, m->len, &n))) {
            uint64_t *copy = malloc(n * sizeof *copy);
            if (copy) {
                memcpy(copy, off, n * sizeof *copy);
                idx_put(st, f->key, f->size, copy, n);
            }
        }
    }
    if (n) {
        size_t j = (size_t)(k / IDX_EVERY) < n ? (size_t)(k / IDX_EVERY) : n - 1;
        o = (size_t)off[j];
        k -= (uint64_t)j * IDX_EVERY;
    }
    free(off);
    for (; k && o < m->len; k--) {
        const char *nl = memchr(m->p + o, '\n', m->len - o);
        o = nl ? (size_t)(nl - m->p) + 1 : m->len;
    }
    return o;
}

/* ---- lines ------------------------------------------------------------------------- */

#define POS_MEMBER     "\"_events_pos\":\""
#define POS_MEMBER_LEN 15
#define POS_TAIL_LEN   (POS_MEMBER_LEN + LAKE_STREAM_SID_LEN + 1 + 16 + 2) /* …"} */

int stream__line_seq(const char *p, size_t len, const char *sid, uint64_t *seq)
{
    if (len < POS_TAIL_LEN + 1) return -1;
    const char *t = p + len - POS_TAIL_LEN;
    if (memcmp(t, POS_MEMBER, POS_MEMBER_LEN) || memcmp(p + len - 2, "\"}", 2)) return -1;
    t += POS_MEMBER_LEN;
    if (memcmp(t, sid, LAKE_STREAM_SID_LEN) || t[LAKE_STREAM_SID_LEN] != '.') return -1;
    return lake_parse_hex16(t + LAKE_STREAM_SID_LEN + 1, seq);
}

/* Where the value of a line's string member name begins (its envelope), or NULL. */
static const char *member(const char *p, size_t len, const char *name, size_t nlen)
{
    const char *m = memmem(p, len < 512 ? len : 512, name, nlen);
    return m ? m + nlen : NULL;
}

const char *stream__line_at(const char *p, size_t len)
{
    const char *a = member(p, len, "\"receivedAt\":\"", 14);
    return a && (size_t)(a - p) + EVTIME_LEN <= len ? a : NULL;
}

const char *stream__line_type(const char *p, size_t len, size_t *n)
{
    const char *t = member(p, len, "\"type\":\"", 8);
    if (!t) return NULL;
    const char *q = memchr(t, '"', len - (size_t)(t - p));
    if (!q) return NULL;
    *n = (size_t)(q - t);
    return t;
}
