/*
 * deliver_work.c - the workers of the delivery engine (deliver.h): which job
 * next, and what a job does to its subscription's state.
 *
 * A worker takes d->mu, scans the subscriptions this server holds (from a
 * rotating start, so that a busy one does not starve the others) for the
 * first job it may do: a write to persist, a batch whose backoff has run
 * out, or the next batch to read; then it lets the mutex go for the job's
 * slow part (the read, the POST, the store) and takes it again to record the
 * outcome, and picks the next job itself; it wakes one sleeping worker only
 * when there is a job besides its own (more_work), so that a change of state
 * costs no futile wakeups. With nothing to do it sleeps until the earliest time something
 * becomes due, or until deliver_notify says ingest has committed as many
 * events as a sleeping subscription waits for (d->wake_min).
 *
 * While s->reading is set, the worker that set it is the only one to touch
 * s->rd, s->mode, s->since_ms and the retry fields (do_reset, the only other
 * writer, waits for reading to be 0), so the read runs without the mutex. A
 * batch in an attempt (DELIVER__B_RUNNING) belongs to its worker: when the
 * subscription's generation moves on meanwhile (paused, lease lost, 410),
 * the worker frees it when the attempt returns.
 */
#include "deliver_int.h"
#include "evtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    int kind;
    deliver__sub *s;
    deliver__batch *b;
    deliver__conf *conf; /* a reference, dropped after the job */
    uint64_t gen;
    uint64_t committed; /* DISPATCH: the events committed before the read */
    deliver__persist p; /* PERSIST: what to write */
    lake_sub base;      /* PERSIST: the record it edits (a reference) */
} job;

static void min_wake(int64_t *wake, int64_t t)
{
    if (t < *wake) *wake = t;
}

/* Starts s again from its record: mode, position (nothing in flight, nothing to persist). */
static void do_reset(deliver__sub *s)
{
    const json_t *rec = s->base.rec;
    deliver__drop(s);
    lake_cursor_free(&s->rd);
    uint64_t req = (uint64_t)deliver__rec_int(rec, "retryRequested", 0);
    json_t *rp = json_object_get(rec, "replay");
    const char *start = json_string_value(json_object_get(rec, "start"));
    s->since_ms = start ? -1 : deliver__rec_int(rec, "start", -1);
    if (req > (uint64_t)deliver__rec_int(rec, "retryDone", 0)) {
        const char *name = json_string_value(json_object_get(rec, "retryName"));
        s->mode = DELIVER__RETRY, s->retry_req = req, s->retry_after[0] = 0;
        snprintf(s->retry_name, sizeof s->retry_name, "%s", name ? name : "");
    } else if (json_is_object(rp)) {
        s->mode = DELIVER__REPLAY;
        s->since_ms = deliver__rec_int(rp, "from", 0);
        s->replay_to = deliver__rec_int(rp, "to", 0);
    } else {
        s->mode = DELIVER__MAIN;
    }
    const char *cur = deliver__rec_cursor(rec, s->mode);
    char err[256];
    if (*cur && lake_cursor_parse(cur, strlen(cur), &s->rd, err, sizeof err))
        deliver__log("a subscription's cursor is malformed: delivering from its start", s->id, err);
    s->reset = s->replay_end = 0;
    s->idle_until = 0, s->pending_oldest = 0;
}

/* A batch of s due for an attempt (NULL: none; wake: when the next one is). */
static deliver__batch *due_batch(const deliver__sub *s, int64_t now, int64_t *wake)
{
    for (size_t i = 0; i < s->qn; i++) {
        deliver__batch *b = s->q[i];
        if (b->state != DELIVER__B_WAITING) continue;
        if (b->due_ms <= now) return b;
        min_wake(wake, b->due_ms);
    }
    return NULL;
}

/* 1 if s has `concurrency` batches not yet recorded. */
static int window_full(const deliver__sub *s)
{
    return s->qn + s->unrecorded + s->recording >= s->conf->concurrency;
}

/* 1 if s may read its next batch now (after do_reset if s->reset). */
static int may_dispatch(const deliver__sub *s, int64_t now, uint64_t committed, int64_t *wake,
                        uint64_t *wake_min)
{
    if (!s->conf || !s->conf->active || s->disable || s->reading) return 0;
    if (s->reset) return !(s->running || s->dirty || s->persisting); /* then from the start */
    /* at most `concurrency` batches not yet recorded: in flight, or done but their cursor not
     * written, so that a crash repeats no more than that; with the window full, the next
     * batch may be read ahead (not sent), so that its read overlaps the attempt and the
     * cursor write before it */
    if (s->ahead || (window_full(s) && s->mode != DELIVER__MAIN)) return 0;
    if (now < s->idle_until && committed < s->wake_at) {
        min_wake(wake, s->idle_until);
        if (s->wake_at < *wake_min) *wake_min = s->wake_at;
        return 0;
    }
    return 1;
}

/* 1 if this server delivers s now. */
static int delivering(const deliver__sub *s, int64_t now)
{
    return s->owned && s->lease_until > now && s->conf && s->conf->active && !s->disable;
}

/* The job a worker may do for s now (DELIVER__J_NONE: none; wake and wake_min: when to look
 * again), and for an attempt its batch (*b: due again, or the one read ahead). Nothing of s
 * changes: pick_sub takes the job, more_work only asks. */
static int job_of(const deliver__sub *s, int64_t now, uint64_t committed, int64_t *wake,
                  uint64_t *wake_min, deliver__batch **b)
{
    if (s->dirty && !s->persisting) {
        if (now >= s->persist_after) return DELIVER__J_PERSIST;
        min_wake(wake, s->persist_after);
    }
    if (!delivering(s, now)) return DELIVER__J_NONE;
    if (!s->reset && (*b = due_batch(s, now, wake))) return DELIVER__J_ATTEMPT;
    if (!s->reset && s->ahead && !window_full(s)) return *b = s->ahead, DELIVER__J_ATTEMPT;
    return may_dispatch(s, now, committed, wake, wake_min) ? DELIVER__J_DISPATCH : DELIVER__J_NONE;
}

/* The snapshot of what s has to write, taken into j (s->persisting set). */
static void take_persist(deliver *d, deliver__sub *s, int64_t now, job *j)
{
    deliver__persist *p = &j->p;
    long long lag = (long long)deliver__lag_events(s);
    int64_t oldest = deliver__lag_oldest(s);
    *p = (deliver__persist){.owner = d->owner,
                            .lease_until = d->stopping ? 0 : now + d->cfg.lease_ms,
                            .mode = s->mode,
                            .done = s->done,
                            .replay_end = s->replay_end,
                            .disable = s->disable,
                            .retry_set = s->retry_set,
                            .d_delivered = s->d_delivered,
                            .d_dead = s->d_dead,
                            .d_failed = s->d_failed,
                            .lag_events = lag,
                            .lag_seconds = oldest > 0 && now > oldest ? (now - oldest) / 1000.0 : 0,
                            .last_error = s->last_error[0] ? strdup(s->last_error) : NULL,
                            .last_error_at = s->last_error_at};
    s->done = NULL, s->replay_end = 0, s->retry_set = 0;
    s->d_delivered = s->d_dead = s->d_failed = 0;
    s->last_error[0] = 0;
    s->dirty = 0, s->persisting = 1;
    s->recording = s->unrecorded, s->unrecorded = 0;
    j->base = s->base;
    json_incref(j->base.rec);
    j->kind = DELIVER__J_PERSIST;
}

static int pick_sub(deliver *d, deliver__sub *s, int64_t now, uint64_t committed, job *j,
                    int64_t *wake, uint64_t *wake_min)
{
    deliver__batch *b = NULL;
    switch (job_of(s, now, committed, wake, wake_min, &b)) {
    case DELIVER__J_PERSIST: take_persist(d, s, now, j); return 1;
    case DELIVER__J_ATTEMPT:
        if (b == s->ahead) s->ahead = NULL, s->q[s->qn++] = b; /* the batch read ahead: its turn */
        b->state = DELIVER__B_RUNNING;
        s->running++;
        j->kind = DELIVER__J_ATTEMPT, j->b = b;
        return 1;
    case DELIVER__J_DISPATCH:
        if (s->reset) do_reset(s);
        s->reading = 1;
        j->kind = DELIVER__J_DISPATCH;
        return 1;
    default: return 0;
    }
}

/* 1 if a worker has something to do now (under d->mu). */
static int more_work(const deliver *d)
{
    int64_t now = evtime_now_ms();
    uint64_t committed = atomic_load(&d->committed);
    int64_t wake = INT64_MAX;
    uint64_t wake_min = UINT64_MAX;
    deliver__batch *b;
    for (size_t i = 0; i < d->nsub; i++)
        if (job_of(d->sub[i], now, committed, &wake, &wake_min, &b) != DELIVER__J_NONE) return 1;
    return 0;
}

/* The next job (under d->mu): 1 and j, or 0 and the time to wake at. */
static int pick(deliver *d, job *j, int64_t *wake)
{
    int64_t now = evtime_now_ms();
    uint64_t committed = atomic_load(&d->committed), wake_min = UINT64_MAX;
    *wake = now + d->cfg.poll_ms;
    for (size_t k = 0; k < d->nsub; k++) {
        size_t i = (d->next + k) % d->nsub;
        deliver__sub *s = d->sub[i];
        *j = (job){.s = s, .gen = s->gen, .committed = committed};
        if (pick_sub(d, s, now, committed, j, wake, &wake_min)) {
            d->next = i + 1;
            if (s->conf) s->conf->refs++;
            j->conf = s->conf;
            return 1;
        }
    }
    atomic_store(&d->wake_min, wake_min);
    return 0;
}

/* Pops the done prefix of s's batches: the cursor to persist moves over them. */
static void advance(deliver__sub *s)
{
    size_t k = 0;
    while (k < s->qn && s->q[k]->state == DELIVER__B_DONE) {
        deliver__batch *b = s->q[k++];
        if (b->mode != DELIVER__RETRY) {
            free(s->done);
            s->done = b->next, b->next = NULL;
            s->unrecorded++;
        }
        deliver__batch_free(b);
        s->dirty = 1;
    }
    memmove(s->q, s->q + k, (s->qn - k) * sizeof *s->q);
    s->qn -= k;
}

/* Removes b from s's window, if it is there. */
static void unlink_batch(deliver__sub *s, deliver__batch *b)
{
    for (size_t i = 0; i < s->qn; i++)
        if (s->q[i] == b) {
            memmove(s->q + i, s->q + i + 1, (s->qn - i - 1) * sizeof *s->q);
            s->qn--;
            return;
        }
}

/* Records a failed attempt of b: waits for its next one, or is a dead letter (dead). */
static void failed(deliver *d, deliver__sub *s, deliver__batch *b, int dead, int64_t retry_ms,
                   int64_t now)
{
    s->failed++, s->d_failed++;
    snprintf(s->last_error, sizeof s->last_error, "%s", b->error);
    s->last_error_at = now;
    s->dirty = 1;
    if (dead) {
        b->state = DELIVER__B_DONE;
        if (b->mode != DELIVER__RETRY) s->dead += b->count, s->d_dead += b->count;
        return;
    }
    b->state = DELIVER__B_WAITING;
    b->due_ms = now + (retry_ms >= 0 ? retry_ms : deliver__backoff(d, b->attempts));
}

/* A dead letter of b: 0 stored, -1 not (the batch is tried again later). */
static int put_dead(deliver *d, const deliver__sub *s, const deliver__batch *b, int64_t now)
{
    buf doc = BUF_INIT;
    char name[LAKE_KEY_MAX], err[256] = "out of memory";
    int rc = deliver__dead_doc(b, s->id, now, &doc)
                 ? -1
                 : lake_subs_dead_put(d->subs, s->id, now, doc.p, doc.len, name, err, sizeof err);
    buf_free(&doc);
    if (rc) deliver__log("cannot store a dead letter", s->id, err);
    return rc ? -1 : 0;
}

/* One attempt of b, then its outcome recorded (d->mu not held; returns with it not held). */
static void run_attempt(deliver *d, deliver__conn *c, job *j)
{
    deliver__sub *s = j->s;
    deliver__batch *b = j->b;
    int64_t retry_ms = -1;
    int out = deliver__attempt(c, j->conf, b, &retry_ms);
    int64_t now = evtime_now_ms();
    int cut = out == DELIVER__FAILED && atomic_load(&d->stopping); /* not the receiver's doing */
    b->attempts += !cut;
    int dead = !cut && out == DELIVER__FAILED && b->attempts >= j->conf->max_attempts;
    if (dead && b->mode != DELIVER__RETRY && put_dead(d, s, b, now)) dead = 0;
    char err[256];
    if (out == DELIVER__OK && b->mode == DELIVER__RETRY &&
        lake_subs_dead_del(d->subs, s->id, b->dead, err, sizeof err))
        deliver__log("cannot delete a dead letter delivered again", s->id, err);
    pthread_mutex_lock(&d->mu);
    s->running--;
    if (b->gen != s->gen || cut) {
        unlink_batch(s, b); /* dropped meanwhile, or cut by the stop: not an outcome */
        deliver__batch_free(b);
    } else if (out == DELIVER__OK) {
        b->state = DELIVER__B_DONE;
        s->delivered += b->count, s->d_delivered += b->count;
    } else if (out == DELIVER__GONE) {
        s->disable = 1, s->dirty = 1;
        snprintf(s->last_error, sizeof s->last_error, "receiver answered 410 Gone");
        s->last_error_at = now;
        unlink_batch(s, b);
        deliver__batch_free(b);
        deliver__drop(s);
    } else {
        failed(d, s, b, dead, retry_ms, now);
    }
    advance(s);
    /* no signal: this worker picks the next job itself, and signals when there are two */
    pthread_mutex_unlock(&d->mu);
}

/* An empty read (or one held for maxWait): when to look again, and what to persist. */
static void after_empty(deliver *d, deliver__sub *s, deliver__read *r, uint64_t committed)
{
    int64_t now = r->now_ms;
    if (r->wait) {
        s->idle_until = r->oldest_ms + r->conf->max_wait_ms;
        s->wake_at = committed + (r->conf->batch - r->res.count);
        s->pending_oldest = r->oldest_ms;
        return;
    }
    s->idle_until = now + d->cfg.poll_ms, s->wake_at = committed + 1, s->pending_oldest = 0;
    lake_cursor_free(&s->rd);
    s->rd = r->res.next, r->res.next = (lake_cursor){0};
    if (s->qn) return;
    if (r->ended) s->replay_end = 1, s->dirty = 1;
    buf t = BUF_INIT; /* events passed over by the filter: the cursor moves past them too */
    if (!lake_cursor_format(&s->rd, &t) && buf_cstr(&t) &&
        strcmp(t.p, deliver__rec_cursor(s->base.rec, s->mode)) &&
        (!s->done || strcmp(t.p, s->done))) {
        free(s->done);
        s->done = strdup(t.p);
        s->dirty = 1;
    }
    buf_free(&t);
}

/* A retry's read: the next dead letter, or the retry's end. */
static void after_retry(deliver *d, deliver__sub *s, deliver__batch *b, const char *key, int rc)
{
    if (key[0]) snprintf(s->retry_after, sizeof s->retry_after, "%s", key);
    if (b || (rc && key[0])) return;
    if (rc) { /* the listing failed: again later */
        s->idle_until = evtime_now_ms() + d->cfg.poll_ms, s->wake_at = UINT64_MAX;
        return;
    }
    if (s->qn) { /* letters in flight: the end once they are done */
        s->idle_until = evtime_now_ms() + 100, s->wake_at = UINT64_MAX;
        return;
    }
    s->retry_set = s->retry_req, s->dirty = 1, s->reset = 1;
}

/* Reads s's next batch; a batch is then attempted at once by this worker, or, read ahead
 * while the window is full, kept as s->ahead. */
static void run_dispatch(deliver *d, deliver__conn *c, job *j)
{
    deliver__sub *s = j->s;
    deliver__batch *b = NULL;
    char err[512] = "", key[LAKE_KEY_MAX] = "";
    deliver__read r = {.conf = j->conf,
                       .id = s->id,
                       .mode = s->mode,
                       .after = &s->rd,
                       .since_ms = s->since_ms,
                       .replay_to = s->replay_to,
                       .now_ms = evtime_now_ms()};
    int rc = s->mode == DELIVER__RETRY
                 ? deliver__retry_batch(d, s->id, s->retry_after, s->retry_name, key, &b, err,
                                        sizeof err)
                 : deliver__read_batch(d, &r, &b, err, sizeof err);
    if (rc) deliver__log("cannot read a subscription's next batch", s->id, err);
    pthread_mutex_lock(&d->mu);
    s->reading = 0;
    if (s->gen != j->gen) { /* dropped while reading: do_reset starts it again */
        deliver__batch_free(b);
        b = NULL;
    } else if (s->mode == DELIVER__RETRY) {
        after_retry(d, s, b, key, rc);
    } else if (rc) {
        s->idle_until = r.now_ms + d->cfg.poll_ms, s->wake_at = UINT64_MAX;
    } else if (!b) {
        after_empty(d, s, &r, j->committed);
    } else {
        lake_cursor_free(&s->rd);
        s->rd = r.res.next, r.res.next = (lake_cursor){0};
        s->pending_oldest = 0;
    }
    if (b && window_full(s)) { /* read ahead: attempted when the window has room */
        b->gen = s->gen, b->state = DELIVER__B_WAITING;
        s->ahead = b, b = NULL;
    } else if (b) {
        b->gen = s->gen, b->state = DELIVER__B_RUNNING;
        s->q[s->qn++] = b;
        s->running++;
    }
    if (b && more_work(d)) /* this worker goes on with b: another reads ahead meanwhile */
        pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    lake_stream_res_free(&r.res);
    if (b) {
        j->b = b;
        run_attempt(d, c, j);
    }
}

/* Writes j's snapshot of s into its record; what failed to be written is kept for later. */
static void run_persist(deliver *d, job *j)
{
    deliver__sub *s = j->s;
    deliver__persist *p = &j->p;
    lake_sub out = {0};
    char err[512];
    int rc = lake_subs_update(d->subs, s->id, j->base.rec ? &j->base : NULL, deliver__edit_persist,
                              p, &out, err, sizeof err);
    json_decref(j->base.rec);
    int64_t now = evtime_now_ms();
    pthread_mutex_lock(&d->mu);
    s->persisting = 0;
    size_t recording = s->recording;
    s->recording = 0;
    if (!rc) {
        if (p->lease_until)
            s->lease_until = p->lease_until, s->renew_at = now + d->cfg.lease_ms / 2;
        if (p->replay_end || p->retry_set) s->reset = 1;
        deliver__apply(d, s, &out);
    } else if (rc == DELIVER__ELOST || rc == LAKE_SUBS_ENOENT) {
        s->owned = 0;
        deliver__drop(s);
        s->reset = 1;
    } else {
        deliver__log("cannot write a subscription's progress", s->id, err);
        if (!s->done) s->done = (char *)p->done, p->done = NULL;
        s->unrecorded += recording;
        s->replay_end |= p->replay_end, s->disable |= p->disable;
        if (!s->retry_set) s->retry_set = p->retry_set;
        s->d_delivered += p->d_delivered, s->d_dead += p->d_dead, s->d_failed += p->d_failed;
        s->dirty = 1, s->persist_after = now + 1000;
    }
    /* no signal: this worker picks the next job itself, and signals when there are two */
    pthread_mutex_unlock(&d->mu);
    lake_sub_free(&out);
    free((char *)p->done);
    free((char *)p->last_error);
}

/* Sleeps until wake (ms since the epoch), a broadcast, or the stop (d->mu held). */
static void sleep_until(deliver *d, int64_t wake)
{
    struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (long)(wake % 1000) * 1000000};
    pthread_cond_timedwait(&d->cv, &d->mu, &ts);
}

void *deliver__worker(void *arg)
{
    deliver *d = arg;
    deliver__conn *c = deliver__conn_new(d);
    if (!c) deliver__log("a delivery worker cannot start: libcurl failed", "", "out of memory");
    pthread_mutex_lock(&d->mu);
    while (c && !d->stopping) {
        job j;
        int64_t wake;
        if (!pick(d, &j, &wake)) {
            /* pick stored wake_min: a commit counted before it was seen is seen here, one
             * after it signals (deliver_notify), so none is missed */
            if (atomic_load(&d->committed) < atomic_load(&d->wake_min)) sleep_until(d, wake);
            continue;
        }
        /* more work than this job: one more worker takes it (and so on), rather than every
         * worker woken for each change */
        if (more_work(d)) pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        if (j.kind == DELIVER__J_PERSIST)
            run_persist(d, &j);
        else if (j.kind == DELIVER__J_ATTEMPT)
            run_attempt(d, c, &j);
        else
            run_dispatch(d, c, &j);
        pthread_mutex_lock(&d->mu);
        deliver__conf_put(j.conf);
    }
    pthread_mutex_unlock(&d->mu);
    deliver__conn_free(c);
    return NULL;
}

void deliver__give_up(deliver *d)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->nsub; i++) {
        deliver__sub *s = d->sub[i];
        if (!s->owned || s->persisting) continue;
        job j = {.s = s};
        take_persist(d, s, evtime_now_ms(), &j); /* d->stopping: leaseUntil 0 */
        pthread_mutex_unlock(&d->mu);
        run_persist(d, &j);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
}
