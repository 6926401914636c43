/*
 * writer.c - the lake writer: its life, its queue and the readers' pins on the spool.
 *
 * Two threads live here. The writer thread owns the open segments and the
 * dedup window; nothing else touches them, so they need no lock. The sealer
 * thread owns the queue of closed segments and moves them into the store,
 * retrying with backoff while the store fails; a segment stays in the spool
 * (durable, and found again by recovery) until it has been moved.
 *
 * Invariant: a batch's done callback reports status 0 only after every line
 * of it is in a segment on disk and fdatasync'ed, the segment's name is in
 * its fsync'ed directory, and that name still refers to the file written (a
 * few stat calls per group). Anything written by a failed group is cut off
 * again (ftruncate) or lies beyond the segment's recorded good length, which
 * the sealer enforces before the move.
 *
 * Segment descriptors are opened read-write and kept until the segment is in
 * the store (the sealer holds the newest max_open_segments of the closed
 * ones): if the spool loses a segment's name, what was acknowledged is still
 * reachable through the descriptor and is written back under the name
 * (writer__segment_copy_out). The sealer never uses the writer's spool_fd, which the
 * writer thread replaces when it makes a removed spool directory again.
 *
 * The writer lives in five files: this one; writer_commit.c, the writer
 * thread (segments and the group commit); writer_seal.c, the sealer thread
 * and sealed.log; writer_spool.c, the spool directory (its lock, damage found
 * under the server and its rescue, recovery at open); writer_stream.c, the
 * stream id, seqs and the stream log. writer_int.h is what they share.
 */
#include "writer_int.h"
#include "files.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* ---- the registry of spool segments, for readers ------------------------ */

void writer__registry_add(lake_writer *w, int kind, int64_t hour, const char *uuid)
{
    writer__spooled *e = calloc(1, sizeof *e);
    if (!e)
        return; /* readers then miss it until it is sealed; logged by the caller's failure path */
    e->kind = kind;
    e->hour = hour;
    memcpy(e->uuid, uuid, sizeof e->uuid);
    pthread_mutex_lock(&w->rmu);
    e->next = w->reg;
    w->reg = e;
    pthread_mutex_unlock(&w->rmu);
}

static writer__spooled *registry_find(lake_writer *w, const char *uuid)
{
    for (writer__spooled *e = w->reg; e; e = e->next)
        if (!strcmp(e->uuid, uuid)) return e;
    return NULL;
}

/* Sealer: waits until no reader holds the segment, then marks it moving. */
void writer__registry_begin_move(lake_writer *w, const char *uuid)
{
    pthread_mutex_lock(&w->rmu);
    writer__spooled *e = registry_find(w, uuid);
    while (e && e->pins > 0) pthread_cond_wait(&w->rcv, &w->rmu);
    if (e) e->moving = 1;
    pthread_mutex_unlock(&w->rmu);
}

/* Sealer: the move ended; a moved segment leaves the registry. */
void writer__registry_end_move(lake_writer *w, const char *uuid, int moved)
{
    pthread_mutex_lock(&w->rmu);
    for (writer__spooled **pp = &w->reg; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->uuid, uuid)) continue;
        writer__spooled *e = *pp;
        if (moved) {
            *pp = e->next;
            free(e);
        } else {
            e->moving = 0;
        }
        break;
    }
    pthread_cond_broadcast(&w->rcv);
    pthread_mutex_unlock(&w->rmu);
}

int lake_writer_pin_spool(lake_writer *w, lake_writer_pins **out, char *err, size_t errlen)
{
    lake_writer_pins *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&w->rmu);
    for (;;) { /* a segment half-way into the store would be in neither place */
        int moving = 0;
        for (writer__spooled *e = w->reg; e; e = e->next) moving |= e->moving;
        if (!moving) break;
        pthread_cond_wait(&w->rcv, &w->rmu);
    }
    size_t n = 0;
    for (writer__spooled *e = w->reg; e; e = e->next) n++;
    p->seg = n ? calloc(n, sizeof *p->seg) : NULL;
    if (n && !p->seg) {
        pthread_mutex_unlock(&w->rmu);
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (writer__spooled *e = w->reg; e; e = e->next) {
        e->pins++;
        p->seg[p->n++] = e;
    }
    pthread_mutex_unlock(&w->rmu);
    *out = p;
    return 0;
}

size_t lake_writer_pins_count(const lake_writer_pins *p)
{
    return p ? p->n : 0;
}

void lake_writer_pins_get(const lake_writer *w, const lake_writer_pins *p, size_t i, int *kind,
                          int64_t *hour, char *path, size_t cap)
{
    char name[LAKE_KEY_MAX];
    lake_spool_name_of(p->seg[i]->kind, p->seg[i]->hour, p->seg[i]->uuid, name);
    snprintf(path, cap, "%s/%s", w->spool, name);
    *kind = p->seg[i]->kind;
    *hour = p->seg[i]->hour;
}

void lake_writer_unpin_spool(lake_writer *w, lake_writer_pins *p)
{
    if (!p) return;
    pthread_mutex_lock(&w->rmu);
    for (size_t i = 0; i < p->n; i++) p->seg[i]->pins--;
    pthread_cond_broadcast(&w->rcv);
    pthread_mutex_unlock(&w->rmu);
    free(p->seg);
    free(p);
}

const char *lake_writer_spool_dir(const lake_writer *w)
{
    return w->spool;
}

/* The path of a file in the spool. The sealer uses paths, never the writer's spool_fd, which
 * the writer thread replaces when the spool directory has to be made again. */
void writer__spool_path(const lake_writer *w, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", w->spool, name);
}

/* ---- the spool seen from another process ------------------------------- */

int lake_writer_spool_held(const char *spool_dir, long *pid)
{
    char path[4200];
    *pid = 0;
    snprintf(path, sizeof path, "%s/%s", spool_dir, LAKE_WRITER_SPOOL_LOCK);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int held = 0;
    if (!flock(fd, LOCK_SH | LOCK_NB)) {
        flock(fd, LOCK_UN);
    } else if (errno == EWOULDBLOCK) {
        held = 1;
        char b[32];
        ssize_t r = pread(fd, b, sizeof b - 1, 0);
        b[r > 0 ? r : 0] = 0;
        *pid = strtol(b, NULL, 10);
    }
    close(fd);
    return held;
}

int lake_writer_spool_count(const char *spool_dir, uint64_t *segments, uint64_t *events, char *err,
                            size_t errlen)
{
    *segments = *events = 0;
    DIR *d = opendir(spool_dir);
    if (!d) {
        snprintf(err, errlen, "spool %s: %s", spool_dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    char b[65536];
    while ((de = readdir(d))) {
        int64_t hour;
        char uuid[LAKE_UUID_LEN + 1];
        if (lake_parse_spool_name(de->d_name, &hour, uuid)) continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* sealed since it was listed */
        (*segments)++;
        ssize_t n;
        while ((n = read(fd, b, sizeof b)) > 0)
            for (const char *p = b; (p = memchr(p, '\n', (size_t)(b + n - p))); p++) (*events)++;
        close(fd);
    }
    closedir(d);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static void writer_free(lake_writer *w)
{
    if (!w) return;
    while (w->shead) {
        writer__sealed *s = w->shead;
        w->shead = s->next;
        writer__sealed_free(w, s);
    }
    while (w->reg) {
        writer__spooled *e = w->reg;
        w->reg = e->next;
        free(e);
    }
    writer__stream_free(w);
    dedup_free(w->dd);
    if (w->spool_fd >= 0) close(w->spool_fd);
    if (w->lock_fd >= 0) close(w->lock_fd); /* releases the flock */
    free(w->spool);
    pthread_mutex_destroy(&w->cmu);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->smu);
    pthread_mutex_destroy(&w->emu);
    pthread_mutex_destroy(&w->rmu);
    pthread_mutex_destroy(&w->stmu);
    pthread_cond_destroy(&w->rcv);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->flushed);
    pthread_cond_destroy(&w->scv);
    pthread_cond_destroy(&w->sdone);
    free(w);
}

int lake_writer_open(const lake_writer_config *cfg, lake_writer **out, char *err, size_t errlen)
{
    lake_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->cfg = *cfg;
    if (!w->cfg.seal_bytes) w->cfg.seal_bytes = 64ull << 20;
    if (w->cfg.seal_age_ms <= 0) w->cfg.seal_age_ms = 30000;
    if (!w->cfg.max_open_segments) w->cfg.max_open_segments = 64;
    w->spool_fd = w->lock_fd = -1;
    pthread_mutex_init(&w->cmu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->smu, NULL);
    pthread_mutex_init(&w->emu, NULL);
    pthread_mutex_init(&w->rmu, NULL);
    pthread_mutex_init(&w->stmu, NULL);
    pthread_cond_init(&w->rcv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->scv, &ca);
    pthread_cond_init(&w->flushed, NULL);
    pthread_cond_init(&w->sdone, NULL);
    pthread_condattr_destroy(&ca);

    char why[4400];
    if (files_mkdirs(cfg->spool_dir, why, sizeof why)) {
        snprintf(err, errlen, "spool: %s", why);
        goto fail;
    }
    if (!(w->spool = realpath(cfg->spool_dir, NULL))) {
        snprintf(err, errlen, "spool %s: cannot create: %s", cfg->spool_dir, strerror(errno));
        goto fail;
    }
    if (writer__spool_lock(w, &w->spool_fd, &w->lock_fd, err, errlen)) goto fail;
    if (!(w->dd = dedup_new(cfg->dedup_window))) {
        snprintf(err, errlen, "out of memory for a dedup window of %zu ids", cfg->dedup_window);
        goto fail;
    }
    if (writer__recover(w, err, errlen)) goto fail;
    if (pthread_create(&w->sealer_thr, NULL, writer__sealer_main, w)) {
        snprintf(err, errlen, "cannot start the sealer thread");
        goto fail;
    }
    if (pthread_create(&w->writer_thr, NULL, writer__main, w)) {
        pthread_mutex_lock(&w->smu);
        w->sstop = 1;
        pthread_cond_signal(&w->scv);
        pthread_mutex_unlock(&w->smu);
        pthread_join(w->sealer_thr, NULL);
        snprintf(err, errlen, "cannot start the writer thread");
        goto fail;
    }
    w->threads_started = 1;
    *out = w;
    return 0;
fail:
    writer_free(w);
    return -1;
}

void lake_writer_submit(lake_writer *w, lake_batch *b)
{
    b->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->qtail)
        w->qtail->next = b;
    else
        w->qhead = b;
    w->qtail = b;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void lake_writer_flush(lake_writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t want = ++w->flush_req;
    pthread_cond_signal(&w->cv);
    while (w->flush_done < want) pthread_cond_wait(&w->flushed, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&w->smu);
    while (w->shead && !w->sbackoff) pthread_cond_wait(&w->sdone, &w->smu);
    pthread_mutex_unlock(&w->smu);
}

void lake_writer_close(lake_writer *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->writer_thr, NULL);
    pthread_mutex_lock(&w->smu);
    w->sstop = 1;
    pthread_cond_signal(&w->scv);
    pthread_mutex_unlock(&w->smu);
    pthread_join(w->sealer_thr, NULL);
    if (w->shead) {
        char n[24];
        size_t k = 0;
        for (writer__sealed *s = w->shead; s; s = s->next) k++;
        snprintf(n, sizeof n, "%zu", k);
        log_msg(LOG_WARN, "segments left in the spool for the next start", "segments", n, LOG_END);
    }
    writer_free(w);
}

void lake_writer_stats_get(lake_writer *w, lake_writer_stats *st)
{
    st->spool_bytes = atomic_load(&w->spool_bytes) + atomic_load(&w->stream_spool_bytes);
    st->segments_open = atomic_load(&w->segments_open);
    st->segments_sealed = atomic_load(&w->segments_sealed);
    st->seal_failures = atomic_load(&w->seal_failures);
    st->commits = atomic_load(&w->commits);
    st->commit_failures = atomic_load(&w->commit_failures);
    st->recovered_events = atomic_load(&w->recovered);
    st->segments_evicted = atomic_load(&w->segments_evicted);
    st->segments_rescued = atomic_load(&w->segments_rescued);
    st->spool_recreated = atomic_load(&w->spool_recreated);
    st->segments_lost = atomic_load(&w->segments_lost);
    st->events_lost = atomic_load(&w->events_lost);
    st->stream_seq = atomic_load(&w->stream_seq);
    st->stream_files_sealed = atomic_load(&w->stream_sealed);
    st->fsync = &w->fsync_h;
    pthread_mutex_lock(&w->emu);
    memcpy(st->last_error, w->last_error, sizeof st->last_error);
    memcpy(st->seal_error, w->seal_error, sizeof st->seal_error);
    st->sealing_failing = w->seal_error[0] != 0;
    memcpy(st->incident, w->incident, sizeof st->incident);
    memcpy(st->lost, w->lost, sizeof st->lost);
    pthread_mutex_unlock(&w->emu);
}

int lake_writer_failing(lake_writer *w)
{
    return atomic_load(&w->failing);
}
