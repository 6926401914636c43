/*
 * server.c - HTTP on libmicrohttpd: the server's start, its shutdown, its memory.
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
 * SIGTERM/SIGINT that file is removed, new requests are answered 503, in-flight
 * requests are finished (a suspended one always is: the writer keeps running),
 * the listening socket is closed, and then the writer seals every segment into
 * the lake.
 *
 * This file starts all that and stops it (server_run); the rest is in the
 * files that share server_int.h: the socket (server_listen.c), the compactor
 * thread (server_compact.c), routing and the request lifecycle
 * (server_requests.c), the handlers (server_ingest.c, server_handlers.c) and
 * the answers (server_respond.c).
 */
#include "server_int.h"
#include "announce.h"
#include "evtime.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Reads the unsigned numbers at the start of the first line of file path,
 * separated by blanks, into v (at most n). Returns how many it read.
 */
static int read_numbers(const char *path, unsigned long long *v, int n)
{
    char line[256];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int got = 0;
    char *p = fgets(line, sizeof line, f);
    fclose(f);
    while (p && got < n) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p || errno) break;
        v[got++] = x;
        p = end;
    }
    return got;
}

/* The memory the server may use: the machine's, or its cgroup's limit when that is lower. */
static uint64_t memory_available(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    uint64_t m = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    unsigned long long cg; /* cgroup v2; "max" when unlimited */
    if (read_numbers("/sys/fs/cgroup/memory.max", &cg, 1) == 1 && cg > 0 && (!m || cg < m)) m = cg;
    return m;
}

uint64_t server__resident_bytes(void)
{
    unsigned long long statm[2]; /* size, resident, in pages */
    if (read_numbers("/proc/self/statm", statm, 2) < 2) return 0;
    return statm[1] * (uint64_t)sysconf(_SC_PAGESIZE);
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
    c->query_copies = 256ull << 20;
    c->query_copies_min = 256u << 10;
    c->ingest_lane = 16u << 10;
    c->max_snapshot = 1ull << 30;
    c->snapshot_downloads = 16;
    c->cache_max = 1ull << 30;
    c->tail_buffer = 1u << 20;
    c->tail_heartbeat_ms = 15000;
    c->tail_max_clients = 100;
    c->tail_queue = 16u << 20;
    c->tail_max_patterns = 16;
    c->tail_pattern_bytes = 256;
    c->recent_events = 1000;
    c->recent_bytes = 8u << 20;
    c->events_max_limit = 10000;
    c->events_max_bytes = 8u << 20;
    c->subscriptions_max = 1000;
    c->compact_every_ms = 300000;
    c->compact_after_ms = 600000;
    c->table_lag_ms = 300000;
    c->compact_retain_ms = 600000;
    c->compact_memory = 1ull << 30;
    c->stream_retain_ms = 7 * 86400000ll;
    c->deliver_connections = 8;
    c->subscription_lease_ms = 30000;
    c->subscription_poll_ms = 1000;
    c->deliver_max_bytes = 1u << 20;
    c->memory_max = server_memory_default();
}

/* ---- run ------------------------------------------------------------------ */

/*
 * The steps of server_run. A start step returns 0, or -1 having logged why the
 * server cannot start (the log line server_run promises), as cannot_start does.
 */
static int cannot_start(const char *err, const char *path)
{
    if (path)
        log_msg(LOG_ERROR, "cannot start", "error", err, "path", path, LOG_END);
    else
        log_msg(LOG_ERROR, "cannot start", "error", err, LOG_END);
    return -1;
}

static server__srv *server_new(const server_config *cfg)
{
    server__srv *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = *cfg;
    s->started_ms = evtime_mono_ms();
    s->lim.max_body = cfg->max_body;
    s->lim.max_events = cfg->max_events ? cfg->max_events : ingest_max_events_for(cfg->max_body);
    pthread_key_create(&s->ctx_key, server__free_ctx);
    return s;
}

/* Signals are taken by sigwait in this thread only. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The tokens and the origins that may call the server. */
static int start_access(server__srv *s)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    if (!(s->auth = auth_new())) return -1;
    if (cfg->tokens_file) {
        char warn[512];
        if (auth_load_file(s->auth, cfg->tokens_file, warn, sizeof warn, err, sizeof err))
            return cannot_start(err, NULL);
        if (warn[0]) log_msg(LOG_WARN, "tokens file readable by anyone", "warning", warn, LOG_END);
    }
    if (cfg->token &&
        auth_add(s->auth, "EVENTS_TOKEN", cfg->token, AUTH_SCOPE_ADMIN, err, sizeof err))
        return cannot_start(err, NULL);
    if (server__webhooks_start(s, err, sizeof err)) return cannot_start(err, NULL);
    if (!(s->origins = origins_new(cfg->allowed_hosts, cfg->cors_origins, auth_count(s->auth) > 0,
                                   err, sizeof err)))
        return cannot_start(err, NULL);
    if (!auth_count(s->auth) && origins_any(s->origins))
        log_msg(LOG_WARN, "any web page may read the lake", "reason",
                "--cors-origins * without tokens: every page open in a browser here "
                "can query the lake and follow /tail",
                LOG_END);
    return 0;
}

/* The store, the spool's place, and the cache and compaction directories. */
static int open_lake(server__srv *s)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    if (store_open(cfg->lake, &s->store, err, sizeof err)) return cannot_start(err, NULL);
    const char *root = s->store->ops->root(s->store);
    if (cfg->spool)
        snprintf(s->spool, sizeof s->spool, "%s", cfg->spool);
    else if (root)
        snprintf(s->spool, sizeof s->spool, "%s/.spool", root);
    else
        snprintf(s->spool, sizeof s->spool, "./events-spool");
    if (!root) {
        const char *cdir = cfg->cache ? cfg->cache : "./events-cache";
        if (lake_cache_open(cdir, cfg->cache_max, &s->cache, err, sizeof err))
            return cannot_start(err, NULL);
        snprintf(s->work, sizeof s->work, "%s/.compact", lake_cache_dir(s->cache));
    } else {
        snprintf(s->work, sizeof s->work, "%s/.compact", root);
    }
    if (mkdir(s->work, 0755) && errno != EEXIST)
        return cannot_start("cannot create the compaction directory", s->work);
    return 0;
}

/*
 * Where snapshot downloads of an object store are written, and what uploads and
 * downloads cut short left there and in the spool (the writer holds the spool
 * now: no one else uses it).
 */
static int clean_snapshots(server__srv *s)
{
    int cleaned = snapshots_clean(s->spool);
    if (s->cache) {
        snprintf(s->snap_tmp, sizeof s->snap_tmp, "%s/.snapshots", lake_cache_dir(s->cache));
        if (mkdir(s->snap_tmp, 0755) && errno != EEXIST)
            return cannot_start("cannot create the snapshot directory", s->snap_tmp);
        cleaned += snapshots_clean(s->snap_tmp);
    } else {
        snprintf(s->snap_tmp, sizeof s->snap_tmp, "%s", s->spool); /* unused: files open in place */
    }
    if (cleaned) {
        char n[16];
        snprintf(n, sizeof n, "%d", cleaned);
        log_msg(LOG_INFO, "snapshot leftovers removed", "files", n, LOG_END);
    }
    return 0;
}

/* The lake writer, which owns the spool, and the quarantine's expiry. */
static int start_writer(server__srv *s)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    lake_writer_config wc = {.spool_dir = s->spool,
                             .store = s->store,
                             .seal_bytes = cfg->seal_bytes,
                             .seal_age_ms = cfg->seal_age_ms,
                             .dedup_window = cfg->dedup_window,
                             .spool_max = cfg->spool_max,
                             .max_open_segments = cfg->max_open_segments};
    if (lake_writer_open(&wc, &s->writer, err, sizeof err)) return cannot_start(err, NULL);
    s->expirer = lake_expirer_start(s->store, cfg->rejected_retain_ms, err, sizeof err);
    if (!s->expirer && err[0]) return cannot_start(err, NULL);
    s->stream_expirer = lake_stream_expirer_start(s->store, cfg->stream_retain_ms, err, sizeof err);
    if (!s->stream_expirer && err[0]) return cannot_start(err, NULL);
    return 0;
}

/* The live tail, the query engine and its workers. */
static int start_readers(server__srv *s)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    tail_config tc = {cfg->tail_buffer, cfg->tail_heartbeat_ms, cfg->tail_queue,
                      cfg->tail_max_patterns, cfg->tail_pattern_bytes};
    if (!(s->tail = tail_hub_new(&tc))) return cannot_start("cannot start the live tail", NULL);
    if (cfg->recent_events && !(s->recent = recent_new(cfg->recent_events, cfg->recent_bytes)))
        return cannot_start("cannot start /recent: out of memory", NULL);
    char copies[4200];
    snprintf(copies, sizeof copies, "%s/copies", s->spool);
    query_config qc = {.store = s->store,
                       .writer = s->writer,
                       .memory_limit = cfg->query_memory,
                       .cache = s->cache,
                       .conns = cfg->query_threads,
                       .max_rejected_line = 2 * (uint64_t)cfg->max_body + 65536,
                       .copies_dir = copies,
                       .copies_max = cfg->query_copies,
                       .copies_min = cfg->query_copies_min};
    if (query_engine_open(&qc, &s->engine, err, sizeof err)) return cannot_start(err, NULL);
    if (lake_stream_open(s->store, s->cache, &s->stream, err, sizeof err))
        return cannot_start(err, NULL);
    if (lake_subs_open(s->store, &s->subs, err, sizeof err)) return cannot_start(err, NULL);
    query_http_config pc = {.engine = s->engine,
                            .threads = cfg->query_threads,
                            .max_rows = cfg->query_max_rows,
                            .max_bytes = cfg->query_max_bytes,
                            .timeout_ms = cfg->query_timeout_ms,
                            .waiting = &s->waiting};
    if (query_http_start(&pc, &s->queries, err, sizeof err)) return cannot_start(err, NULL);
    return 0;
}

/* The delivery of webhook subscriptions (deliver.h); none with --deliver-connections 0. */
static int start_deliver(server__srv *s)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    deliver_config dc = {.store = s->store,
                         .read = server__stream_read,
                         .read_ud = s,
                         .connections = cfg->deliver_connections,
                         .lease_ms = cfg->subscription_lease_ms,
                         .poll_ms = cfg->subscription_poll_ms,
                         .max_bytes = cfg->deliver_max_bytes};
    if (cfg->deliver_connections && deliver_start(&dc, &s->deliver, err, sizeof err))
        return cannot_start(err, NULL);
    return 0;
}

/* The connection table and libmicrohttpd's daemon, with threads threads, accepting on lfd. */
static int start_http(server__srv *s, int lfd, int threads)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    conns_config cc = {.max = cfg->max_connections,
                       .header_timeout_ms = cfg->header_timeout_ms,
                       .idle_timeout_ms = (int64_t)cfg->idle_timeout_s * 1000,
                       .request_timeout_ms = (int64_t)cfg->request_timeout_s * 1000};
    if (!(s->conns = conns_new(&cc, err, sizeof err))) return cannot_start(err, NULL);
    /* --max-connections is enforced by the connection table, which makes room by closing a
     * connection still waiting for its headers. libmicrohttpd must not refuse first: it
     * splits its limit between the threads (a thread at its share stops accepting, however
     * few the others hold) and counts connections already shut down until it has closed
     * them. So its limit lets every thread hold them all, and more. */
    unsigned mhd_limit = cfg->max_connections < (1u << 20) / (unsigned)threads - 64
                             ? (cfg->max_connections + 64) * (unsigned)threads
                             : 1u << 20;
    /* with the ingest lane, the lane accepts the connections and gives libmicrohttpd its own */
    int lane = cfg->ingest_lane > 0;
    struct MHD_OptionItem listen[] = {{lane ? MHD_OPTION_END : MHD_OPTION_LISTEN_SOCKET, lfd, NULL},
                                      {MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG | (lane ? MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC : 0),
        0, NULL, NULL, server__on_request, s, MHD_OPTION_ARRAY, listen, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        /* MHD zeroes this pool after every request on a keep-alive connection: at 256 KiB that
         * was a third of the server's CPU with single-event requests (bench/README.md) */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_URI_LOG_CALLBACK,
        server__on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, server__on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, server__on_connection, s, MHD_OPTION_EXTERNAL_LOGGER,
        server__mhd_log, s, MHD_OPTION_END);
    if (!s->daemon) return cannot_start("libmicrohttpd refused to start", NULL);
    if (lane && server__lane_start(s, lfd, err, sizeof err)) return cannot_start(err, NULL);
    return 0;
}

/*
 * Says where the server listens, for the command line (SPOOL/server.json) and
 * in the log: before "listening", which tests wait for. Returns 1 if the file
 * was written (to be removed at shutdown), else 0.
 */
static int announce_listening(server__srv *s, int threads)
{
    const server_config *cfg = &s->cfg;
    char err[1024];
    int announced = 0;
    if (announce_write(lake_writer_spool_dir(s->writer), s->addr, s->store->url, err, sizeof err))
        log_msg(LOG_WARN, "the command line will not find this server", "error", err, LOG_END);
    else
        announced = 1;
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    char mm[32];
    if (cfg->memory_max)
        snprintf(mm, sizeof mm, "%lluMiB", (unsigned long long)(cfg->memory_max >> 20));
    else
        snprintf(mm, sizeof mm, "none");
    log_msg(LOG_INFO, "listening", "addr", s->addr, "lake", s->store->url, "spool", s->spool,
            "auth", auth_count(s->auth) ? "tokens" : "off (loopback only)", "threads", th,
            "memory_max", mm, "version", EVENTS_VERSION_STRING, LOG_END);
    return announced;
}

static void wait_for_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    log_msg(LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", LOG_END);
}

/*
 * Answers new requests 503; lets in-flight requests finish (suspended ones always do,
 * and MHD_stop_daemon must never meet one), then stops what serves them, the writer
 * last: it seals every segment into the lake. The listening socket is closed.
 */
static void shut_down(server__srv *s)
{
    /* New connections are accepted until MHD_stop_daemon closes the listening socket, and their
     * requests answered 503 like new requests on open connections. The daemon is not quiesced:
     * libmicrohttpd 0.9.75's MHD_quiesce_daemon takes the socket out of each worker's epoll set
     * while the worker may be doing the same, and aborts the process when it loses that race
     * ("Failed to remove listen FD from epoll set", seen at a SIGTERM in CI). */
    atomic_store(&s->stopping, 1);
    query_http_interrupt(s->queries); /* running queries end now, with 504 */
    tail_hub_close(s->tail);          /* live tails end now */
    server__compactor_stop(s);
    int64_t give_up = evtime_mono_ms() + (int64_t)s->cfg.shutdown_timeout_s * 1000;
    while (atomic_load(&s->waiting) > 0 ||
           (atomic_load(&s->inflight) > 0 && evtime_mono_ms() < give_up)) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    server__lane_stop(s); /* it hands connections to the daemon */
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    deliver_stop(s->deliver); /* no HTTP thread notifies it now; the writer still reads */
    s->deliver = NULL;
    conns_free(s->conns);
    s->conns = NULL;
    query_http_stop(s->queries);
    s->queries = NULL;
    query_engine_close(s->engine);
    s->engine = NULL;
    lake_writer_close(s->writer);
    s->writer = NULL;
    lake_expirer_stop(s->expirer);
    s->expirer = NULL;
    lake_expirer_stop(s->stream_expirer);
    s->stream_expirer = NULL;
    log_msg(LOG_INFO, "stopped", LOG_END);
}

/*
 * Frees what a server that could not start, or has stopped, still holds; lfd,
 * the listening socket, is closed unless libmicrohttpd has taken it.
 */
static void server_free(server__srv *s, int lfd)
{
    int lfd_taken = s->daemon != NULL; /* by libmicrohttpd, or by the lane once it started */
    server__lane_stop(s);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    if (lfd >= 0 && !lfd_taken) close(lfd);
    deliver_stop(s->deliver);
    conns_free(s->conns);
    query_http_stop(s->queries);
    query_engine_close(s->engine);
    lake_writer_close(s->writer);
    lake_expirer_stop(s->expirer);
    lake_expirer_stop(s->stream_expirer);
    tail_hub_free(s->tail);
    recent_free(s->recent);
    lake_stream_close(s->stream);
    lake_subs_close(s->subs);
    lake_cache_close(s->cache);
    store_close(s->store);
    auth_free(s->auth);
    webhooks_secrets_free(s->hooks);
    origins_free(s->origins);
    void *c = pthread_getspecific(s->ctx_key);
    if (c) server__free_ctx(c);
    pthread_key_delete(s->ctx_key);
    free(s);
}

int server_run(const server_config *cfg)
{
    server__srv *s = server_new(cfg);
    if (!s) return 1;
    apply_memory_max(cfg->memory_max);
    int lfd = -1;
    char err[1024];
    sigset_t set;
    block_signals(&set);
    if (start_access(s)) goto fail;
    if ((lfd = server__listen(cfg->listen, auth_count(s->auth) == 0, s->addr, sizeof s->addr, err,
                              sizeof err)) < 0) {
        cannot_start(err, NULL);
        goto fail;
    }
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (open_lake(s) || start_writer(s) || clean_snapshots(s) || start_readers(s) ||
        start_deliver(s) || start_http(s, lfd, threads))
        goto fail;
    int announced = announce_listening(s, threads);
    if (cfg->compact_every_ms > 0) server__compactor_start(s);

    wait_for_signal(&set);
    if (announced) announce_remove(lake_writer_spool_dir(s->writer));
    shut_down(s);
    server_free(s, -1);
    return 0;
fail:
    server_free(s, lfd);
    return 1;
}
