/*
 * deliver.c - the delivery engine's life (deliver.h): start, the poller
 * (the lake's subscriptions, their leases), the notify from ingest, the stop
 * that gives the leases up, and the metrics.
 *
 * The poller lists the subscriptions every --subscription-poll. A record
 * newer than the one a subscription holds is applied (deliver__apply): its
 * settings become a new deliver__conf (the old one lives on while a job uses
 * it), and what changed decides the rest: another owner in the record, or a
 * state other than "active", drops what is in flight; a new replay or retry
 * request, a resume, or a lease taken restarts the subscription from its
 * record (s->reset, done by a worker once nothing is in flight). An active
 * subscription whose lease is free or expired is taken (deliver__edit_take);
 * one held is renewed at half term by a persist job (the workers write). A
 * subscription gone from the listing (deleted) is dropped and freed once no
 * job uses it.
 */
#include "deliver_int.h"
#include "evrand.h"
#include "evtime.h"
#include "log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void deliver__log(const char *msg, const char *id, const char *err)
{
    log_msg(LOG_WARN, msg, "subscription", id, "error", err, LOG_END);
}

void deliver__conf_put(deliver__conf *c)
{
    if (!c || --c->refs > 0) return;
    free(c->url), free(c->pattern), free(c->f_class), free(c->f_id), free(c->f_coll);
    free(c);
}

void deliver__batch_free(deliver__batch *b)
{
    if (!b) return;
    buf_free(&b->msg);
    buf_free(&b->excerpt);
    free(b->from), free(b->next);
    free(b);
}

void deliver__drop(deliver__sub *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->qn; i++) {
        if (s->q[i]->state == DELIVER__B_RUNNING)
            s->q[k++] = s->q[i]; /* its worker frees it when the attempt returns */
        else
            deliver__batch_free(s->q[i]);
    }
    s->qn = k;
    deliver__batch_free(s->ahead);
    s->ahead = NULL;
    s->gen++;
    s->pending_oldest = 0;
}

size_t deliver__lag_events(const deliver__sub *s)
{
    size_t n = s->ahead ? s->ahead->count : 0;
    for (size_t i = 0; i < s->qn; i++) n += s->q[i]->count;
    return n;
}

int64_t deliver__lag_oldest(const deliver__sub *s)
{
    return s->qn ? s->q[0]->oldest_ms : s->ahead ? s->ahead->oldest_ms : s->pending_oldest;
}

static void sub_free(deliver__sub *s)
{
    deliver__drop(s);
    for (size_t i = 0; i < s->qn; i++) deliver__batch_free(s->q[i]);
    deliver__conf_put(s->conf);
    lake_sub_free(&s->base);
    lake_cursor_free(&s->rd);
    free(s->done);
    free(s);
}

/* 1 if the record says this server holds its lease, still running. */
static int held(const deliver *d, const json_t *rec, int64_t now)
{
    const char *o = json_string_value(json_object_get(rec, "owner"));
    return o && !strcmp(o, d->owner) && deliver__rec_int(rec, "leaseUntil", 0) > now;
}

void deliver__apply(deliver *d, deliver__sub *s, lake_sub *rec)
{
    if (!rec->rec || (s->base.rec && rec->version <= s->base.version)) return;
    deliver__conf *c = NULL;
    char err[256];
    if (deliver__conf_of(rec->rec, &c, err, sizeof err) && s->owned)
        deliver__log("a subscription cannot be delivered", s->id, err);
    int was = s->conf && s->conf->active, is = c && c->active;
    lake_sub_free(&s->base);
    s->base = *rec, rec->rec = NULL;
    deliver__conf_put(s->conf);
    s->conf = c;
    const json_t *r = s->base.rec;
    int64_t now = evtime_now_ms();
    if (s->owned && !held(d, r, now)) { /* another server took it, or we gave it up */
        s->owned = 0;
        deliver__drop(s);
        s->reset = 1;
    }
    if (s->owned) s->lease_until = deliver__rec_int(r, "leaseUntil", 0);
    if (was && !is) deliver__drop(s), s->reset = 1;
    if (!was && is) s->reset = 1, s->disable = 0;
    uint64_t req = (uint64_t)deliver__rec_int(r, "retryRequested", 0);
    if (req > (uint64_t)deliver__rec_int(r, "retryDone", 0) && s->mode != DELIVER__RETRY)
        s->reset = 1;
    if (json_is_object(json_object_get(r, "replay")) && s->mode == DELIVER__MAIN) s->reset = 1;
}

/* The subscription id (added when new); NULL out of memory. */
static deliver__sub *sub_of(deliver *d, const char *id)
{
    for (size_t i = 0; i < d->nsub; i++)
        if (!strcmp(d->sub[i]->id, id)) return d->sub[i];
    if (d->nsub == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        deliver__sub **n = realloc(d->sub, cap * sizeof *n);
        if (!n) return NULL;
        d->sub = n, d->cap = cap;
    }
    deliver__sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->since_ms = -1;
    s->reset = 1;
    d->sub[d->nsub++] = s;
    return s;
}

/* Frees the subscriptions the last listing did not have and no job uses (under d->mu). */
static void forget_unseen(deliver *d)
{
    size_t k = 0;
    for (size_t i = 0; i < d->nsub; i++) {
        deliver__sub *s = d->sub[i];
        if (!s->seen) s->owned = 0, deliver__drop(s), s->dirty = 0;
        if (!s->seen && !s->reading && !s->running && !s->persisting)
            sub_free(s);
        else
            d->sub[k++] = s;
    }
    d->nsub = k;
    d->next = 0;
}

/* 1 if s's lease may be taken now: active, and free, expired or this server's. */
static int takeable(const deliver *d, const deliver__sub *s, int64_t now)
{
    const json_t *r = s->base.rec;
    const char *o = json_string_value(json_object_get(r, "owner"));
    return !s->owned && s->conf && s->conf->active &&
           (!o || !*o || !strcmp(o, d->owner) || deliver__rec_int(r, "leaseUntil", 0) <= now);
}

/* Takes the lease of subscription id. */
static void take(deliver *d, const char *id)
{
    lake_sub out = {0};
    char err[512];
    int rc = lake_subs_update(d->subs, id, NULL, deliver__edit_take, d, &out, err, sizeof err);
    if (rc && rc != DELIVER__ELOST && rc != LAKE_SUBS_ENOENT)
        deliver__log("cannot take a subscription's lease", id, err);
    pthread_mutex_lock(&d->mu);
    deliver__sub *s = rc ? NULL : sub_of(d, id);
    if (s) {
        deliver__apply(d, s, &out);
        int64_t now = evtime_now_ms();
        if (held(d, s->base.rec, now)) {
            s->owned = 1, s->reset = 1;
            s->lease_until = deliver__rec_int(s->base.rec, "leaseUntil", 0);
            s->renew_at = now + d->cfg.lease_ms / 2;
            log_msg(LOG_INFO, "delivering a subscription", "subscription", id, LOG_END);
        }
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    lake_sub_free(&out);
}

/* Applies a listing (v moved out of); the ids whose lease to take into *ids (n of them). */
static void apply_listing(deliver *d, lake_sub *v, size_t n, char (**ids)[LAKE_SUB_ID_MAX + 1],
                          size_t *nids)
{
    int64_t now = evtime_now_ms();
    *nids = 0;
    *ids = calloc(n ? n : 1, sizeof **ids);
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->nsub; i++) d->sub[i]->seen = 0;
    for (size_t i = 0; i < n; i++) {
        deliver__sub *s = sub_of(d, v[i].id);
        if (!s) continue;
        s->seen = 1;
        deliver__apply(d, s, &v[i]);
        if (s->owned && now >= s->renew_at) s->dirty = 1; /* a persist renews the lease */
        if (*ids && takeable(d, s, now)) memcpy((*ids)[(*nids)++], s->id, sizeof **ids);
    }
    forget_unseen(d);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void poll_once(deliver *d)
{
    lake_sub *v = NULL;
    size_t n = 0, nids = 0;
    char err[512];
    if (lake_subs_list(d->subs, &v, &n, err, sizeof err)) {
        log_msg(LOG_WARN, "cannot list the subscriptions", "error", err, LOG_END);
        return;
    }
    char(*ids)[LAKE_SUB_ID_MAX + 1] = NULL;
    apply_listing(d, v, n, &ids, &nids);
    lake_subs_free(v, n);
    for (size_t i = 0; i < nids; i++) take(d, ids[i]);
    free(ids);
}

static void *poller(void *arg)
{
    deliver *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        pthread_mutex_unlock(&d->mu);
        poll_once(d);
        pthread_mutex_lock(&d->mu);
        int64_t wake = evtime_now_ms() + d->cfg.poll_ms;
        struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (long)(wake % 1000) * 1000000};
        if (!d->stopping) pthread_cond_timedwait(&d->poll_cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* host:pid:xxxx, this server's name in the leases it holds. */
static void owner_name(char *out, size_t n)
{
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(out, n, "%s:%ld:%04x", host, (long)getpid(), (unsigned)(evrand_u64() & 0xffff));
}

int deliver_start(const deliver_config *c, deliver **out, char *err, size_t errlen)
{
    *out = NULL;
    deliver *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    d->cfg = *c;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before the workers' threads: it is not thread-safe */
    owner_name(d->owner, sizeof d->owner);
    atomic_store(&d->wake_min, UINT64_MAX);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_cond_init(&d->poll_cv, NULL);
    if (!lake_subs_open(c->store, &d->subs, err, errlen))
        lake_subs_unsynced(d->subs); /* a cursor write per batch: see lake_subs_unsynced */
    if (!d->subs ||
        !(d->workers = calloc(c->connections ? c->connections : 1, sizeof *d->workers))) {
        deliver_stop(d);
        return -1;
    }
    for (unsigned i = 0; i < c->connections; i++)
        if (!pthread_create(&d->workers[i], NULL, deliver__worker, d)) d->started++;
    d->poller_started = !pthread_create(&d->poller, NULL, poller, d);
    if (d->started < c->connections || !d->poller_started) {
        snprintf(err, errlen, "cannot start the delivery threads");
        deliver_stop(d);
        return -1;
    }
    *out = d;
    return 0;
}

void deliver_notify(deliver *d, size_t events)
{
    if (!d || !events) return;
    /* the lock only when a worker waits for this many: ingest's threads call this for every
     * request answered. A worker stores wake_min, then reads committed before it sleeps
     * (deliver__worker), so of this add and that store one sees the other */
    uint64_t now = atomic_fetch_add(&d->committed, events) + events;
    if (now < atomic_load(&d->wake_min)) return;
    pthread_mutex_lock(&d->mu); /* so that a worker about to sleep cannot miss it */
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void deliver_stop(deliver *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_cond_broadcast(&d->poll_cv);
    pthread_mutex_unlock(&d->mu);
    for (unsigned i = 0; i < d->started; i++) pthread_join(d->workers[i], NULL);
    if (d->poller_started) pthread_join(d->poller, NULL);
    if (d->subs) deliver__give_up(d);
    for (size_t i = 0; i < d->nsub; i++) sub_free(d->sub[i]);
    free(d->sub);
    free(d->workers);
    lake_subs_close(d->subs);
    pthread_cond_destroy(&d->poll_cv);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* One family of per-subscription samples: v(s) of each subscription this server delivers. */
static void family(deliver *d, buf *b, const char *name, const char *type, const char *help,
                   double (*v)(const deliver__sub *s, int64_t now), int64_t now)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < d->nsub; i++)
        if (d->sub[i]->owned)
            buf_printf(b, "%s{subscription=\"%s\"} %.15g\n", name, d->sub[i]->id,
                       v(d->sub[i], now));
}

static double m_delivered(const deliver__sub *s, int64_t now)
{
    (void)now;
    return (double)s->delivered;
}
static double m_failed(const deliver__sub *s, int64_t now)
{
    (void)now;
    return (double)s->failed;
}
static double m_dead(const deliver__sub *s, int64_t now)
{
    (void)now;
    return (double)s->dead;
}
static double m_lag_events(const deliver__sub *s, int64_t now)
{
    (void)now;
    return (double)deliver__lag_events(s);
}
static double m_lag_seconds(const deliver__sub *s, int64_t now)
{
    int64_t oldest = deliver__lag_oldest(s);
    return oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0;
}

void deliver_metrics(deliver *d, buf *b)
{
    if (!d) return;
    int64_t now = evtime_now_ms();
    pthread_mutex_lock(&d->mu);
    family(d, b, "events_subscription_delivered_total", "counter",
           "Events delivered (2xx) per subscription this server delivers.", m_delivered, now);
    family(d, b, "events_subscription_failed_total", "counter",
           "Delivery attempts that failed (no 2xx), per subscription.", m_failed, now);
    family(d, b, "events_subscription_dead_lettered_total", "counter",
           "Events put in the subscription's dead letters after its last attempt.", m_dead, now);
    family(d, b, "events_subscription_lag_events", "gauge",
           "Events read for the subscription and not delivered yet.", m_lag_events, now);
    family(d, b, "events_subscription_lag_seconds", "gauge",
           "Age of the subscription's oldest event not delivered yet.", m_lag_seconds, now);
    pthread_mutex_unlock(&d->mu);
    buf_printf(b,
               "# HELP events_deliver_connections Delivery requests in progress "
               "(--deliver-connections at most).\n# TYPE events_deliver_connections gauge\n"
               "events_deliver_connections %d\n",
               atomic_load(&d->busy));
}
