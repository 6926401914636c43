/*
 * retain.c - deleting expired hours of the quarantine and expired files of
 * the stream log, and the thread that does either.
 *
 * The stream log's files (layout.h: stream/{sid}/{first seq}.jsonl) expire
 * whole: a file whose store time (mtime) is more than the retention ago. Its
 * mtime is when it was last written, at or after its newest event was
 * received (the writer appends at receipt; a directory lake moves the file
 * with its time, S3 stamps it when sealed, later), so a file never goes
 * before its newest event is older than the retention.
 */
#include "retain.h"
#include "evtime.h"
#include "layout.h"
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct expired {
    int64_t before; /* hours below this one have expired */
    char **keys;
    size_t n, cap;
    int oom;
} expired;

/* Adds a copy of key to x's keys; 1 (stop listing) when memory is out. */
static int keys_add(expired *x, const char *key)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        char **v = realloc(x->keys, cap * sizeof *v);
        if (!v) return x->oom = 1;
        x->keys = v;
        x->cap = cap;
    }
    if (!(x->keys[x->n] = strdup(key))) return x->oom = 1;
    x->n++;
    return 0;
}

static int on_key(const store_entry *e, void *ud)
{
    expired *x = ud;
    int64_t hour;
    if (lake_parse_rejected_key(e->key, &hour) || hour >= x->before) return 0;
    return keys_add(x, e->key);
}

/* On a directory lake, key's directory and its parents up to top (a prefix), if empty. */
static void remove_empty_dirs(store *s, const char *key, const char *top_prefix)
{
    const char *root = s->ops->root(s);
    if (!root) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, key);
    size_t top = strlen(root) + 1 + strlen(top_prefix) - 1; /* ".../rejected" */
    char *slash;
    while ((slash = strrchr(path, '/')) && (size_t)(slash - path) > top) {
        *slash = 0;
        if (rmdir(path)) break; /* not empty (or gone): its parents are not either */
    }
}

int lake_rejected_expire(store *s, int64_t now_ms, int64_t retain_ms, uint64_t *files,
                         uint64_t *hours, char *err, size_t errlen)
{
    expired x = {.before = (now_ms - retain_ms) / EVTIME_HOUR_MS};
    if (now_ms - retain_ms < EVTIME_HOUR_MS) return 0; /* nothing can have ended yet */
    char why[512];
    int rc = store_list(s, LAKE_REJECTED_PREFIX, on_key, &x, why, sizeof why);
    if (rc == STORE_ENOENT) rc = 0;
    if (x.oom || rc) {
        snprintf(err, errlen, "cannot list the quarantine: %s", x.oom ? "out of memory" : why);
        rc = -1;
    }
    int64_t last = -1;
    for (size_t i = 0; i < x.n && !rc; i++) {
        if (store_del(s, x.keys[i], why, sizeof why)) {
            snprintf(err, errlen, "cannot delete %s: %s", x.keys[i], why);
            rc = -1;
            break;
        }
        (*files)++;
        int64_t hour;
        lake_parse_rejected_key(x.keys[i], &hour);
        if (hour != last) (*hours)++; /* listed in key order: an hour's files are together */
        last = hour;
        if (i + 1 == x.n || strncmp(x.keys[i], x.keys[i + 1], strlen(LAKE_REJECTED_PREFIX) + 14))
            remove_empty_dirs(s, x.keys[i], LAKE_REJECTED_PREFIX);
    }
    for (size_t i = 0; i < x.n; i++) free(x.keys[i]);
    free(x.keys);
    return rc;
}

/* ---- the stream log ------------------------------------------------------- */

typedef struct stream_expired {
    int64_t before; /* files last written before this time (ms) have expired */
    expired keys;
} stream_expired;

static int on_stream_key(const store_entry *e, void *ud)
{
    stream_expired *x = ud;
    char sid[LAKE_SID_LEN + 1];
    uint64_t first;
    if (lake_parse_stream_key(e->key, sid, &first) || e->mtime_ms <= 0 || e->mtime_ms > x->before)
        return 0;
    return keys_add(&x->keys, e->key);
}

int lake_stream_expire(store *s, int64_t now_ms, int64_t retain_ms, uint64_t *files,
                       uint64_t *unused, char *err, size_t errlen)
{
    (void)unused;
    stream_expired x = {.before = now_ms - retain_ms};
    char why[512];
    int rc = store_list(s, LAKE_STREAM_PREFIX, on_stream_key, &x, why, sizeof why);
    if (rc == STORE_ENOENT) rc = 0;
    if (x.keys.oom || rc) {
        snprintf(err, errlen, "cannot list the stream log: %s", x.keys.oom ? "out of memory" : why);
        rc = -1;
    }
    for (size_t i = 0; i < x.keys.n && !rc; i++) {
        if (store_del(s, x.keys.keys[i], why, sizeof why)) {
            snprintf(err, errlen, "cannot delete %s: %s", x.keys.keys[i], why);
            rc = -1;
            break;
        }
        (*files)++;
        remove_empty_dirs(s, x.keys.keys[i], LAKE_STREAM_PREFIX);
    }
    for (size_t i = 0; i < x.keys.n; i++) free(x.keys.keys[i]);
    free(x.keys.keys);
    return rc;
}

/* ---- the thread ---------------------------------------------------------- */

typedef int (*expire_fn)(store *s, int64_t now_ms, int64_t retain_ms, uint64_t *files,
                         uint64_t *hours, char *err, size_t errlen);

struct lake_expirer {
    store *s;
    expire_fn expire;
    const char *done_msg, *fail_msg; /* its log lines: "quarantine expired", … */
    int64_t retain_ms, every_ms;
    pthread_t thr;
    pthread_mutex_t mu; /* stop and the counters */
    pthread_cond_t cv;
    int stop;
    lake_expirer_stats st;
};

static void expire_once(lake_expirer *x)
{
    uint64_t files = 0, hours = 0;
    char err[1024];
    int rc = x->expire(x->s, evtime_now_ms(), x->retain_ms, &files, &hours, err, sizeof err);
    pthread_mutex_lock(&x->mu);
    x->st.runs++;
    x->st.files += files;
    x->st.hours += hours;
    if (rc) x->st.failures++;
    pthread_mutex_unlock(&x->mu);
    if (rc) log_msg(LOG_WARN, x->fail_msg, "error", err, LOG_END);
    if (files) {
        char f[24], h[24];
        snprintf(f, sizeof f, "%llu", (unsigned long long)files);
        snprintf(h, sizeof h, "%llu", (unsigned long long)hours);
        if (x->expire == lake_stream_expire)
            log_msg(LOG_INFO, x->done_msg, "files", f, LOG_END);
        else
            log_msg(LOG_INFO, x->done_msg, "hours", h, "files", f, LOG_END);
    }
}

static void *expirer_main(void *arg)
{
    lake_expirer *x = arg;
    pthread_mutex_lock(&x->mu);
    while (!x->stop) {
        pthread_mutex_unlock(&x->mu);
        expire_once(x);
        pthread_mutex_lock(&x->mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(x->every_ms / 1000);
        ts.tv_nsec += (long)(x->every_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

static lake_expirer *expirer_start(store *s, expire_fn fn, const char *what, int64_t retain_ms,
                                   char *err, size_t errlen)
{
    if (errlen) err[0] = 0;
    if (retain_ms <= 0) return NULL;
    lake_expirer *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->s = s;
    x->expire = fn;
    x->done_msg = fn == lake_stream_expire ? "stream log expired" : "quarantine expired";
    x->fail_msg =
        fn == lake_stream_expire ? "cannot expire the stream log" : "cannot expire the quarantine";
    x->retain_ms = retain_ms;
    x->every_ms = retain_ms < 600000 ? retain_ms : 600000;
    if (x->every_ms < 1000) x->every_ms = 1000;
    pthread_mutex_init(&x->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&x->thr, NULL, expirer_main, x)) {
        snprintf(err, errlen, "cannot start the %s's expiry thread", what);
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
        free(x);
        return NULL;
    }
    return x;
}

lake_expirer *lake_expirer_start(store *s, int64_t retain_ms, char *err, size_t errlen)
{
    return expirer_start(s, lake_rejected_expire, "quarantine", retain_ms, err, errlen);
}

lake_expirer *lake_stream_expirer_start(store *s, int64_t retain_ms, char *err, size_t errlen)
{
    return expirer_start(s, lake_stream_expire, "stream log", retain_ms, err, errlen);
}

void lake_expirer_stop(lake_expirer *x)
{
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    x->stop = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->thr, NULL);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x);
}

void lake_expirer_stats_get(lake_expirer *x, lake_expirer_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    *st = x->st;
    pthread_mutex_unlock(&x->mu);
}
