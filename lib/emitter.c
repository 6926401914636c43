/*
 * emitter.c - the libevents API: opening an emitter, building and checking
 * events, transactions, flush, stats and close.
 *
 * An event is built as JSON text ({"type":…, <fields>}) and passed through
 * the server's own normaliser (event.c) in client mode, which checks it the
 * way the server will (type, UTF-8, depth, duplicate keys, size) and writes
 * it with its envelope: {"id":<ULID>,"type":…,"ts":…,"do":{…},<fields>}. So
 * an event the library takes is one the server accepts, unless the server
 * runs with lower limits. Each thread keeps its scratch buffers, so emits
 * from many threads only meet at the outbox.
 */
#include "cdc_int.h"
#include "emitter_int.h"
#include "events_int.h"
#include "sender_int.h"
#include "event.h"
#include "evtime.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVER_MAX_BATCH_EVENTS 10000
#define SERVER_MAX_BATCH_BYTES  (8u << 20)

/* ---- per-thread scratch ----------------------------------------------------- */

typedef struct scratch {
    event_ctx ctx;
    buf in, out;
} scratch;

/*
 * Set once per process by global_init, through pthread_once(&once) in events_emitter_open:
 * scratch_key (the thread-specific scratch, each thread's its own, freed when it exits) and
 * global_rc (-1 if the key or libcurl could not be set up). Written only inside pthread_once,
 * which orders them before any reader; never changed after.
 */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static int global_rc;

static void scratch_free(void *p)
{
    scratch *sc = p;
    event_ctx_free(&sc->ctx);
    buf_free(&sc->in);
    buf_free(&sc->out);
    free(sc);
}

static void global_init(void)
{
    if (pthread_key_create(&scratch_key, scratch_free) || curl_global_init(CURL_GLOBAL_DEFAULT))
        global_rc = -1;
}

static scratch *get_scratch(void)
{
    scratch *sc = pthread_getspecific(scratch_key);
    if (sc) return sc;
    sc = calloc(1, sizeof *sc);
    if (!sc) return NULL;
    event_ctx_init(&sc->ctx);
    sc->ctx.client = 1;
    if (pthread_setspecific(scratch_key, sc)) {
        scratch_free(sc);
        return NULL;
    }
    return sc;
}

/* ---- opening ------------------------------------------------------------------ */

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* "http://host:port[/prefix]" -> ".../ingest"; a URL ending in /ingest or /e is kept. */
static char *ingest_url(const char *endpoint)
{
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/') n--;
    int keep = ends_with(endpoint, n, "/ingest") || ends_with(endpoint, n, "/e");
    char *u = malloc(n + sizeof "/ingest");
    if (!u) return NULL;
    memcpy(u, endpoint, n);
    strcpy(u + n, keep ? "" : "/ingest");
    return u;
}

/*
 * The URL batches are posted to: the server's answer then lists every event it refused (by
 * default it lists the first few and counts the rest), so that each goes to _events_dead
 * with its own reason.
 */
static char *post_url(const char *url)
{
    size_t n = strlen(url);
    char *u = malloc(n + sizeof "?rejected=all");
    if (u)
        snprintf(u, n + sizeof "?rejected=all", "%s%crejected=all", url,
                 strchr(url, '?') ? '&' : '?');
    return u;
}

static int add_member(buf *b, const char *key, const char *value)
{
    if (!value) return 0;
    if (b->len > 6) buf_putc(b, ',');
    return buf_json_str(b, key, strlen(key)) || buf_putc(b, ':') ||
           buf_json_str(b, value, strlen(value));
}

/* The "do" member from the identity, checked as the server will check it. */
static int build_identity(events_emitter *em, const events_identity *id)
{
    buf *b = &em->identity;
    if (!id->id && !id->name && !id->cls && !id->colo) return EVENTS_OK;
    if (buf_puts(b, "\"do\":{") || add_member(b, "id", id->id) || add_member(b, "name", id->name) ||
        add_member(b, "class", id->cls) || add_member(b, "colo", id->colo) || buf_putc(b, '}'))
        return events__fail(EVENTS_ENOMEM, "out of memory");
    jscan s = {0};
    enum jtype t;
    const char *v = b->p + 5;
    if (!jscan_value(&s, v, b->p + b->len, &t) || s.defects)
        return events__fail(EVENTS_EINVAL, "identity: %s", s.bad ? s.bad : "not valid JSON text");
    return EVENTS_OK;
}

static int check_config(events_config *c)
{
    int modes = !!c->db_path + !!c->db + !!c->memory_only;
    if (modes != 1)
        return events__fail(EVENTS_EINVAL,
                            "config: give exactly one of db_path, db and memory_only (%d given)",
                            modes);
    if (!c->endpoint || (strncmp(c->endpoint, "http://", 7) && strncmp(c->endpoint, "https://", 8)))
        return events__fail(EVENTS_EINVAL,
                            "config: endpoint must be an http:// or https:// URL, not \"%s\"",
                            c->endpoint ? c->endpoint : "(null)");
    if (c->token && strpbrk(c->token, "\r\n"))
        return events__fail(EVENTS_EINVAL, "config: the token contains a line break");
    if (!c->capacity) c->capacity = c->memory_only ? 100000 : 1000000;
    if (!c->max_event_bytes) c->max_event_bytes = EVENT_MAX_BYTES_DEFAULT;
    if (!c->batch_size) c->batch_size = 100;
    if (!c->batch_bytes) c->batch_bytes = 1u << 20;
    if (!c->flush_interval_ms) c->flush_interval_ms = 1000;
    if (!c->backoff_min_ms) c->backoff_min_ms = 1000;
    if (!c->backoff_max_ms) c->backoff_max_ms = 300000;
    if (!c->timeout_ms) c->timeout_ms = 30000;
    if (!c->gzip_above) c->gzip_above = 4096;
    if (c->batch_size > SERVER_MAX_BATCH_EVENTS)
        return events__fail(EVENTS_EINVAL,
                            "config: batch_size %zu is over the server's limit of %d events",
                            c->batch_size, SERVER_MAX_BATCH_EVENTS);
    if (c->batch_bytes > SERVER_MAX_BATCH_BYTES)
        return events__fail(EVENTS_EINVAL,
                            "config: batch_bytes %zu is over the server's limit of %u bytes",
                            c->batch_bytes, SERVER_MAX_BATCH_BYTES);
    if (c->max_event_bytes > SERVER_MAX_BATCH_BYTES)
        return events__fail(EVENTS_EINVAL,
                            "config: max_event_bytes %zu is over the largest request, %u bytes",
                            c->max_event_bytes, SERVER_MAX_BATCH_BYTES);
    if (c->flush_interval_ms < 0 || c->backoff_min_ms < 0 || c->timeout_ms < 0 ||
        c->backoff_max_ms < c->backoff_min_ms)
        return events__fail(
            EVENTS_EINVAL,
            "config: intervals must be positive and backoff_max_ms >= backoff_min_ms");
    if ((c->clock_ms == NULL) != (c->wait_ms == NULL))
        return events__fail(EVENTS_EINVAL, "config: clock_ms and wait_ms go together");
    return EVENTS_OK;
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

static void emitter_free(events_emitter *em)
{
    outbox__close(em->ob);
    free(em->endpoint);
    free(em->post_url);
    free(em->auth_header);
    buf_free(&em->identity);
    pthread_mutex_destroy(&em->mu);
    pthread_mutex_destroy(&em->smu);
    pthread_mutex_destroy(&em->emu);
    pthread_cond_destroy(&em->scv);
    pthread_cond_destroy(&em->done);
    free(em);
}

int events_emitter_open(const events_config *cfg, events_emitter **out)
{
    if (out) *out = NULL;
    if (!cfg || !out)
        return events__fail(EVENTS_EINVAL, "events_emitter_open: config and out are required");
    pthread_once(&once, global_init);
    if (global_rc) return events__fail(EVENTS_EHTTP, "cannot initialise libcurl");
    events_config c = *cfg;
    int rc = check_config(&c);
    if (rc) return rc;

    events_emitter *em = calloc(1, sizeof *em);
    if (!em) return events__fail(EVENTS_ENOMEM, "out of memory");
    pthread_mutex_init(&em->mu, NULL);
    pthread_mutex_init(&em->smu, NULL);
    pthread_mutex_init(&em->emu, NULL);
    cond_init_monotonic(&em->scv);
    cond_init_monotonic(&em->done);
    em->cfg = c;
    em->endpoint = ingest_url(c.endpoint);
    em->post_url = em->endpoint ? post_url(em->endpoint) : NULL;
    if (c.token) {
        size_t n = strlen(c.token) + sizeof "Authorization: Bearer ";
        if ((em->auth_header = malloc(n)))
            snprintf(em->auth_header, n, "Authorization: Bearer %s", c.token);
    }
    if (!em->endpoint || !em->post_url || (c.token && !em->auth_header)) {
        rc = events__fail(EVENTS_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = build_identity(em, &c.identity))) goto fail;
    /* the strings were copied: nothing below may read the caller's */
    em->cfg.endpoint = em->cfg.token = em->cfg.db_path = NULL;
    memset(&em->cfg.identity, 0, sizeof em->cfg.identity);

    rc = c.memory_only ? outbox__open_memory(c.capacity, &em->ob)
                       : outbox__open_db(c.db, c.db_path, c.capacity, &em->ob);
    if (rc) goto fail;
    outbox__set_identity(em->ob, em->identity.p, em->identity.len);
    if ((rc = sender__start(em))) goto fail;
    if (outbox__edb(em->ob)) cdc__tracker_attach_emitter(outbox__edb(em->ob), em);
    *out = em;
    return EVENTS_OK;
fail:
    emitter_free(em);
    return rc;
}

/* ---- emitting ------------------------------------------------------------------ */

static int put(events_emitter *em, const char *ev, size_t len)
{
    int committed = 0, rc;
    if (outbox__is_memory(em->ob)) {
        rc = outbox__put(em->ob, ev, len, &committed);
    } else {
        pthread_mutex_lock(&em->mu);
        rc = outbox__put(em->ob, ev, len, &committed);
        pthread_mutex_unlock(&em->mu);
    }
    if (rc) return rc;
    if (committed && atomic_fetch_add(&em->since_wake, 1) + 1 >= em->cfg.batch_size) {
        atomic_store(&em->since_wake, 0);
        sender__wake(em);
    }
    return EVENTS_OK;
}

/*
 * Checks and completes the event in sc->in and puts it in the outbox.
 * from_fields: the text was built from a caller's fields, which may not set
 * the envelope; skip: bytes of sc->in before the fields' first member (for
 * error positions), 0 when the caller gave the whole event.
 */
static int emit_text(events_emitter *em, scratch *sc, int from_fields, size_t skip)
{
    event_ctx *c = &sc->ctx;
    event_ctx_set_now(c, evtime_now_ms());
    c->max_event_bytes = em->cfg.max_event_bytes;
    c->do_member = em->identity.p;
    c->do_member_len = em->identity.len;
    sc->out.len = 0;
    jscan s = {0};
    const char *p = sc->in.p, *end = p + sc->in.len, *next = NULL;
    event_info info;
    char why[256];
    int r = event_normalise(c, &s, p, end, &next, &sc->out, &info, why, sizeof why);
    if (r == EVENT_NOMEM) return events__fail(EVENTS_ENOMEM, "out of memory");
    if (r == EVENT_SYNTAX) {
        size_t at = (size_t)(s.err_at - p);
        return events__fail(EVENTS_EINVAL, "%s not JSON: %s at byte %zu",
                            from_fields ? "fields are" : "the event is", s.err,
                            at >= skip ? at - skip + 1 : 0);
    }
    if (r == EVENT_REJECTED) {
        if ((size_t)(next - p) > c->max_event_bytes)
            return events__fail(EVENTS_ETOOBIG,
                                "the event is %zu bytes, over max_event_bytes (%zu)",
                                (size_t)(next - p), c->max_event_bytes);
        return events__fail(EVENTS_EINVAL, "%s", why);
    }
    next = jscan_ws(&s, next, end);
    if (next != end)
        return events__fail(EVENTS_EINVAL, "%s text after the object, at byte %zu",
                            from_fields ? "fields have" : "the event has",
                            (size_t)(next - p) - skip + 1);
    if (from_fields && (info.client_id || info.has_ts || info.has_do || info.has_received))
        return events__fail(EVENTS_EINVAL, "fields may not set \"%s\": the emitter sets it",
                            info.client_id ? "id"
                            : info.has_ts  ? "ts"
                            : info.has_do  ? "do"
                                           : "receivedAt");
    if (sc->out.len > em->cfg.max_event_bytes)
        return events__fail(EVENTS_ETOOBIG,
                            "the event is %zu bytes with its envelope, over max_event_bytes (%zu)",
                            sc->out.len, em->cfg.max_event_bytes);
    return put(em, sc->out.p, sc->out.len);
}

/* Starts {"type":"T" in sc->in. */
static int start_event(scratch *sc, const char *type)
{
    size_t n = strlen(type);
    if (!event_type_valid(type, n))
        return events__fail(
            EVENTS_EINVAL,
            "type \"%.*s\" must match [a-z0-9_]+(.[a-z0-9_-]+)* and be at most %d bytes",
            n > 140 ? 140 : (int)n, type, EVENT_TYPE_MAX);
    sc->in.len = 0;
    if (buf_puts(&sc->in, "{\"type\":\"") || buf_append(&sc->in, type, n) || buf_putc(&sc->in, '"'))
        return events__fail(EVENTS_ENOMEM, "out of memory");
    return EVENTS_OK;
}

static scratch *begin_emit(events_emitter *em, int *rc)
{
    scratch *sc;
    if (!em) {
        *rc = events__fail(EVENTS_EINVAL, "no emitter");
        return NULL;
    }
    if (!(sc = get_scratch())) *rc = events__fail(EVENTS_ENOMEM, "out of memory");
    return sc;
}

int events_emit(events_emitter *em, const char *type, const char *fields)
{
    int rc;
    scratch *sc = begin_emit(em, &rc);
    if (!sc) return rc;
    if (!type) return events__fail(EVENTS_EINVAL, "type is required");
    if ((rc = start_event(sc, type))) return rc;
    size_t skip = sc->in.len;
    if (fields) {
        const char *f = fields;
        while (*f == ' ' || *f == '\t' || *f == '\n' || *f == '\r') f++;
        if (*f != '{') return events__fail(EVENTS_EINVAL, "fields must be a JSON object or NULL");
        const char *q = f + 1;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q != '}' && buf_putc(&sc->in, ','))
            return events__fail(EVENTS_ENOMEM, "out of memory");
        skip = sc->in.len - (size_t)(q - fields);
        if (buf_puts(&sc->in, q)) return events__fail(EVENTS_ENOMEM, "out of memory");
    } else if (buf_putc(&sc->in, '}')) {
        return events__fail(EVENTS_ENOMEM, "out of memory");
    }
    return emit_text(em, sc, 1, skip);
}

int events_emit_json(events_emitter *em, const char *event)
{
    int rc;
    scratch *sc = begin_emit(em, &rc);
    if (!sc) return rc;
    if (!event) return events__fail(EVENTS_EINVAL, "event is required");
    sc->in.len = 0;
    if (buf_puts(&sc->in, event)) return events__fail(EVENTS_ENOMEM, "out of memory");
    return emit_text(em, sc, 0, 0);
}

/* ,"key":"value" (value NULL: nothing) */
static int put_str(buf *b, const char *key, const char *value)
{
    if (!value) return 0;
    return buf_putc(b, ',') || buf_json_str(b, key, strlen(key)) || buf_putc(b, ':') ||
           buf_json_str(b, value, strlen(value));
}

/* ,"key":n (n < 0: nothing) */
static int put_int(buf *b, const char *key, long long n)
{
    return n < 0 ? 0 : buf_printf(b, ",\"%s\":%lld", key, n);
}

static int finish(events_emitter *em, scratch *sc, int failed)
{
    if (failed || buf_putc(&sc->in, '}')) return events__fail(EVENTS_ENOMEM, "out of memory");
    return emit_text(em, sc, 0, 0);
}

int events_emit_rpc(events_emitter *em, const char *ns, const char *method, double duration_ms,
                    int success, const char *error)
{
    int rc;
    scratch *sc = begin_emit(em, &rc);
    if (!sc) return rc;
    if (!method || !*method) return events__fail(EVENTS_EINVAL, "rpc: method is required");
    if (!isfinite(duration_ms) || duration_ms < 0)
        return events__fail(EVENTS_EINVAL, "rpc: duration_ms must be a finite number >= 0");
    if ((rc = start_event(sc, "rpc.call"))) return rc;
    buf *b = &sc->in;
    int f = put_str(b, "method", method) || put_str(b, "namespace", ns) ||
            buf_printf(b, ",\"durationMs\":%.15g,\"success\":%s", duration_ms,
                       success ? "true" : "false") ||
            put_str(b, "error", error);
    return finish(em, sc, f);
}

int events_emit_lifecycle(events_emitter *em, events_lifecycle what, const char *reason)
{
    static const char *const types[] = {"do.create", "do.alarm", "do.hibernate", "do.evict"};
    int rc;
    scratch *sc = begin_emit(em, &rc);
    if (!sc) return rc;
    if ((unsigned)what >= sizeof types / sizeof *types)
        return events__fail(EVENTS_EINVAL, "lifecycle: unknown kind %d", (int)what);
    if ((rc = start_event(sc, types[what]))) return rc;
    return finish(em, sc, put_str(&sc->in, "reason", reason));
}

int events_emit_ws(events_emitter *em, events_ws what, int connection_count, int code,
                   const char *reason, long long size)
{
    static const char *const types[] = {"ws.connect", "ws.message", "ws.close", "ws.error"};
    int rc;
    scratch *sc = begin_emit(em, &rc);
    if (!sc) return rc;
    if ((unsigned)what >= sizeof types / sizeof *types)
        return events__fail(EVENTS_EINVAL, "ws: unknown kind %d", (int)what);
    if ((rc = start_event(sc, types[what]))) return rc;
    buf *b = &sc->in;
    int f = put_int(b, "connectionCount", connection_count) || put_int(b, "code", code) ||
            put_str(b, "reason", reason) || put_int(b, "size", size);
    return finish(em, sc, f);
}

/* ---- transactions ----------------------------------------------------------------- */

void emitter__note_outbox(events_emitter *em, int64_t seq)
{
    if (seq > 0) {
        outbox__note(em->ob, (uint64_t)seq);
    } else {
        atomic_store(&em->since_wake, 0);
        sender__wake(em);
    }
}

int events_begin(events_emitter *em)
{
    if (!em) return events__fail(EVENTS_EINVAL, "no emitter");
    if (outbox__edb(em->ob) && cdc__tracker_of(outbox__edb(em->ob)))
        return events_tx_begin(outbox__edb(em->ob));
    if (outbox__is_memory(em->ob))
        return events__fail(EVENTS_ESTATE,
                            "events_begin: a memory-only emitter has no transactions");
    pthread_mutex_lock(&em->mu);
    int rc = em->in_tx ? events__fail(EVENTS_ESTATE, "events_begin: a transaction is already open")
                       : outbox__begin(em->ob);
    if (!rc) em->in_tx = 1;
    pthread_mutex_unlock(&em->mu);
    return rc;
}

static int end_tx(events_emitter *em, int commit)
{
    if (!em) return events__fail(EVENTS_EINVAL, "no emitter");
    sqlite3 *edb = outbox__edb(em->ob);
    if (edb && cdc__tracker_in_own_tx_of(edb))
        return commit ? events_tx_commit(edb) : events_tx_rollback(edb);
    pthread_mutex_lock(&em->mu);
    int rc;
    if (!em->in_tx)
        rc = events__fail(EVENTS_ESTATE, "%s without events_begin",
                          commit ? "events_commit" : "events_rollback");
    else
        rc = commit ? outbox__commit(em->ob) : outbox__rollback(em->ob);
    /* a failed COMMIT leaves the transaction open: the caller may try again or roll back */
    if (em->in_tx && (!rc || !commit)) em->in_tx = 0;
    pthread_mutex_unlock(&em->mu);
    if (!rc && commit) {
        atomic_store(&em->since_wake, 0);
        sender__wake(em);
    }
    return rc;
}

int events_commit(events_emitter *em)
{
    return end_tx(em, 1);
}

int events_rollback(events_emitter *em)
{
    return end_tx(em, 0);
}

/* ---- flush, stats, close ------------------------------------------------------------ */

static uint64_t queued(events_emitter *em)
{
    uint64_t last = outbox__last_committed(em->ob), head = outbox__head(em->ob);
    return last >= head ? last - head + 1 : 0;
}

int events_flush(events_emitter *em, int64_t timeout_ms)
{
    if (!em) return events__fail(EVENTS_EINVAL, "no emitter");
    int64_t deadline = evtime_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    uint64_t target = outbox__last_committed(em->ob);
    pthread_mutex_lock(&em->smu);
    em->wake = 1;
    pthread_cond_signal(&em->scv);
    int rc = EVENTS_OK;
    while (outbox__head(em->ob) <= target) {
        int64_t now = evtime_mono_ms();
        if (now >= deadline) {
            rc = EVENTS_ETIMEDOUT;
            break;
        }
        int64_t until = now + 100 < deadline ? now + 100 : deadline;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&em->done, &em->smu, &ts);
    }
    pthread_mutex_unlock(&em->smu);
    if (rc) {
        uint64_t head = outbox__head(em->ob), left = target >= head ? target - head + 1 : 0;
        pthread_mutex_lock(&em->emu);
        events__fail(rc, "%llu events not yet delivered%s%s", (unsigned long long)left,
                     em->last_error[0] ? ": " : "", em->last_error);
        pthread_mutex_unlock(&em->emu);
    }
    return rc;
}

void events_emitter_stats(events_emitter *em, events_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!em) return;
    out->queued = queued(em);
    out->in_flight = atomic_load(&em->in_flight);
    out->delivered = atomic_load(&em->delivered);
    out->duplicates = atomic_load(&em->duplicates);
    out->retried = atomic_load(&em->retried);
    out->dead = atomic_load(&em->dead) + outbox__lost(em->ob);
    out->dropped = outbox__dropped(em->ob);
    pthread_mutex_lock(&em->emu);
    out->last_status = em->last_status;
    memcpy(out->last_error, em->last_error, sizeof out->last_error);
    pthread_mutex_unlock(&em->emu);
}

int events_emitter_close(events_emitter *em, int64_t timeout_ms)
{
    if (!em) return EVENTS_OK;
    int rc = EVENTS_OK;
    sqlite3 *edb = outbox__edb(em->ob);
    if (edb && cdc__tracker_in_own_tx_of(edb)) {
        events_tx_rollback(edb);
        rc = events__fail(EVENTS_ESTATE,
                          "a transaction was open at close: its events were rolled back");
    }
    if (em->in_tx) {
        outbox__rollback(em->ob);
        em->in_tx = 0;
        rc = events__fail(EVENTS_ESTATE,
                          "a transaction was open at close: its events were rolled back");
    }
    /*
     * From here on the tracker neither tells this emitter of its records nor counts it; its
     * collections go on (their records wait in the outbox for the next emitter), on the
     * emitter's own connection too, which the tracker then closes with the last of them.
     */
    int took_db = 0;
    int drc =
        edb ? cdc__tracker_detach_emitter(edb, em, outbox__owns_edb(em->ob), &took_db) : EVENTS_OK;
    if (took_db) outbox__leave_edb(em->ob);
    if (!rc) rc = drc;
    int frc =
        timeout_ms > 0 ? events_flush(em, timeout_ms) : (queued(em) ? EVENTS_ETIMEDOUT : EVENTS_OK);
    __atomic_store_n(&em->abort_at, evtime_mono_ms(),
                     __ATOMIC_RELAXED); /* give up a transfer under way */
    sender__stop(em);
    uint64_t left = queued(em);
    if (outbox__is_memory(em->ob)) outbox__drop_all(em->ob);
    if (!rc && (frc || left))
        rc =
            events__fail(EVENTS_ETIMEDOUT, "%llu events %s", (unsigned long long)left,
                         outbox__is_memory(em->ob) ? "were not delivered and are lost (memory-only)"
                                                   : "stay in the outbox for the next open");
    emitter_free(em);
    return rc;
}
