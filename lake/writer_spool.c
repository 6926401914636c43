/*
 * writer_spool.c - the spool directory: its lock, damage found under the
 * server and its rescue, and recovery when the writer opens.
 *
 * The spool may change under the server (a segment deleted or replaced, the
 * directory removed or moved): the writer thread checks it before every
 * answer and, when it finds damage, writes what it acknowledged back from the
 * descriptors it still holds. At open, recovery cuts what a crash left torn,
 * hands every segment found to the sealer and rebuilds the dedup window.
 */
#include "writer_int.h"
#include "files.h"
#include "jscan.h"
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
#include <time.h>
#include <unistd.h>

/* ---- damage found under the server ------------------------------------- */

void writer__note_incident(lake_writer *w, const char *msg)
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
int writer__segment_copy_out(const lake_writer *w, const char *name, int fd, uint64_t size,
                             char *err, size_t errlen)
{
    char path[4200], tmp[4300];
    writer__spool_path(w, name, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.rescue", path);
    char why[4400];
    if (files_mkdirs(w->spool, why, sizeof why)) {
        snprintf(err, errlen, "spool: cannot make %s again: %s", w->spool, why);
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
    if (fdatasync(out) || rename(tmp, path)) {
        snprintf(err, errlen, "spool: cannot make %s durable: %s", path, strerror(errno));
        goto fail;
    }
    if (files_sync_dir(w->spool, why, sizeof why)) {
        snprintf(err, errlen, "spool: cannot make %s durable: %s", path, why);
        goto fail;
    }
    return out;
fail:
    close(out);
    unlink(tmp);
    return -1;
}

/* A segment's copy nfd (writer__segment_copy_out) takes the place of its descriptor *fd. */
void writer__adopt_copy(lake_writer *w, int nfd, int *fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    fstat(nfd, &st);
    close(*fd);
    *fd = nfd;
    *dev = st.st_dev;
    *ino = st.st_ino;
    atomic_fetch_add(&w->segments_rescued, 1);
}

/* ---- the spool directory (writer thread) ----------------------------------- */

/* Opens the spool directory and takes its lock. 0, or -1 with err set. */
int writer__spool_lock(lake_writer *w, int *dir_fd, int *lock_fd, char *err, size_t errlen)
{
    *dir_fd = *lock_fd = -1;
    int d = open(w->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        snprintf(err, errlen, "spool %s: %s", w->spool, strerror(errno));
        return -1;
    }
    /* held open read-only, so that the spool's filesystem can be remounted read-only */
    int fd = openat(d, LAKE_WRITER_SPOOL_LOCK, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    int l = openat(d, LAKE_WRITER_SPOOL_LOCK, O_RDONLY | O_CLOEXEC);
    if (l < 0) {
        snprintf(err, errlen, "spool %s: cannot create %s: %s", w->spool, LAKE_WRITER_SPOOL_LOCK,
                 strerror(errno));
        close(d);
        return -1;
    }
    /* lake_writer_spool_held takes a shared lock for an instant: a moment's conflict is not a
     * server */
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
    fd = openat(d, LAKE_WRITER_SPOOL_LOCK, O_WRONLY | O_TRUNC | O_CLOEXEC);
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
int writer__spool_moved(lake_writer *w)
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
int writer__segment_gone(lake_writer *w, const writer__segment *g)
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
void writer__segments_rescue(lake_writer *w)
{
    writer__segment *g = w->open;
    while (g) {
        writer__segment *next = g->next;
        if (writer__segment_gone(w, g)) {
            char err[512], msg[256];
            int nfd = writer__segment_copy_out(w, g->name, g->fd, g->size, err, sizeof err);
            if (nfd >= 0) {
                writer__adopt_copy(w, nfd, &g->fd, &g->dev, &g->ino);
                snprintf(msg, sizeof msg,
                         "spool segment %s was deleted or replaced while the server wrote it; its "
                         "%llu acknowledged events were written again from its open descriptor",
                         g->name, (unsigned long long)g->events);
                writer__note_incident(w, msg);
            } else {
                writer__note_incident(w, err);
                if (!g->grouped) writer__segment_close(w, g);
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
int writer__spool_check(lake_writer *w, char *err, size_t errlen)
{
    if (!writer__spool_moved(w)) return 0;
    int d, l;
    char why[4400];
    if (files_mkdirs(w->spool, why, sizeof why)) {
        snprintf(err, errlen, "spool %s was removed and cannot be made again: %s", w->spool, why);
        return -1;
    }
    if (writer__spool_lock(w, &d, &l, err, errlen)) return -1;
    close(w->spool_fd);
    close(w->lock_fd);
    w->spool_fd = d;
    w->lock_fd = l;
    atomic_fetch_add(&w->spool_recreated, 1);
    char msg[256];
    snprintf(msg, sizeof msg,
             "spool directory %s was removed or moved under the server; made again", w->spool);
    writer__note_incident(w, msg);
    writer__segments_rescue(w);
    snprintf(err, errlen,
             "spool: the directory %s was removed or moved under the server and has been made "
             "again; this request was not stored (retry it)",
             w->spool);
    return 1;
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
        if (kind == LAKE_KIND_EVENTS) writer__stream_collect(w, kept.p, kept.len);
    } else {
        if (good_end < data.len && (ftruncate(fd, (off_t)good_end) || fsync(fd))) {
            snprintf(err, errlen, "spool: cannot cut %s: %s", path, strerror(errno));
            rc = -1;
        }
        *size = good_end;
        if (kind == LAKE_KIND_EVENTS) add_ids(w, data.p, good_end);
        if (kind == LAKE_KIND_EVENTS) writer__stream_collect(w, data.p, good_end);
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
    writer__seallog_entry *e = NULL;
    size_t n = 0;
    if (!w->cfg.dedup_window || writer__seallog_read(w, &e, &n)) return;
    size_t from = writer__seallog_window_start(w, e, n);
    buf data = BUF_INIT;
    for (size_t i = from; i < n; i++) {
        data.len = 0;
        char why[512]; /* a file that cannot be read adds no ids */
        /* entries below n are set by writer__seallog_read; the analyzer loses track through realloc
         */
        // NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage)
        if (store_get(w->cfg.store, e[i].key, 0, 0, &data, why, sizeof why) == STORE_OK)
            add_ids(w, data.p, data.len);
    }
    buf_free(&data);
    writer__seallog_rewrite(w, e, from, n);
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

int writer__recover(lake_writer *w, char *err, size_t errlen)
{
    int fresh = writer__sid_load(w, err, errlen);
    if (fresh < 0 || writer__stream_recover_spool(w, fresh, err, errlen)) return -1;
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
        writer__sealed *s = calloc(1, sizeof *s);
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
        writer__registry_add(w, s->kind, s->hour, s->uuid);
        writer__sealer_push(w, s);
    }
    if (!rc) rc = writer__stream_recover_finish(w, err, errlen);
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
