/*
 * writer_commit.c - the writer thread: open segments and the group commit.
 *
 * The thread takes every batch waiting in the queue, assigns each event to
 * the open segment of its kind and hour (dropping ids the dedup window has
 * seen), writes each touched segment once, fdatasyncs it, checks the spool
 * still names what was written, and only then completes the batches. A
 * failed group is cut back and its ids forgotten. Segments old or large
 * enough are closed and handed to the sealer (writer_seal.c). Everything here
 * runs under w->cmu: on the writer thread, or on a thread that commits its own
 * batches (lake_writer_commit), which saves two thread hand-offs per batch.
 */
#include "writer_int.h"
#include "evrand.h"
#include "evtime.h"
#include "files.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The last persistence failure, for lake_writer_stats. */
static void set_error(lake_writer *w, const char *msg)
{
    pthread_mutex_lock(&w->emu);
    snprintf(w->last_error, sizeof w->last_error, "%s", msg);
    pthread_mutex_unlock(&w->emu);
}

static int64_t mono_ms(void)
{
    return evtime_mono_ms();
}

/* ---- segments (writer thread) ----------------------------------------- */

/* What the sealer needs of segment g (a stream segment's sid is set by the caller). */
void writer__sealed_fill(writer__sealed *s, const writer__segment *g)
{
    s->kind = g->kind;
    s->hour = g->hour;
    memcpy(s->uuid, g->uuid, sizeof s->uuid);
    s->first = g->first;
    s->size = g->size;
    s->events = g->events;
    s->fd = g->fd;
    s->dev = g->dev;
    s->ino = g->ino;
}

/* Takes g out of the open set; a group under way still holds it in its list. */
static void open_remove(lake_writer *w, writer__segment *g)
{
    writer__segment **pp = &w->open;
    while (*pp != g) pp = &(*pp)->next;
    *pp = g->next;
    g->in_open = 0;
    w->n_open--;
    atomic_fetch_sub(&w->segments_open, 1);
}

/*
 * Hands g, no longer open, to the sealer with its descriptor; g is freed. An
 * events segment leaves the spool only once the stream holds its lines
 * durably: the stream is synced now (or, failing that, later) up to the last
 * committed seq, which the segment's lines cannot pass.
 */
static void hand_to_sealer(lake_writer *w, writer__segment *g)
{
    writer__sealed *s = calloc(1, sizeof *s);
    if (s && g->kind == LAKE_KIND_EVENTS) {
        s->max_seq = w->stream ? w->stream->first + w->stream->events - 1 : w->seq;
        writer__stream_sync(w); /* on failure the sealer waits; writer__main tries again */
    }
    if (s) {
        writer__sealed_fill(s, g);
        writer__sealer_push(w, s);
    } else {
        close(g->fd);
        log_msg(LOG_ERROR, "out of memory sealing a segment; it stays in the spool", "segment",
                g->name, LOG_END);
    }
    free(g->iov);
    free(g);
}

/* Hands g to the sealer with its descriptor; g is freed. */
void writer__segment_close(lake_writer *w, writer__segment *g)
{
    if (g->in_open) open_remove(w, g);
    hand_to_sealer(w, g);
}

static writer__segment *segment_new(lake_writer *w, int kind, int64_t hour, char *err,
                                    size_t errlen)
{
    writer__segment *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "spool: out of memory");
        return NULL;
    }
    g->kind = kind;
    g->hour = hour;
    evrand_uuid7(g->uuid);
    lake_spool_name_of(kind, hour, g->uuid, g->name);
    g->fd = openat(w->spool_fd, g->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (g->fd < 0) {
        snprintf(err, errlen, "spool: cannot create %s/%s: %s", w->spool, g->name, strerror(errno));
        free(g);
        return NULL;
    }
    struct stat st;
    if (fstat(g->fd, &st) || fsync(w->spool_fd)) {
        snprintf(err, errlen, "spool: cannot sync %s: %s", w->spool, strerror(errno));
        close(g->fd);
        unlinkat(w->spool_fd, g->name, 0);
        free(g);
        return NULL;
    }
    g->dev = st.st_dev;
    g->ino = st.st_ino;
    g->opened_ms = mono_ms();
    g->in_open = 1;
    g->next = w->open;
    w->open = g;
    w->n_open++;
    atomic_fetch_add(&w->segments_open, 1);
    writer__registry_add(w, kind, hour, g->uuid);
    return g;
}

static int truncate_in_spool(const lake_writer *w, const writer__segment *g)
{
    char path[4200];
    writer__spool_path(w, g->name, path, sizeof path);
    return truncate(path, (off_t)g->size);
}

/* Writes the group's lines not yet written to g. */
int writer__segment_write(lake_writer *w, writer__segment *g, char *err, size_t errlen)
{
    /* written is 0 or all of it: a group writes each segment once, or fails */
    if (g->fd >= 0 && g->written < g->pending) {
        if (files_pwritev_all(g->fd, g->iov, g->niov, (int64_t)g->size)) {
            snprintf(err, errlen, "spool: cannot write %s/%s: %s", w->spool, g->name,
                     strerror(errno));
            return -1;
        }
        g->written = g->pending;
    }
    return 0;
}

static int segment_sync(lake_writer *w, writer__segment *g, char *err, size_t errlen)
{
    if (g->synced == g->written) return 0;
    int64_t t0 = evtime_mono_ns();
    int r = fdatasync(g->fd);
    histo_add(&w->fsync_h, evtime_mono_ns() - t0);
    if (r) {
        snprintf(err, errlen, "spool: cannot sync %s/%s: %s", w->spool, g->name, strerror(errno));
        return -1;
    }
    g->synced = g->written;
    return 0;
}

/* The spool directory is still where the server opened it (checked once per group). */
static int spool_verify(lake_writer *w, char *err, size_t errlen)
{
    if (!writer__spool_moved(w)) return 0;
    snprintf(err, errlen,
             "spool: the directory %s was removed or moved under the server; this request was "
             "not stored (retry it)",
             w->spool);
    return -1;
}

/* The check before an answer: the lines just made durable are in the file the spool names. */
static int segment_verify(lake_writer *w, writer__segment *g, char *err, size_t errlen)
{
    if (!writer__segment_gone(w, g)) return 0;
    snprintf(err, errlen,
             "spool: segment %s/%s was deleted or replaced while the server wrote it; this "
             "request was not stored (retry it)",
             w->spool, g->name);
    return -1;
}

static void group_add(writer__segment **group, writer__segment *g, uint64_t seq)
{
    g->used = seq;
    if (g->grouped) return;
    g->grouped = 1;
    g->gnext = *group;
    *group = g;
}

/*
 * Makes room for one more open segment when max_open_segments are open: the
 * least recently used one the group has not written to is closed; if the
 * group has written to all of them, the least recently used is written and
 * made durable now and retired from the open set (it is sealed when the group
 * ends, cut back if the group fails).
 */
static int make_room(lake_writer *w, char *err, size_t errlen)
{
    writer__segment *idle = NULL, *busy = NULL;
    for (writer__segment *g = w->open; g; g = g->next) {
        writer__segment **best = g->grouped ? &busy : &idle;
        if (!*best || g->used < (*best)->used) *best = g;
    }
    if (!idle && !busy) return 0; /* nothing is open: there is room */
    atomic_fetch_add(&w->segments_evicted, 1);
    if (idle) {
        writer__segment_close(w, idle);
        return 0;
    }
    if (writer__segment_write(w, busy, err, errlen) || segment_sync(w, busy, err, errlen) ||
        segment_verify(w, busy, err, errlen) || spool_verify(w, err, errlen))
        return -1;
    open_remove(w, busy);
    close(busy->fd); /* its lines are durable; a failed group cuts them back by path */
    busy->fd = -1;
    return 0;
}

static writer__segment *segment_for(lake_writer *w, int kind, int64_t hour, writer__segment **group,
                                    char *err, size_t errlen)
{
    for (writer__segment *g = w->open; g; g = g->next)
        if (g->hour == hour && g->kind == kind) {
            group_add(group, g, w->groups);
            return g;
        }
    if (w->n_open >= w->cfg.max_open_segments && make_room(w, err, errlen)) return NULL;
    writer__segment *g = segment_new(w, kind, hour, err, errlen);
    if (g) group_add(group, g, w->groups);
    return g;
}

static void complete(lake_batch *b)
{
    while (b) {
        lake_batch *next = b->next;
        b->done(b, b->ud); /* may free b */
        b = next;
    }
}

/* Adds a line of a batch to g's group; adjacent lines of one buffer make one piece. */
int writer__segment_add(writer__segment *g, const char *p, size_t n)
{
    struct iovec *last = g->niov ? &g->iov[g->niov - 1] : NULL;
    if (last && (const char *)last->iov_base + last->iov_len == p) {
        last->iov_len += n;
    } else {
        if (!g->iov || g->niov == g->iovcap) {
            size_t cap = g->iov && g->iovcap ? g->iovcap * 2 : 16;
            struct iovec *v = realloc(g->iov, cap * sizeof *v);
            if (!v) return -1;
            g->iov = v;
            g->iovcap = cap;
        }
        g->iov[g->niov++] = (struct iovec){(void *)(uintptr_t)p, n};
    }
    g->pending += n;
    g->pending_events++;
    return 0;
}

/* Takes the line of e, in lines, into the group's segment of its kind and hour. */
static int take_line(lake_writer *w, int kind, char *lines, lake_event *e, writer__segment **group,
                     char *err, size_t errlen)
{
    writer__segment *g = segment_for(w, kind, e->hour, group, err, errlen);
    if (!g) return -1;
    if (writer__segment_add(g, lines + e->off, e->len)) {
        snprintf(err, errlen, "spool: out of memory");
        return -1;
    }
    e->stored = 1;
    return 0;
}

/* Takes each batch's events into the group's segments, dropping duplicates. */
static int group_assign(lake_writer *w, lake_batch *batches, writer__segment **group, char *err,
                        size_t errlen)
{
    for (lake_batch *b = batches; b; b = b->next) {
        b->status = 0;
        b->accepted = b->duplicates = 0;
        for (size_t i = 0; i < b->n; i++) {
            lake_event *e = &b->ev[i];
            e->stored = 0;
            if (e->client_id && dedup_check_add(w->dd, b->lines + e->id_off, e->id_len)) {
                b->duplicates++;
                continue;
            }
            if (take_line(w, LAKE_KIND_EVENTS, b->lines, e, group, err, errlen) ||
                writer__stream_take(w, b->lines + e->off, e->len, err, errlen))
                return -1;
            b->accepted++;
        }
        b->quarantined = 0;
        for (size_t i = 0; i < b->qn; i++) {
            if (take_line(w, LAKE_KIND_REJECTED, (char *)(uintptr_t)b->qlines, &b->qev[i], group,
                          err, errlen))
                return -1;
            b->quarantined++;
        }
    }
    return 0;
}

/* Writes every segment of the group, then syncs each, then checks each is still in the spool. */
static int group_write(lake_writer *w, writer__segment *group, char *err, size_t errlen)
{
    for (writer__segment *g = group; g; g = g->gnext)
        if (writer__segment_write(w, g, err, errlen)) return -1;
    if (writer__stream_write(w, err, errlen)) return -1;
    for (writer__segment *g = group; g; g = g->gnext)
        if (segment_sync(w, g, err, errlen)) return -1;
    for (writer__segment *g = group; g; g = g->gnext)
        if (segment_verify(w, g, err, errlen)) return -1;
    return spool_verify(w, err, errlen);
}

static int spool_full(lake_writer *w, char *err, size_t errlen)
{
    uint64_t pending = atomic_load(&w->spool_bytes);
    if (!w->cfg.spool_max || pending < w->cfg.spool_max) return 0;
    pthread_mutex_lock(&w->emu);
    snprintf(err, errlen, "spool is full (%llu bytes wait for the lake, limit %llu)%s%s",
             (unsigned long long)pending, (unsigned long long)w->cfg.spool_max,
             w->seal_error[0] ? "; the lake fails: " : "", w->seal_error);
    pthread_mutex_unlock(&w->emu);
    return -1;
}

/*
 * Nothing of a failed group counts: its ids are forgotten, what it wrote is
 * cut off, and the segments it touched are retired (a failed fdatasync leaves
 * a file whose unsynced pages are unknown; never write to it again). Segments
 * whose files vanished are saved first from their descriptors.
 */
static void group_fail(lake_writer *w, writer__segment *group, lake_batch *batches, uint64_t mark,
                       uint64_t seq_mark, const char *err)
{
    dedup_rollback(w->dd, mark);
    writer__stream_rollback(w, seq_mark);
    char e2[512];
    int sc = writer__spool_check(w, e2, sizeof e2);
    if (sc < 0) log_msg(LOG_ERROR, "spool unusable", "error", e2, LOG_END);
    if (sc > 0) err = e2; /* the spool was removed: say that, not what it made fail */
    writer__segments_rescue(
        w); /* a retired segment is saved by the sealer, which has its descriptor */
    while (group) {
        writer__segment *g = group, *next = g->gnext;
        if (g->fd >= 0 ? ftruncate(g->fd, (off_t)g->size) : truncate_in_spool(w, g)) {
            /* the sealer cuts it later */
        }
        g->niov = g->pending = 0;
        g->pending_events = 0;
        g->written = g->synced = 0;
        g->grouped = 0;
        writer__segment_close(w, g);
        group = next;
    }
    atomic_fetch_add(&w->commit_failures, 1);
    if (!atomic_exchange(&w->failing, 1))
        log_msg(LOG_ERROR, "cannot persist events", "error", err, LOG_END);
    set_error(w, err);
    for (lake_batch *b = batches; b; b = b->next) {
        b->status = -1;
        b->accepted = b->duplicates = b->quarantined = 0;
        snprintf(b->error, sizeof b->error, "cannot persist events: %s", err);
    }
    complete(batches);
}

static void group_done(lake_writer *w, writer__segment *group, lake_batch *batches)
{
    for (writer__segment *g = group; g; g = g->gnext) {
        g->size += g->pending;
        g->events += g->pending_events;
        atomic_fetch_add(&w->spool_bytes, g->pending);
    }
    writer__stream_committed(w);
    atomic_store(&w->stream_seq, w->seq);
    atomic_fetch_add(&w->commits, 1);
    if (atomic_exchange(&w->failing, 0)) log_msg(LOG_INFO, "persisting events again", LOG_END);
    complete(batches);
    while (group) {
        writer__segment *g = group, *next = g->gnext;
        g->niov = g->pending = 0;
        g->pending_events = 0;
        g->written = g->synced = 0;
        g->grouped = 0;
        if (g->iovcap > 4096) { /* after a group of many pieces */
            free(g->iov);
            g->iov = NULL;
            g->iovcap = 0;
        }
        if (!g->in_open || g->size >= w->cfg.seal_bytes) writer__segment_close(w, g);
        group = next;
    }
}

static void commit_group(lake_writer *w, lake_batch *batches)
{
    char err[512] = "";
    uint64_t mark = dedup_mark(w->dd), seq_mark = w->seq;
    writer__segment *group = NULL;
    w->groups++;
    int failed = spool_full(w, err, sizeof err) ||
                 group_assign(w, batches, &group, err, sizeof err) ||
                 group_write(w, group, err, sizeof err);
    if (failed)
        group_fail(w, group, batches, mark, seq_mark, err);
    else
        group_done(w, group, batches);
}

static void seal_due(lake_writer *w, int all)
{
    writer__stream_seal(w, all);
    if (w->stream_unsynced) writer__stream_sync(w);
    int64_t now = mono_ms();
    writer__segment *g = w->open;
    while (g) {
        writer__segment *next = g->next;
        if (all || now - g->opened_ms >= w->cfg.seal_age_ms) {
            open_remove(w, g);
            hand_to_sealer(w, g);
        }
        g = next;
    }
}

static int64_t next_deadline(lake_writer *w)
{
    int64_t d = writer__stream_deadline(w);
    if (w->stream_unsynced) d = mono_ms() + 1000;
    for (writer__segment *g = w->open; g; g = g->next) {
        int64_t t = g->opened_ms + w->cfg.seal_age_ms;
        if (d < 0 || t < d) d = t;
    }
    return d;
}

void lake_writer_commit(lake_writer *w, lake_batch *b)
{
    pthread_mutex_lock(&w->cmu);
    int64_t before = next_deadline(w);
    pthread_mutex_lock(&w->mu);
    lake_batch *queued = w->qhead;
    w->qhead = w->qtail = NULL;
    pthread_mutex_unlock(&w->mu);
    lake_batch *last = b;
    while (last->next) last = last->next;
    last->next = queued;
    commit_group(w, b);
    int64_t after = next_deadline(w);
    pthread_mutex_unlock(&w->cmu);
    if (after >= 0 && (before < 0 || after < before)) { /* a segment to seal sooner */
        pthread_mutex_lock(&w->mu);
        w->kicked = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/*
 * Waits for work: batches, a stop, a flush, or the next deadline (computed
 * under cmu, then mu taken before cmu is let go, so that a commit elsewhere
 * that makes it earlier kicks a thread already waiting). Returns with mu held.
 */
static void wait_for_work(lake_writer *w, uint64_t flush_seen)
{
    for (;;) {
        pthread_mutex_lock(&w->cmu);
        int64_t d = next_deadline(w);
        pthread_mutex_lock(&w->mu);
        pthread_mutex_unlock(&w->cmu);
        if (w->qhead || w->stop || w->flush_req != flush_seen || w->kicked) break;
        if (d >= 0 && mono_ms() >= d) break;
        if (d < 0) {
            pthread_cond_wait(&w->cv, &w->mu);
        } else {
            struct timespec ts = {d / 1000, (d % 1000) * 1000000};
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        if (w->qhead || w->stop || w->flush_req != flush_seen) break;
        w->kicked = 0;
        pthread_mutex_unlock(&w->mu); /* woken early or timed out: the deadline again */
    }
    w->kicked = 0;
}

void *writer__main(void *arg)
{
    lake_writer *w = arg;
    uint64_t flush_seen = 0;
    for (;;) {
        wait_for_work(w, flush_seen);
        lake_batch *b = w->qhead;
        w->qhead = w->qtail = NULL;
        int stop = w->stop;
        uint64_t flush = w->flush_req;
        pthread_mutex_unlock(&w->mu);

        pthread_mutex_lock(&w->cmu);
        if (b) commit_group(w, b);
        if (!b && w->open) { /* sealing: what is sealed must be what was acknowledged */
            char err[512];
            if (writer__spool_check(w, err, sizeof err) < 0)
                log_msg(LOG_ERROR, "spool unusable", "error", err, LOG_END);
            writer__segments_rescue(w);
        }
        seal_due(w, stop || flush != flush_seen);
        pthread_mutex_unlock(&w->cmu);
        if (flush != flush_seen) {
            pthread_mutex_lock(&w->mu);
            w->flush_done = flush_seen = flush;
            pthread_cond_broadcast(&w->flushed);
            pthread_mutex_unlock(&w->mu);
        }
        if (stop) {
            pthread_mutex_lock(&w->mu);
            int empty = !w->qhead;
            pthread_mutex_unlock(&w->mu);
            if (empty) break;
        }
    }
    return NULL;
}
