/*
 * retain.c - deleting expired hours of the quarantine, and the thread that does it.
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

static int on_key(const store_entry *e, void *ud)
{
    expired *x = ud;
    int64_t hour;
    if (lake_parse_rejected_key(e->key, &hour) || hour >= x->before) return 0;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        char **v = realloc(x->keys, cap * sizeof *v);
        if (!v) return x->oom = 1;
        x->keys = v;
        x->cap = cap;
    }
    if (!(x->keys[x->n] = strdup(e->key))) return x->oom = 1;
    x->n++;
    return 0;
}

/* On a directory lake, the hour's directory and its parents up to rejected/, if empty. */
static void remove_empty_dirs(store *s, const char *key)
{
    const char *root = s->ops->root(s);
    if (!root) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, key);
    size_t top = strlen(root) + 1 + strlen(LAKE_REJECTED_PREFIX) - 1; /* ".../rejected" */
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
            remove_empty_dirs(s, x.keys[i]);
    }
    for (size_t i = 0; i < x.n; i++) free(x.keys[i]);
    free(x.keys);
    return rc;
}

/* ---- the thread ---------------------------------------------------------- */

struct lake_expirer {
    store *s;
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
    int rc =
        lake_rejected_expire(x->s, evtime_now_ms(), x->retain_ms, &files, &hours, err, sizeof err);
    pthread_mutex_lock(&x->mu);
    x->st.runs++;
    x->st.files += files;
    x->st.hours += hours;
    if (rc) x->st.failures++;
    pthread_mutex_unlock(&x->mu);
    if (rc) log_msg(LOG_WARN, "cannot expire the quarantine", "error", err, LOG_END);
    if (files) {
        char f[24], h[24];
        snprintf(f, sizeof f, "%llu", (unsigned long long)files);
        snprintf(h, sizeof h, "%llu", (unsigned long long)hours);
        log_msg(LOG_INFO, "quarantine expired", "hours", h, "files", f, LOG_END);
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

lake_expirer *lake_expirer_start(store *s, int64_t retain_ms, char *err, size_t errlen)
{
    if (errlen) err[0] = 0;
    if (retain_ms <= 0) return NULL;
    lake_expirer *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->s = s;
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
        snprintf(err, errlen, "cannot start the quarantine's expiry thread");
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
        free(x);
        return NULL;
    }
    return x;
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
