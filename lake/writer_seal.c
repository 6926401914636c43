/*
 * writer_seal.c - the sealer thread: closed segments into the store.
 *
 * The sealer takes the closed segments in the order they were queued, checks
 * that the spool still holds each as the writer left it (saving it from its
 * descriptor where it does not, reporting it lost where nothing can), cuts
 * it to its acknowledged length and moves it into the store, retrying with
 * backoff while the store fails. Each moved events segment is noted in
 * sealed.log with its event count, so that recovery can rebuild the dedup
 * window from the newest sealed segments. Stream segments (writer_stream.c)
 * go through the same queue, so they reach the store in seq order; an events
 * segment waits until the stream is durable up to the seq it was queued with.
 */
#include "writer_int.h"
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

#define SEAL_LOG "sealed.log"

/* ---- sealed.log ---------------------------------------------------------- */

static void seallog_append(lake_writer *w, const char *key, uint64_t events)
{
    char line[LAKE_KEY_MAX + 32], path[4200];
    int n = snprintf(line, sizeof line, "%s %llu\n", key, (unsigned long long)events);
    writer__spool_path(w, SEAL_LOG, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;                    /* the log only speeds up dedup after a restart */
    if (write(fd, line, (size_t)n) != n) { /* same: best effort */
    }
    close(fd);
    w->seallog_lines++;
}

/* Reads sealed.log; entries are oldest first. */
int writer__seallog_read(lake_writer *w, writer__seallog_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char path[4200];
    writer__spool_path(w, SEAL_LOG, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    buf b = BUF_INIT;
    char tmp[65536];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof tmp)) > 0)
        if (buf_append(&b, tmp, (size_t)r)) break;
    close(fd);
    if (!b.len) { /* created, then a crash before the first line */
        buf_free(&b);
        return 0;
    }
    size_t cap = 0;
    writer__seallog_entry *v = NULL;
    const char *p = b.p, *end = b.p + b.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* torn last line */
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        if (sp && sp > p) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 256;
                writer__seallog_entry *nv = realloc(v, cap * sizeof *v);
                if (!nv) break;
                v = nv;
            }
            v[*n].key = strndup(p, (size_t)(sp - p));
            v[*n].events = strtoull(sp + 1, NULL, 10);
            if (v[*n].key) (*n)++;
        }
        p = nl + 1;
    }
    buf_free(&b);
    *out = v;
    return 0;
}

/* Rewrites sealed.log with entries[from..n). */
void writer__seallog_rewrite(lake_writer *w, writer__seallog_entry *e, size_t from, size_t n)
{
    buf b = BUF_INIT;
    for (size_t i = from; i < n; i++)
        buf_printf(&b, "%s %llu\n", e[i].key, (unsigned long long)e[i].events);
    char path[4200], tmp[4200];
    writer__spool_path(w, SEAL_LOG, path, sizeof path);
    writer__spool_path(w, SEAL_LOG ".tmp", tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        int ok = files_write_all(fd, b.p ? b.p : "", b.len, 0) == 0 && fsync(fd) == 0;
        close(fd);
        if (ok) rename(tmp, path);
    }
    w->seallog_lines = n - from;
    buf_free(&b);
}

/* The index of the oldest entry among the newest ones covering the dedup window. */
size_t writer__seallog_window_start(const lake_writer *w, const writer__seallog_entry *e, size_t n)
{
    uint64_t sum = 0;
    size_t i = n;
    while (i > 0 && sum < w->cfg.dedup_window) sum += e[--i].events;
    return i;
}

static void seallog_trim(lake_writer *w)
{
    writer__seallog_entry *e = NULL;
    size_t n = 0;
    if (writer__seallog_read(w, &e, &n)) return;
    writer__seallog_rewrite(w, e, writer__seallog_window_start(w, e, n), n);
    for (size_t i = 0; i < n; i++) free(e[i].key);
    free(e);
}

/* ---- lost segments -------------------------------------------------------- */

/*
 * The events counted as lost, loudly: the log, /health and /metrics say so. A
 * stream segment holds copies of lines the hour segments keep: its loss is a
 * gap in the stream log, logged, not acknowledged events lost.
 */
static void note_lost(lake_writer *w, const writer__sealed *s, const char *name, uint64_t events,
                      const char *why)
{
    char msg[256], ev[24];
    if (s->kind == WRITER__STREAM) {
        log_msg(LOG_ERROR, "stream log segment lost: the stream has a gap", "segment", name,
                "error", why, LOG_END);
        return;
    }
    snprintf(msg, sizeof msg, "%llu acknowledged events lost: spool segment %s %s",
             (unsigned long long)events, name, why);
    snprintf(ev, sizeof ev, "%llu", (unsigned long long)events);
    atomic_fetch_add(&w->segments_lost, 1);
    atomic_fetch_add(&w->events_lost, events);
    pthread_mutex_lock(&w->emu);
    snprintf(w->lost, sizeof w->lost, "%s", msg);
    pthread_mutex_unlock(&w->emu);
    log_msg(LOG_ERROR, "acknowledged events lost", "segment", name, "events", ev, "error", msg,
            LOG_END);
}

/* ---- the sealer ------------------------------------------------------- */

enum seal_result { SEAL_RETRY = -1, SEAL_MOVED = 0, SEAL_GONE = 1 };

/*
 * Checks that the spool still holds the segment as the writer left it, and
 * saves it through its descriptor where it does not. SEAL_MOVED: go on and
 * move it (or an earlier attempt already did: *done). SEAL_GONE: nothing is
 * left to move, the loss has been reported.
 */
static int seal_check(lake_writer *w, writer__sealed *s, const char *name, const char *key,
                      int *done, char *err, size_t errlen)
{
    char path[4200];
    writer__spool_path(w, name, path, sizeof path);
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (!exists && errno != ENOENT) {
        snprintf(err, errlen, "spool: cannot stat %s: %s", path, strerror(errno));
        return SEAL_RETRY;
    }
    if (exists && (s->fd < 0 || (st.st_dev == s->dev && st.st_ino == s->ino))) {
        if (s->fd < 0 && (uint64_t)st.st_size < s->size) {
            char why[160];
            snprintf(why, sizeof why, "is %llu bytes shorter than was written",
                     (unsigned long long)(s->size - (uint64_t)st.st_size));
            note_lost(w, s, name, 0, why); /* how many events is unknown: the lines are gone */
            s->size = (uint64_t)st.st_size;
        }
        return SEAL_MOVED;
    }
    if (!exists) { /* an earlier attempt may have moved it and failed after */
        store_entry e;
        int h = store_head(w->cfg.store, key, &e, err, errlen);
        if (h == STORE_OK) {
            *done = 1;
            return SEAL_MOVED;
        }
        if (h != STORE_ENOENT) return SEAL_RETRY;
    }
    if (s->fd < 0) {
        note_lost(w, s, name, s->events, "was deleted from the spool before it reached the lake");
        return SEAL_GONE;
    }
    int nfd = writer__segment_copy_out(w, name, s->fd, s->size, err, errlen);
    if (nfd < 0) return SEAL_RETRY; /* the descriptor is kept: the next attempt tries again */
    writer__adopt_copy(w, nfd, &s->fd, &s->dev, &s->ino);
    char msg[256];
    snprintf(msg, sizeof msg,
             "spool segment %s was %s while it waited for the lake; its %llu events were "
             "written again from the server's open descriptor",
             name, exists ? "replaced" : "deleted", (unsigned long long)s->events);
    writer__note_incident(w, msg);
    return SEAL_MOVED;
}

/* The spool name and the store key of a queued segment. */
static void sealed_names(const writer__sealed *s, char name[LAKE_KEY_MAX], char key[LAKE_KEY_MAX])
{
    if (s->kind == WRITER__STREAM) {
        lake_stream_spool_name(s->sid, s->first, name);
        lake_stream_key(s->sid, s->first, key);
        return;
    }
    lake_spool_name_of(s->kind, s->hour, s->uuid, name);
    lake_segment_key(s->kind, s->hour, s->uuid, key);
}

static int seal_one(lake_writer *w, writer__sealed *s, char *err, size_t errlen)
{
    char name[LAKE_KEY_MAX], key[LAKE_KEY_MAX], path[4200];
    sealed_names(s, name, key);
    writer__spool_path(w, name, path, sizeof path);
    uint64_t durable = atomic_load(&w->stream_durable);
    if (s->kind == LAKE_KIND_EVENTS && s->max_seq > durable) {
        snprintf(err, errlen, "the stream log is durable up to seq %llu, not yet %llu",
                 (unsigned long long)durable, (unsigned long long)s->max_seq);
        return SEAL_RETRY;
    }
    int done = 0;
    int r = seal_check(w, s, name, key, &done, err, errlen);
    if (r != SEAL_MOVED || done) return r;
    struct stat st;
    if (stat(path, &st)) {
        snprintf(err, errlen, "spool: cannot stat %s: %s", path, strerror(errno));
        return SEAL_RETRY;
    }
    if ((uint64_t)st.st_size > s->size && truncate(path, (off_t)s->size)) {
        snprintf(err, errlen, "spool: cannot cut %s to %llu bytes: %s", path,
                 (unsigned long long)s->size, strerror(errno));
        return SEAL_RETRY;
    }
    if (s->size == 0) {
        unlink(path);
        char discard[160]; /* the next seal syncs the spool again */
        files_sync_dir(w->spool, discard, sizeof discard);
        return SEAL_MOVED;
    }
    if (s->kind == LAKE_KIND_EVENTS) {
        seallog_append(w, key, s->events); /* ids for dedup */
        /* the pending index first: a marker whose segment never comes is harmless, a segment
         * without its marker waits for compaction's next sweep (docs/lake.md) */
        char pending[LAKE_KEY_MAX];
        lake_pending_key(key, pending);
        if (store_put(w->cfg.store, pending, "", 0, STORE_NOSYNC, err, errlen)) return SEAL_RETRY;
    }
    if (store_put_file(w->cfg.store, key, path, STORE_MOVE, err, errlen)) return SEAL_RETRY;
    return SEAL_MOVED;
}

void writer__sealed_free(lake_writer *w, writer__sealed *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        w->sfds--;
    }
    free(s);
}

void *writer__sealer_main(void *arg)
{
    lake_writer *w = arg;
    int64_t backoff = 1000;
    uint64_t failures_in_row = 0;
    pthread_mutex_lock(&w->smu);
    for (;;) {
        while (!w->shead && !w->sstop) pthread_cond_wait(&w->scv, &w->smu);
        if (!w->shead) break;
        writer__sealed *s = w->shead;
        w->sbusy = s;
        pthread_mutex_unlock(&w->smu);

        char err[512] = "";
        writer__registry_begin_move(w, s->uuid);
        int r = seal_one(w, s, err, sizeof err);
        writer__registry_end_move(w, s->uuid, r != SEAL_RETRY);

        pthread_mutex_lock(&w->smu);
        w->sbusy = NULL;
        if (r != SEAL_RETRY) {
            w->shead = s->next;
            if (!w->shead) w->stail = NULL;
            atomic_fetch_sub(s->kind == WRITER__STREAM ? &w->stream_spool_bytes : &w->spool_bytes,
                             s->size);
            if (s->kind == WRITER__STREAM) {
                writer__stream_moved(w, s);
                if (s->size && r == SEAL_MOVED) atomic_fetch_add(&w->stream_sealed, 1);
            } else if (s->size && r == SEAL_MOVED) {
                atomic_fetch_add(&w->segments_sealed, 1);
            }
            if (failures_in_row) {
                char f[24];
                snprintf(f, sizeof f, "%llu", (unsigned long long)failures_in_row);
                log_msg(LOG_INFO, "store recovered, sealing again", "failed_attempts", f, LOG_END);
            }
            if (log_enabled(LOG_DEBUG) && r == SEAL_MOVED) {
                char name[LAKE_KEY_MAX], key[LAKE_KEY_MAX], ev[24];
                sealed_names(s, name, key);
                snprintf(ev, sizeof ev, "%llu", (unsigned long long)s->events);
                log_msg(LOG_DEBUG, "sealed", "key", key, "events", ev, LOG_END);
            }
            writer__sealed_free(w, s);
            if (failures_in_row) {
                pthread_mutex_lock(&w->emu);
                w->seal_error[0] = 0;
                pthread_mutex_unlock(&w->emu);
            }
            failures_in_row = 0;
            backoff = 1000;
            w->sbackoff = 0;
            if (w->seallog_lines > 10000) seallog_trim(w);
            pthread_cond_broadcast(&w->sdone);
            continue;
        }
        atomic_fetch_add(&w->seal_failures, 1);
        if (failures_in_row++ % 30 == 0)
            log_msg(LOG_WARN, "cannot seal segment, will retry", "error", err, LOG_END);
        pthread_mutex_lock(&w->emu);
        snprintf(w->seal_error, sizeof w->seal_error, "%s", err);
        pthread_mutex_unlock(&w->emu);
        w->sbackoff = 1;
        pthread_cond_broadcast(&w->sdone);
        if (w->sstop) break; /* shutting down: the segment stays in the spool for the next start */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += backoff / 1000;
        ts.tv_nsec += (backoff % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&w->scv, &w->smu, &ts);
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
    pthread_mutex_unlock(&w->smu);
    return NULL;
}

/*
 * Queues a closed segment for the sealer. Its descriptor rides along so that
 * the segment can still be saved if its file is deleted before it is moved;
 * the queue keeps at most max_open_segments of them (the newest), so that a
 * store outage cannot make the descriptors grow without bound.
 */
void writer__sealer_push(lake_writer *w, writer__sealed *s)
{
    pthread_mutex_lock(&w->smu);
    s->next = NULL;
    if (w->stail)
        w->stail->next = s;
    else
        w->shead = s;
    w->stail = s;
    if (s->fd >= 0) w->sfds++;
    for (writer__sealed *o = w->shead; o && w->sfds > w->cfg.max_open_segments; o = o->next) {
        if (o == w->sbusy || o->fd < 0) continue;
        close(o->fd);
        o->fd = -1;
        w->sfds--;
    }
    pthread_cond_signal(&w->scv);
    pthread_mutex_unlock(&w->smu);
}
