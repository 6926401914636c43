/*
 * sender.c - the thread that takes batches from the outbox to the server.
 *
 * One libcurl handle, kept for the emitter's life (keep-alive). A batch is
 * the oldest events, at most batch_size and batch_bytes; the body is the
 * seed's {"events":[…]}, gzip-compressed above gzip_above. What the answer
 * means:
 *
 *   200                      every event accounted for: rejected ones go to
 *                            _events_dead with the server's reason, the rest
 *                            are delivered (duplicates included)
 *   413                      the batch is split in half and sent again; one
 *                            event the server still refuses is dead-lettered
 *   400, 415, 422, other 4xx the server refuses the batch's content: dead-lettered
 *   401, 403, 404, 405       the emitter's configuration (token, endpoint) is
 *                            wrong: retried, so nothing is lost while it is fixed
 *   408, 429, 5xx, network   retried
 *
 * Retries back off from backoff_min_ms, doubling to backoff_max_ms, with
 * "equal jitter" (a delay d waits d/2 plus a random part of d/2); a
 * Retry-After header (429, 503) is honoured instead. The sender wakes when a
 * batch is full, on commit, flush or close, and every flush_interval_ms.
 */
#include "emitter_int.h"
#include "events_int.h"
#include "sender_int.h"
#include "evrand.h"
#include "evtime.h"
#include "jscan.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

typedef struct answer {
    long status;
    buf body;
    int64_t retry_after_ms; /* -1: none */
    char error[CURL_ERROR_SIZE];
} answer;

/* The emitter's clock in ms: its config's clock_ms (tests), or the monotonic clock. */
static int64_t now_ms(const events_emitter *em)
{
    return em->cfg.clock_ms ? em->cfg.clock_ms(em->cfg.clock_ud) : evtime_mono_ms();
}

void sender__wake(events_emitter *em)
{
    pthread_mutex_lock(&em->smu);
    /*
     * a sender that is sending or backing off sees wake when it looks: no
     * signal, no context switch
     */
    if (!em->wake && em->idle) pthread_cond_signal(&em->scv);
    em->wake = 1;
    pthread_mutex_unlock(&em->smu);
}

static void set_error(events_emitter *em, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(events_emitter *em, int status, const char *fmt, ...)
{
    pthread_mutex_lock(&em->emu);
    em->last_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(em->last_error, sizeof em->last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&em->emu);
}

/* ---- HTTP ------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    return buf_append(&a->body, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        char v[128];
        size_t k = len - 12 < sizeof v - 1 ? len - 12 : sizeof v - 1;
        memcpy(v, p + 12, k);
        v[k] = 0;
        char *s = v;
        while (*s == ' ') s++;
        char *end;
        long secs = strtol(s, &end, 10);
        if (end != s && (*end == '\r' || *end == '\n' || *end == 0)) {
            a->retry_after_ms = secs < 0 ? 0 : secs * 1000;
        } else {
            time_t when = curl_getdate(s, NULL);
            if (when > 0) {
                time_t now = time(NULL);
                a->retry_after_ms = when > now ? (int64_t)(when - now) * 1000 : 0;
            }
        }
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    events_emitter *em = ud;
    int64_t abort_at = __atomic_load_n(&em->abort_at, __ATOMIC_RELAXED);
    return abort_at && evtime_mono_ms() >= abort_at; /* closing: give up the transfer */
}

static int gzip_body(const buf *in, buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&z, (uLong)in->len) + 32;
    out->len = 0;
    if (buf_reserve(out, cap)) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)in->p;
    z.avail_in = (uInt)in->len;
    z.next_out = (Bytef *)out->p;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    out->len = cap - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END ? 0 : -1;
}

/*
 * Posts the batch and waits for the answer. While the request is in flight
 * (the server parsing and storing it), meanwhile(ud) runs once: the sender
 * reads its next batch then, so that its own work overlaps the server's.
 */
static void post(events_emitter *em, const outbox__batch *b, buf *body, buf *gz, answer *a,
                 void (*meanwhile)(void *), void *ud)
{
    CURL *c = em->curl;
    CURLM *m = em->multi;
    body->len = 0;
    buf_puts(body, "{\"events\":[");
    for (size_t i = 0; i < b->n; i++) {
        if (i) buf_putc(body, ',');
        buf_append(body, b->items[i].event, b->items[i].len);
    }
    buf_puts(body, "]}");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (em->auth_header) h = curl_slist_append(h, em->auth_header);
    const buf *send = body;
    if (body->len > em->cfg.gzip_above && !gzip_body(body, gz)) {
        send = gz;
        h = curl_slist_append(h, "Content-Encoding: gzip");
    }
    a->status = 0;
    a->body.len = 0;
    a->retry_after_ms = -1;
    a->error[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, em->post_url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, send->p);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send->len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)em->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(em->cfg.timeout_ms < 10000 ? em->cfg.timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, em);

    CURLcode rc = CURLE_OK;
    int running = 1;
    if (curl_multi_add_handle(m, c) != CURLM_OK) {
        rc = CURLE_FAILED_INIT;
        running = 0;
    }
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
        if (!running) break;
        if (meanwhile) {
            meanwhile(ud);
            meanwhile = NULL;
            continue;
        }
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int queued;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &queued)))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == c) rc = msg->data.result;
    curl_multi_remove_handle(m, c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    } else if (!a->error[0]) {
        snprintf(a->error, sizeof a->error, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(h);
}

/* ---- reading the answer ------------------------------------------------------ */

typedef struct tally {
    long long received, accepted, duplicates;
    long long rejected_count; /* the answer's rejectedCount; -1 when absent (nothing refused) */
    size_t *rejected;
    char **reason;
    size_t nrejected;
} tally;

static void tally_free(tally *t)
{
    for (size_t i = 0; i < t->nrejected; i++) free(t->reason[i]);
    free(t->rejected);
    free(t->reason);
    memset(t, 0, sizeof *t);
}

static char *string_value(const char *p, const char *end)
{
    size_t n = (size_t)(end - p) - 2;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    size_t k = jscan_unescape(p + 1, end - 1, s, n);
    if (k == (size_t)-1) k = 0;
    s[k] = 0;
    return s;
}

/* Walks an object's members: calls fn(key, key_len, value, value_end) for each. */
typedef int (*member_fn)(void *ud, const char *k, size_t kn, const char *v, const char *ve,
                         enum jtype t);

static const char *walk_object(const char *p, const char *end, member_fn fn, void *ud)
{
    jscan s = {0};
    p = jscan_ws(&s, p, end);
    if (p >= end || *p != '{') return NULL;
    p = jscan_ws(&s, p + 1, end);
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        if (p >= end || *p != '"') return NULL;
        const char *k = p;
        if (!(p = jscan_string(&s, p, end))) return NULL;
        size_t kn = (size_t)(p - k - 2);
        p = jscan_ws(&s, p, end);
        if (p >= end || *p != ':') return NULL;
        p = jscan_ws(&s, p + 1, end);
        const char *v = p;
        enum jtype t;
        if (!(p = jscan_value(&s, p, end, &t))) return NULL;
        if (fn(ud, k + 1, kn, v, p, t)) return NULL;
        p = jscan_ws(&s, p, end);
        if (p < end && *p == ',') {
            p = jscan_ws(&s, p + 1, end);
            continue;
        }
        return p < end && *p == '}' ? p + 1 : NULL;
    }
}

typedef struct rejection {
    long long index;
    char *error;
} rejection;

static int rejection_member(void *ud, const char *k, size_t kn, const char *v, const char *ve,
                            enum jtype t)
{
    rejection *r = ud;
    if (kn == 5 && !memcmp(k, "index", 5) && t == J_NUM) r->index = strtoll(v, NULL, 10);
    if (kn == 5 && !memcmp(k, "error", 5) && t == J_STR && !r->error)
        r->error = string_value(v, ve);
    return 0;
}

static int answer_member(void *ud, const char *k, size_t kn, const char *v, const char *ve,
                         enum jtype t)
{
    tally *a = ud;
    if (t == J_NUM && kn == 8 && !memcmp(k, "received", 8)) a->received = strtoll(v, NULL, 10);
    if (t == J_NUM && kn == 8 && !memcmp(k, "accepted", 8)) a->accepted = strtoll(v, NULL, 10);
    if (t == J_NUM && kn == 10 && !memcmp(k, "duplicates", 10))
        a->duplicates = strtoll(v, NULL, 10);
    if (t == J_NUM && kn == 13 && !memcmp(k, "rejectedCount", 13))
        a->rejected_count = strtoll(v, NULL, 10);
    if (t == J_ARR && kn == 8 && !memcmp(k, "rejected", 8)) {
        jscan s = {0};
        const char *p = jscan_ws(&s, v + 1, ve);
        while (p < ve && *p != ']') {
            rejection r = {-1, NULL};
            const char *q = walk_object(p, ve, rejection_member, &r);
            if (!q) {
                free(r.error);
                return -1;
            }
            size_t *ni = realloc(a->rejected, (a->nrejected + 1) * sizeof *ni);
            char **nr = realloc(a->reason, (a->nrejected + 1) * sizeof *nr);
            if (ni) a->rejected = ni;
            if (nr) a->reason = nr;
            if (!ni || !nr) {
                free(r.error);
                return -1;
            }
            a->rejected[a->nrejected] = (size_t)r.index;
            a->reason[a->nrejected++] = r.error ? r.error : strdup("rejected by the server");
            p = jscan_ws(&s, q, ve);
            if (p < ve && *p == ',') p = jscan_ws(&s, p + 1, ve);
        }
    }
    return 0;
}

/* Reads a 200 answer for a batch of n events; 0 if it accounts for every event. */
static int read_answer(const answer *a, size_t n, tally *t)
{
    memset(t, 0, sizeof *t);
    t->received = t->rejected_count = -1;
    if (!a->body.p || !walk_object(a->body.p, a->body.p + a->body.len, answer_member, t)) return -1;
    /* a list shorter than rejectedCount (a server that ignored ?rejected=all) cannot be used */
    if (t->received != (long long)n ||
        t->accepted + t->duplicates + (long long)t->nrejected != (long long)n ||
        (t->rejected_count >= 0 && t->rejected_count != (long long)t->nrejected))
        return -1;
    for (size_t i = 0; i < t->nrejected; i++)
        if (t->rejected[i] >= n) return -1;
    return 0;
}

static int error_member(void *ud, const char *k, size_t kn, const char *v, const char *ve,
                        enum jtype t)
{
    char **e = ud;
    if (kn == 5 && !memcmp(k, "error", 5) && t == J_STR && !*e) *e = string_value(v, ve);
    return 0;
}

/* The server's reason for a non-200 answer: its "error", else the start of the body. */
static void server_reason(const answer *a, char *out, size_t cap)
{
    char *e = NULL;
    if (a->body.p) walk_object(a->body.p, a->body.p + a->body.len, error_member, &e);
    if (e)
        snprintf(out, cap, "HTTP %ld: %s", a->status, e);
    else
        snprintf(out, cap, "HTTP %ld: %.120s", a->status, a->body.p ? a->body.p : "");
    free(e);
}

/* ---- the loop -------------------------------------------------------------------- */

static int64_t backoff(const events_emitter *em, int failures)
{
    int64_t d = em->cfg.backoff_min_ms;
    for (int i = 1; i < failures && d < em->cfg.backoff_max_ms; i++) d *= 2;
    if (d > em->cfg.backoff_max_ms) d = em->cfg.backoff_max_ms;
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(evrand_u64() % (uint64_t)(half + 1)) : 0);
}

/*
 * Waits (lock held) until it is time to send, or stop. Returns 0 to go on, -1
 * to stop. Time to send: woken (a full batch, a commit, a flush) or the flush
 * interval passed, and no retry is pending. A database outbox is looked at on
 * every tick even when the emitter knows of nothing waiting: a transaction the
 * service committed on its own handle is seen that way.
 */
static int wait_for_work(events_emitter *em, int64_t retry_at, int64_t *next_flush)
{
    int memory = outbox__is_memory(em->ob);
    for (;;) {
        if (em->stop) return -1;
        int64_t now = now_ms(em);
        int pending = outbox__pending(em->ob) > 0;
        if (now < retry_at) {
            if (em->cfg.wait_ms) { /* a test's clock: it decides how time passes */
                pthread_mutex_unlock(&em->smu);
                em->cfg.wait_ms(em->cfg.clock_ud, retry_at - now);
                pthread_mutex_lock(&em->smu);
                continue;
            }
        } else if ((pending || !memory) && (em->wake || now >= *next_flush)) {
            em->wake = 0;
            return 0;
        } else if (now >= *next_flush) {
            *next_flush = now + em->cfg.flush_interval_ms;
        }
        int64_t until = now < retry_at ? retry_at : *next_flush;
        /* a test's clock cannot time a condition wait: poll the real clock briefly */
        int64_t real = em->cfg.clock_ms ? 10 : until - now;
        if (real <= 0) real = 1;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += real / 1000;
        ts.tv_nsec += (real % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        em->idle = now >= retry_at;
        pthread_cond_timedwait(&em->scv, &em->smu, &ts);
        em->idle = 0;
    }
}

static void progress(events_emitter *em)
{
    pthread_mutex_lock(&em->smu);
    pthread_cond_broadcast(&em->done);
    pthread_mutex_unlock(&em->smu);
}

/* What the sender does while a request is in flight: read the next batch, delete delivered rows. */
typedef struct prefetch {
    events_emitter *em;
    outbox__batch *next;
    uint64_t from;
    uint32_t from_part;
    size_t n;
    int ok;
} prefetch;

static void meanwhile(void *ud)
{
    prefetch *p = ud;
    outbox__trim(p->em->ob, 0);
    p->ok =
        !outbox__peek(p->em->ob, p->from, p->from_part, p->n, p->em->cfg.batch_bytes, p->next) &&
        p->next->n;
}

/* What the sender's loop carries from one batch to the next. */
typedef struct sender_state {
    int failures;  /* failed attempts in a row, for the backoff */
    size_t split;  /* after a 413: the smaller batch size to try */
    int have_next; /* next holds the batch after b, read while b was in flight */
} sender_state;

/* 200: the answer accounts for every event: delivered or dead-lettered. 1: send b again later. */
static int take_accepted(events_emitter *em, const outbox__batch *b, const answer *a,
                         const prefetch *pf, sender_state *ss, int *again)
{
    tally t;
    int retry = 0;
    if (read_answer(a, b->n, &t)) {
        set_error(em, 200, "the server's answer does not account for the %zu events sent", b->n);
        retry = 1;
    } else if (outbox__done(em->ob, b, b->n, t.rejected, t.reason, t.nrejected)) {
        set_error(em, 200, "%s", events_errmsg()); /* sent again; the server answers duplicates */
        retry = 1;
    } else {
        atomic_fetch_add(&em->delivered, (uint64_t)(t.accepted + t.duplicates));
        atomic_fetch_add(&em->duplicates, (uint64_t)t.duplicates);
        atomic_fetch_add(&em->dead, t.nrejected);
        set_error(em, 200, "%s", "");
        ss->failures = 0;
        if (ss->split && (ss->split *= 2) >= em->cfg.batch_size)
            ss->split = 0; /* grow back after a 413 */
        *again = 1;
        ss->have_next = pf->ok;
        if (!ss->have_next && !outbox__pending(em->ob))
            outbox__trim(em->ob, 1); /* caught up: tidy now */
    }
    tally_free(&t);
    return retry;
}

/* A 4xx that sending again cannot fix: the batch goes to the dead letters. */
static int take_refused(events_emitter *em, const outbox__batch *b, const answer *a,
                        sender_state *ss, int *again)
{
    char reason[512];
    int retry = 0;
    server_reason(a, reason, sizeof reason);
    if (outbox__dead(em->ob, b, reason)) {
        retry = 1;
    } else {
        atomic_fetch_add(&em->dead, b->n);
        ss->split = 0;
        *again = 1;
    }
    set_error(em, (int)a->status, "%s", reason);
    return retry;
}

/*
 * What the answer to batch b means for the outbox and the loop: *again when the sender goes on
 * at once (more is waiting, or a split batch). Returns 1 if b is to be sent again later.
 */
static int take_answer(events_emitter *em, const outbox__batch *b, const answer *a,
                       const prefetch *pf, sender_state *ss, int *again)
{
    if (a->status == 200) return take_accepted(em, b, a, pf, ss, again);
    if (a->status == 413 && b->n > 1) {
        ss->split = b->n / 2; /* the server's limits are lower than ours: halve until they fit */
        set_error(em, 413, "the server refused a batch of %zu events as too large; sending halves",
                  b->n);
        *again = 1;
        return 0;
    }
    if (a->status >= 400 && a->status < 500 && a->status != 401 && a->status != 403 &&
        a->status != 404 && a->status != 405 && a->status != 408 && a->status != 429)
        return take_refused(em, b, a, ss, again);
    char reason[512];
    if (a->status)
        server_reason(a, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "%s: %s", em->endpoint, a->error);
    set_error(em, (int)a->status, "%s", reason);
    return 1;
}

/* When to send again after a failure: as the server asked (429, 503), else the backoff. */
static int64_t retry_time(events_emitter *em, const answer *a, sender_state *ss)
{
    ss->failures++;
    atomic_fetch_add(&em->retried, 1);
    int64_t d = a->retry_after_ms >= 0 && (a->status == 429 || a->status == 503)
                    ? a->retry_after_ms
                    : backoff(em, ss->failures);
    return now_ms(em) + d;
}

static void *sender_main(void *arg)
{
    events_emitter *em = arg;
    pthread_setname_np(pthread_self(), "events-sender"); /* as top -H and perf show it */
    outbox__batch bufs[2];
    memset(bufs, 0, sizeof bufs);
    outbox__batch *b = &bufs[0], *next = &bufs[1];
    buf body = BUF_INIT, gz = BUF_INIT;
    answer a;
    memset(&a, 0, sizeof a);
    sender_state ss = {0, 0, 0};
    int64_t retry_at = 0, next_flush = 0;

    pthread_mutex_lock(&em->smu);
    while (wait_for_work(em, retry_at, &next_flush) == 0) {
        pthread_mutex_unlock(&em->smu);
        int again = 0; /* go on at once: more is waiting, or a split batch */
        next_flush = now_ms(em) + em->cfg.flush_interval_ms;
        if (ss.have_next) {
            outbox__batch *t = b;
            b = next;
            next = t;
            ss.have_next = 0;
        } else if (outbox__peek(em->ob, 0, 0, ss.split ? ss.split : em->cfg.batch_size,
                                em->cfg.batch_bytes, b) ||
                   !b->n) {
            if (!b->n) {
                outbox__trim(em->ob, 1);
                outbox__resync(em->ob);
            }
            progress(em);
            pthread_mutex_lock(&em->smu);
            continue;
        }
        prefetch pf = {em, next, 0, 0, em->cfg.batch_size, 0};
        outbox__after(b, &pf.from, &pf.from_part);
        atomic_store(&em->in_flight, b->n);
        post(em, b, &body, &gz, &a, ss.split ? NULL : meanwhile, &pf);
        atomic_store(&em->in_flight, 0);
        if (take_answer(em, b, &a, &pf, &ss, &again)) retry_at = retry_time(em, &a, &ss);
        progress(em);
        pthread_mutex_lock(&em->smu);
        if (again && (ss.have_next || outbox__pending(em->ob))) em->wake = 1;
    }
    pthread_mutex_unlock(&em->smu);
    outbox__trim(em->ob, 1);
    outbox__batch_free(&bufs[0]);
    outbox__batch_free(&bufs[1]);
    buf_free(&body);
    buf_free(&gz);
    buf_free(&a.body);
    return NULL;
}

int sender__start(events_emitter *em)
{
    if (!(em->curl = curl_easy_init()) || !(em->multi = curl_multi_init())) {
        curl_easy_cleanup(em->curl);
        em->curl = NULL;
        return events__fail(EVENTS_EHTTP, "cannot create a libcurl handle");
    }
    if (pthread_create(&em->thread, NULL, sender_main, em)) {
        curl_multi_cleanup(em->multi);
        curl_easy_cleanup(em->curl);
        em->curl = em->multi = NULL;
        return events__fail(EVENTS_ENOMEM, "cannot start the sender thread");
    }
    return EVENTS_OK;
}

void sender__stop(events_emitter *em)
{
    pthread_mutex_lock(&em->smu);
    em->stop = 1;
    pthread_cond_signal(&em->scv);
    pthread_mutex_unlock(&em->smu);
    pthread_join(em->thread, NULL);
    curl_multi_cleanup(em->multi);
    curl_easy_cleanup(em->curl);
    em->curl = em->multi = NULL;
}
