/*
 * deliver_record.c - the delivery engine and a subscription's record
 * (lake/subs.h): the settings it reads from it, and the edits it writes
 * with lake_subs_update (the lease, the cursor, the statistics).
 *
 * The record was checked by the API when it was written (server_subs.c);
 * this reads it defensively all the same, with the design's defaults for a
 * field that is absent, because a record is also what another version of the
 * server wrote. An edit touches the engine's own fields only, so a PATCH
 * that raced with it is kept (lake_subs_update applies the edit again to the
 * record that won).
 */
#include "deliver_int.h"
#include "codec.h"
#include "evtime.h"
#include "pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t deliver__rec_int(const json_t *rec, const char *name, int64_t dflt)
{
    json_t *v = json_object_get(rec, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static const char *rec_str(const json_t *rec, const char *name)
{
    return json_string_value(json_object_get(rec, name));
}

const char *deliver__rec_cursor(const json_t *rec, int mode)
{
    const char *c = NULL;
    if (mode == DELIVER__REPLAY)
        c = rec_str(json_object_get(rec, "replay"), "cursor");
    else
        c = rec_str(rec, "cursor");
    return c ? c : "";
}

/* A bounded integer setting: the record's, or dflt; -1 when out of [lo, hi]. */
static int rec_bounded(const json_t *rec, const char *name, int64_t dflt, int64_t lo, int64_t hi,
                       int64_t *out)
{
    *out = deliver__rec_int(rec, name, dflt);
    return *out < lo || *out > hi ? -1 : 0;
}

static int conf_strs(const json_t *rec, deliver__conf *c)
{
    json_t *f = json_object_get(rec, "filters");
    const char *cl = rec_str(f, "do.class"), *id = rec_str(f, "do.id"),
               *co = rec_str(f, "collection");
    c->url = strdup(rec_str(rec, "url"));
    c->pattern = strdup(rec_str(rec, "pattern"));
    c->f_class = cl ? strdup(cl) : NULL;
    c->f_id = id ? strdup(id) : NULL;
    c->f_coll = co ? strdup(co) : NULL;
    return !c->url || !c->pattern || (cl && !c->f_class) || (id && !c->f_id) || (co && !c->f_coll)
               ? -1
               : 0;
}

/* The key of a "whsec_<base64>" secret (Standard Webhooks): 0, or -1. */
static int conf_key(const char *secret, deliver__conf *c)
{
    if (!secret || strncmp(secret, "whsec_", 6)) return -1;
    buf k = BUF_INIT;
    int bad = base64_decode(&k, secret + 6, strlen(secret + 6)) || !k.len || k.len > sizeof c->key;
    if (!bad) memcpy(c->key, k.p, k.len), c->keylen = k.len;
    buf_free(&k);
    return bad ? -1 : 0;
}

static int conf_numbers(const json_t *rec, deliver__conf *c, char *err, size_t errlen)
{
    int64_t batch, wait, timeout, attempts, conc;
    const char *bad = rec_bounded(rec, "batchSize", 100, 1, 10000, &batch)          ? "batchSize"
                      : rec_bounded(rec, "maxWaitMs", 1000, 0, 60000, &wait)        ? "maxWaitMs"
                      : rec_bounded(rec, "timeoutMs", 10000, 100, 120000, &timeout) ? "timeoutMs"
                      : rec_bounded(rec, "maxAttempts", 8, 1, 100, &attempts)       ? "maxAttempts"
                      : rec_bounded(rec, "concurrency", 1, 1, DELIVER__WINDOW, &conc)
                          ? "concurrency"
                          : NULL;
    if (bad) {
        snprintf(err, errlen, "the record's %s is out of its range", bad);
        return -1;
    }
    c->batch = (size_t)batch, c->max_wait_ms = wait, c->timeout_ms = timeout;
    c->max_attempts = (unsigned)attempts, c->concurrency = (unsigned)conc;
    return 0;
}

int deliver__conf_of(const json_t *rec, deliver__conf **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *url = rec_str(rec, "url"), *pat = rec_str(rec, "pattern"),
               *st = rec_str(rec, "state");
    char perr[256];
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        snprintf(err, errlen, "the record's url is not an http(s) URL");
        return -1;
    }
    if (!pat || pattern_check(pat, perr, sizeof perr)) {
        snprintf(err, errlen, "the record's pattern: %s", pat ? perr : "absent");
        return -1;
    }
    deliver__conf *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->refs = 1;
    c->active = st && !strcmp(st, "active");
    int rc = conf_numbers(rec, c, err, errlen);
    if (!rc && (rc = conf_key(rec_str(rec, "secret"), c)))
        snprintf(err, errlen, "the record's secret is not whsec_<base64>");
    if (!rc && (rc = conf_strs(rec, c))) snprintf(err, errlen, "out of memory");
    if (rc) {
        deliver__conf_put(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* 1 if the record's lease is held by someone else than owner and still runs. */
static int leased_by_other(const json_t *rec, const char *owner, int64_t now)
{
    const char *o = rec_str(rec, "owner");
    return o && *o && strcmp(o, owner) && deliver__rec_int(rec, "leaseUntil", 0) > now;
}

int deliver__edit_take(json_t *rec, void *ud, char *err, size_t errlen)
{
    deliver *d = ud;
    int64_t now = evtime_now_ms();
    const char *st = rec_str(rec, "state");
    if (leased_by_other(rec, d->owner, now) || !st || strcmp(st, "active")) {
        snprintf(err, errlen, "the lease is another server's, or the subscription is not active");
        return DELIVER__ELOST;
    }
    json_object_set_new(rec, "owner", json_string(d->owner));
    json_object_set_new(rec, "leaseUntil", json_integer(now + d->cfg.lease_ms));
    return 0;
}

static void add_int(json_t *rec, const char *name, uint64_t delta)
{
    if (delta)
        json_object_set_new(rec, name,
                            json_integer(deliver__rec_int(rec, name, 0) + (json_int_t)delta));
}

/* The cursor of p's mode and the ends of replay and retry. */
static void persist_progress(json_t *rec, const deliver__persist *p)
{
    json_t *rp = json_object_get(rec, "replay");
    if (p->done && p->mode == DELIVER__MAIN)
        json_object_set_new(rec, "cursor", json_string(p->done));
    else if (p->done && p->mode == DELIVER__REPLAY && json_is_object(rp))
        json_object_set_new(rp, "cursor", json_string(p->done));
    if (p->replay_end) json_object_set_new(rec, "replay", json_null());
    if (p->retry_set) {
        json_object_set_new(rec, "retryDone", json_integer((json_int_t)p->retry_set));
        json_object_set_new(rec, "retryName", json_null());
    }
    if (p->disable) {
        json_object_set_new(rec, "state", json_string("disabled"));
        json_object_set_new(rec, "reason", json_string("receiver answered 410 Gone"));
    }
}

int deliver__edit_persist(json_t *rec, void *ud, char *err, size_t errlen)
{
    const deliver__persist *p = ud;
    const char *o = rec_str(rec, "owner");
    if (!o || strcmp(o, p->owner)) {
        snprintf(err, errlen, "the lease is another server's now");
        return DELIVER__ELOST;
    }
    persist_progress(rec, p);
    add_int(rec, "delivered", p->d_delivered);
    add_int(rec, "deadLettered", p->d_dead);
    add_int(rec, "failed", p->d_failed);
    json_object_set_new(rec, "lagEvents", json_integer(p->lag_events));
    json_object_set_new(rec, "lagSeconds", json_real(p->lag_seconds));
    if (p->last_error) {
        json_object_set_new(rec, "lastError", json_string(p->last_error));
        json_object_set_new(rec, "lastErrorAt", json_integer(p->last_error_at));
    }
    json_object_set_new(rec, "leaseUntil", json_integer(p->lease_until));
    return 0;
}
