/*
 * writer_stream.c - the writer's stream: its id, the seq of every stored
 * event, and the stream log (layout.h: stream/{sid}/{first seq}.jsonl).
 *
 * A spool has a stream id (sid), kept in SPOOL/stream-id. The writer thread
 * numbers every event it stores, in group commit order, and writes the seq
 * in place into the position placeholder that ends the event's line
 * (layout.h, LAKE_POS_PLACEHOLDER): a line without one (not made by the
 * server's ingest) is stored but not numbered and not in the stream.
 *
 * Every numbered line is also appended, in seq order and in the same group,
 * to the open stream segment SPOOL/stream-{sid}-{first seq}.jsonl. The group
 * commit does not fdatasync it (the hour segments hold every acknowledged
 * line): the writer thread does before it hands an events segment to the
 * sealer, and the sealer moves an events segment only once the stream is
 * durable up to the seq it was handed with (stream_durable), so every
 * acknowledged event is durable in an hour segment in the spool or in the
 * stream. The stream segment is sealed at seal_bytes or seal_age_ms like the
 * others and moved by the sealer, in order, into the store. The spool always
 * holds an open stream segment (empty until an event comes): its name says
 * where the numbering goes on after a restart.
 *
 * Recovery at open: every stream segment found is cut after its last whole
 * line; the last seq of the sid is the last line's (or the lake's last stream
 * file's when the spool has none); the recovered hour segments' lines of a
 * larger seq (those a crash left out of the stream) are appended in seq
 * order and made durable; every non-empty segment is handed to the sealer
 * and a new open one starts after the last seq.
 *
 * Readers (GET /events) see the sid's segments still in the spool through
 * lake_writer_stream_segments, a snapshot of slist under stmu.
 */
#include "writer_int.h"
#include "evrand.h"
#include "evtime.h"
#include "files.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- recovery (at open, before the threads start) -------------------------- */

typedef struct srec_seg {
    char sid[LAKE_SID_LEN + 1];
    uint64_t first, last, size;
} srec_seg;

typedef struct srec_line {
    uint64_t seq;
    size_t off, len;
} srec_line;

/* What recovery gathers between writer__stream_recover_spool and _finish. */
struct writer__srec {
    srec_seg *seg; /* the spool's non-empty stream segments, by sid then first */
    size_t nseg;
    uint64_t after; /* the sid's last seq in its stream (spool, else lake) */
    uint64_t max;   /* the sid's largest seq found anywhere */
    buf lines;      /* hour segments' lines of the sid past after */
    srec_line *v;
    size_t n, cap;
};

/* ---- the stream id ------------------------------------------------------ */

static int sid_make(lake_writer *w, char *err, size_t errlen)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char r[64];
    size_t k = 0;
    if (evrand_secure(r, sizeof r)) {
        snprintf(err, errlen, "spool: no randomness for a stream id");
        return -1;
    }
    for (size_t i = 0; i < sizeof r && k < LAKE_SID_LEN; i++)
        if (r[i] < 252) w->sid[k++] = alphabet[r[i] % 36]; /* 252 = 7 * 36: no bias */
    if (k < LAKE_SID_LEN) {
        snprintf(err, errlen, "spool: no randomness for a stream id");
        return -1;
    }
    w->sid[LAKE_SID_LEN] = 0;
    char path[4200], tmp[4300], line[LAKE_SID_LEN + 2], why[4400];
    writer__spool_path(w, LAKE_SID_FILE, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(line, sizeof line, "%s\n", w->sid);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = fd >= 0 && !files_write_all(fd, line, LAKE_SID_LEN + 1, 0) && !fsync(fd);
    if (fd >= 0) close(fd);
    if (!ok || rename(tmp, path)) {
        snprintf(err, errlen, "spool: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (files_sync_dir(w->spool, why, sizeof why)) {
        snprintf(err, errlen, "spool: %s", why);
        return -1;
    }
    log_msg(LOG_INFO, "new stream", "sid", w->sid, LOG_END);
    return 1;
}

/* Reads the spool's stream id, or makes one. 0: read; 1: new; -1 with err set. */
int writer__sid_load(lake_writer *w, char *err, size_t errlen)
{
    char path[4200], b[32];
    writer__spool_path(w, LAKE_SID_FILE, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        snprintf(err, errlen, "spool: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (fd >= 0) {
        ssize_t r = read(fd, b, sizeof b - 1);
        close(fd);
        b[r > 0 ? r : 0] = 0;
        b[strcspn(b, "\n")] = 0;
        if (lake_sid_valid(b)) {
            memcpy(w->sid, b, LAKE_SID_LEN + 1);
            return 0;
        }
        log_msg(LOG_WARN, "spool's stream id unreadable; a new stream begins", "file", path,
                LOG_END);
    }
    return sid_make(w, err, errlen);
}

const char *lake_writer_sid(const lake_writer *w)
{
    return w->sid;
}

/* ---- the readers' list -------------------------------------------------- */

static void slist_add(lake_writer *w, uint64_t first, uint64_t last, uint64_t bytes, int open)
{
    writer__streamseg *e = calloc(1, sizeof *e);
    if (!e) return; /* readers miss it until it is in the lake */
    e->first = first;
    e->last = last;
    e->bytes = bytes;
    e->open = open;
    pthread_mutex_lock(&w->stmu);
    writer__streamseg **pp = &w->slist;
    while (*pp) pp = &(*pp)->next;
    *pp = e;
    pthread_mutex_unlock(&w->stmu);
}

/* The entry of the segment starting at first: its committed end, or sealed (open 0). */
static void slist_update(lake_writer *w, uint64_t first, uint64_t last, uint64_t bytes, int open)
{
    pthread_mutex_lock(&w->stmu);
    for (writer__streamseg *e = w->slist; e; e = e->next)
        if (e->first == first) {
            e->last = last;
            e->bytes = bytes;
            e->open = open;
        }
    pthread_mutex_unlock(&w->stmu);
}

static void slist_remove(lake_writer *w, uint64_t first)
{
    pthread_mutex_lock(&w->stmu);
    for (writer__streamseg **pp = &w->slist; *pp; pp = &(*pp)->next)
        if ((*pp)->first == first) {
            writer__streamseg *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    pthread_mutex_unlock(&w->stmu);
}

/* Sealer: a stream segment left the spool (moved, or lost). */
void writer__stream_moved(lake_writer *w, const writer__sealed *s)
{
    if (!strcmp(s->sid, w->sid)) slist_remove(w, s->first);
}

int lake_writer_stream_segments(lake_writer *w, lake_writer_stream_seg **out, size_t *n, char *err,
                                size_t errlen)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&w->stmu);
    size_t k = 0;
    for (writer__streamseg *e = w->slist; e; e = e->next) k++;
    lake_writer_stream_seg *v = k ? calloc(k, sizeof *v) : NULL;
    if (k && !v) {
        pthread_mutex_unlock(&w->stmu);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (writer__streamseg *e = w->slist; e; e = e->next, (*n)++) {
        lake_writer_stream_seg *o = &v[*n];
        char name[LAKE_KEY_MAX];
        lake_stream_spool_name(w->sid, e->first, name);
        writer__spool_path(w, name, o->path, sizeof o->path);
        o->first = e->first;
        o->last = e->last;
        o->bytes = e->bytes;
        o->open = e->open;
    }
    pthread_mutex_unlock(&w->stmu);
    *out = v;
    return 0;
}

static void srec_free(lake_writer *w)
{
    struct writer__srec *r = w->srec;
    if (!r) return;
    free(r->seg);
    free(r->v);
    buf_free(&r->lines);
    free(r);
    w->srec = NULL;
}

void writer__stream_free(lake_writer *w)
{
    srec_free(w);
    if (w->stream) {
        if (w->stream->fd >= 0) close(w->stream->fd);
        free(w->stream->iov);
        free(w->stream);
        w->stream = NULL;
    }
    while (w->slist) {
        writer__streamseg *e = w->slist;
        w->slist = e->next;
        free(e);
    }
}

/* ---- the open stream segment (writer thread) ------------------------------ */

/*
 * Makes the next stream segment, starting after the last seq given: the
 * file (its name says where the numbering goes on after a restart), not
 * held open until an event comes (a spool without open files can be
 * remounted read-only).
 */
static int stream_open(lake_writer *w, char *err, size_t errlen)
{
    writer__segment *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "spool: out of memory");
        return -1;
    }
    g->kind = WRITER__STREAM;
    g->first = w->seq + 1;
    lake_stream_spool_name(w->sid, g->first, g->name);
    g->fd = openat(w->spool_fd, g->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (g->fd < 0 || fsync(w->spool_fd)) {
        snprintf(err, errlen, "spool: cannot create %s/%s: %s", w->spool, g->name, strerror(errno));
        if (g->fd >= 0) close(g->fd);
        free(g);
        return -1;
    }
    close(g->fd);
    g->fd = -1;
    w->stream = g;
    slist_add(w, g->first, g->first - 1, 0, 1);
    return 0;
}

/* Opens the stream segment's file for its first event (made again if it was removed). */
static int stream_reopen(lake_writer *w, writer__segment *g, char *err, size_t errlen)
{
    struct stat st;
    g->fd = openat(w->spool_fd, g->name, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (g->fd < 0 || fstat(g->fd, &st)) {
        snprintf(err, errlen, "spool: cannot open %s/%s: %s", w->spool, g->name, strerror(errno));
        if (g->fd >= 0) close(g->fd);
        g->fd = -1;
        return -1;
    }
    g->dev = st.st_dev;
    g->ino = st.st_ino;
    g->opened_ms = evtime_mono_ms();
    return 0;
}

/* Numbers the line [line, line + len) if it has a position, and queues it for the stream. */
int writer__stream_take(lake_writer *w, char *line, size_t len, char *err, size_t errlen)
{
    char *pos = lake_pos_find(line, len);
    if (!pos) return 0;
    if (!w->stream && stream_open(w, err, errlen)) return -1;
    if (w->stream->fd < 0 && stream_reopen(w, w->stream, err, errlen)) return -1;
    lake_pos_write(pos, w->sid, ++w->seq);
    if (writer__segment_add(w->stream, line, len)) {
        snprintf(err, errlen, "spool: out of memory");
        return -1;
    }
    return 0;
}

/* Writes the group's lines to the stream segment (no fdatasync). */
int writer__stream_write(lake_writer *w, char *err, size_t errlen)
{
    return w->stream ? writer__segment_write(w, w->stream, err, errlen) : 0;
}

static void stream_reset(writer__segment *g)
{
    g->niov = g->pending = 0;
    g->pending_events = 0;
    g->written = 0;
    if (g->iovcap > 4096) {
        free(g->iov);
        g->iov = NULL;
        g->iovcap = 0;
    }
}

/* The group succeeded: what it wrote to the stream counts, and readers may see it. */
void writer__stream_committed(lake_writer *w)
{
    writer__segment *g = w->stream;
    if (!g || !g->pending) return;
    atomic_fetch_add(&w->stream_spool_bytes, g->pending);
    g->size += g->pending;
    g->events += g->pending_events;
    stream_reset(g);
    slist_update(w, g->first, w->seq, g->size, 1);
}

/* The group failed: its seqs are given again, its lines cut off the stream. */
void writer__stream_rollback(lake_writer *w, uint64_t seq_mark)
{
    w->seq = seq_mark;
    writer__segment *g = w->stream;
    if (!g) return;
    if (g->written && g->fd >= 0 && ftruncate(g->fd, (off_t)g->size)) {
        /* the next group writes over it at size */
    }
    stream_reset(g);
}

/* Makes the committed stream durable; events segments up to its last seq may then be sealed. */
int writer__stream_sync(lake_writer *w)
{
    writer__segment *g = w->stream;
    if (g && g->fd >= 0 && g->durable < g->size) {
        if (fdatasync(g->fd)) {
            char e[512];
            snprintf(e, sizeof e, "spool: cannot sync %s/%s: %s", w->spool, g->name,
                     strerror(errno));
            if (!w->stream_unsynced)
                log_msg(LOG_ERROR, "cannot make the stream log durable", "error", e, LOG_END);
            w->stream_unsynced = 1;
            return -1;
        }
        g->durable = g->size;
    }
    w->stream_unsynced = 0;
    atomic_store(&w->stream_durable, g ? g->first + g->events - 1 : w->seq);
    return 0;
}

/*
 * Seals the open stream segment when it is due (seal_bytes, seal_age_ms, or
 * force) and holds events: made durable, handed to the sealer, and the next
 * one opened. Outside a group only.
 */
void writer__stream_seal(lake_writer *w, int force)
{
    writer__segment *g = w->stream;
    char err[512];
    if (!g) {
        if (stream_open(w, err, sizeof err))
            log_msg(LOG_ERROR, "cannot open the stream log", "error", err, LOG_END);
        return;
    }
    int due = g->size >= w->cfg.seal_bytes || evtime_mono_ms() - g->opened_ms >= w->cfg.seal_age_ms;
    if (!g->events || !(force || due) || writer__stream_sync(w)) return;
    writer__sealed *s = calloc(1, sizeof *s);
    if (!s) return; /* tried again at the next seal */
    writer__sealed_fill(s, g);
    memcpy(s->sid, w->sid, sizeof s->sid);
    slist_update(w, g->first, w->seq, g->size, 0);
    free(g->iov);
    free(g);
    w->stream = NULL;
    writer__sealer_push(w, s);
    if (stream_open(w, err, sizeof err))
        log_msg(LOG_ERROR, "cannot open the stream log", "error", err, LOG_END);
}

/* When the open stream segment is due for sealing by age, -1 if never. */
int64_t writer__stream_deadline(const lake_writer *w)
{
    const writer__segment *g = w->stream;
    if (!g) return evtime_mono_ms() + 1000; /* to open it again */
    return g->events ? g->opened_ms + w->cfg.seal_age_ms : -1;
}

static int seg_cmp(const void *a, const void *b)
{
    const srec_seg *x = a, *y = b;
    int c = strcmp(x->sid, y->sid);
    if (c) return c;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int line_cmp(const void *a, const void *b)
{
    const srec_line *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Reads a whole spool file into b. 0, or -1 with err set. */
static int read_all(int fd, const char *path, buf *b, char *err, size_t errlen)
{
    char tmp[65536];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof tmp)) > 0)
        if (buf_append(b, tmp, (size_t)r)) break;
    if (r) {
        snprintf(err, errlen, "spool: cannot read %s: %s", path,
                 r < 0 ? strerror(errno) : "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Keeps the whole lines of stream segment s that carry its sid's seqs one
 * after another from s->first, and cuts the rest. Sets s->size and s->last.
 */
static int stream_cut(lake_writer *w, const char *name, srec_seg *s, char *err, size_t errlen)
{
    char path[4200];
    writer__spool_path(w, name, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "spool: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    buf b = BUF_INIT;
    int rc = read_all(fd, path, &b, err, errlen);
    size_t good = 0;
    s->last = s->first - 1;
    const char *end = b.len ? b.p + b.len : b.p; /* b.p is NULL for an empty file */
    for (const char *p = b.p, *nl; !rc && p < end; p = nl + 1) {
        char sid[LAKE_SID_LEN + 1];
        uint64_t seq;
        if (!(nl = memchr(p, '\n', (size_t)(end - p))) ||
            lake_pos_parse(p, (size_t)(nl + 1 - p), sid, &seq) || strcmp(sid, s->sid) ||
            seq != s->last + 1)
            break;
        s->last = seq;
        good = (size_t)(nl + 1 - b.p);
    }
    if (!rc && good < b.len) {
        char cut[24];
        snprintf(cut, sizeof cut, "%zu", b.len - good);
        log_msg(LOG_WARN, "stream segment repaired", "segment", name, "bytes_cut", cut, LOG_END);
        if (ftruncate(fd, (off_t)good) || fsync(fd)) {
            snprintf(err, errlen, "spool: cannot cut %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    s->size = good;
    close(fd);
    buf_free(&b);
    return rc;
}

typedef struct lake_last {
    char key[LAKE_KEY_MAX];
    uint64_t size;
} lake_last;

static int lake_last_fn(const store_entry *e, void *ud)
{
    lake_last *l = ud;
    char sid[LAKE_SID_LEN + 1];
    uint64_t first;
    if (!lake_parse_stream_key(e->key, sid, &first) && e->size) {
        snprintf(l->key, sizeof l->key, "%s", e->key); /* listed in key order: the last wins */
        l->size = e->size;
    }
    return 0;
}

/* The last seq of sid's stream files in the lake (0: none). 0, or -1 with err set. */
static int lake_last_seq(lake_writer *w, uint64_t *last, char *err, size_t errlen)
{
    char prefix[LAKE_KEY_MAX], why[512];
    lake_last l = {"", 0};
    *last = 0;
    lake_stream_prefix(w->sid, prefix);
    if (store_list(w->cfg.store, prefix, lake_last_fn, &l, why, sizeof why)) {
        snprintf(err, errlen, "cannot find where stream %s goes on: %s", w->sid, why);
        return -1;
    }
    if (!l.key[0]) return 0;
    buf b = BUF_INIT;
    char sid[LAKE_SID_LEN + 1];
    uint64_t off = l.size > 64 ? l.size - 64 : 0; /* the position ends the last line */
    int rc = store_get(w->cfg.store, l.key, off, l.size - off, &b, why, sizeof why);
    if (rc || lake_pos_parse(b.p, b.len, sid, last)) {
        snprintf(err, errlen, "cannot find where stream %s goes on: %s: %s", w->sid, l.key,
                 rc ? why : "its last line has no position");
        rc = -1;
    }
    buf_free(&b);
    return rc;
}

static int seg_push(struct writer__srec *r, const srec_seg *s)
{
    srec_seg *v = realloc(r->seg, (r->nseg + 1) * sizeof *v);
    if (!v) return -1;
    r->seg = v;
    r->seg[r->nseg++] = *s;
    return 0;
}

/* Lists the spool's stream segments into r->seg, cut to their whole lines (empty ones removed). */
static int stream_list(lake_writer *w, struct writer__srec *r, int *own, char *err, size_t errlen)
{
    DIR *d = fdopendir(dup(w->spool_fd));
    if (!d) {
        snprintf(err, errlen, "spool: cannot list %s: %s", w->spool, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        srec_seg s;
        if (lake_parse_stream_spool_name(de->d_name, s.sid, &s.first)) continue;
        if (!(rc = stream_cut(w, de->d_name, &s, err, errlen)) && !strcmp(s.sid, w->sid)) {
            *own = 1;
            if (s.last > r->after) r->after = s.last;
        }
        if (!rc && !s.size) {
            unlinkat(w->spool_fd, de->d_name, 0); /* an open segment that had nothing yet */
        } else if (!rc && seg_push(r, &s)) {
            snprintf(err, errlen, "spool: out of memory");
            rc = -1;
        }
    }
    rewinddir(d); /* the descriptor's offset is the spool_fd's: writer__recover lists it next */
    closedir(d);
    if (r->nseg) qsort(r->seg, r->nseg, sizeof *r->seg, seg_cmp);
    return rc;
}

/*
 * Recovery's first step, before the hour segments': the stream segments in
 * the spool, and the sid's last seq in its stream. fresh: the sid was just made.
 */
int writer__stream_recover_spool(lake_writer *w, int fresh, char *err, size_t errlen)
{
    struct writer__srec *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "spool: out of memory");
        return -1;
    }
    w->srec = r;
    int own = 0;
    if (stream_list(w, r, &own, err, errlen)) return -1;
    if (!own && !fresh && lake_last_seq(w, &r->after, err, errlen)) return -1;
    r->max = r->after;
    return 0;
}

/* Recovery: the lines [p, p + n) of a recovered events segment; those past the stream are kept. */
void writer__stream_collect(lake_writer *w, const char *p, size_t n)
{
    struct writer__srec *r = w->srec;
    if (!n) return; /* p may be NULL then */
    for (const char *end = p + n, *nl; r && p < end; p = nl + 1) {
        char sid[LAKE_SID_LEN + 1];
        uint64_t seq;
        if (!(nl = memchr(p, '\n', (size_t)(end - p)))) break;
        size_t len = (size_t)(nl + 1 - p);
        if (lake_pos_parse(p, len, sid, &seq) || strcmp(sid, w->sid) || seq <= r->after) continue;
        if (seq > r->max) r->max = seq;
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            srec_line *v = realloc(r->v, cap * sizeof *v);
            if (!v) continue; /* reported by _finish as a gap */
            r->v = v;
            r->cap = cap;
        }
        r->v[r->n] = (srec_line){seq, r->lines.len, len};
        if (!buf_append(&r->lines, p, len)) r->n++;
    }
}

/* Appends the collected lines, in seq order, to the sid's last stream segment (or a new one). */
static int stream_append(lake_writer *w, struct writer__srec *r, char *err, size_t errlen)
{
    qsort(r->v, r->n, sizeof *r->v, line_cmp);
    srec_seg *t = r->nseg && !strcmp(r->seg[r->nseg - 1].sid, w->sid) ? &r->seg[r->nseg - 1] : NULL;
    srec_seg fresh = {.first = r->v[0].seq, .last = r->v[0].seq - 1};
    memcpy(fresh.sid, w->sid, sizeof fresh.sid);
    if (!t || t->last != r->after) t = &fresh; /* the sid has no segment in the spool */
    char name[LAKE_KEY_MAX], path[4200];
    lake_stream_spool_name(w->sid, t->first, name);
    writer__spool_path(w, name, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -1 : 0;
    uint64_t gaps = 0, size0 = t->size;
    for (size_t i = 0; !rc && i < r->n; i++) {
        if (r->v[i].seq <= t->last) continue; /* the same line twice */
        gaps += r->v[i].seq != t->last + 1;
        rc = files_write_all(fd, r->lines.p + r->v[i].off, r->v[i].len, (int64_t)t->size);
        t->size += r->v[i].len;
        t->last = r->v[i].seq;
    }
    if (rc || fdatasync(fd) || fsync(w->spool_fd)) {
        snprintf(err, errlen, "spool: cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (fd >= 0) close(fd);
    if (!rc && t == &fresh && seg_push(r, &fresh)) rc = -1;
    char a[24], g[24];
    uint64_t events = t->last - t->first + 1;
    snprintf(a, sizeof a, "%llu", (unsigned long long)events);
    snprintf(g, sizeof g, "%llu", (unsigned long long)gaps);
    if (!rc && (t->size > size0))
        log_msg(gaps ? LOG_WARN : LOG_INFO, "stream log rebuilt from the spool's segments",
                "segment", name, "events", a, "gaps", g, LOG_END);
    return rc;
}

/* Recovery's last step: the stream completed and its segments handed to the sealer. */
int writer__stream_recover_finish(lake_writer *w, char *err, size_t errlen)
{
    struct writer__srec *r = w->srec;
    int rc = r->n ? stream_append(w, r, err, errlen) : 0;
    w->seq = r->max;
    for (size_t i = 0; !rc && i < r->nseg; i++) {
        writer__sealed *s = calloc(1, sizeof *s);
        if (!s) {
            snprintf(err, errlen, "spool: out of memory");
            rc = -1;
            break;
        }
        s->kind = WRITER__STREAM;
        memcpy(s->sid, r->seg[i].sid, sizeof s->sid);
        s->first = r->seg[i].first;
        s->size = r->seg[i].size;
        s->events = r->seg[i].last - r->seg[i].first + 1;
        s->fd = -1;
        atomic_fetch_add(&w->stream_spool_bytes, s->size);
        if (!strcmp(s->sid, w->sid)) slist_add(w, s->first, r->seg[i].last, s->size, 0);
        writer__sealer_push(w, s);
    }
    atomic_store(&w->stream_durable, w->seq);
    srec_free(w);
    return rc ? rc : stream_open(w, err, errlen);
}
