/*
 * server_ingest.c - POST /ingest, /e and /v1/logs: from a whole body to its answer.
 *
 * The body is inflated if it came gzipped, parsed on the HTTP thread that
 * read it (ingest.h, otlp.h) with that thread's event context, and the
 * events are handed to the lake writer. The connection is then suspended:
 * the writer thread calls ingest_done once the group commit is durable or has
 * failed, which writes the answer and resumes the connection, and only then
 * is the answer queued (server_requests.c) and the events published to the
 * live tail.
 */
#include "server_int.h"
#include "event.h"
#include "evtime.h"
#include "ulid.h"

#include <stdlib.h>
#include <string.h>

/* The HTTP thread's event context, made at its first request (freed by server__free_ctx). */
event_ctx *server__thread_ctx(server__srv *s)
{
    event_ctx *c = pthread_getspecific(s->ctx_key);
    if (!c && (c = malloc(sizeof *c))) {
        event_ctx_init(c);
        c->max_event_bytes = s->cfg.max_event_bytes;
        pthread_setspecific(s->ctx_key, c);
    }
    return c;
}

void server__free_ctx(void *p)
{
    event_ctx_free(p);
    free(p);
}

/* The metrics of a batch the writer made durable: accepted, duplicates, bytes, quarantine. */
void server__count_batch(const server__req *r, const lake_batch *b)
{
    atomic_fetch_add_explicit(&metrics_global.quarantined, b->quarantined, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_global.quarantined_bytes, r->res.qlines.len,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_global.events_accepted, b->accepted, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_global.events_duplicate, b->duplicates,
                              memory_order_relaxed);
    uint64_t bytes = 0;
    if (b->duplicates == 0) {
        bytes = r->res.lines.len;
    } else {
        for (size_t i = 0; i < b->n; i++) bytes += b->ev[i].len;
    }
    atomic_fetch_add_explicit(&metrics_global.bytes_stored, bytes, memory_order_relaxed);
}

void server__ingest_answer(server__req *r, const lake_batch *b)
{
    if (b->status == 0) {
        r->answer_status = 200;
        if (r->otlp)
            otlp_logs_answer(r->otlp, &r->res, &r->answer);
        else
            ingest_answer(&r->res, b->accepted, b->duplicates, &r->answer);
        server__count_batch(r, b);
    } else {
        r->answer_status = 503;
        if (r->otlp)
            otlp_status(r->otlp, 503, b->error, &r->answer);
        else
            ingest_error_json(&r->answer, b->error);
    }
}

/* Writer thread: the batch is durable or failed; wake the connection. */
static void ingest_done(lake_batch *b, void *ud)
{
    server__req *r = ud;
    server__ingest_answer(r, b);
    MHD_resume_connection(r->conn);
}

/* A URL argument, NULL when absent or empty (or for the ingest lane's requests, which have none).
 */
static const char *url_arg(const server__req *r, const char *name)
{
    if (!r->conn) return NULL;
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    return v && *v ? v : NULL;
}

/*
 * The ingest options of a request (ingest.h): its URL's type and ts_key, else its token's;
 * who sent it and by which path, for the quarantine. Checked by check_ingest_args.
 */
static ingest_options ingest_options_of(const server__req *r, const char *request_id)
{
    const char *type = url_arg(r, "type"), *ts_key = url_arg(r, "ts_key");
    return (ingest_options){.type = type     ? type
                                    : r->tok ? r->tok->type
                                             : NULL,
                            .ts_key = ts_key   ? ts_key
                                      : r->tok ? r->tok->ts_key
                                               : NULL,
                            .token = r->tok ? r->tok->name : NULL,
                            .route = r->path,
                            .request_id = request_id,
                            .list_all = url_arg(r, "rejected") != NULL};
}

/* Refuses an ingest request whose URL arguments are not right, before its body is read. */
enum MHD_Result server__check_ingest_args(server__req *r)
{
    char err[400];
    const char *rej = url_arg(r, "rejected");
    if (ingest_options_check(url_arg(r, "type"), url_arg(r, "ts_key"), err, sizeof err))
        return server__send_error(r, 400, "%s", err);
    if (rej && strcmp(rej, "all"))
        return server__send_error(
            r, 400,
            "rejected=%.40s: the only value is all (the answer then lists every "
            "refused record)",
            rej);
    return MHD_YES;
}

unsigned server__refusal_status(int rc)
{
    return rc == INGEST_EBIG ? 413 : rc == INGEST_ENOMEM ? 503 : 400;
}

void server__count_rejected(const ingest_result *res)
{
    atomic_fetch_add_explicit(&metrics_global.events_rejected, res->rejected, memory_order_relaxed);
    for (int i = 0; i < EVENT_R_COUNT; i++)
        atomic_fetch_add_explicit(&metrics_global.rejected_by[i], res->rejected_by[i],
                                  memory_order_relaxed);
}

enum MHD_Result server__handle_ingest(server__srv *s, server__req *r)
{
    const char *body = r->body.p ? r->body.p : "";
    size_t n = r->body.len;
    buf inflated = BUF_INIT;
    if (r->gzip) {
        char err[256];
        int rc = ingest_gunzip(body, n, s->cfg.max_body, &inflated, err, sizeof err);
        if (rc) {
            buf_free(&inflated);
            return server__send_error(r, server__refusal_status(rc), "%s", err);
        }
        body = inflated.p ? inflated.p : "";
        n = inflated.len;
    }
    const char *why = NULL;
    unsigned st = server__ingest_parse(s, r, body, n, &why);
    buf_free(&inflated);
    buf_free(&r->body);
    if (st == 200)
        return server__send_response(r, 200, server__answer_type(r), r->answer.p ? r->answer.p : "",
                                     r->answer.len, NULL, NULL);
    if (st) return server__send_error(r, st, "%s", why);
    return server__submit(s, r, ingest_done);
}

unsigned server__ingest_parse(server__srv *s, server__req *r, const char *body, size_t n,
                              const char **why)
{
    event_ctx *ctx = server__thread_ctx(s);
    if (!ctx) {
        *why = "out of memory";
        return 503;
    }
    event_ctx_set_now(ctx, evtime_now_ms());
    char request_id[ULID_LEN + 1];
    ulid_make(ctx->now_ms, request_id);
    ingest_options o = ingest_options_of(r, request_id);
    if (r->otlp)
        otlp_logs_parse(ctx, r->otlp, body, n, o.type, &s->lim, &o, &r->res);
    else
        ingest_parse(ctx, body, n, r->fmt, &s->lim, &o, &r->res);
    if (r->res.code) {
        *why = r->res.error;
        return server__refusal_status(r->res.code);
    }
    server__count_rejected(&r->res);
    if (r->res.n || r->res.qn) return 0;
    if (r->otlp)
        otlp_logs_answer(r->otlp, &r->res, &r->answer);
    else
        ingest_answer(&r->res, 0, 0, &r->answer);
    return 200;
}

void server__batch_fill(server__req *r, lake_done_fn done)
{
    r->batch.lines = r->res.lines.p;
    r->batch.ev = r->res.ev;
    r->batch.n = r->res.n;
    r->batch.qlines = r->res.qlines.p;
    r->batch.qev = r->res.qev;
    r->batch.qn = r->res.qn;
    r->batch.done = done;
    r->batch.ud = r;
}

/* r->res to the lake writer, r suspended until done (writer thread) resumes it. */
enum MHD_Result server__submit(server__srv *s, server__req *r, lake_done_fn done)
{
    server__batch_fill(r, done);
    r->state = SERVER__ST_WAITING;
    atomic_fetch_add(&s->waiting, 1);
    MHD_suspend_connection(r->conn);
    lake_writer_submit(s->writer, &r->batch);
    return MHD_YES;
}

/*
 * After an answered ingest: its stored events to the live tail. The tail takes
 * the request's lines and offsets over, so this costs a lock, whatever the
 * tail's clients ask for (tail.h).
 */
void server__publish(server__srv *s, server__req *r)
{
    tail_publish(s->tail, r->res.lines.p, r->res.lines.len, r->res.ev, r->res.n);
    r->res.lines = (buf)BUF_INIT;
    r->res.ev = NULL;
    r->res.n = r->res.cap = 0;
    r->batch.lines = NULL;
    r->batch.ev = NULL;
    r->batch.n = 0;
}
