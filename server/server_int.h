/*
 * server_int.h - inside the server: what its source files share.
 *
 * server.c starts and stops the server (server__srv, one per server_run);
 * server_listen.c binds its socket, server_compact.c runs its compactor
 * thread. A request (server__req, one per HTTP request) goes through
 * server_requests.c, which routes it and reads its body, to a handler of
 * server_ingest.c or server_handlers.c, and every answer goes out through
 * server_respond.c. Nothing outside these files includes this header.
 */
#ifndef EVENTS_SERVER_INT_H
#define EVENTS_SERVER_INT_H

#include "server.h"
#include "auth.h"
#include "buf.h"
#include "cache.h"
#include "conns.h"
#include "deliver.h"
#include "ingest.h"
#include "metrics.h"
#include "origins.h"
#include "otlp.h"
#include "query.h"
#include "query_http.h"
#include "recent.h"
#include "retain.h"
#include "snapshots.h"
#include "store.h"
#include "stream.h"
#include "subs.h"
#include "tail.h"
#include "webhooks.h"
#include "writer.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include "events_version.h" /* EVENTS_VERSION_STRING, from CMakeLists.txt's project(VERSION) */

/* A running server: made by server_run, which frees it when it returns. */
typedef struct server__lane server__lane;

typedef struct server__srv {
    server_config cfg;
    struct MHD_Daemon *daemon;
    server__lane *lane; /* the ingest lane (server_lane.c); NULL: --ingest-lane 0 */
    store *store;
    lake_cache *cache; /* NULL for a directory lake */
    tail_hub *tail;
    recent *recent; /* GET /recent's ring; NULL: --recent-events 0 */
    lake_writer *writer;
    query_engine *engine;
    query_http_pool *queries;
    lake_expirer *expirer;        /* the quarantine's retention; NULL: kept forever */
    lake_expirer *stream_expirer; /* the stream log's retention; NULL: kept forever */
    auth *auth;
    conns_table *conns;
    origins *origins;
    ingest_limits lim;
    int64_t started_ms;
    char addr[128];
    _Atomic int inflight, waiting;
    _Atomic int stopping; /* set at SIGTERM: new requests are answered 503, never suspended */
    pthread_key_t ctx_key;
    char spool[4096];    /* also where snapshot uploads are written before they go to the lake */
    char work[4096];     /* compaction's scratch directory */
    char snap_tmp[4200]; /* an object store's snapshot downloads on their way: not the spool,
                          * whose disk ingest needs; the cache's, under a name it skips */
    pthread_t compactor;
    int compactor_started;
    pthread_mutex_t compact_mu;
    pthread_cond_t compact_cv;
    int compact_stop;
    _Atomic uint64_t compact_runs, compact_failures, compact_partitions, compact_rows,
        compact_deleted, compact_files, compact_leftovers, compact_appended, compact_histories;
    _Atomic int snap_downloads;              /* GET /snapshots/S/B answers being sent */
    _Atomic uint64_t snap_downloads_refused; /* beyond --snapshot-downloads */
    webhooks_secrets
        *hooks;          /* webhook providers' secrets (webhooks.h): set at start, then read only */
    lake_stream *stream; /* GET /events' reader of the stream log (stream.h) */
    _Atomic uint64_t events_reads, events_read, events_expired, events_cut; /* GET /events' */
    deliver *deliver; /* webhook subscriptions' delivery (deliver.h); NULL: off */
    lake_subs
        *subs; /* the lake's webhook subscriptions (subs.h): opened at start, closed at free */
    _Atomic long long subs_known;  /* subscriptions at the API's last listing (server_subs.c) */
    _Atomic uint64_t subs_refused; /* POST /subscriptions refused for --subscriptions-max */
} server__srv;

/* What a request asks for, from its URL and method. */
enum server__kind {
    SERVER__K_NONE,
    SERVER__K_INGEST,
    SERVER__K_QUERY,
    SERVER__K_HEALTH,
    SERVER__K_METRICS,
    SERVER__K_SNAP_PUT,
    SERVER__K_SNAP_LIST,
    SERVER__K_SNAP_GET,
    SERVER__K_TAIL,
    SERVER__K_WEB,
    SERVER__K_WEBHOOK,
    SERVER__K_RECENT,
    SERVER__K_EVENTS,
    SERVER__K_SUBS
};

enum server__state { SERVER__ST_READING, SERVER__ST_WAITING, SERVER__ST_RESPONDED };

/* A request: made when its headers are whole (on_request), freed when it completes. */
typedef struct server__req {
    server__srv *srv;
    struct MHD_Connection *conn;
    enum server__kind kind;
    enum metrics_route route;
    enum server__state state;
    int64_t t0_ns, deadline_ms;
    unsigned status; /* the status sent */
    buf body;
    int gzip;
    enum ingest_format fmt;
    enum otlp_encoding
        otlp; /* POST /v1/logs (kind SERVER__K_INGEST): its encoding; else OTLP_NONE */
    ingest_result res;
    lake_batch batch;
    unsigned answer_status; /* set by the writer callback */
    buf answer;
    query_http_job *job;     /* SERVER__K_QUERY: the query, once submitted */
    unsigned discard_status; /* nonzero: drop the rest of the body, then answer this */
    char discard_error[160];
    snapshots_upload *snap; /* SERVER__K_SNAP_PUT: the upload so far */
    int snap_download; /* SERVER__K_SNAP_GET: counted in snap_downloads until the request completes
                        */
    char snap_source[64], snap_bookmark[EVENTS_BOOKMARK_LEN + 1];
    const char *cors;      /* Access-Control-Allow-Origin of the answers, or NULL (origins.h) */
    int close;             /* answer with Connection: close */
    const auth_token *tok; /* the request's token, or NULL without tokens */
    char path[16];         /* SERVER__K_INGEST: the route it came in by, for the quarantine */
    int hook;              /* SERVER__K_WEBHOOK: its provider (webhooks.h) */
    int hook_verified;     /* SERVER__K_WEBHOOK: its signature was verified */
    char method[8];        /* SERVER__K_SUBS: the request's method */
} server__req;

/* ---- server.c ------------------------------------------------------------ */

/* The process's resident memory, from /proc/self/statm; 0 if unknown. */
uint64_t server__resident_bytes(void);

/* ---- server_respond.c: the answers -------------------------------------- */

/* Records the request as answered (metrics.h): every answer passes here once. */
void server__answered(server__req *r, unsigned status);
/* The CORS headers of an answer to r (origins.h). */
void server__add_cors(struct MHD_Response *resp, const server__req *r);
/* Queues an answer (body copied), with one more header h1: v1 unless h1 is NULL. */
enum MHD_Result server__send_response(server__req *r, unsigned status, const char *ctype,
                                      const char *body, size_t len, const char *h1, const char *v1);
enum MHD_Result server__send_json(server__req *r, unsigned status, const buf *b, const char *h1,
                                  const char *v1);
/* The Content-Type of r's answers: OTLP's answer in the request's encoding, else JSON. */
const char *server__answer_type(const server__req *r);
/* Queues an error answer, in the request's own error body (JSON, or OTLP's). */
enum MHD_Result server__send_error(server__req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Queues an error answer {"ok":false,"error":error,"details":details}, without WWW-Authenticate. */
enum MHD_Result server__send_error_details(server__req *r, unsigned status, const char *error,
                                           const char *details);
/* Answers a request whose body is still arriving, on its socket, and has it closed. */
enum MHD_Result server__abort_mid_body(server__req *r, unsigned status, const char *reason,
                                       const char *msg);

/* ---- server_ingest.c: POST /ingest, /e, /v1/logs ------------------------- */

/* Refuses an ingest request whose URL arguments are not right, before its body is read. */
enum MHD_Result server__check_ingest_args(server__req *r);
enum MHD_Result server__handle_ingest(server__srv *s, server__req *r);
/*
 * Hands r->res to the lake writer and suspends r; done, on the writer thread, writes
 * r->answer and r->answer_status and resumes it, and the answer is then queued.
 */
enum MHD_Result server__submit(server__srv *s, server__req *r, lake_done_fn done);
/* r->batch from r->res, done to be called with r when it is durable or failed. */
void server__batch_fill(server__req *r, lake_done_fn done);
/* 1 if the Content-Type value v is the media type want (parameters after ; ignored). */
int server__media_type_is(const char *v, const char *want);
/* The metrics of a batch the writer made durable: accepted, duplicates, bytes, quarantine. */
void server__count_batch(const server__req *r, const lake_batch *b);
/* A committed (or failed) batch of r: r->answer_status and r->answer, and its metrics. */
void server__ingest_answer(server__req *r, const lake_batch *b);
/* The status of an answer to a body refused with an INGEST_E* code (413, 503, else 400). */
unsigned server__refusal_status(int rc);
/* The records a parsed body refused, counted in /metrics. */
void server__count_rejected(const ingest_result *res);
/*
 * Parses the n bytes of body into r->res (OTLP's if r->otlp, else /ingest's in r->fmt) with
 * r's options (its URL's, else its token's). Returns 0 when r->res has records to commit;
 * else the status of the answer to make without a commit: 200 (nothing to store, the answer
 * in r->answer) or a refusal, its reason in *why.
 */
unsigned server__ingest_parse(server__srv *s, server__req *r, const char *body, size_t n,
                              const char **why);
/* After an answered ingest: its stored events to the live tail. */
void server__publish(server__srv *s, server__req *r);
/* The HTTP thread's event context (its limits the server's), or NULL out of memory. */
event_ctx *server__thread_ctx(server__srv *s);
/* Frees an HTTP thread's event context (the destructor of s->ctx_key). */
void server__free_ctx(void *p);

/* ---- server_handlers.c: the other endpoints ------------------------------ */

enum MHD_Result server__handle_query(server__srv *s, server__req *r);
enum MHD_Result server__handle_snapshots(server__srv *s, server__req *r);
enum MHD_Result server__handle_health(server__srv *s, server__req *r);
enum MHD_Result server__handle_web(server__req *r, const char *url);
enum MHD_Result server__handle_tail(server__srv *s, server__req *r);
enum MHD_Result server__handle_metrics(server__srv *s, server__req *r);
enum MHD_Result server__handle_recent(server__srv *s, server__req *r);

/* ---- server_events.c: GET /events ---------------------------------------- */

enum MHD_Result server__handle_events(server__srv *s, server__req *r);
/* 1 if a GET /tail asks to read the stream first: Last-Event-ID, ?after= or ?since=. */
int server__tail_wants_stream(server__req *r);
/* GET /tail from a position: the stream's events after it, then live (tail.h). */
enum MHD_Result server__tail_after(server__srv *s, server__req *r, const char *type);
/* GET /events' counters, to /metrics. */
void server__events_metrics(server__srv *s, buf *b);
/* A read of the stream log and of the writer's unsealed segments (ud: the server__srv), for
 * the delivery engine (deliver_read_fn). */
int server__stream_read(void *ud, const lake_stream_req *q, lake_stream_res *res, char *err,
                        size_t errlen);

/* ---- server_webhooks.c: POST /webhooks ----------------------------------- */

/* The webhook secrets of cfg (file, environment, unsigned providers): 0, or -1 with err. */
int server__webhooks_start(server__srv *s, char *err, size_t errlen);
/* Refuses a webhook request before its body: its provider, secret, Content-Type. */
enum MHD_Result server__check_webhook(server__srv *s, server__req *r, const char *url);
enum MHD_Result server__handle_webhook(server__srv *s, server__req *r);

/* ---- server_subs.c: /subscriptions ------------------------------------------ */

#define SERVER__SUBS_MAX_BODY 65536 /* bytes of a /subscriptions body (LAKE_SUBS_MAX_RECORD) */
enum MHD_Result server__handle_subs(server__srv *s, server__req *r, const char *url);
/* The subscriptions' gauge and counter, to /metrics. */
void server__subs_metrics(server__srv *s, buf *b);

/* ---- server_requests.c: libmicrohttpd's callbacks ------------------------ */

void *server__on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
enum MHD_Result server__on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls);
void server__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe);
void server__on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                           enum MHD_ConnectionNotificationCode toe);
void server__mhd_log(void *cls, const char *fmt, va_list ap);

/* ---- server_lane.c: the ingest lane --------------------------------------- */

/*
 * Starts the acceptor and the lane (server_lane.c) on the listening socket
 * lfd, which it then owns (closed on failure too); libmicrohttpd's daemon,
 * without a listening socket of its own, must be running. -1 with err set.
 */
int server__lane_start(server__srv *s, int lfd, char *err, size_t errlen);
/* Stops both threads and closes their connections and lfd; before MHD_stop_daemon. */
void server__lane_stop(server__srv *s);

/* ---- server_listen.c: the listening socket ------------------------------- */

/*
 * Binds and listens on spec ("host:port"); require_loopback refuses any other
 * address. Returns the non-blocking socket and writes where it listens into
 * addr_out, or returns -1 with err set.
 */
int server__listen(const char *spec, int require_loopback, char *addr_out, size_t addrlen,
                   char *err, size_t errlen);

/* ---- server_compact.c: background compaction ------------------------------ */

/* Starts the compactor thread, which runs every cfg.compact_every_ms (above 0). */
void server__compactor_start(server__srv *s);
/* Stops it and waits for its run to end; nothing if it was not started. */
void server__compactor_stop(server__srv *s);

#endif
