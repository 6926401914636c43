/*
 * query_http.c - the query worker pool and the streaming of answers.
 *
 * Flow: the HTTP thread parses the request and queues a job, then suspends
 * the connection. A worker runs the query (lake/query.c) with a sink that
 * fills the job's pipe. The first output (or the end, or an error) resumes
 * the connection; the HTTP thread then answers: an error with its status, or
 * a chunked response whose content reader drains the pipe, suspending the
 * connection whenever the pipe is empty until the worker resumes it again.
 * The worker waits while the pipe is full, so a slow client slows its own
 * query, nothing else, and only until the query's deadline: a client that
 * stops reading cannot hold a worker past --query-timeout. The pipe never
 * holds more than PIPE_MAX bytes the client has not taken (plus the few
 * bytes that end an answer), so an answer costs the server that much and
 * 64 KiB of rendering, whatever its size.
 *
 * While a query waits in the queue its connection is suspended, and
 * libmicrohttpd does not watch a suspended socket: a client that leaves then
 * would go unnoticed. So before running a job the worker looks at the socket
 * itself, and a query whose client has closed it is not run.
 */
#include "query_http.h"
#include "ingest.h"
#include "log.h"

#include "evtime.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define PIPE_MAX (1u << 20) /* bytes a query may run ahead of its client */

struct query_http_pool {
    query_http_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    query_http_job *head, *tail;
    int queued, stop, nthreads;
    pthread_t *threads;
    query_conn **conns;
    /* counters for /metrics, written by the workers */
    _Atomic uint64_t over_bytes, timeouts, gone, skipped, bytes, out_of_memory;
    _Atomic int running;
};

struct query_http_job {
    query_http_pool *pool;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    struct MHD_Connection *conn;
    int fd; /* the client's socket (MHD's), looked at only while the connection is suspended */
    char *sql;
    json_t *params;
    enum query_format format;
    /* state, under mu */
    int signalled; /* the connection was resumed for the answer's start */
    int began;     /* the sink's begin ran: the answer is 200 and streams */
    const char *content_type;
    int done;
    query_outcome out;
    buf pipe;
    size_t pipe_off;
    int reader_waits; /* the content reader suspended the connection */
    int counted;      /* that suspension is in pool->cfg.waiting */
    int cancelled;    /* the response is gone */
    query_http_job *next;
};

static void job_unref(query_http_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    free(j->sql);
    json_decref(j->params);
    buf_free(&j->pipe);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void query_http_release(query_http_job *j)
{
    if (j) job_unref(j);
}

/* ---- the worker's side: the sink ---------------------------------------------- */

static int sink_begin(void *ud, const char *ct)
{
    query_http_job *j = ud;
    pthread_mutex_lock(&j->mu);
    j->began = 1;
    j->content_type = ct;
    j->signalled = 1;
    int cancelled = j->cancelled;
    MHD_resume_connection(j->conn);
    pthread_mutex_unlock(&j->mu);
    return cancelled;
}

/* Waits on j->cv until signalled or the monotonic deadline; nonzero once it has passed. */
static int wait_until(query_http_job *j, int64_t deadline_ms)
{
    if (evtime_mono_ms() >= deadline_ms) return -1;
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};
    int rc = pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    return rc == ETIMEDOUT ? -1 : 0;
}

/*
 * Appends the next bytes of the answer to the pipe, in pieces as the client
 * takes them, waiting up to the deadline while the pipe is full (deadline 0:
 * no wait). Nonzero: the client left, or the deadline passed.
 */
static int sink_write(void *ud, const char *p, size_t n, int64_t deadline_ms)
{
    query_http_job *j = ud;
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    while (n && !rc) {
        while (deadline_ms && !j->cancelled && j->pipe.len - j->pipe_off >= PIPE_MAX && !rc)
            rc = wait_until(j, deadline_ms);
        if (rc || j->cancelled) {
            rc = -1;
            break;
        }
        size_t room = PIPE_MAX - (j->pipe.len - j->pipe_off);
        size_t take = deadline_ms && n > room ? room : n;
        if (j->pipe_off && j->pipe_off >= j->pipe.len / 2) { /* what the reader took */
            memmove(j->pipe.p, j->pipe.p + j->pipe_off, j->pipe.len - j->pipe_off);
            j->pipe.len -= j->pipe_off;
            j->pipe_off = 0;
        }
        if (buf_append(&j->pipe, p, take)) {
            rc = -1;
            break;
        }
        p += take;
        n -= take;
        if (j->reader_waits) {
            j->reader_waits = 0;
            MHD_resume_connection(j->conn);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/*
 * 1 if the client has closed its connection (the socket reads end of
 * stream, or fails). libmicrohttpd itself takes end of stream from a client
 * as its leaving, so nothing it would answer could be read anyway.
 */
static int client_gone(const query_http_job *j)
{
    char c;
    if (j->fd < 0) return 0;
    ssize_t n = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void count(query_http_pool *p, const query_outcome *o, int skipped)
{
    if (skipped) atomic_fetch_add_explicit(&p->skipped, 1, memory_order_relaxed);
    if (o->code == QUERY_EGONE) atomic_fetch_add_explicit(&p->gone, 1, memory_order_relaxed);
    if (o->code == QUERY_ETIMEDOUT)
        atomic_fetch_add_explicit(&p->timeouts, 1, memory_order_relaxed);
    if (o->over_bytes) atomic_fetch_add_explicit(&p->over_bytes, 1, memory_order_relaxed);
    if (o->out_of_memory) atomic_fetch_add_explicit(&p->out_of_memory, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->bytes, o->bytes, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
    query_http_pool *p = ((void **)arg)[0];
    query_conn *qc = ((void **)arg)[1];
    free(arg);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        query_http_job *j = p->head;
        if (!j) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);

        query_request req = {.sql = j->sql,
                             .params = j->params,
                             .format = j->format,
                             .max_rows = p->cfg.max_rows,
                             .timeout_ms = p->cfg.timeout_ms,
                             .max_bytes = p->cfg.max_bytes};
        query_sink sink = {sink_begin, sink_write, j};
        query_outcome out;
        int skip = client_gone(j);
        if (skip) {
            memset(&out, 0, sizeof out);
            out.code = QUERY_EGONE;
            snprintf(out.error, sizeof out.error, "the client went away before its query ran");
        } else {
            atomic_fetch_add(&p->running, 1);
            query_run(qc, &req, &sink, &out);
            atomic_fetch_sub(&p->running, 1);
        }
        count(p, &out, skip);
        if (out.code != QUERY_OK && out.code != QUERY_EGONE && log_enabled(LOG_DEBUG))
            log_msg(LOG_DEBUG, "query failed", "error", out.error, LOG_END);

        pthread_mutex_lock(&j->mu);
        j->out = out;
        j->done = 1;
        if (!j->signalled) { /* an error, or a JSON answer: first resume */
            j->signalled = 1;
            MHD_resume_connection(j->conn);
        } else if (j->reader_waits) {
            j->reader_waits = 0;
            MHD_resume_connection(j->conn);
        }
        pthread_mutex_unlock(&j->mu);
        job_unref(j);
    }
    return NULL;
}

int query_http_start(const query_http_config *cfg, query_http_pool **out, char *err, size_t errlen)
{
    query_http_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->cfg = *cfg;
    if (p->cfg.threads <= 0) p->cfg.threads = 2;
    if (p->cfg.queue <= 0) p->cfg.queue = 4 * p->cfg.threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)p->cfg.threads, sizeof *p->threads);
    p->conns = calloc((size_t)p->cfg.threads, sizeof *p->conns);
    if (!p->threads || !p->conns) {
        snprintf(err, errlen, "out of memory");
        query_http_stop(p);
        return -1;
    }
    for (int i = 0; i < p->cfg.threads; i++) {
        if (!(p->conns[i] = query_conn_new(cfg->engine, err, errlen))) {
            query_http_stop(p);
            return -1;
        }
        void **arg = malloc(2 * sizeof *arg);
        if (!arg) {
            snprintf(err, errlen, "out of memory");
            query_http_stop(p);
            return -1;
        }
        arg[0] = p, arg[1] = p->conns[i];
        if (pthread_create(&p->threads[i], NULL, worker_main, arg)) {
            free(arg);
            snprintf(err, errlen, "cannot start a query thread");
            query_http_stop(p);
            return -1;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
}

void query_http_stats_get(query_http_pool *p, query_http_stats *st)
{
    st->over_bytes = atomic_load(&p->over_bytes);
    st->out_of_memory = atomic_load(&p->out_of_memory);
    st->timeouts = atomic_load(&p->timeouts);
    st->gone = atomic_load(&p->gone);
    st->skipped = atomic_load(&p->skipped);
    st->bytes = atomic_load(&p->bytes);
    st->running = atomic_load(&p->running);
    pthread_mutex_lock(&p->mu);
    st->queued = p->queued;
    pthread_mutex_unlock(&p->mu);
}

void query_http_interrupt(query_http_pool *p)
{
    for (int i = 0; p && i < p->nthreads; i++) query_conn_interrupt(p->conns[i]);
}

void query_http_stop(query_http_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        if (p->conns[i]) query_conn_interrupt(p->conns[i]);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    for (int i = 0; p->conns && i < p->cfg.threads; i++) query_conn_free(p->conns[i]);
    free(p->threads);
    free(p->conns);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* ---- the HTTP side ------------------------------------------------------------ */

int query_http_submit(query_http_pool *p, struct MHD_Connection *conn, const char *body, size_t len,
                      const char *format, query_http_job **out, char *err, size_t errlen)
{
    *out = NULL;
    enum query_format f = QUERY_JSON;
    if (format && !strcmp(format, "csv"))
        f = QUERY_CSV;
    else if (format && !strcmp(format, "ndjson"))
        f = QUERY_NDJSON;
    else if (format && strcmp(format, "json")) {
        snprintf(err, errlen, "format must be json, csv or ndjson, not \"%.40s\"", format);
        return QUERY_HTTP_EINVAL;
    }
    json_error_t je;
    json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    json_t *sql = json_object_get(req, "sql"), *params = json_object_get(req, "params");
    if (!json_is_object(req) || !json_is_string(sql) ||
        (params && !json_is_array(params) && !json_is_null(params))) {
        if (!req)
            snprintf(err, errlen, "body is not JSON: %s", je.text);
        else
            snprintf(err, errlen, "body must be {\"sql\":\"...\",\"params\":[...]}");
        json_decref(req);
        return QUERY_HTTP_EINVAL;
    }
    query_http_job *j = calloc(1, sizeof *j);
    if (!j || !(j->sql = strdup(json_string_value(sql)))) {
        free(j);
        json_decref(req);
        snprintf(err, errlen, "out of memory");
        return QUERY_HTTP_ENOMEM;
    }
    j->params = json_is_array(params) ? json_incref(params) : NULL;
    json_decref(req);
    j->pool = p;
    j->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->format = f;
    j->refs = 2; /* the request and the worker */
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca; /* sink_write waits until a monotonic deadline */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&p->mu);
    if (p->queued >= p->cfg.queue) {
        pthread_mutex_unlock(&p->mu);
        j->refs = 1;
        job_unref(j);
        snprintf(err, errlen, "too many queries waiting (%d); try again later", p->cfg.queue);
        return QUERY_HTTP_EBUSY;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    *out = j;
    return 0;
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    query_http_job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (j->counted) { /* back from a suspension of ours */
        j->counted = 0;
        atomic_fetch_sub(j->pool->cfg.waiting, 1);
    }
    size_t avail = j->pipe.len - j->pipe_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(out, j->pipe.p + j->pipe_off, n);
        j->pipe_off += n;
        if (j->pipe_off == j->pipe.len) j->pipe_off = j->pipe.len = 0;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        return (ssize_t)n;
    }
    if (j->done) {
        /* an answer cut short ends without its last chunk, so that the client sees it, unless
         * it says so itself: a JSON answer stays valid JSON with its "error" member */
        int clean = !j->out.broken && !(j->out.cut && j->format != QUERY_JSON);
        pthread_mutex_unlock(&j->mu);
        return clean ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    j->reader_waits = 1;
    j->counted = 1;
    atomic_fetch_add(j->pool->cfg.waiting, 1);
    MHD_suspend_connection(j->conn);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void response_gone(void *cls)
{
    query_http_job *j = cls;
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    if (j->counted) {
        j->counted = 0;
        atomic_fetch_sub(j->pool->cfg.waiting, 1);
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

/*
 * The HTTP status of a query that ended with code before its answer began (lake/query.h): the
 * client's statement 400, the client gone 499 (logged, never sent), the engine's failure 503,
 * the time limit 504. A query that ended well without beginning an answer is the engine's
 * failure too.
 */
static unsigned status_of(int code)
{
    switch (code) {
    case QUERY_EREFUSED: return 400;
    case QUERY_EGONE: return 499;
    case QUERY_ETIMEDOUT: return 504;
    default: return 503;
    }
}

static enum MHD_Result queue(struct MHD_Connection *conn, struct MHD_Response *r, unsigned status,
                             const char *ct, const char *cors)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    if (cors) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", cors);
        if (strcmp(cors, "*")) MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

enum MHD_Result query_http_respond(query_http_job *j, struct MHD_Connection *conn, const char *cors,
                                   unsigned *status)
{
    pthread_mutex_lock(&j->mu);
    int began = j->began;
    int code = j->done ? j->out.code : QUERY_OK;
    char msg[sizeof j->out.error];
    snprintf(msg, sizeof msg, "%s", j->out.error);
    const char *ct = j->content_type;
    pthread_mutex_unlock(&j->mu);

    if (!began &&
        code == QUERY_EGONE) { /* the client left while its query waited: nobody to answer */
        *status = status_of(code);
        return MHD_NO;
    }
    if (!began) { /* the query failed before any answer */
        unsigned st = status_of(code);
        buf b = BUF_INIT;
        ingest_error_json(&b, msg);
        buf_putc(&b, '\n'); /* every JSON answer ends its line (server_respond.c) */
        struct MHD_Response *r =
            MHD_create_response_from_buffer(b.len, b.p ? b.p : (char *)"", MHD_RESPMEM_MUST_COPY);
        buf_free(&b);
        if (!r) return MHD_NO;
        *status = st;
        return queue(conn, r, st, "application/json", cors);
    }
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the response's */
    pthread_mutex_unlock(&j->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, reader, j, response_gone);
    if (!r) {
        response_gone(j);
        return MHD_NO;
    }
    *status = 200;
    return queue(conn, r, 200, ct, cors);
}
