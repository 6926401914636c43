/*
 * writer.c - spool segments, group commit, sealing and spool recovery.
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
 * (segment_copy_out). The sealer never uses the writer's spool_fd, which the
 * writer thread replaces when it makes a removed spool directory again.
 */
#include "writer.h"
#include "dedup.h"
#include "evrand.h"
#include "evtime.h"
#include "files.h"
#include "jscan.h"
#include "layout.h"
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
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SEAL_LOG  "sealed.log"
#define LOCK_FILE LAKE_SPOOL_LOCK

typedef struct segment {
    int kind; /* enum lake_kind */
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    char name[LAKE_KEY_MAX];
    int fd;    /* read-write: what it holds can be copied out if its name is deleted */
    dev_t dev; /* the file fd is open on: the spool must still name it at every commit */
    ino_t ino;
    uint64_t size;   /* durable, acknowledged length */
    uint64_t events; /* durable events */
    int64_t opened_ms;
    uint64_t used; /* the last group that wrote to it: the least recently used closes first */
    int in_open;   /* in w->open; 0 once retired half-way through a group */
    /* the lines of the group being committed, where they are: in its batches' buffers, alive
     * until the group completes; nothing is copied (a request of 8 MiB of tiny events has
     * hundreds of MB of lines) */
    struct iovec *iov;
    size_t niov, iovcap;
    size_t pending; /* bytes in iov */
    uint64_t pending_events;
    size_t written, synced; /* bytes of pending already written, already fdatasync'ed */
    int grouped;            /* in the group list (gnext) of the commit under way */
    struct segment *next, *gnext;
} segment;

typedef struct sealed {
    int kind;
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    uint64_t size, events;
    int fd; /* the segment's descriptor while the sealer may still need it, else -1 */
    dev_t dev;
    ino_t ino;
    struct sealed *next;
} sealed;

/* Every segment in the spool (open or waiting to be sealed), for readers. */
typedef struct spooled {
    int kind;
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    int pins;   /* readers that may open it: the sealer waits for 0 */
    int moving; /* the sealer is moving it into the store */
    struct spooled *next;
} spooled;

struct lake_spool_pins {
    size_t n;
    spooled **seg;
};

struct lake_writer {
    lake_writer_config cfg;
    char *spool;
    int spool_fd, lock_fd;
    dedup *dd;

    pthread_t writer_thr, sealer_thr;
    int threads_started;

    pthread_mutex_t mu; /* queue, stop, flush counters */
    pthread_cond_t cv, flushed;
    lake_batch *qhead, *qtail;
    int stop;
    uint64_t flush_req, flush_done;

    segment *open;   /* writer thread only, like the three below */
    size_t n_open;   /* segments in open */
    uint64_t groups; /* group commits begun; segment.used counts in it */

    pthread_mutex_t smu; /* sealer queue */
    pthread_cond_t scv, sdone;
    sealed *shead, *stail;
    sealed *sbusy; /* the entry the sealer works on, unlocked: its fd is not taken away */
    size_t sfds;   /* descriptors held by queued entries; at most cfg.max_open_segments */
    int sstop, sbackoff;
    uint64_t seallog_lines;

    _Atomic uint64_t spool_bytes, segments_open, segments_sealed, seal_failures;
    _Atomic uint64_t commits, commit_failures, recovered;
    _Atomic uint64_t segments_evicted, segments_rescued, spool_recreated;
    _Atomic uint64_t segments_lost, events_lost;
    _Atomic int failing;
    histo fsync_h;
    pthread_mutex_t emu;
    char last_error[256];
    char seal_error[256]; /* under emu; "" while sealing works */
    char incident[256];   /* under emu: the last spool segment or directory found missing */
    char lost[256];       /* under emu: the last acknowledged events that could not be saved */

    pthread_mutex_t rmu; /* the registry of spooled segments and their pins */
    pthread_cond_t rcv;
    spooled *reg;
};

/* ---- the registry of spool segments, for readers ------------------------ */

static void registry_add(lake_writer *w, int kind, int64_t hour, const char *uuid)
{
    spooled *e = calloc(1, sizeof *e);
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

static spooled *registry_find(lake_writer *w, const char *uuid)
{
    for (spooled *e = w->reg; e; e = e->next)
        if (!strcmp(e->uuid, uuid)) return e;
    return NULL;
}

/* Sealer: waits until no reader holds the segment, then marks it moving. */
static void registry_begin_move(lake_writer *w, const char *uuid)
{
    pthread_mutex_lock(&w->rmu);
    spooled *e = registry_find(w, uuid);
    while (e && e->pins > 0) pthread_cond_wait(&w->rcv, &w->rmu);
    if (e) e->moving = 1;
    pthread_mutex_unlock(&w->rmu);
}

/* Sealer: the move ended; a moved segment leaves the registry. */
static void registry_end_move(lake_writer *w, const char *uuid, int moved)
{
    pthread_mutex_lock(&w->rmu);
    for (spooled **pp = &w->reg; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->uuid, uuid)) continue;
        spooled *e = *pp;
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

int lake_writer_pin_spool(lake_writer *w, lake_spool_pins **out)
{
    lake_spool_pins *p = calloc(1, sizeof *p);
    if (!p) return -1;
    pthread_mutex_lock(&w->rmu);
    for (;;) { /* a segment half-way into the store would be in neither place */
        int moving = 0;
        for (spooled *e = w->reg; e; e = e->next) moving |= e->moving;
        if (!moving) break;
        pthread_cond_wait(&w->rcv, &w->rmu);
    }
    size_t n = 0;
    for (spooled *e = w->reg; e; e = e->next) n++;
    p->seg = n ? calloc(n, sizeof *p->seg) : NULL;
    if (n && !p->seg) {
        pthread_mutex_unlock(&w->rmu);
        free(p);
        return -1;
    }
    for (spooled *e = w->reg; e; e = e->next) {
        e->pins++;
        p->seg[p->n++] = e;
    }
    pthread_mutex_unlock(&w->rmu);
    *out = p;
    return 0;
}

size_t lake_spool_pins_count(const lake_spool_pins *p)
{
    return p ? p->n : 0;
}

void lake_spool_pins_get(const lake_writer *w, const lake_spool_pins *p, size_t i, int *kind,
                         int64_t *hour, char *path, size_t cap)
{
    char name[LAKE_KEY_MAX];
    lake_spool_name_of(p->seg[i]->kind, p->seg[i]->hour, p->seg[i]->uuid, name);
    snprintf(path, cap, "%s/%s", w->spool, name);
    *kind = p->seg[i]->kind;
    *hour = p->seg[i]->hour;
}

void lake_writer_unpin_spool(lake_writer *w, lake_spool_pins *p)
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

/* ---- the sealer ------------------------------------------------------- */

/* The path of a file in the spool. The sealer uses paths, never the writer's spool_fd, which
 * the writer thread replaces when the spool directory has to be made again. */
static void spool_path(const lake_writer *w, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", w->spool, name);
}

static void seallog_append(lake_writer *w, const char *key, uint64_t events)
{
    char line[LAKE_KEY_MAX + 32], path[4200];
    int n = snprintf(line, sizeof line, "%s %llu\n", key, (unsigned long long)events);
    spool_path(w, SEAL_LOG, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;                    /* the log only speeds up dedup after a restart */
    if (write(fd, line, (size_t)n) != n) { /* same: best effort */
    }
    close(fd);
    w->seallog_lines++;
}

typedef struct seallog_entry {
    char *key;
    uint64_t events;
} seallog_entry;

/* Reads sealed.log; entries are oldest first. */
static int seallog_read(lake_writer *w, seallog_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char path[4200];
    spool_path(w, SEAL_LOG, path, sizeof path);
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
    seallog_entry *v = NULL;
    const char *p = b.p, *end = b.p + b.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* torn last line */
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        if (sp && sp > p) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 256;
                seallog_entry *nv = realloc(v, cap * sizeof *v);
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
static void seallog_rewrite(lake_writer *w, seallog_entry *e, size_t from, size_t n)
{
    buf b = BUF_INIT;
    for (size_t i = from; i < n; i++)
        buf_printf(&b, "%s %llu\n", e[i].key, (unsigned long long)e[i].events);
    char path[4200], tmp[4200];
    spool_path(w, SEAL_LOG, path, sizeof path);
    spool_path(w, SEAL_LOG ".tmp", tmp, sizeof tmp);
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
static size_t seallog_window_start(const lake_writer *w, const seallog_entry *e, size_t n)
{
    uint64_t sum = 0;
    size_t i = n;
    while (i > 0 && sum < w->cfg.dedup_window) sum += e[--i].events;
    return i;
}

static void seallog_trim(lake_writer *w)
{
    seallog_entry *e = NULL;
    size_t n = 0;
    if (seallog_read(w, &e, &n)) return;
    seallog_rewrite(w, e, seallog_window_start(w, e, n), n);
    for (size_t i = 0; i < n; i++) free(e[i].key);
    free(e);
}

/* ---- lost segments and their rescue ------------------------------------ */

static void note_incident(lake_writer *w, const char *msg)
{
    pthread_mutex_lock(&w->emu);
    snprintf(w->incident, sizeof w->incident, "%s", msg);
    pthread_mutex_unlock(&w->emu);
    log_msg(LOG_ERROR, "spool damaged under the server", "error", msg, LOG_END);
}

/*
 * Writes the first size bytes of the file open at fd to a new file named
 * name in the spool (made again if the spool directory is gone), durably,
 * replacing whatever has that name now. Returns a read-write descriptor of
 * the new file, or -1 with err set. This is how acknowledged lines whose
 * file was deleted under the server (unlinked, the spool removed, the name
 * replaced) are saved: the open descriptor still reaches them.
 */
static int segment_copy_out(const lake_writer *w, const char *name, int fd, uint64_t size,
                            char *err, size_t errlen)
{
    char path[4200], tmp[4300];
    spool_path(w, name, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.rescue", path);
    if (files_mkdirs(w->spool)) {
        snprintf(err, errlen, "spool: cannot make %s again: %s", w->spool, strerror(errno));
        return -1;
    }
    int out = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        snprintf(err, errlen, "spool: cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    char chunk[65536];
    uint64_t off = 0;
    while (off < size) {
        size_t want = size - off < sizeof chunk ? (size_t)(size - off) : sizeof chunk;
        ssize_t r = pread(fd, chunk, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || files_write_all(out, chunk, (size_t)r, (int64_t)off)) {
            snprintf(err, errlen, "spool: cannot copy %s out of its open descriptor: %s", name,
                     r < 0 || r > 0 ? strerror(errno) : "the file is shorter than was written");
            goto fail;
        }
        off += (uint64_t)r;
    }
    if (fdatasync(out) || rename(tmp, path) || files_sync_dir(w->spool)) {
        snprintf(err, errlen, "spool: cannot make %s durable: %s", path, strerror(errno));
        goto fail;
    }
    return out;
fail:
    close(out);
    unlink(tmp);
    return -1;
}

/* The events counted as lost, loudly: the log, /health and /metrics say so. */
static void note_lost(lake_writer *w, const char *name, uint64_t events, const char *why)
{
    char msg[256], ev[24];
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
static int seal_check(lake_writer *w, sealed *s, const char *name, const char *key, int *done,
                      char *err, size_t errlen)
{
    char path[4200];
    spool_path(w, name, path, sizeof path);
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
            note_lost(w, name, 0, why); /* how many events is unknown: the lines are gone */
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
        if (h != STORE_ENOENT) {
            return SEAL_RETRY;
        }
    }
    if (s->fd < 0) {
        note_lost(w, name, s->events, "was deleted from the spool before it reached the lake");
        return SEAL_GONE;
    }
    int nfd = segment_copy_out(w, name, s->fd, s->size, err, errlen);
    if (nfd < 0) return SEAL_RETRY; /* the descriptor is kept: the next attempt tries again */
    struct stat nst;
    fstat(nfd, &nst);
    close(s->fd);
    s->fd = nfd;
    s->dev = nst.st_dev;
    s->ino = nst.st_ino;
    atomic_fetch_add(&w->segments_rescued, 1);
    char msg[256];
    snprintf(msg, sizeof msg,
             "spool segment %s was %s while it waited for the lake; its %llu events were "
             "written again from the server's open descriptor",
             name, exists ? "replaced" : "deleted", (unsigned long long)s->events);
    note_incident(w, msg);
    return SEAL_MOVED;
}

static int seal_one(lake_writer *w, sealed *s, char *err, size_t errlen)
{
    char name[LAKE_KEY_MAX], key[LAKE_KEY_MAX], path[4200];
    lake_spool_name_of(s->kind, s->hour, s->uuid, name);
    lake_segment_key(s->kind, s->hour, s->uuid, key);
    spool_path(w, name, path, sizeof path);
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
        files_sync_dir(w->spool);
        return SEAL_MOVED;
    }
    if (s->kind == LAKE_KIND_EVENTS) seallog_append(w, key, s->events); /* ids for dedup */
    if (store_put_file(w->cfg.store, key, path, STORE_MOVE, err, errlen)) {
        return SEAL_RETRY;
    }
    return SEAL_MOVED;
}

static void sealed_free(lake_writer *w, sealed *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        w->sfds--;
    }
    free(s);
}

static void *sealer_main(void *arg)
{
    lake_writer *w = arg;
    int64_t backoff = 1000;
    uint64_t failures_in_row = 0;
    pthread_mutex_lock(&w->smu);
    for (;;) {
        while (!w->shead && !w->sstop) pthread_cond_wait(&w->scv, &w->smu);
        if (!w->shead) break;
        sealed *s = w->shead;
        w->sbusy = s;
        pthread_mutex_unlock(&w->smu);

        char err[512] = "";
        registry_begin_move(w, s->uuid);
        int r = seal_one(w, s, err, sizeof err);
        registry_end_move(w, s->uuid, r != SEAL_RETRY);

        pthread_mutex_lock(&w->smu);
        w->sbusy = NULL;
        if (r != SEAL_RETRY) {
            w->shead = s->next;
            if (!w->shead) w->stail = NULL;
            atomic_fetch_sub(&w->spool_bytes, s->size);
            if (s->size && r == SEAL_MOVED) atomic_fetch_add(&w->segments_sealed, 1);
            if (failures_in_row) {
                char f[24];
                snprintf(f, sizeof f, "%llu", (unsigned long long)failures_in_row);
                log_msg(LOG_INFO, "store recovered, sealing again", "failed_attempts", f, LOG_END);
            }
            if (log_enabled(LOG_DEBUG) && r == SEAL_MOVED) {
                char key[LAKE_KEY_MAX], ev[24];
                lake_segment_key(s->kind, s->hour, s->uuid, key);
                snprintf(ev, sizeof ev, "%llu", (unsigned long long)s->events);
                log_msg(LOG_DEBUG, "sealed", "key", key, "events", ev, LOG_END);
            }
            sealed_free(w, s);
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
static void sealer_push(lake_writer *w, sealed *s)
{
    pthread_mutex_lock(&w->smu);
    s->next = NULL;
    if (w->stail)
        w->stail->next = s;
    else
        w->shead = s;
    w->stail = s;
    if (s->fd >= 0) w->sfds++;
    for (sealed *o = w->shead; o && w->sfds > w->cfg.max_open_segments; o = o->next) {
        if (o == w->sbusy || o->fd < 0) continue;
        close(o->fd);
        o->fd = -1;
        w->sfds--;
    }
    pthread_cond_signal(&w->scv);
    pthread_mutex_unlock(&w->smu);
}

/* ---- the spool directory (writer thread) ----------------------------------- */

/* Opens the spool directory and takes its lock. 0, or -1 with err set. */
static int spool_lock(lake_writer *w, int *dir_fd, int *lock_fd, char *err, size_t errlen)
{
    *dir_fd = *lock_fd = -1;
    int d = open(w->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        snprintf(err, errlen, "spool %s: %s", w->spool, strerror(errno));
        return -1;
    }
    /* held open read-only, so that the spool's filesystem can be remounted read-only */
    int fd = openat(d, LOCK_FILE, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    int l = openat(d, LOCK_FILE, O_RDONLY | O_CLOEXEC);
    if (l < 0) {
        snprintf(err, errlen, "spool %s: cannot create %s: %s", w->spool, LOCK_FILE,
                 strerror(errno));
        close(d);
        return -1;
    }
    /* lake_spool_held takes a shared lock for an instant: a moment's conflict is not a server */
    int busy, tries = 0;
    while ((busy = flock(l, LOCK_EX | LOCK_NB)) && errno == EWOULDBLOCK && tries++ < 20) {
        struct timespec nap = {0, 5000000};
        nanosleep(&nap, NULL);
    }
    if (busy) {
        char pid[32] = "";
        ssize_t r = pread(l, pid, sizeof pid - 1, 0);
        pid[r > 0 ? r : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        snprintf(err, errlen, "spool %s is in use by another events server (pid %s)", w->spool,
                 pid[0] ? pid : "unknown");
        close(l);
        close(d);
        return -1;
    }
    /* the pid is only for the message above, written through a short-lived fd */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    fd = openat(d, LOCK_FILE, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0) {
        if (files_write_all(fd, pid, (size_t)n, 0)) { /* informational */
        }
        close(fd);
    }
    *dir_fd = d;
    *lock_fd = l;
    return 0;
}

/* 1 if the spool's path no longer names the directory spool_fd is open on. */
static int spool_moved(lake_writer *w)
{
    struct stat a, b;
    if (fstat(w->spool_fd, &b) || b.st_nlink == 0) return 1;
    if (stat(w->spool, &a)) return 1;
    return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/*
 * 1 if the spool no longer names g's file: unlinked, or replaced by another
 * file. A segment retired half-way through a group has no descriptor: its
 * name is checked alone.
 */
static int segment_gone(lake_writer *w, const segment *g)
{
    struct stat st;
    if (g->fd >= 0 && (fstat(g->fd, &st) || st.st_nlink == 0)) return 1;
    if (fstatat(w->spool_fd, g->name, &st, AT_SYMLINK_NOFOLLOW)) return 1;
    return st.st_dev != g->dev || st.st_ino != g->ino;
}

/*
 * Writes the acknowledged part of every open segment the spool no longer
 * names to a new file under its name, from the descriptor that still
 * reaches it. A segment that cannot be saved now is handed to the sealer with
 * its descriptor, which tries again; one of the group being committed is left
 * to the group's end, which closes it the same way (closing it here would
 * free it under the group's list).
 */
static void segment_close(lake_writer *w, segment *g);

static void segments_rescue(lake_writer *w)
{
    segment *g = w->open;
    while (g) {
        segment *next = g->next;
        if (segment_gone(w, g)) {
            char err[512], msg[256];
            int nfd = segment_copy_out(w, g->name, g->fd, g->size, err, sizeof err);
            if (nfd >= 0) {
                struct stat st;
                fstat(nfd, &st);
                close(g->fd);
                g->fd = nfd;
                g->dev = st.st_dev;
                g->ino = st.st_ino;
                atomic_fetch_add(&w->segments_rescued, 1);
                snprintf(msg, sizeof msg,
                         "spool segment %s was deleted or replaced while the server wrote it; its "
                         "%llu acknowledged events were written again from its open descriptor",
                         g->name, (unsigned long long)g->events);
                note_incident(w, msg);
            } else {
                note_incident(w, err);
                if (!g->grouped) segment_close(w, g);
            }
        }
        g = next;
    }
}

/*
 * The spool directory must be the one the server opened. When it has been
 * removed or moved away, it is made again (and locked again), and the open
 * segments are saved into it. 0: as it was; 1: made again, err says so;
 * -1 with err set: nothing can be written.
 */
static int spool_check(lake_writer *w, char *err, size_t errlen)
{
    if (!spool_moved(w)) return 0;
    int d, l;
    if (files_mkdirs(w->spool)) {
        snprintf(err, errlen, "spool %s was removed and cannot be made again: %s", w->spool,
                 strerror(errno));
        return -1;
    }
    if (spool_lock(w, &d, &l, err, errlen)) return -1;
    close(w->spool_fd);
    close(w->lock_fd);
    w->spool_fd = d;
    w->lock_fd = l;
    atomic_fetch_add(&w->spool_recreated, 1);
    char msg[256];
    snprintf(msg, sizeof msg,
             "spool directory %s was removed or moved under the server; made again", w->spool);
    note_incident(w, msg);
    segments_rescue(w);
    snprintf(err, errlen,
             "spool: the directory %s was removed or moved under the server and has been made "
             "again; this request was not stored (retry it)",
             w->spool);
    return 1;
}

/* ---- segments (writer thread) ----------------------------------------- */

/* Hands g to the sealer with its descriptor; g is freed. */
static void segment_close(lake_writer *w, segment *g)
{
    if (g->in_open) {
        segment **pp = &w->open;
        while (*pp != g) pp = &(*pp)->next;
        *pp = g->next;
        w->n_open--;
        atomic_fetch_sub(&w->segments_open, 1);
    }
    sealed *s = calloc(1, sizeof *s);
    if (s) {
        s->kind = g->kind;
        s->hour = g->hour;
        memcpy(s->uuid, g->uuid, sizeof s->uuid);
        s->size = g->size;
        s->events = g->events;
        s->fd = g->fd;
        s->dev = g->dev;
        s->ino = g->ino;
        sealer_push(w, s);
    } else {
        close(g->fd);
        log_msg(LOG_ERROR, "out of memory sealing a segment; it stays in the spool", "segment",
                g->name, LOG_END);
    }
    free(g->iov);
    free(g);
}

static segment *segment_new(lake_writer *w, int kind, int64_t hour, char *err, size_t errlen)
{
    segment *g = calloc(1, sizeof *g);
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
    registry_add(w, kind, hour, g->uuid);
    return g;
}

static int truncate_in_spool(const lake_writer *w, const segment *g)
{
    char path[4200];
    spool_path(w, g->name, path, sizeof path);
    return truncate(path, (off_t)g->size);
}

/* Writes the group's lines not yet written to g. */
static int segment_write(lake_writer *w, segment *g, char *err, size_t errlen)
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

static int segment_sync(lake_writer *w, segment *g, char *err, size_t errlen)
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
    if (!spool_moved(w)) return 0;
    snprintf(err, errlen,
             "spool: the directory %s was removed or moved under the server; this request was "
             "not stored (retry it)",
             w->spool);
    return -1;
}

/* The check before an answer: the lines just made durable are in the file the spool names. */
static int segment_verify(lake_writer *w, segment *g, char *err, size_t errlen)
{
    if (!segment_gone(w, g)) return 0;
    snprintf(err, errlen,
             "spool: segment %s/%s was deleted or replaced while the server wrote it; this "
             "request was not stored (retry it)",
             w->spool, g->name);
    return -1;
}

static void group_add(segment **group, segment *g, uint64_t seq)
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
    segment *idle = NULL, *busy = NULL;
    for (segment *g = w->open; g; g = g->next) {
        segment **best = g->grouped ? &busy : &idle;
        if (!*best || g->used < (*best)->used) *best = g;
    }
    atomic_fetch_add(&w->segments_evicted, 1);
    if (idle) {
        segment_close(w, idle);
        return 0;
    }
    if (segment_write(w, busy, err, errlen) || segment_sync(w, busy, err, errlen) ||
        segment_verify(w, busy, err, errlen) || spool_verify(w, err, errlen))
        return -1;
    segment **pp = &w->open;
    while (*pp != busy) pp = &(*pp)->next;
    *pp = busy->next;
    busy->in_open = 0;
    w->n_open--;
    atomic_fetch_sub(&w->segments_open, 1);
    close(busy->fd); /* its lines are durable; a failed group cuts them back by path */
    busy->fd = -1;
    return 0;
}

static segment *segment_for(lake_writer *w, int kind, int64_t hour, segment **group, char *err,
                            size_t errlen)
{
    for (segment *g = w->open; g; g = g->next)
        if (g->hour == hour && g->kind == kind) {
            group_add(group, g, w->groups);
            return g;
        }
    if (w->n_open >= w->cfg.max_open_segments && make_room(w, err, errlen)) return NULL;
    segment *g = segment_new(w, kind, hour, err, errlen);
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
static int segment_add(segment *g, const char *p, size_t n)
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

/* Takes each batch's events into the group's segments, dropping duplicates. */
static int group_assign(lake_writer *w, lake_batch *batches, segment **group, char *err,
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
            segment *g = segment_for(w, LAKE_KIND_EVENTS, e->hour, group, err, errlen);
            if (!g) return -1;
            if (segment_add(g, b->lines + e->off, e->len)) {
                snprintf(err, errlen, "spool: out of memory");
                return -1;
            }
            e->stored = 1;
            b->accepted++;
        }
        b->quarantined = 0;
        for (size_t i = 0; i < b->qn; i++) {
            lake_event *e = &b->qev[i];
            segment *g = segment_for(w, LAKE_KIND_REJECTED, e->hour, group, err, errlen);
            if (!g) return -1;
            if (segment_add(g, b->qlines + e->off, e->len)) {
                snprintf(err, errlen, "spool: out of memory");
                return -1;
            }
            e->stored = 1;
            b->quarantined++;
        }
    }
    return 0;
}

/* Writes every segment of the group, then syncs each, then checks each is still in the spool. */
static int group_write(lake_writer *w, segment *group, char *err, size_t errlen)
{
    for (segment *g = group; g; g = g->gnext)
        if (segment_write(w, g, err, errlen)) return -1;
    for (segment *g = group; g; g = g->gnext)
        if (segment_sync(w, g, err, errlen)) return -1;
    for (segment *g = group; g; g = g->gnext)
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
static void group_fail(lake_writer *w, segment *group, lake_batch *batches, uint64_t mark,
                       const char *err)
{
    dedup_rollback(w->dd, mark);
    char e2[512];
    int sc = spool_check(w, e2, sizeof e2);
    if (sc < 0) log_msg(LOG_ERROR, "spool unusable", "error", e2, LOG_END);
    if (sc > 0) err = e2; /* the spool was removed: say that, not what it made fail */
    segments_rescue(w);   /* a retired segment is saved by the sealer, which has its descriptor */
    while (group) {
        segment *g = group, *next = g->gnext;
        if (g->fd >= 0 ? ftruncate(g->fd, (off_t)g->size) : truncate_in_spool(w, g)) {
            /* the sealer cuts it later */
        }
        g->niov = g->pending = 0;
        g->pending_events = 0;
        g->written = g->synced = 0;
        g->grouped = 0;
        segment_close(w, g);
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

static void group_done(lake_writer *w, segment *group, lake_batch *batches)
{
    for (segment *g = group; g; g = g->gnext) {
        g->size += g->pending;
        g->events += g->pending_events;
        atomic_fetch_add(&w->spool_bytes, g->pending);
    }
    atomic_fetch_add(&w->commits, 1);
    if (atomic_exchange(&w->failing, 0)) log_msg(LOG_INFO, "persisting events again", LOG_END);
    complete(batches);
    while (group) {
        segment *g = group, *next = g->gnext;
        g->niov = g->pending = 0;
        g->pending_events = 0;
        g->written = g->synced = 0;
        g->grouped = 0;
        if (g->iovcap > 4096) { /* after a group of many pieces */
            free(g->iov);
            g->iov = NULL;
            g->iovcap = 0;
        }
        if (!g->in_open || g->size >= w->cfg.seal_bytes) segment_close(w, g);
        group = next;
    }
}

static void commit_group(lake_writer *w, lake_batch *batches)
{
    char err[512] = "";
    uint64_t mark = dedup_mark(w->dd);
    segment *group = NULL;
    w->groups++;
    int failed = spool_full(w, err, sizeof err) ||
                 group_assign(w, batches, &group, err, sizeof err) ||
                 group_write(w, group, err, sizeof err);
    if (failed)
        group_fail(w, group, batches, mark, err);
    else
        group_done(w, group, batches);
}

static void seal_due(lake_writer *w, int all)
{
    int64_t now = mono_ms();
    segment *g = w->open;
    while (g) {
        segment *next = g->next;
        if (all || now - g->opened_ms >= w->cfg.seal_age_ms) segment_close(w, g);
        g = next;
    }
}

static int64_t next_deadline(lake_writer *w)
{
    int64_t d = -1;
    for (segment *g = w->open; g; g = g->next) {
        int64_t t = g->opened_ms + w->cfg.seal_age_ms;
        if (d < 0 || t < d) d = t;
    }
    return d;
}

static void *writer_main(void *arg)
{
    lake_writer *w = arg;
    uint64_t flush_seen = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->qhead && !w->stop && w->flush_req == flush_seen) {
            int64_t d = next_deadline(w);
            if (d < 0) {
                pthread_cond_wait(&w->cv, &w->mu);
                continue;
            }
            if (mono_ms() >= d) break;
            struct timespec ts = {d / 1000, (d % 1000) * 1000000};
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        lake_batch *b = w->qhead;
        w->qhead = w->qtail = NULL;
        int stop = w->stop;
        uint64_t flush = w->flush_req;
        pthread_mutex_unlock(&w->mu);

        if (b) commit_group(w, b);
        if (!b && w->open) { /* sealing: what is sealed must be what was acknowledged */
            char err[512];
            if (spool_check(w, err, sizeof err) < 0)
                log_msg(LOG_ERROR, "spool unusable", "error", err, LOG_END);
            segments_rescue(w);
        }
        seal_due(w, stop || flush != flush_seen);
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

/* ---- recovery ---------------------------------------------------------- */

/* Adds the ids of the n bytes of lines at p to the dedup window. */
static void add_ids(lake_writer *w, const char *p, size_t n)
{
    if (!n) return; /* p may be NULL then */
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        if (nl - p > 8 && !memcmp(p, "{\"id\":\"", 7)) {
            const char *q = memchr(p + 7, '"', (size_t)(nl - p - 7));
            if (q) dedup_check_add(w->dd, p + 7, (size_t)(q - p - 7));
        }
        p = nl + 1;
    }
}

static int line_valid(const char *p, const char *nl)
{
    jscan s = {0};
    enum jtype t;
    if (nl - p < 9 || memcmp(p, "{\"id\":\"", 7)) return 0;
    const char *e = jscan_value(&s, p, nl, &t);
    return e == nl && t == J_OBJ && !s.bad;
}

/*
 * Recovers one spool segment: keeps its complete, valid lines, cuts the
 * rest, records its ids. Returns 0 and the segment's size and events.
 */
static int recover_segment(lake_writer *w, const char *name, int kind, uint64_t *size,
                           uint64_t *events, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", w->spool, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "spool: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    buf data = BUF_INIT;
    if (fstat(fd, &st) || buf_reserve(&data, (size_t)st.st_size + 1)) {
        snprintf(err, errlen, "spool: cannot read %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, data.p + got, (size_t)st.st_size - got, (off_t)got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            snprintf(err, errlen, "spool: cannot read %s: %s", path,
                     r < 0 ? strerror(errno) : "short read");
            close(fd);
            buf_free(&data);
            return -1;
        }
        got += (size_t)r;
    }
    data.len = got;

    const char *p = data.p, *end = data.p + data.len;
    size_t good_end = 0, dropped = 0;
    uint64_t n = 0;
    buf kept = BUF_INIT; /* used once a bad line is met in the middle */
    int copying = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        if (line_valid(p, nl)) {
            n++;
            if (copying)
                buf_append(&kept, p, (size_t)(nl + 1 - p));
            else
                good_end = (size_t)(nl + 1 - data.p);
        } else {
            dropped++;
            if (!copying) {
                copying = 1;
                buf_append(&kept, data.p, good_end);
            }
        }
        p = nl + 1;
    }
    int rc = 0;
    if (copying) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.recover", path);
        int tf = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (tf < 0 || files_write_all(tf, kept.p ? kept.p : "", kept.len, 0) || fsync(tf) ||
            rename(tmp, path) || fsync(w->spool_fd)) {
            snprintf(err, errlen, "spool: cannot rewrite %s: %s", path, strerror(errno));
            rc = -1;
        }
        if (tf >= 0) close(tf);
        *size = kept.len;
        if (kind == LAKE_KIND_EVENTS) add_ids(w, kept.p, kept.len);
    } else {
        if (good_end < data.len && (ftruncate(fd, (off_t)good_end) || fsync(fd))) {
            snprintf(err, errlen, "spool: cannot cut %s: %s", path, strerror(errno));
            rc = -1;
        }
        *size = good_end;
        if (kind == LAKE_KIND_EVENTS) add_ids(w, data.p, good_end);
    }
    if (dropped || good_end < data.len) {
        char a[24], b[24];
        snprintf(a, sizeof a, "%zu", dropped);
        snprintf(b, sizeof b, "%llu",
                 (unsigned long long)(data.len - (copying ? kept.len : good_end)));
        log_msg(LOG_WARN, "spool segment repaired", "segment", name, "bad_lines", a, "bytes_cut", b,
                LOG_END);
    }
    *events = n;
    close(fd);
    buf_free(&data);
    buf_free(&kept);
    return rc;
}

/* Loads ids of recently sealed segments, oldest first, into the dedup window. */
static void rebuild_dedup_from_lake(lake_writer *w)
{
    seallog_entry *e = NULL;
    size_t n = 0;
    if (!w->cfg.dedup_window || seallog_read(w, &e, &n)) return;
    size_t from = seallog_window_start(w, e, n);
    buf data = BUF_INIT;
    for (size_t i = from; i < n; i++) {
        data.len = 0;
        char why[512]; /* a file that cannot be read adds no ids */
        /* entries below n are set by seallog_read; the analyzer loses track through realloc */
        // NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage)
        if (store_get(w->cfg.store, e[i].key, 0, 0, &data, why, sizeof why) == STORE_OK)
            add_ids(w, data.p, data.len);
    }
    buf_free(&data);
    seallog_rewrite(w, e, from, n);
    for (size_t i = 0; i < n; i++) free(e[i].key);
    free(e);
}

typedef struct found {
    char name[LAKE_KEY_MAX];
    int kind;
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
} found;

static int found_cmp(const void *a, const void *b)
{
    return strcmp(((const found *)a)->uuid, ((const found *)b)->uuid);
}

static int recover(lake_writer *w, char *err, size_t errlen)
{
    DIR *d = fdopendir(dup(w->spool_fd));
    if (!d) {
        snprintf(err, errlen, "spool: cannot list %s: %s", w->spool, strerror(errno));
        return -1;
    }
    found *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        found f;
        size_t len = strlen(de->d_name);
        if (len > 8 && !strcmp(de->d_name + len - 8, ".recover")) {
            unlinkat(w->spool_fd, de->d_name,
                     0); /* an interrupted rewrite; the original is intact */
            continue;
        }
        if (len > 7 && !strcmp(de->d_name + len - 7, ".rescue")) {
            /* a segment being saved from its descriptor: when its own name is gone, this copy is
             * all that is left of it (recovery cuts a torn end) */
            char orig[LAKE_KEY_MAX];
            snprintf(orig, sizeof orig, "%.*s", (int)(len - 7), de->d_name);
            struct stat st;
            if (fstatat(w->spool_fd, orig, &st, 0) == 0 || errno != ENOENT ||
                renameat(w->spool_fd, de->d_name, w->spool_fd, orig))
                unlinkat(w->spool_fd, de->d_name, 0);
            else
                snprintf(de->d_name, sizeof de->d_name, "%s", orig);
            len = strlen(de->d_name);
        }
        if (lake_parse_spool_name_of(de->d_name, &f.kind, &f.hour, f.uuid)) continue;
        snprintf(f.name, sizeof f.name, "%s", de->d_name);
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            found *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                closedir(d);
                free(v);
                snprintf(err, errlen, "spool: out of memory");
                return -1;
            }
            v = nv;
        }
        v[n++] = f;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, found_cmp); /* uuid7: creation order */

    rebuild_dedup_from_lake(w);
    int rc = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t size = 0, events = 0;
        if (recover_segment(w, v[i].name, v[i].kind, &size, &events, err, errlen)) {
            rc = -1;
            break;
        }
        sealed *s = calloc(1, sizeof *s);
        if (!s) {
            snprintf(err, errlen, "spool: out of memory");
            rc = -1;
            break;
        }
        s->kind = v[i].kind;
        s->hour = v[i].hour;
        memcpy(s->uuid, v[i].uuid, sizeof s->uuid);
        s->size = size;
        s->events = events;
        s->fd = -1; /* not held: a recovered segment deleted before it is moved is reported lost */
        atomic_fetch_add(&w->spool_bytes, size);
        if (s->kind == LAKE_KIND_EVENTS) total += events;
        registry_add(w, s->kind, s->hour, s->uuid);
        sealer_push(w, s);
    }
    atomic_store(&w->recovered, total);
    if (n) {
        char a[24], b[24];
        snprintf(a, sizeof a, "%zu", n);
        snprintf(b, sizeof b, "%llu", (unsigned long long)total);
        log_msg(LOG_INFO, "spool recovered", "segments", a, "events", b, LOG_END);
    }
    free(v);
    return rc;
}

/* ---- the spool seen from another process ------------------------------- */

int lake_spool_held(const char *spool_dir, long *pid)
{
    char path[4200];
    *pid = 0;
    snprintf(path, sizeof path, "%s/%s", spool_dir, LOCK_FILE);
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

int lake_spool_count(const char *spool_dir, uint64_t *segments, uint64_t *events)
{
    *segments = *events = 0;
    DIR *d = opendir(spool_dir);
    if (!d) return -1;
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
        sealed *s = w->shead;
        w->shead = s->next;
        sealed_free(w, s);
    }
    while (w->reg) {
        spooled *e = w->reg;
        w->reg = e->next;
        free(e);
    }
    dedup_free(w->dd);
    if (w->spool_fd >= 0) close(w->spool_fd);
    if (w->lock_fd >= 0) close(w->lock_fd); /* releases the flock */
    free(w->spool);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->smu);
    pthread_mutex_destroy(&w->emu);
    pthread_mutex_destroy(&w->rmu);
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
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->smu, NULL);
    pthread_mutex_init(&w->emu, NULL);
    pthread_mutex_init(&w->rmu, NULL);
    pthread_cond_init(&w->rcv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->scv, &ca);
    pthread_cond_init(&w->flushed, NULL);
    pthread_cond_init(&w->sdone, NULL);
    pthread_condattr_destroy(&ca);

    if (files_mkdirs(cfg->spool_dir) || !(w->spool = realpath(cfg->spool_dir, NULL))) {
        snprintf(err, errlen, "spool %s: cannot create: %s", cfg->spool_dir, strerror(errno));
        goto fail;
    }
    if (spool_lock(w, &w->spool_fd, &w->lock_fd, err, errlen)) goto fail;
    if (!(w->dd = dedup_new(cfg->dedup_window))) {
        snprintf(err, errlen, "out of memory for a dedup window of %zu ids", cfg->dedup_window);
        goto fail;
    }
    if (recover(w, err, errlen)) goto fail;
    if (pthread_create(&w->sealer_thr, NULL, sealer_main, w)) {
        snprintf(err, errlen, "cannot start the sealer thread");
        goto fail;
    }
    if (pthread_create(&w->writer_thr, NULL, writer_main, w)) {
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
        for (sealed *s = w->shead; s; s = s->next) k++;
        snprintf(n, sizeof n, "%zu", k);
        log_msg(LOG_WARN, "segments left in the spool for the next start", "segments", n, LOG_END);
    }
    writer_free(w);
}

void lake_writer_stats_get(lake_writer *w, lake_writer_stats *st)
{
    st->spool_bytes = atomic_load(&w->spool_bytes);
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
