/*
 * query_http.h - POST /query: queries run on a pool of worker threads, never
 * on an HTTP thread, and their answers stream back through a bounded pipe.
 *
 * A job is shared by three owners: the HTTP request, the worker running it,
 * and the HTTP response that streams it. It is freed when the last lets go.
 * The connection is suspended while the query has nothing to send; the worker
 * resumes it when the answer (or its first part, or an error) is ready.
 */
#ifndef EVENTS_QUERY_HTTP_H
#define EVENTS_QUERY_HTTP_H

#include "query.h"

#include <microhttpd.h>
#include <stdatomic.h>

typedef struct query_http_pool query_http_pool;
typedef struct query_http_job query_http_job;

typedef struct query_http_config {
    query_engine *engine;
    int threads;          /* concurrent queries; default 2 */
    int queue;            /* waiting queries before 429; default 4 per thread */
    uint64_t max_rows;    /* per answer; default 100,000 */
    uint64_t max_bytes;   /* per answer; default 32 MiB */
    int64_t timeout_ms;   /* per query; default 30 s */
    _Atomic int *waiting; /* the server's count of suspended connections */
} query_http_config;

int query_http_start(const query_http_config *cfg, query_http_pool **out, char *err, size_t errlen);

/* What the pool counts, for /metrics. */
typedef struct query_http_stats {
    uint64_t over_bytes;    /* answers cut at max_bytes */
    uint64_t timeouts;      /* queries stopped at their time limit, running or writing */
    uint64_t gone;          /* queries stopped or not run because their client left */
    uint64_t skipped;       /* of those, queued queries that never ran */
    uint64_t bytes;         /* bytes of answers handed to clients' connections */
    uint64_t out_of_memory; /* queries that failed for memory (--query-memory, --memory-max) */
    int running, queued;    /* queries running now, and waiting for a worker */
} query_http_stats;

void query_http_stats_get(query_http_pool *p, query_http_stats *st);

/* Interrupts the queries running now (they end with 504); the pool goes on. */
void query_http_interrupt(query_http_pool *p);

/* Interrupts every running query, waits for the workers to end. NULL is ignored. */
void query_http_stop(query_http_pool *p);

/* query_http_submit's failures. */
#define QUERY_HTTP_EINVAL (-1) /* a bad body or format */
#define QUERY_HTTP_EBUSY  (-2) /* the queue is full */
#define QUERY_HTTP_ENOMEM (-3) /* out of memory */

/*
 * Parses a request body ({"sql":"…","params":[…]}) and the format, and queues
 * the query. Returns 0 with the job in *out (the caller suspends the
 * connection, counted in *waiting), or one of the codes above with err set.
 */
int query_http_submit(query_http_pool *p, struct MHD_Connection *conn, const char *body, size_t len,
                      const char *format, query_http_job **out, char *err, size_t errlen);

/*
 * Called when the connection is resumed after submission: queues the answer
 * (an error, or a response that streams the rows), with cors as its
 * Access-Control-Allow-Origin (NULL: none). Returns MHD's result and sets
 * *status to the status sent.
 */
enum MHD_Result query_http_respond(query_http_job *j, struct MHD_Connection *conn, const char *cors,
                                   unsigned *status);

/* The request is done with the job (its completion callback). NULL is ignored. */
void query_http_release(query_http_job *j);

#endif
