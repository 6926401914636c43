/*
 * server.c - HTTP on libmicrohttpd: routing, auth, and the request lifecycle.
 *
 * An ingest request is read into memory (bounded by --max-body and a whole-
 * request deadline), parsed on the HTTP thread that received it, then handed
 * to the lake writer. Waiting for the group commit must not hold an HTTP
 * thread (with two threads that would cap throughput at two requests per
 * fdatasync), so the connection is suspended and the writer resumes it once
 * the batch is durable or has failed; only then is the answer queued.
 *
 * Before a handler sees a request: the connection table (conns.c) has let the
 * connection in and watched the deadline of its headers; the URI callback has
 * refused URLs libmicrohttpd cannot hold; check_request has refused a Host or
 * an Origin that may not call the server (origins.c) and a body framing
 * libmicrohttpd cannot read.
 *
 * While it listens, SPOOL/server.json says where (announce.h), so that the
 * command line asks the server of a lake rather than reading its files. At
 * SIGTERM/SIGINT that file is removed, the listening socket is closed,
 * in-flight requests are finished (a suspended one always is: the writer keeps
 * running), and then the writer seals every segment into the lake.
 */
#include "server.h"
#include "announce.h"
#include "conns.h"
#include "origins.h"
#include "snapshots.h"
#include "tail.h"
#include "web.h"
#include "compact.h"
#include "auth.h"
#include "evtime.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "query.h"
#include "query_http.h"
#include "retain.h"
#include "store.h"
#include "ulid.h"
#include "writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef EVENTS_VERSION
#include "events_version.h"
#define EVENTS_VERSION EVENTS_VERSION_STRING
#endif

typedef struct server {
    server_config cfg;
    struct MHD_Daemon *daemon;
    store *store;
    lake_cache *cache; /* NULL for a directory lake */
    tail_hub *tail;
    lake_writer *writer;
    query_engine *engine;
    query_pool *queries;
    lake_expirer *expirer; /* the quarantine's retention; NULL: kept forever */
    auth *auth;
    conn_table *conns;
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
        compact_deleted, compact_files, compact_leftovers;
    _Atomic int snap_downloads;              /* GET /snapshots/S/B answers being sent */
    _Atomic uint64_t snap_downloads_refused; /* beyond --snapshot-downloads */
} server;

/* ---- background compaction ------------------------------------------------- */

/* What compactions killed with an earlier server left in the work directory (compact.h). */
static void compactor_clean(server *s)
{
    uint64_t n = 0;
    char err[512];
    if (compact_clean(s->work, &n, err, sizeof err)) {
        log_msg(LOG_WARN, "cannot clean the compaction directory", "path", s->work, "error", err,
                LOG_END);
        return;
    }
    s->compact_leftovers += n;
    if (n) {
        char c[24];
        snprintf(c, sizeof c, "%llu", (unsigned long long)n);
        log_msg(LOG_INFO, "removed compaction leftovers", "path", s->work, "entries", c, LOG_END);
    }
}

static void *compactor_main(void *arg)
{
    server *s = arg;
    compactor_clean(s);
    pthread_mutex_lock(&s->compact_mu);
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (s->cfg.compact_every_ms % 1000) * 1000000;
        ts.tv_sec += (time_t)(s->cfg.compact_every_ms / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!s->compact_stop &&
               pthread_cond_timedwait(&s->compact_cv, &s->compact_mu, &ts) == 0) {
        }
        if (s->compact_stop) break;
        pthread_mutex_unlock(&s->compact_mu);
        compact_config cc = {.store = s->store,
                             .cache = s->cache,
                             .work_dir = s->work,
                             .after_ms = s->cfg.compact_after_ms,
                             .retain_ms = s->cfg.compact_retain_ms,
                             .memory_limit = s->cfg.compact_memory,
                             .chunk_bytes = s->cfg.compact_chunk,
                             .threads = 1};
        compact_stats st;
        char err[1024];
        int64_t t0 = evtime_mono_ms();
        int r = compact_run(&cc, &st, err, sizeof err);
        char ms[24], parts[24], files[24], rows[24], del[24], written[24];
        snprintf(ms, sizeof ms, "%lld", (long long)(evtime_mono_ms() - t0));
        snprintf(parts, sizeof parts, "%llu", (unsigned long long)st.compacted);
        snprintf(files, sizeof files, "%llu", (unsigned long long)st.files_in);
        snprintf(rows, sizeof rows, "%llu", (unsigned long long)st.rows);
        snprintf(del, sizeof del, "%llu", (unsigned long long)st.deleted);
        snprintf(written, sizeof written, "%llu", (unsigned long long)st.files_out);
        if (r == 0) {
            s->compact_runs++;
            s->compact_partitions += st.compacted;
            s->compact_rows += st.rows;
        }
        s->compact_deleted += st.deleted;
        s->compact_files += st.files_out;
        s->compact_leftovers += st.leftovers;
        if (r < 0) s->compact_failures++;
        if (r < 0)
            log_msg(LOG_WARN, "compaction failed", "error", err, LOG_END);
        else if (r > 0)
            log_msg(LOG_DEBUG, "compaction skipped", "holder", st.holder, LOG_END);
        else if (st.compacted || st.deleted)
            log_msg(LOG_INFO, "compacted", "partitions", parts, "files", files, "rows", rows,
                    "parquet_files", written, "deleted", del, "ms", ms, LOG_END);
        pthread_mutex_lock(&s->compact_mu);
    }
    pthread_mutex_unlock(&s->compact_mu);
    return NULL;
}

static void compactor_stop(server *s)
{
    if (!s->compactor_started) return;
    pthread_mutex_lock(&s->compact_mu);
    s->compact_stop = 1;
    pthread_cond_signal(&s->compact_cv);
    pthread_mutex_unlock(&s->compact_mu);
    pthread_join(s->compactor, NULL);
    s->compactor_started = 0;
}

enum kind {
    K_NONE,
    K_INGEST,
    K_QUERY,
    K_HEALTH,
    K_METRICS,
    K_SNAP_PUT,
    K_SNAP_LIST,
    K_SNAP_GET,
    K_TAIL,
    K_WEB
};

#define QUERY_MAX_BODY (1u << 20)
enum state { ST_READING, ST_WAITING, ST_RESPONDED };

typedef struct request {
    server *srv;
    struct MHD_Connection *conn;
    enum kind kind;
    enum metrics_route route;
    enum state state;
    int64_t t0_ns, deadline_ms;
    unsigned status; /* the status sent */
    buf body;
    int gzip;
    enum ingest_format fmt;
    enum otlp_encoding otlp; /* POST /v1/logs (kind K_INGEST): its encoding; else OTLP_NONE */
    ingest_result res;
    lake_batch batch;
    unsigned answer_status; /* set by the writer callback */
    buf answer;
    qjob *job;               /* K_QUERY: the query, once submitted */
    unsigned discard_status; /* nonzero: drop the rest of the body, then answer this */
    char discard_error[160];
    snap_upload *snap; /* K_SNAP_PUT: the upload so far */
    int snap_download; /* K_SNAP_GET: counted in snap_downloads until the request completes */
    char snap_source[64], snap_bookmark[17];
    const char *cors;      /* Access-Control-Allow-Origin of the answers, or NULL (origins.h) */
    int close;             /* answer with Connection: close */
    const auth_token *tok; /* the request's token, or NULL without tokens */
    char path[16];         /* K_INGEST: the route it came in by, for the quarantine */
} request;

/* The memory the server may use: the machine's, or its cgroup's limit when that is lower. */
static uint64_t memory_available(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    uint64_t m = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r"); /* cgroup v2; "max" when unlimited */
    unsigned long long cg;
    if (f && fscanf(f, "%llu", &cg) == 1 && cg > 0 && (!m || cg < m)) m = cg;
    if (f) fclose(f);
    return m;
}

uint64_t server_memory_default(void)
{
    return memory_available() / 4 * 3;
}

/*
 * --memory-max: DuckDB keeps the values of the rows it is producing outside
 * its memory limit (a chunk of 2,048 rows of strings built by a query can be
 * gigabytes), and no setting bounds them. So the whole process gets a limit
 * on its data memory (RLIMIT_DATA: private writable mappings, what malloc
 * takes from the system, not reserved address space). Past it an allocation
 * fails: DuckDB ends the query with an out-of-memory error, a request that
 * needed memory is answered 503, and the server goes on, where without a
 * limit the kernel would kill it. AddressSanitizer maps terabytes of shadow
 * memory, which the limit counts, so a sanitizer build does not set it.
 */
#if defined(__SANITIZE_ADDRESS__)
#define EVENTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVENTS_ASAN 1
#endif
#endif

void server_exec_for_memory_max(const server_config *cfg, char **argv)
{
#ifdef EVENTS_ASAN
    (void)cfg, (void)argv;
#else
    if (!cfg->memory_max || getenv("DUCKDB_JE_MALLOC_CONF")) return;
    if (setenv("DUCKDB_JE_MALLOC_CONF", "retain:false", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("DUCKDB_JE_MALLOC_CONF"); /* no exec: the limit still holds, memory comes back later */
    log_msg(LOG_WARN, "cannot restart with DuckDB's allocator set for --memory-max", "error",
            strerror(errno), LOG_END);
#endif
}

static void apply_memory_max(uint64_t max)
{
    if (!max) return;
#ifdef EVENTS_ASAN
    log_msg(LOG_WARN, "--memory-max is not applied in a build with AddressSanitizer", LOG_END);
#else
    struct rlimit rl;
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)max);
    if (getrlimit(RLIMIT_DATA, &rl) == 0) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < max) max = rl.rlim_max;
        rl.rlim_cur = max;
        if (setrlimit(RLIMIT_DATA, &rl) == 0) return;
    }
    log_msg(LOG_WARN, "cannot limit the server's memory", "memory_max", v, "error", strerror(errno),
            LOG_END);
#endif
}

void server_config_defaults(server_config *c)
{
    memset(c, 0, sizeof *c);
    c->listen = "127.0.0.1:8080";
    c->lake = "./events-lake";
    c->max_body = INGEST_MAX_BODY_DEFAULT;
    c->max_events = 0; /* what --max-body can hold */
    c->max_event_bytes = EVENT_MAX_BYTES_DEFAULT;
    c->seal_bytes = 64ull << 20;
    c->seal_age_ms = 30000;
    c->max_open_segments = 64;
    c->dedup_window = 1000000;
    c->request_timeout_s = 30;
    c->idle_timeout_s = 60;
    c->header_timeout_ms = 10000;
    c->max_url_args = 100;
    c->max_connections = 4096;
    c->shutdown_timeout_s = 30;
    c->query_threads = 2;
    c->query_timeout_ms = 30000;
    c->query_max_rows = 100000;
    c->query_max_bytes = QUERY_MAX_BYTES_DEFAULT;
    c->query_memory = 1ull << 30;
    c->max_snapshot = 1ull << 30;
    c->snapshot_downloads = 16;
    c->cache_max = 1ull << 30;
    c->tail_buffer = 1u << 20;
    c->tail_heartbeat_ms = 15000;
    c->tail_max_clients = 100;
    c->tail_queue = 16u << 20;
    c->tail_max_patterns = 16;
    c->tail_pattern_bytes = 256;
    c->compact_every_ms = 300000;
    c->compact_after_ms = 600000;
    c->compact_retain_ms = 600000;
    c->compact_memory = 1ull << 30;
    c->memory_max = server_memory_default();
}

/* ---- responses ---------------------------------------------------------- */

/* Records the request as answered. Counted when the answer is queued, not when MHD
 * completes the request, so a client that has its answer finds it in /metrics. */
static void answered(request *r, unsigned status)
{
    r->status = status;
    r->state = ST_RESPONDED;
    metrics_request(r->route, status, evtime_mono_ns() - r->t0_ns);
}

/* The CORS headers of an answer to r (origins.h). */
static void add_cors(struct MHD_Response *resp, const request *r)
{
    if (!r->cors) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors);
    if (strcmp(r->cors, "*")) MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
}

static enum MHD_Result send_response(request *r, unsigned status, const char *ctype,
                                     const char *body, size_t len, const char *h1, const char *v1)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_cors(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (h1) MHD_add_response_header(resp, h1, v1);
    if (r->close && !(h1 && !strcmp(h1, MHD_HTTP_HEADER_CONNECTION)))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    answered(r, status);
    return ok;
}

static enum MHD_Result send_json(request *r, unsigned status, const buf *b, const char *h1,
                                 const char *v1)
{
    return send_response(r, status, "application/json", b->p ? b->p : "", b->len, h1, v1);
}

/* The Content-Type of r's answers: OTLP's answer in the request's encoding, else JSON. */
static const char *answer_type(const request *r)
{
    return r->otlp ? otlp_content_type(r->otlp) : "application/json";
}

static enum MHD_Result send_error(request *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(request *r, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf b = BUF_INIT;
    if (r->otlp)
        otlp_status(r->otlp, status, msg, &b); /* OTLP's own error body, google.rpc.Status */
    else
        ingest_error_json(&b, msg);
    const char *h = NULL, *v = NULL;
    if (status == 401) h = MHD_HTTP_HEADER_WWW_AUTHENTICATE, v = "Bearer realm=\"events\"";
    if (status == 503) h = MHD_HTTP_HEADER_RETRY_AFTER, v = "1";
    if (status == 503 && atomic_load(&r->srv->stopping))
        h = MHD_HTTP_HEADER_CONNECTION, v = "close";
    if (status == 405)
        h = MHD_HTTP_HEADER_ALLOW,
        v = r->kind == K_INGEST || r->kind == K_QUERY ? "POST, OPTIONS" : "GET, OPTIONS";
    enum MHD_Result ok = send_response(r, status, answer_type(r), b.p ? b.p : "", b.len, h, v);
    buf_free(&b);
    if (status >= 500)
        log_msg(LOG_WARN, "request failed", "status", status == 503 ? "503" : "500", "error", msg,
                LOG_END);
    return ok;
}

/*
 * Answers a request whose body is still arriving and closes the connection.
 * libmicrohttpd 0.9.75 queues a response only before the body is read or
 * after all of it has arrived, which a client trickling its body (slowloris)
 * never lets happen. So the answer is written to the socket here, the sending
 * side is shut down, what the client already sent is drained (so the close
 * sends FIN, not a reset that could destroy the answer in flight), and MHD is
 * told to close the connection.
 */
static enum MHD_Result abort_mid_body(request *r, unsigned status, const char *reason,
                                      const char *msg)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    answered(r, status);
    if (!ci) return MHD_NO;
    int fd = ci->connect_fd;
    char cors[400] = "";
    if (r->cors)
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\n%s", r->cors,
                 strcmp(r->cors, "*") ? "Vary: Origin\r\n" : "");
    if (conn_write_error(fd, status, reason, cors, msg) == 0) {
        shutdown(fd, SHUT_WR);
        char sink[4096];
        for (int i = 0; i < 64 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {
        }
    }
    return MHD_NO;
}

/* ---- handlers ------------------------------------------------------------ */

static event_ctx *thread_ctx(server *s)
{
    event_ctx *c = pthread_getspecific(s->ctx_key);
    if (!c && (c = malloc(sizeof *c))) {
        event_ctx_init(c);
        c->max_event_bytes = s->cfg.max_event_bytes;
        pthread_setspecific(s->ctx_key, c);
    }
    return c;
}

static void free_ctx(void *p)
{
    event_ctx_free(p);
    free(p);
}

/* Writer thread: the batch is durable or failed; wake the connection. */
static void ingest_done(lake_batch *b, void *ud)
{
    request *r = ud;
    if (b->status == 0) {
        r->answer_status = 200;
        if (r->otlp)
            otlp_logs_answer(r->otlp, &r->res, &r->answer);
        else
            ingest_answer(&r->res, b->accepted, b->duplicates, &r->answer);
        atomic_fetch_add_explicit(&metrics_global.quarantined, b->quarantined,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&metrics_global.quarantined_bytes, r->res.qlines.len,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&metrics_global.events_accepted, b->accepted,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&metrics_global.events_duplicate, b->duplicates,
                                  memory_order_relaxed);
        uint64_t bytes = 0;
        if (b->duplicates == 0) {
            bytes = r->res.lines.len;
        } else {
            for (size_t i = 0; i < b->n; i++) bytes += b->ev[i].len;
        }
        atomic_fetch_add_explicit(&metrics_global.bytes_stored, bytes, memory_order_relaxed);
    } else {
        r->answer_status = 503;
        if (r->otlp)
            otlp_status(r->otlp, 503, b->error, &r->answer);
        else
            ingest_error_json(&r->answer, b->error);
    }
    MHD_resume_connection(r->conn);
}

/* A URL argument, NULL when absent or empty. */
static const char *url_arg(const request *r, const char *name)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    return v && *v ? v : NULL;
}

/*
 * The ingest options of a request (ingest.h): its URL's type and ts_key, else its token's;
 * who sent it and by which path, for the quarantine. Checked by check_ingest_args.
 */
static ingest_options ingest_options_of(const request *r, const char *request_id)
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
static enum MHD_Result check_ingest_args(request *r)
{
    char err[400];
    const char *rej = url_arg(r, "rejected");
    if (ingest_options_check(url_arg(r, "type"), url_arg(r, "ts_key"), err, sizeof err))
        return send_error(r, 400, "%s", err);
    if (rej && strcmp(rej, "all"))
        return send_error(r, 400,
                          "rejected=%.40s: the only value is all (the answer then lists every "
                          "refused record)",
                          rej);
    return MHD_YES;
}

static enum MHD_Result handle_ingest(server *s, request *r)
{
    const char *body = r->body.p ? r->body.p : "";
    size_t n = r->body.len;
    buf inflated = BUF_INIT;
    if (r->gzip) {
        char err[256];
        unsigned st = ingest_gunzip(body, n, s->cfg.max_body, &inflated, err, sizeof err);
        if (st) {
            buf_free(&inflated);
            return send_error(r, st, "%s", err);
        }
        body = inflated.p ? inflated.p : "";
        n = inflated.len;
    }
    event_ctx *ctx = thread_ctx(s);
    if (!ctx) {
        buf_free(&inflated);
        return send_error(r, 503, "out of memory");
    }
    event_ctx_set_now(ctx, evtime_now_ms());
    char request_id[ULID_LEN + 1];
    ulid_make(ctx->now_ms, request_id);
    ingest_options o = ingest_options_of(r, request_id);
    if (r->otlp)
        otlp_logs_parse(ctx, r->otlp, body, n, o.type, &s->lim, &o, &r->res);
    else
        ingest_parse(ctx, body, n, r->fmt, &s->lim, &o, &r->res);
    buf_free(&inflated);
    buf_free(&r->body);
    if (r->res.status) return send_error(r, r->res.status, "%s", r->res.error);
    atomic_fetch_add_explicit(&metrics_global.events_rejected, r->res.rejected,
                              memory_order_relaxed);
    for (int i = 0; i < EVENT_R_COUNT; i++)
        atomic_fetch_add_explicit(&metrics_global.rejected_by[i], r->res.rejected_by[i],
                                  memory_order_relaxed);
    if (r->res.n == 0 && r->res.qn == 0) {
        buf b = BUF_INIT;
        if (r->otlp)
            otlp_logs_answer(r->otlp, &r->res, &b);
        else
            ingest_answer(&r->res, 0, 0, &b);
        enum MHD_Result ok =
            send_response(r, 200, answer_type(r), b.p ? b.p : "", b.len, NULL, NULL);
        buf_free(&b);
        return ok;
    }
    r->batch.lines = r->res.lines.p;
    r->batch.ev = r->res.ev;
    r->batch.n = r->res.n;
    r->batch.qlines = r->res.qlines.p;
    r->batch.qev = r->res.qev;
    r->batch.qn = r->res.qn;
    r->batch.done = ingest_done;
    r->batch.ud = r;
    r->state = ST_WAITING;
    atomic_fetch_add(&s->waiting, 1);
    MHD_suspend_connection(r->conn);
    lake_writer_submit(s->writer, &r->batch);
    return MHD_YES;
}

static enum MHD_Result handle_query(server *s, request *r)
{
    const char *format = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "format");
    unsigned status = 0;
    char err[256];
    r->job = qjob_submit(s->queries, r->conn, r->body.p ? r->body.p : "", r->body.len, format,
                         &status, err, sizeof err);
    buf_free(&r->body);
    if (!r->job) return send_error(r, status, "%s", err);
    r->state = ST_WAITING;
    atomic_fetch_add(&s->waiting, 1);
    MHD_suspend_connection(r->conn);
    return MHD_YES;
}

static enum MHD_Result handle_snapshots(server *s, request *r)
{
    buf b = BUF_INIT;
    unsigned st;
    enum MHD_Result ok;
    if (r->kind == K_SNAP_PUT) {
        st = snap_finish(r->snap, s->store, &b);
        r->snap = NULL;
        if (st == 201)
            log_msg(LOG_INFO, "snapshot stored", "source", r->snap_source, "bookmark",
                    r->snap_bookmark, LOG_END);
    } else if (r->kind == K_SNAP_LIST) {
        const char *src = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "source");
        st = snap_list(s->store, src && *src ? src : NULL, &b);
    } else {
        /* streamed from a file, never held in memory: a slow reader costs a descriptor and,
         * for an object store, a temporary file; their number is bounded */
        if (atomic_fetch_add(&s->snap_downloads, 1) >= s->cfg.snapshot_downloads) {
            atomic_fetch_sub(&s->snap_downloads, 1); /* before the answer: a client may look */
            s->snap_downloads_refused++;
            return send_error(r, 503,
                              "%d snapshot downloads are running, the most this server takes "
                              "(--snapshot-downloads)",
                              s->cfg.snapshot_downloads);
        }
        r->snap_download = 1; /* counted until the request completes */
        int fd;
        uint64_t size;
        st = snap_open(s->store, s->snap_tmp, r->snap_source, r->snap_bookmark, &fd, &size, &b);
        if (st == 200) {
            buf_free(&b);
            struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
            if (!resp) {
                close(fd);
                return send_error(r, 503, "out of memory");
            }
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/vnd.sqlite3");
            add_cors(resp, r);
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
            ok = MHD_queue_response(r->conn, 200, resp);
            MHD_destroy_response(resp);
            answered(r, 200);
            return ok;
        }
    }
    ok = send_json(r, st, &b, NULL, NULL);
    buf_free(&b);
    return ok;
}

static enum MHD_Result handle_health(server *s, request *r)
{
    lake_writer_stats st;
    lake_writer_stats_get(s->writer, &st);
    int failing = lake_writer_failing(s->writer) || st.lost[0];
    buf b = BUF_INIT;
    buf_printf(&b, "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%.3f,\"lake\":",
               failing                                ? "failing"
               : st.sealing_failing || st.incident[0] ? "degraded"
                                                      : "ok",
               EVENTS_VERSION, (double)(evtime_mono_ms() - s->started_ms) / 1000.0);
    buf_json_str(&b, s->store->url, strlen(s->store->url));
    buf_printf(&b, ",\"spoolBytesPending\":%llu,\"segmentsOpen\":%llu,\"segmentsSealed\":%llu",
               (unsigned long long)st.spool_bytes, (unsigned long long)st.segments_open,
               (unsigned long long)st.segments_sealed);
    if (failing) {
        const char *e = lake_writer_failing(s->writer) ? st.last_error : st.lost;
        buf_puts(&b, ",\"error\":");
        buf_json_str(&b, e, strlen(e));
    }
    if (st.lost[0]) {
        buf_printf(&b, ",\"eventsLost\":%llu,\"lostError\":", (unsigned long long)st.events_lost);
        buf_json_str(&b, st.lost, strlen(st.lost));
    }
    if (st.incident[0]) {
        buf_puts(&b, ",\"spoolIncident\":");
        buf_json_str(&b, st.incident, strlen(st.incident));
    }
    if (st.sealing_failing) {
        buf_puts(&b, ",\"sealError\":");
        buf_json_str(&b, st.seal_error, strlen(st.seal_error));
    }
    buf_putc(&b, '}');
    enum MHD_Result ok = send_json(r, failing ? 503 : 200, &b, NULL, NULL);
    buf_free(&b);
    return ok;
}

static enum MHD_Result handle_web(request *r, const char *url)
{
    const web_asset *a = web_find(url);
    if (!a) return send_error(r, 404, "no such file: %s", url);
    const char *inm =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int same = inm && !strcmp(inm, a->etag);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(same ? 0 : a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", a->type);
    MHD_add_response_header(resp, "ETag", a->etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(
        resp, "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:");
    enum MHD_Result ok = MHD_queue_response(r->conn, same ? 304 : 200, resp);
    MHD_destroy_response(resp);
    answered(r, same ? 304 : 200);
    return ok;
}

static enum MHD_Result handle_tail(server *s, request *r)
{
    const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
    char err[256];
    if (tail_check_patterns(s->tail, type, err, sizeof err)) return send_error(r, 400, "%s", err);
    tail_stats ts;
    tail_hub_stats(s->tail, &ts);
    if (ts.clients >= (uint64_t)s->cfg.tail_max_clients)
        return send_error(r, 503,
                          "%d live tails are open, the most this server takes (--tail-max-clients)",
                          s->cfg.tail_max_clients);
    struct MHD_Response *resp =
        atomic_load(&s->stopping) ? NULL : tail_response(s->tail, r->conn, type);
    if (!resp) return send_error(r, 503, "the server is stopping");
    add_cors(resp, r);
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    answered(r, 200);
    return ok;
}

/*
 * After an answered ingest: its stored events to the live tail. The tail takes
 * the request's lines and offsets over, so this costs a lock, whatever the
 * tail's clients ask for (tail.h).
 */
static void publish(server *s, request *r)
{
    tail_publish(s->tail, r->res.lines.p, r->res.lines.len, r->res.ev, r->res.n);
    r->res.lines = (buf)BUF_INIT;
    r->res.ev = NULL;
    r->res.n = r->res.cap = 0;
    r->batch.lines = NULL;
    r->batch.ev = NULL;
    r->batch.n = 0;
}

/* The process's resident memory, from /proc/self/statm; 0 if unknown. */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0;
    int ok = f && fscanf(f, "%llu %llu", &size, &rss) == 2;
    if (f) fclose(f);
    return ok ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static enum MHD_Result handle_metrics(server *s, request *r)
{
    lake_writer_stats st;
    lake_writer_stats_get(s->writer, &st);
    buf b = BUF_INIT;
    metrics_render(&b, &st);
    metrics_counter(&b, "events_compaction_runs_total", "Compaction runs done by this server.",
                    s->compact_runs);
    metrics_counter(&b, "events_compaction_failures_total", "Compaction runs that failed.",
                    s->compact_failures);
    metrics_counter(&b, "events_compaction_partitions_total",
                    "Hour partitions given a new Parquet file.", s->compact_partitions);
    metrics_counter(&b, "events_compaction_rows_total", "Rows written to Parquet by compaction.",
                    s->compact_rows);
    metrics_counter(&b, "events_compaction_deleted_total",
                    "Replaced files, old manifests and leftovers deleted.", s->compact_deleted);
    metrics_counter(
        &b, "events_compaction_files_written_total",
        "Parquet files written by compaction (an hour larger than a chunk gives several).",
        s->compact_files);
    metrics_counter(&b, "events_compaction_leftovers_removed_total",
                    "Files and directories that killed compactions had left in the work directory.",
                    s->compact_leftovers);
    lake_expirer_stats xs;
    lake_expirer_stats_get(s->expirer, &xs);
    metrics_counter(&b, "events_quarantine_expired_files_total",
                    "Quarantine files deleted for --rejected-retain.", xs.files);
    metrics_counter(&b, "events_quarantine_expire_failures_total",
                    "Runs of the quarantine's expiry that failed (retried at the next run).",
                    xs.failures);
    query_pool_stats qs;
    query_pool_stats_get(s->queries, &qs);
    metrics_counter(&b, "events_query_out_of_memory_total",
                    "Queries that failed for memory (--query-memory, --memory-max).",
                    qs.out_of_memory);
    metrics_gauge(&b, "events_memory_max_bytes",
                  "The server's memory limit (--memory-max); 0: none.",
                  (long long)s->cfg.memory_max);
    metrics_gauge(&b, "process_resident_memory_bytes", "Resident memory of the server.",
                  (long long)resident_bytes());
    metrics_counter(&b, "events_query_answers_cut_total", "Query answers cut at --query-max-bytes.",
                    qs.over_bytes);
    metrics_counter(&b, "events_query_timeouts_total",
                    "Queries stopped at --query-timeout, while running or writing their answer.",
                    qs.timeouts);
    metrics_counter(&b, "events_query_client_gone_total",
                    "Queries stopped, or not run, because their client had gone.", qs.gone);
    metrics_counter(&b, "events_query_skipped_total",
                    "Queued queries not run because their client had gone.", qs.skipped);
    metrics_counter(&b, "events_query_answer_bytes_total", "Bytes of query answers produced.",
                    qs.bytes);
    metrics_gauge(&b, "events_query_running", "Queries running now.", qs.running);
    metrics_gauge(&b, "events_query_queued", "Queries waiting for a query worker.", qs.queued);
    tail_stats ts;
    tail_hub_stats(s->tail, &ts);
    metrics_gauge(&b, "events_tail_clients", "Clients of GET /tail.", (long long)ts.clients);
    metrics_counter(&b, "events_tail_dropped_total",
                    "Clients of GET /tail dropped for falling behind.", ts.dropped);
    metrics_counter(&b, "events_tail_refused_total",
                    "GET /tail refused for its patterns (--tail-max-patterns, "
                    "--tail-max-pattern-bytes).",
                    ts.refused);
    metrics_counter(&b, "events_tail_lost_total",
                    "Accepted events not sent to live tails: the tail queue (--tail-queue) was "
                    "full.",
                    ts.lost);
    metrics_gauge(&b, "events_tail_queue_bytes", "Bytes of events waiting for the tail thread.",
                  (long long)ts.queue_bytes);
    metrics_gauge(&b, "events_snapshot_downloads", "GET /snapshots/S/B answers being sent.",
                  (long long)atomic_load(&s->snap_downloads));
    metrics_counter(&b, "events_snapshot_downloads_refused_total",
                    "GET /snapshots/S/B refused: --snapshot-downloads were running.",
                    s->snap_downloads_refused);
    if (s->cache) {
        lake_cache_stats cs;
        lake_cache_stats_get(s->cache, &cs);
        metrics_gauge(&b, "events_cache_bytes", "Bytes of lake files in the local cache.",
                      (long long)cs.bytes);
        metrics_gauge(&b, "events_cache_max_bytes", "The cache's limit (--cache-max).",
                      (long long)cs.max_bytes);
        metrics_counter(&b, "events_cache_hits_total", "Lake files a query found in the cache.",
                        cs.hits);
        metrics_counter(&b, "events_cache_misses_total", "Lake files fetched from the store.",
                        cs.misses);
        metrics_counter(&b, "events_cache_fetched_bytes_total", "Bytes fetched from the store.",
                        cs.fetched_bytes);
        metrics_counter(&b, "events_cache_evicted_total", "Files evicted from the cache.",
                        cs.evicted);
    }
    enum MHD_Result ok =
        send_response(r, 200, "text/plain; version=0.0.4", b.p ? b.p : "", b.len, NULL, NULL);
    buf_free(&b);
    return ok;
}

/* ---- routing and the request lifecycle ----------------------------------- */

static int media_type_is(const char *v, const char *want)
{
    size_t n = strlen(want);
    while (*v == ' ') v++;
    return !strncasecmp(v, want, n) && (v[n] == 0 || v[n] == ';' || v[n] == ' ');
}

/* The largest body a request of this kind may have. */
static size_t body_limit(const server *s, const request *r)
{
    return r->kind == K_QUERY ? QUERY_MAX_BODY : s->cfg.max_body;
}

/*
 * What is refused before routing: a Host or an Origin that may not call the
 * server (origins.h), and a body framing libmicrohttpd cannot read (it would
 * wait for the end of the connection and never answer).
 */
static enum MHD_Result check_request(server *s, request *r)
{
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!origins_host_ok(s->origins, host)) {
        metrics_refused(REFUSED_HOST);
        return send_error(r, 403,
                          "Host \"%.200s\" is not allowed: this server answers only requests "
                          "addressed to a loopback name or address, or to a host of "
                          "--allowed-hosts",
                          host);
    }
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    int refused;
    r->cors = origins_allow(s->origins, origin, host, &refused);
    if (refused) {
        metrics_refused(REFUSED_ORIGIN);
        return send_error(r, 403,
                          "requests from the web page origin \"%.200s\" are refused: it is "
                          "neither this server's own origin nor one of --cors-origins",
                          origin);
    }
    const char *te =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked")) {
        metrics_refused(REFUSED_TRANSFER_ENCODING);
        r->close = 1;
        return send_error(r, 501,
                          "unsupported Transfer-Encoding \"%.100s\": send the body with "
                          "Content-Length or Transfer-Encoding: chunked (and compress it with "
                          "Content-Encoding: gzip)",
                          te);
    }
    return MHD_YES;
}

static enum MHD_Result start_request(server *s, request *r, const char *url, const char *method)
{
    enum MHD_Result checked = check_request(s, r);
    if (checked != MHD_YES || r->state == ST_RESPONDED) return checked;
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_post = !strcmp(method, "POST");
    if (!strcmp(url, "/ingest") || !strcmp(url, "/e")) {
        r->kind = K_INGEST, r->route = ROUTE_INGEST;
    } else if (!strcmp(url, "/v1/logs")) {
        /* OTLP logs take /ingest's path, from the body limit to the group commit; answers,
         * errors included, are OTLP's, in the encoding of the request (JSON unless protobuf) */
        r->kind = K_INGEST, r->route = ROUTE_OTLP_LOGS;
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        r->otlp = otlp_encoding_of(ct) == OTLP_PROTOBUF ? OTLP_PROTOBUF : OTLP_JSON;
    } else if (!strcmp(url, "/query")) {
        r->kind = K_QUERY, r->route = ROUTE_QUERY;
    } else if (!strcmp(url, "/health")) {
        r->kind = K_HEALTH, r->route = ROUTE_HEALTH;
    } else if (!strcmp(url, "/metrics")) {
        r->kind = K_METRICS, r->route = ROUTE_METRICS;
    } else if (!strcmp(url, "/tail")) {
        r->kind = K_TAIL, r->route = ROUTE_TAIL;
    } else if (!strcmp(url, "/") || !strncmp(url, "/assets/", 8)) {
        r->kind = K_WEB, r->route = ROUTE_DASHBOARD;
    } else {
        char err[160];
        int sp = snap_parse_url(url, r->snap_source, r->snap_bookmark, err, sizeof err);
        if (sp == -1) {
            r->route = ROUTE_SNAPSHOTS;
            return send_error(r, 400, "%s", err);
        }
        if (sp >= 0) {
            r->route = ROUTE_SNAPSHOTS;
            r->kind = sp == 1 ? K_SNAP_LIST : !strcmp(method, "PUT") ? K_SNAP_PUT : K_SNAP_GET;
        }
    }

    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        add_cors(resp, r);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Content-Encoding");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        enum MHD_Result ok = MHD_queue_response(r->conn, 204, resp);
        MHD_destroy_response(resp);
        answered(r, 204);
        return ok;
    }
    if (r->kind == K_NONE) return send_error(r, 404, "no such endpoint: %s %s", method, url);
    int wants_post = r->kind == K_INGEST || r->kind == K_QUERY;
    if (r->kind == K_SNAP_PUT) {
        /* PUT is the only method besides GET here */
    } else if ((wants_post && !is_post) || (!wants_post && !is_get)) {
        return send_error(r, 405, "method %s not allowed on %s", method, url);
    }

    if (r->kind != K_HEALTH && r->kind != K_WEB && auth_count(s->auth)) {
        const char *h =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        char bearer[600];
        const char *qt = r->kind == K_TAIL
                             ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "token")
                             : NULL;
        if (!h && qt) { /* EventSource cannot set headers: ?token= on /tail */
            snprintf(bearer, sizeof bearer, "Bearer %s", qt);
            h = bearer;
        }
        r->tok = auth_lookup(s->auth, h);
        const char *who = r->tok ? r->tok->name : NULL;
        unsigned scopes = r->tok ? r->tok->scopes : 0;
        if (!scopes)
            return send_error(r, 401,
                              h ? "invalid bearer token"
                                : "missing bearer token (Authorization: Bearer TOKEN)");
        unsigned need = r->kind == K_INGEST     ? SCOPE_INGEST
                        : r->kind == K_QUERY    ? SCOPE_QUERY
                        : r->kind == K_SNAP_PUT ? (SCOPE_INGEST | SCOPE_ADMIN)
                                                : (SCOPE_QUERY | SCOPE_ADMIN);
        if (!(scopes & need))
            return send_error(r, 403, "token %s lacks the %s scope", who,
                              r->kind == K_INGEST     ? "ingest"
                              : r->kind == K_QUERY    ? "query"
                              : r->kind == K_SNAP_PUT ? "ingest or admin"
                                                      : "query or admin");
    }

    if (r->kind == K_QUERY) {
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !media_type_is(ct, "application/json") && !media_type_is(ct, "text/plain"))
            return send_error(r, 415, "unsupported Content-Type \"%.100s\": use application/json",
                              ct);
    }
    if (r->kind == K_INGEST || r->kind == K_QUERY) {
        const char *cl =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            unsigned long long len = strtoull(cl, NULL, 10);
            if (len > body_limit(s, r))
                return send_error(r, 413, "body of %llu bytes is over the limit of %zu bytes", len,
                                  body_limit(s, r));
            /* reserve what was announced, but no more than 1 MiB before data arrives:
             * clients that announce big bodies and send nothing cost little */
            if (buf_reserve(&r->body, (size_t)(len < (1u << 20) ? len : (1u << 20))))
                return send_error(r, 503, "out of memory");
        }
    }
    if (r->kind == K_SNAP_PUT) {
        const char *cl =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_snapshot)
            return send_error(r, 413, "snapshot of %s bytes is over the limit of %llu bytes", cl,
                              (unsigned long long)s->cfg.max_snapshot);
        char err[300];
        if (!(r->snap = snap_begin(s->spool, r->snap_source, r->snap_bookmark, err, sizeof err))) {
            log_msg(LOG_ERROR, "snapshot upload", "error", err, LOG_END);
            return send_error(r, 503, "cannot store the upload: %s", err);
        }
    }
    if (r->otlp) {
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (otlp_encoding_of(ct) == OTLP_NONE)
            return send_error(r, 415,
                              "unsupported Content-Type \"%.100s\": use application/json or "
                              "application/x-protobuf",
                              ct ? ct : "");
        const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
        if (type && !event_type_valid(type, strlen(type)))
            return send_error(r, 400,
                              "type \"%.150s\" is not an event type: [a-z0-9_]+(.[a-z0-9_-]+)*, "
                              "at most %d bytes",
                              type, EVENT_TYPE_MAX);
    } else if (r->kind == K_INGEST) {
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || media_type_is(ct, "application/json") || media_type_is(ct, "text/plain")) {
            r->fmt = INGEST_JSON;
        } else if (media_type_is(ct, "application/x-ndjson") ||
                   media_type_is(ct, "application/ndjson") ||
                   media_type_is(ct, "application/jsonl") ||
                   media_type_is(ct, "application/x-jsonlines")) {
            r->fmt = INGEST_NDJSON;
        } else {
            return send_error(r, 415,
                              "unsupported Content-Type \"%.100s\": use application/json or "
                              "application/x-ndjson",
                              ct);
        }
    }
    if (r->kind == K_INGEST) {
        const char *ce =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
        if (ce && (!strcasecmp(ce, "gzip") || !strcasecmp(ce, "x-gzip")))
            r->gzip = 1;
        else if (ce && *ce && strcasecmp(ce, "identity"))
            return send_error(r, 415, "unsupported Content-Encoding \"%.100s\": use gzip or none",
                              ce);
        snprintf(r->path, sizeof r->path, "%s", url);
        return check_ingest_args(r);
    }
    return MHD_YES;
}

/* 1 if the request announces a body: a Content-Length above 0, or chunked. */
static int has_body(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) return strspn(cl, "0") != strlen(cl);
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
           NULL;
}

/* The connection's entry in the connection table (its socket context). */
static conn_slot *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/*
 * What the URI callback leaves in a request's context, before libmicrohttpd
 * reads its headers: the URL has %00 (libmicrohttpd would decode it into a NUL
 * that cuts the path the handler sees), or the request was already refused.
 */
static char uri_has_nul, uri_refused;

/*
 * libmicrohttpd calls this with the raw URL as soon as the request line is in.
 * More URL arguments than fit its 32 KiB connection memory (about 450 short
 * ones) make it stall without an answer, and it parses them before any other
 * callback: so a URL with more than --max-url-args is answered 414 here,
 * straight on the socket, and the connection is shut down.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    server *s = cls;
    if (strstr(uri, "%00")) return &uri_has_nul;
    const char *q = strchr(uri, '?');
    if (!q) return NULL;
    unsigned args = 1;
    for (const char *p = q + 1; *p; p++) args += *p == '&';
    if (args <= s->cfg.max_url_args) return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char msg[160];
    snprintf(msg, sizeof msg,
             "the URL has %u arguments, more than the limit of %u (--max-url-args)", args,
             s->cfg.max_url_args);
    if (ci)
        conn_refuse(s->conns, conn_of(conn), ci->connect_fd, 414, "URI Too Long", msg,
                    REFUSED_URL_ARGUMENTS);
    return &uri_refused;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    server *s = cls;
    request *r = *con_cls;
    if (r == (void *)&uri_refused) return MHD_NO;
    int has_nul = r == (void *)&uri_has_nul;
    if (!r || has_nul) {
        /* the headers are whole: the connection is no longer waiting for them; a body must
         * then arrive whole within the request's time limit */
        int64_t deadline = evtime_mono_ms() + (int64_t)s->cfg.request_timeout_s * 1000;
        if (conn_request_began(s->conns, conn_of(conn), has_body(conn) ? deadline : 0))
            return MHD_NO;
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->route = ROUTE_OTHER;
        r->t0_ns = evtime_mono_ns();
        r->deadline_ms = deadline;
        *con_cls = r;
        /* Counted before looking at stopping; shutdown sets stopping before reading inflight
         * (both sequentially consistent), so it either waits for this request or this
         * request sees stopping and is never suspended under MHD_stop_daemon. */
        atomic_fetch_add(&s->inflight, 1);
        if (atomic_load(&s->stopping)) {
            r->kind = K_NONE;
            return send_error(r, 503, "server is shutting down");
        }
        if (has_nul) {
            metrics_refused(REFUSED_URL_NUL);
            return send_error(r, 400, "the URL has an encoded NUL byte (%%00)");
        }
        return start_request(s, r, url, method);
    }
    if (r->state == ST_RESPONDED) {
        *upload_size = 0; /* the rest of an upload we already answered */
        return MHD_YES;
    }
    if (r->state == ST_WAITING) { /* resumed by the writer or a query worker */
        atomic_fetch_sub(&s->waiting, 1);
        if (r->kind == K_QUERY) {
            unsigned st = 0;
            enum MHD_Result ok = qjob_respond(r->job, conn, r->cors, &st);
            answered(r, st ? st : 500);
            return ok;
        }
        if (r->answer_status == 200 && tail_hub_active(s->tail)) publish(s, r);
        return send_response(r, r->answer_status, answer_type(r), r->answer.p ? r->answer.p : "",
                             r->answer.len,
                             r->answer_status == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, "1");
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (evtime_mono_ms() > r->deadline_ms) {
            char msg[96];
            snprintf(msg, sizeof msg, "request not received within %d s", s->cfg.request_timeout_s);
            return abort_mid_body(r, 408, "Request Timeout", msg);
        }
        if (r->kind == K_SNAP_PUT && !r->discard_status) {
            char err[300];
            if (snap_size(r->snap) + n > s->cfg.max_snapshot) {
                r->discard_status = 413;
                snprintf(r->discard_error, sizeof r->discard_error,
                         "snapshot is over the limit of %llu bytes",
                         (unsigned long long)s->cfg.max_snapshot);
            } else if (snap_write(r->snap, upload, n, err, sizeof err)) {
                r->discard_status = 503;
                snprintf(r->discard_error, sizeof r->discard_error, "%s", err);
            }
            return MHD_YES;
        }
        if ((r->kind != K_INGEST && r->kind != K_QUERY) || r->discard_status)
            return MHD_YES; /* dropped */
        if (r->kind == K_INGEST)
            atomic_fetch_add_explicit(&metrics_global.bytes_received, n, memory_order_relaxed);
        if (r->body.len + n > body_limit(s, r)) {
            /* MHD cannot answer mid-body: read to the end, then answer 413 */
            r->discard_status = 413;
            snprintf(r->discard_error, sizeof r->discard_error,
                     "body is over the limit of %zu bytes", body_limit(s, r));
            buf_free(&r->body);
        } else if (buf_append(&r->body, upload, n)) {
            r->discard_status = 503;
            snprintf(r->discard_error, sizeof r->discard_error, "out of memory");
            buf_free(&r->body);
        }
        return MHD_YES;
    }
    /*
     * the body is whole (or there was none); a connection closed for its
     * deadline is not answered
     */
    if (conn_body_done(s->conns, conn_of(conn))) return MHD_NO;
    if (r->discard_status) return send_error(r, r->discard_status, "%s", r->discard_error);
    switch (r->kind) {
    case K_INGEST: return handle_ingest(s, r);
    case K_QUERY: return handle_query(s, r);
    case K_HEALTH: return handle_health(s, r);
    case K_METRICS: return handle_metrics(s, r);
    case K_TAIL: return handle_tail(s, r);
    case K_WEB: return handle_web(r, url);
    case K_SNAP_PUT:
    case K_SNAP_LIST:
    case K_SNAP_GET: return handle_snapshots(s, r);
    default: return send_error(r, 404, "no such endpoint");
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    server *s = cls;
    request *r = *con_cls;
    conn_request_ended(s->conns, conn_of(conn));
    if (r == (void *)&uri_has_nul || r == (void *)&uri_refused) *con_cls = r = NULL;
    if (!r) return;
    /* A client that closed its connection while its request waited for the group
     * commit is noticed only after the resume, here, without another handler call. */
    if (r->state == ST_WAITING) atomic_fetch_sub(&s->waiting, 1);
    if (!r->status)
        metrics_request(r->route, 499,
                        evtime_mono_ns() - r->t0_ns); /* no answer: the client left */
    snap_abort(r->snap);
    if (r->snap_download) atomic_fetch_sub(&s->snap_downloads, 1);
    buf_free(&r->body);
    buf_free(&r->answer);
    ingest_result_free(&r->res);
    qjob_release(r->job);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_ctx = ci ? conn_opened(s->conns, ci->connect_fd) : NULL;
        atomic_fetch_add(&metrics_global.connections_open, 1);
    } else {
        conn_closed(s->conns, *socket_ctx);
        *socket_ctx = NULL;
        atomic_fetch_add(&metrics_global.connections_open, -1);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    log_msg(LOG_DEBUG, "http", "detail", msg, LOG_END);
}

/* ---- the listening socket ------------------------------------------------ */

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(a)) return a->s6_addr[12] == 127;
    }
    return 0;
}

/* Binds host:port. Returns the socket, or -1 with err set. */
static int listen_on(const char *spec, int require_loopback, char *addr_out, size_t addrlen,
                     char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || !colon[1]) {
        snprintf(err, errlen, "--listen %s: expected HOST:PORT", spec);
        return -1;
    }
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, spec, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (g) {
        snprintf(err, errlen, "--listen %s: %s", spec, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (require_loopback && !is_loopback(ai->ai_addr)) {
            snprintf(err, errlen,
                     "refusing to listen on %s without tokens: anyone who can reach it could "
                     "read and write the lake. Give --tokens-file or EVENTS_TOKEN, or listen on "
                     "127.0.0.1",
                     spec);
            fd = -1;
            break;
        }
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) {
            snprintf(err, errlen, "--listen %s: %s", spec, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        break;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
            port = ntohs(a->sin_port);
            snprintf(addr_out, addrlen, "%s:%d", ip, port);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
            port = ntohs(a->sin6_port);
            snprintf(addr_out, addrlen, "[%s]:%d", ip, port);
        }
    }
    return fd;
}

/* ---- run ------------------------------------------------------------------ */

int server_run(const server_config *cfg)
{
    server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->cfg = *cfg;
    s->started_ms = evtime_mono_ms();
    s->lim.max_body = cfg->max_body;
    s->lim.max_events = cfg->max_events ? cfg->max_events : ingest_max_events_for(cfg->max_body);
    pthread_key_create(&s->ctx_key, free_ctx);
    apply_memory_max(cfg->memory_max);
    int rc = 1, lfd = -1, announced = 0;
    char err[1024];
    char *spool = s->spool;

    /* Signals are taken by sigwait in this thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(s->auth = auth_new())) goto out;
    if (cfg->tokens_file) {
        char warn[512];
        if (auth_load_file(s->auth, cfg->tokens_file, warn, sizeof warn, err, sizeof err)) {
            log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
            goto out;
        }
        if (warn[0]) log_msg(LOG_WARN, "tokens file readable by anyone", "warning", warn, LOG_END);
    }
    if (cfg->token && auth_add(s->auth, "EVENTS_TOKEN", cfg->token, SCOPE_ADMIN, err, sizeof err)) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    if (!(s->origins = origins_new(cfg->allowed_hosts, cfg->cors_origins, auth_count(s->auth) > 0,
                                   err, sizeof err))) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    if (!auth_count(s->auth) && origins_any(s->origins))
        log_msg(LOG_WARN, "any web page may read the lake", "reason",
                "--cors-origins * without tokens: every page open in a browser here "
                "can query the lake and follow /tail",
                LOG_END);
    if ((lfd = listen_on(cfg->listen, auth_count(s->auth) == 0, s->addr, sizeof s->addr, err,
                         sizeof err)) < 0) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    if (store_open(cfg->lake, &s->store, err, sizeof err)) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    if (cfg->spool) {
        snprintf(spool, sizeof s->spool, "%s", cfg->spool);
    } else if (s->store->ops->root(s->store)) {
        snprintf(spool, sizeof s->spool, "%s/.spool", s->store->ops->root(s->store));
    } else {
        snprintf(spool, sizeof s->spool, "./events-spool");
    }
    if (!s->store->ops->root(s->store)) {
        const char *cdir = cfg->cache ? cfg->cache : "./events-cache";
        if (lake_cache_open(cdir, cfg->cache_max, &s->cache, err, sizeof err)) {
            log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
            goto out;
        }
        snprintf(s->work, sizeof s->work, "%s/.compact", lake_cache_dir(s->cache));
    } else {
        snprintf(s->work, sizeof s->work, "%s/.compact", s->store->ops->root(s->store));
    }
    if (mkdir(s->work, 0755) && errno != EEXIST) {
        log_msg(LOG_ERROR, "cannot start", "error", "cannot create the compaction directory",
                "path", s->work, LOG_END);
        goto out;
    }
    lake_writer_config wc = {.spool_dir = spool,
                             .store = s->store,
                             .seal_bytes = cfg->seal_bytes,
                             .seal_age_ms = cfg->seal_age_ms,
                             .dedup_window = cfg->dedup_window,
                             .spool_max = cfg->spool_max,
                             .max_open_segments = cfg->max_open_segments};
    if (lake_writer_open(&wc, &s->writer, err, sizeof err)) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    s->expirer = lake_expirer_start(s->store, cfg->rejected_retain_ms, err, sizeof err);
    if (!s->expirer && err[0]) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    int cleaned = snap_clean(spool); /* the writer holds the spool now: no one else uses it */
    if (s->cache) {
        snprintf(s->snap_tmp, sizeof s->snap_tmp, "%s/.snapshots", lake_cache_dir(s->cache));
        if (mkdir(s->snap_tmp, 0755) && errno != EEXIST) {
            log_msg(LOG_ERROR, "cannot start", "error", "cannot create the snapshot directory",
                    "path", s->snap_tmp, LOG_END);
            goto out;
        }
        cleaned += snap_clean(s->snap_tmp);
    } else {
        snprintf(s->snap_tmp, sizeof s->snap_tmp, "%s", spool); /* unused: files open in place */
    }
    if (cleaned) {
        char n[16];
        snprintf(n, sizeof n, "%d", cleaned);
        log_msg(LOG_INFO, "snapshot leftovers removed", "files", n, LOG_END);
    }

    tail_config tc = {cfg->tail_buffer, cfg->tail_heartbeat_ms, cfg->tail_queue,
                      cfg->tail_max_patterns, cfg->tail_pattern_bytes};
    if (!(s->tail = tail_hub_new(&tc))) {
        log_msg(LOG_ERROR, "cannot start", "error", "cannot start the live tail", LOG_END);
        goto out;
    }
    query_config qc = {.store = s->store,
                       .writer = s->writer,
                       .memory_limit = cfg->query_memory,
                       .cache = s->cache,
                       .conns = cfg->query_threads,
                       .max_rejected_line = 2 * (uint64_t)cfg->max_body + 65536};
    if (query_engine_open(&qc, &s->engine, err, sizeof err)) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    query_pool_config pc = {.engine = s->engine,
                            .threads = cfg->query_threads,
                            .max_rows = cfg->query_max_rows,
                            .max_bytes = cfg->query_max_bytes,
                            .timeout_ms = cfg->query_timeout_ms,
                            .waiting = &s->waiting};
    if (query_pool_start(&pc, &s->queries, err, sizeof err)) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }

    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    conn_table_config cc = {.max = cfg->max_connections,
                            .header_timeout_ms = cfg->header_timeout_ms,
                            .idle_timeout_ms = (int64_t)cfg->idle_timeout_s * 1000,
                            .request_timeout_ms = (int64_t)cfg->request_timeout_s * 1000};
    if (!(s->conns = conn_table_new(&cc, err, sizeof err))) {
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
        goto out;
    }
    /* --max-connections is enforced by the connection table, which makes room by closing a
     * connection still waiting for its headers. libmicrohttpd must not refuse first: it
     * splits its limit between the threads (a thread at its share stops accepting, however
     * few the others hold) and counts connections already shut down until it has closed
     * them. So its limit lets every thread hold them all, and more. */
    unsigned mhd_limit = cfg->max_connections < (1u << 20) / (unsigned)threads - 64
                             ? (cfg->max_connections + 64) * (unsigned)threads
                             : 1u << 20;
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        /* MHD zeroes this pool after every request on a keep-alive connection: at 256 KiB that
         * was a third of the server's CPU with single-event requests (bench/README.md) */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    if (!s->daemon) {
        log_msg(LOG_ERROR, "cannot start", "error", "libmicrohttpd refused to start", LOG_END);
        goto out;
    }
    /* where it listens, for the command line: before "listening", which tests wait for */
    if (announce_write(lake_writer_spool_dir(s->writer), s->addr, s->store->url, err, sizeof err))
        log_msg(LOG_WARN, "the command line will not find this server", "error", err, LOG_END);
    else
        announced = 1;
    {
        char th[16];
        snprintf(th, sizeof th, "%d", threads);
        char mm[32];
        if (cfg->memory_max)
            snprintf(mm, sizeof mm, "%lluMiB", (unsigned long long)(cfg->memory_max >> 20));
        else
            snprintf(mm, sizeof mm, "none");
        log_msg(LOG_INFO, "listening", "addr", s->addr, "lake", s->store->url, "spool", spool,
                "auth", auth_count(s->auth) ? "tokens" : "off (loopback only)", "threads", th,
                "memory_max", mm, "version", EVENTS_VERSION, LOG_END);
    }

    if (cfg->compact_every_ms > 0) {
        pthread_mutex_init(&s->compact_mu, NULL);
        pthread_cond_init(&s->compact_cv, NULL);
        if (!pthread_create(&s->compactor, NULL, compactor_main, s)) s->compactor_started = 1;
    }

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    log_msg(LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", LOG_END);
    if (announced) announce_remove(lake_writer_spool_dir(s->writer));
    announced = 0;

    /* Stop accepting; let in-flight requests finish (suspended ones always do, and
     * MHD_stop_daemon must never meet one). */
    MHD_socket q = MHD_quiesce_daemon(s->daemon);
    if (q != MHD_INVALID_SOCKET) close(q);
    lfd = -1;
    atomic_store(&s->stopping, 1);
    query_pool_interrupt(s->queries); /* running queries end now, with 504 */
    tail_hub_close(s->tail);          /* live tails end now */
    compactor_stop(s);
    int64_t give_up = evtime_mono_ms() + (int64_t)cfg->shutdown_timeout_s * 1000;
    while (atomic_load(&s->waiting) > 0 ||
           (atomic_load(&s->inflight) > 0 && evtime_mono_ms() < give_up)) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    conn_table_free(s->conns);
    s->conns = NULL;
    query_pool_stop(s->queries);
    s->queries = NULL;
    query_engine_close(s->engine);
    s->engine = NULL;
    lake_writer_close(s->writer);
    s->writer = NULL;
    lake_expirer_stop(s->expirer);
    s->expirer = NULL;
    log_msg(LOG_INFO, "stopped", LOG_END);
    rc = 0;
out:
    if (announced) announce_remove(lake_writer_spool_dir(s->writer));
    if (s->daemon) MHD_stop_daemon(s->daemon);
    if (lfd >= 0 && !s->daemon) close(lfd);
    conn_table_free(s->conns);
    query_pool_stop(s->queries);
    query_engine_close(s->engine);
    lake_writer_close(s->writer);
    lake_expirer_stop(s->expirer);
    tail_hub_free(s->tail);
    lake_cache_close(s->cache);
    store_close(s->store);
    auth_free(s->auth);
    origins_free(s->origins);
    void *c = pthread_getspecific(s->ctx_key);
    if (c) free_ctx(c);
    pthread_key_delete(s->ctx_key);
    free(s);
    return rc;
}
