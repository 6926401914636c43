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
 * so that a read from the middle of a big file skips at most 1023 lines, and
 * so are the last few places reads of the file stopped, where the next page
 * of a reader begins (bench/stream_read: with pages of 100 events, 6 times
 * as many events/s as with the 1024-line index alone). The writer's local
 * files grow, so they have no index, but they keep such places too
 * (local_hint): else every page read from the open spool segment skipped
 * from its first line, and a follower at the head of the stream (a webhook
 * subscription, deliver.h) read 15 times slower than from sealed files.
 * The last MAPS files read stay mapped (map_entry), so that a reader
 * paging through a file maps it once, not once a page (mmap and munmap were
 * most of the cost of a page of 100); a local file, which grows, is mapped
 * past its end, a LOCAL_MAP at a time (map_local). A file of an s3 lake is read from the
 * local cache (cache.h), pinned while mapped. Files are mapped read-only;
 * nothing is written.
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
#define IDX_HINTS 8    /* where the last reads of a file stopped, kept per file */

typedef struct idx_entry {
    char *key;
    uint64_t *off; /* off[j]: where line j*IDX_EVERY begins */
    size_t n;
    uint64_t size;                                   /* the file's size when indexed */
    uint64_t hint_k[IDX_HINTS], hint_off[IDX_HINTS]; /* line hint_k[i] begins at hint_off[i] */
    unsigned nhint, hint_next;
} idx_entry;

#define LOCAL_HINTS 64 /* where reads of the writer's local files stopped, for all of them */

/* Line k of the local file at path begins at off (its lines before its committed length never
 * change, and a spool segment's name is its sid's and first seq's: another file never has it). */
typedef struct local_hint {
    char *path;
    uint64_t k, off;
} local_hint;

#define MAPS 16 /* lake files kept mapped between reads */

/* A file kept mapped: readers that page through it map it once. A lake file's key and size
 * name it; a local file (the writer's, growing) is mapped past its end, LOCAL_MAP bytes at a
 * time, and its path and inode name it: a reader of its first len bytes shares the mapping
 * while len is within it. */
typedef struct map_entry {
    char *key;
    uint64_t size; /* a lake file's size; a local file's inode */
    void *base;
    size_t len;    /* mapped */
    int refs;      /* sources reading it now */
    uint64_t used; /* st->clock at its last use: the least recent unused one goes */
    int pinned;    /* an s3 lake's: pinned in the cache while mapped */
    int local;
    lake_cache_item it;
} map_entry;

#define LOCAL_MAP (64u << 20) /* a local file's mapping grows by this much (address space only) */

struct lake_stream {
    store *store;
    lake_cache *cache;
    const char *root;   /* a directory lake's root, else NULL */
    pthread_mutex_t mu; /* idx, nidx, idx_next */
    idx_entry idx[IDX_FILES];
    size_t nidx, idx_next; /* entries used; the next one replaced when full */
    map_entry maps[MAPS];  /* under mu too, with nmaps and clock */
    size_t nmaps;
    uint64_t clock;
    local_hint local[LOCAL_HINTS]; /* under mu, a ring: local_next is replaced next */
    size_t local_next;
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
    for (size_t i = 0; i < st->nmaps; i++) {
        map_entry *e = &st->maps[i];
        if (e->base) munmap(e->base, e->len);
        if (e->pinned) lake_cache_unpin(st->cache, &e->it, 1);
        free(e->key);
    }
    for (size_t i = 0; i < LOCAL_HINTS; i++) free(st->local[i].path);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* ---- the index of line offsets --------------------------------------------------- */

/* The entry of key (of this size), or NULL; st->mu held. */
static idx_entry *idx_find(lake_stream *st, const char *key, uint64_t size)
{
    for (size_t i = 0; i < st->nidx; i++)
        if (st->idx[i].size == size && !strcmp(st->idx[i].key, key)) return &st->idx[i];
    return NULL;
}

/*
 * The nearest line known at or before line k of key: *k0 and where it begins
 * (*o0), from the index or from where a read stopped. 0 if key has no entry.
 */
static int idx_start(lake_stream *st, const char *key, uint64_t size, uint64_t k, uint64_t *k0,
                     uint64_t *o0)
{
    pthread_mutex_lock(&st->mu);
    idx_entry *e = idx_find(st, key, size);
    if (e && e->n) {
        size_t j = (size_t)(k / IDX_EVERY) < e->n ? (size_t)(k / IDX_EVERY) : e->n - 1;
        *k0 = (uint64_t)j * IDX_EVERY, *o0 = e->off[j];
        for (unsigned i = 0; i < e->nhint; i++)
            if (e->hint_k[i] <= k && e->hint_k[i] > *k0) *k0 = e->hint_k[i], *o0 = e->hint_off[i];
    }
    pthread_mutex_unlock(&st->mu);
    return e != NULL;
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
    idx_entry *e = idx_find(st, key, size); /* another read indexed it meanwhile */
    if (e) {
        pthread_mutex_unlock(&st->mu);
        free(k);
        free(off);
        return;
    }
    if (st->nidx < IDX_FILES) {
        e = &st->idx[st->nidx++];
    } else {
        e = &st->idx[st->idx_next];
        st->idx_next = (st->idx_next + 1) % IDX_FILES;
        free(e->key);
        free(e->off);
    }
    *e = (idx_entry){.key = k, .off = off, .n = n, .size = size};
    pthread_mutex_unlock(&st->mu);
}

/* Notes where a read of a local file stopped (a ring of them: the oldest goes). */
static void note_local(lake_stream *st, const char *path, uint64_t k, size_t off)
{
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < LOCAL_HINTS; i++)
        if (st->local[i].path && st->local[i].k == k && !strcmp(st->local[i].path, path)) {
            pthread_mutex_unlock(&st->mu);
            return;
        }
    local_hint *h = &st->local[st->local_next];
    char *p = h->path && !strcmp(h->path, path) ? h->path : strdup(path);
    if (p) {
        if (p != h->path) free(h->path);
        *h = (local_hint){p, k, off};
        st->local_next = (st->local_next + 1) % LOCAL_HINTS;
    }
    pthread_mutex_unlock(&st->mu);
}

/* The nearest line noted at or before line k of the local file at path: *k0, *o0. */
static void local_start(lake_stream *st, const char *path, uint64_t k, uint64_t *k0, uint64_t *o0)
{
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < LOCAL_HINTS; i++) {
        const local_hint *h = &st->local[i];
        if (h->path && h->k <= k && h->k > *k0 && !strcmp(h->path, path)) *k0 = h->k, *o0 = h->off;
    }
    pthread_mutex_unlock(&st->mu);
}

void stream__note(lake_stream *st, const stream__file *f, uint64_t k, size_t off)
{
    if (!k) return;
    if (f->path) {
        note_local(st, f->path, k, off);
        return;
    }
    pthread_mutex_lock(&st->mu);
    idx_entry *e = idx_find(st, f->key, f->size);
    if (e) {
        e->hint_k[e->hint_next] = k, e->hint_off[e->hint_next] = off;
        e->hint_next = (e->hint_next + 1) % IDX_HINTS;
        if (e->nhint < IDX_HINTS) e->nhint++;
    }
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
    if (m->shared) { /* the kept mapping's: it stays mapped, and pinned */
        pthread_mutex_lock(&st->mu);
        ((map_entry *)m->shared)->refs--;
        pthread_mutex_unlock(&st->mu);
    } else {
        if (m->base) munmap(m->base, m->len);
        if (m->pinned) lake_cache_unpin(st->cache, &m->it, 1);
    }
    memset(m, 0, sizeof *m);
}

/* Opens the file at path into *fd: 0, STREAM__GONE when it is not there, or LAKE_STREAM_EIO. */
static int open_file(const char *path, int *fd, char *err, size_t errlen)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0) return 0;
    if (errno == ENOENT) return STREAM__GONE;
    snprintf(err, errlen, "stream: cannot open %s: %s", path, strerror(errno));
    return LAKE_STREAM_EIO;
}

/* Maps the file at path (a lake file's: whole). */
static int map_path(stream__map *m, const char *path, char *err, size_t errlen)
{
    int fd, rc = open_file(path, &fd, err, errlen);
    if (rc) return rc;
    struct stat sb;
    rc = fstat(fd, &sb);
    uint64_t len = rc ? 0 : (uint64_t)sb.st_size;
    if (len) {
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

/* Shares into m the kept mapping named key and size (a local file's: reaching need bytes, which
 * m then holds): 1, or 0 when there is none. */
static int shared_map(lake_stream *st, const char *key, uint64_t size, int local, uint64_t need,
                      stream__map *m)
{
    pthread_mutex_lock(&st->mu);
    map_entry *e = NULL;
    for (size_t i = 0; i < st->nmaps && !e; i++)
        if (st->maps[i].local == local && st->maps[i].size == size &&
            (!local || st->maps[i].len >= need) && !strcmp(st->maps[i].key, key))
            e = &st->maps[i];
    if (e) {
        e->refs++;
        e->used = ++st->clock;
        m->p = e->base, m->len = local ? (size_t)need : e->len, m->shared = e;
    }
    pthread_mutex_unlock(&st->mu);
    return e != NULL;
}

/* Keeps the new mapping m (of maplen bytes) for the next reads, named key and size, in a free
 * slot or the least recent unused one. */
static void keep_map(lake_stream *st, const char *name, uint64_t size, int local, size_t maplen,
                     stream__map *m)
{
    char *key = strdup(name);
    if (!key) return;
    pthread_mutex_lock(&st->mu);
    map_entry *e = NULL;
    if (st->nmaps < MAPS)
        e = &st->maps[st->nmaps++]; /* zeroed: nothing to let go of */
    else
        for (size_t i = 0; i < MAPS; i++)
            if (!st->maps[i].refs && (!e || st->maps[i].used < e->used)) e = &st->maps[i];
    if (!e) {
        pthread_mutex_unlock(&st->mu);
        free(key);
        return; /* every kept one is being read: m stays the reader's own */
    }
    if (e->base) munmap(e->base, e->len);
    if (e->pinned) lake_cache_unpin(st->cache, &e->it, 1);
    free(e->key);
    *e = (map_entry){key, size, m->base, maplen, 1, ++st->clock, m->pinned, local, m->it};
    e->it.key = key;
    m->shared = e;
    pthread_mutex_unlock(&st->mu);
}

/*
 * Maps the first len bytes of the local file at path (its committed lines; the file is never
 * cut below them), sharing the kept mapping of the file when it reaches that far, else mapping
 * it anew up to the next LOCAL_MAP boundary and keeping that: a follower at the head of the
 * stream reads the open segment page after page, and a mapping per page cost a munmap (a TLB
 * shootdown) and the page faults of every page read again. STREAM__GONE when it has gone.
 */
static int map_local(lake_stream *st, const char *path, uint64_t len, stream__map *m, char *err,
                     size_t errlen)
{
    int fd, rc = open_file(path, &fd, err, errlen);
    if (rc) return rc;
    struct stat sb;
    rc = fstat(fd, &sb);
    if (!rc && (uint64_t)sb.st_size < len) len = (uint64_t)sb.st_size;
    if (rc || !len || shared_map(st, path, (uint64_t)sb.st_ino, 1, len, m)) {
        if (rc) snprintf(err, errlen, "stream: cannot read %s: %s", path, strerror(errno));
        close(fd);
        return rc ? LAKE_STREAM_EIO : 0;
    }
    /* past the end of the file: never read there (m->len is len) */
    size_t maplen = (size_t)((len + LOCAL_MAP - 1) / LOCAL_MAP * LOCAL_MAP);
    void *p = mmap(NULL, maplen, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "stream: cannot read %s: %s", path, strerror(errno));
        return LAKE_STREAM_EIO;
    }
    m->base = p, m->p = p, m->len = (size_t)len;
    keep_map(st, path, (uint64_t)sb.st_ino, 1, maplen, m);
    return 0;
}

/* Maps a lake file: from the directory, or from the cache (pinned). */
static int map_lake_file(lake_stream *st, const stream__file *f, stream__map *m, char *err,
                         size_t errlen)
{
    char path[4096];
    if (st->root) {
        snprintf(path, sizeof path, "%s/%s", st->root, f->key);
        int rc = map_path(m, path, err, errlen);
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
    int rc = map_path(m, m->it.path, err, errlen);
    if (rc) stream__unmap(st, m);
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
    if (f->path) return map_local(st, f->path, f->size, m, err, errlen);
    if (shared_map(st, f->key, f->size, 0, 0, m)) return 0;
    int rc = map_lake_file(st, f, m, err, errlen);
    if (!rc) keep_map(st, f->key, f->size, 0, m->len, m);
    return rc;
}

/* The offset of line k of the mapped file f (k from its first line), or m->len past its end. */
size_t stream__skip(lake_stream *st, const stream__file *f, const stream__map *m, uint64_t k)
{
    uint64_t k0 = 0, o = 0;
    if (k && f->path) local_start(st, f->path, k, &k0, &o); /* growing: no index, hints */
    if (k && !f->path && !idx_start(st, f->key, f->size, k, &k0, &o)) {
        size_t n;
        uint64_t *off = idx_build(m->p, m->len, &n);
        if (off) idx_put(st, f->key, f->size, off, n);
        idx_start(st, f->key, f->size, k, &k0, &o);
    }
    if (o > m->len) k0 = 0, o = 0; /* not this file's (cannot be: same key and size) */
    for (k -= k0; k && o < m->len; k--) {
        const char *nl = memchr(m->p + o, '\n', m->len - (size_t)o);
        o = nl ? (uint64_t)(nl - m->p) + 1 : m->len;
    }
    return (size_t)o;
}

/* ---- lines ------------------------------------------------------------------------- */

#define POS_MEMBER     "\"_events_pos\":\""
#define POS_MEMBER_LEN 15
#define POS_TAIL_LEN   (POS_MEMBER_LEN + LAKE_SID_LEN + 1 + 16 + 2) /* …"} */

int stream__line_seq(const char *p, size_t len, const char *sid, uint64_t *seq)
{
    if (len < POS_TAIL_LEN + 1) return -1;
    const char *t = p + len - POS_TAIL_LEN;
    if (memcmp(t, POS_MEMBER, POS_MEMBER_LEN) || memcmp(p + len - 2, "\"}", 2)) return -1;
    t += POS_MEMBER_LEN;
    if (memcmp(t, sid, LAKE_SID_LEN) || t[LAKE_SID_LEN] != '.') return -1;
    return lake_parse_hex16(t + LAKE_SID_LEN + 1, seq);
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

int lake_stream_line_pos(const char *line, size_t len, lake_stream_pos *out)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len < POS_TAIL_LEN + 1) return -1;
    const char *sid = line + len - POS_TAIL_LEN + POS_MEMBER_LEN;
    memcpy(out->sid, sid, LAKE_SID_LEN);
    out->sid[LAKE_SID_LEN] = 0;
    if (!lake_sid_valid(out->sid) || stream__line_seq(line, len, sid, &out->seq)) return -1;
    return 0;
}
