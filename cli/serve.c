/*
 * serve.c - `events serve`: flags and environment into a server_config.
 *
 * The steps, in order: the defaults (server_config_defaults), the flags (one
 * table per concern, in the order --help lists them), their checks (each
 * prints why a value is refused), the values copied into the config in its
 * own types, and the server run.
 */
#include "cli.h"
#include "log.h"
#include "origins.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The flags: the config, whose fields a flag sets directly when the option
 * parser reads the field's own type, and the values read in the parser's types
 * (uint64_t sizes, int64_t milliseconds, long counts) that are checked before
 * they are converted into the config's.
 */
typedef struct serve_flags {
    server_config c;
    uint64_t max_body, max_event_bytes, query_max_rows, memory_max, tail_buffer, tail_queue,
        tail_pattern_bytes;
    int64_t req_timeout, idle_timeout, shutdown_timeout, query_timeout;
    long query_threads, tail_clients, tail_patterns, snap_downloads, threads, dedup, max_conn,
        max_events, max_open, max_url_args, recent_events, events_max_limit, subscriptions_max;
    long deliver_connections;
    const char *log_format, *log_level;
} serve_flags;

static void flags_defaults(serve_flags *f)
{
    memset(f, 0, sizeof *f);
    server_config *c = &f->c;
    server_config_defaults(c);
    f->max_body = c->max_body;
    f->max_event_bytes = c->max_event_bytes;
    f->query_max_rows = c->query_max_rows;
    f->memory_max = UINT64_MAX; /* not given */
    f->tail_buffer = c->tail_buffer;
    f->tail_queue = c->tail_queue;
    f->tail_pattern_bytes = c->tail_pattern_bytes;
    f->req_timeout = (int64_t)c->request_timeout_s * 1000;
    f->idle_timeout = (int64_t)c->idle_timeout_s * 1000;
    f->shutdown_timeout = (int64_t)c->shutdown_timeout_s * 1000;
    f->query_timeout = c->query_timeout_ms;
    f->query_threads = c->query_threads;
    f->tail_clients = c->tail_max_clients;
    f->tail_patterns = c->tail_max_patterns;
    f->recent_events = (long)c->recent_events;
    f->events_max_limit = (long)c->events_max_limit;
    f->deliver_connections = (long)c->deliver_connections;
    f->subscriptions_max = (long)c->subscriptions_max;
    f->snap_downloads = c->snapshot_downloads;
    f->threads = 0;
    f->dedup = (long)c->dedup_window;
    f->max_conn = c->max_connections;
    f->max_events = (long)c->max_events;
    f->max_open = (long)c->max_open_segments;
    f->max_url_args = c->max_url_args;
    f->log_format = "logfmt";
    f->log_level = "info";
}

/* Copies a table of n options to o, which has room for room; returns n. */
static size_t put(cli_option *o, size_t room, const cli_option *t, size_t n)
{
    if (n > room) abort(); /* serve_options' array is too small for the tables */
    memcpy(o, t, n * sizeof *t);
    return n;
}
#define PUT(o, room, t) put(o, room, t, sizeof(t) / sizeof *(t))

/* Where the server listens and keeps its data, and compaction. */
static size_t lake_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"listen", "EVENTS_LISTEN", OPT_STR, &c->listen, "HOST:PORT",
         "address to listen on (default 127.0.0.1:8080)"},
        {"lake", "EVENTS_LAKE", OPT_STR, &c->lake, "DIR|URL",
         "the lake: a directory, file:///dir or s3://bucket/prefix (default ./events-lake)"},
        {"spool", "EVENTS_SPOOL", OPT_STR, &c->spool, "DIR",
         "local spool of open segments (default LAKE/.spool, or ./events-spool for s3)"},
        {"cache", "EVENTS_CACHE", OPT_STR, &c->cache, "DIR",
         "local cache of an s3 lake's files for queries (default ./events-cache)"},
        {"cache-max", "EVENTS_CACHE_MAX", OPT_SIZE, &c->cache_max, "SIZE",
         "the cache's size at most (default 1GiB)"},
        {"compact-every", "EVENTS_COMPACT_EVERY", OPT_DURATION, &c->compact_every_ms, "DURATION",
         "run compaction this often; 0: never (default 5m)"},
        {"compact-after", "EVENTS_COMPACT_AFTER", OPT_DURATION, &c->compact_after_ms, "DURATION",
         "compact an hour this long after it ends (default 10m)"},
        {"table-lag", "EVENTS_TABLE_LAG", OPT_DURATION, &c->table_lag_ms, "DURATION",
         "sealed events reach the Iceberg table within this, hours not yet compacted too; "
         "0: only compacted hours (default 5m, at least 1m)"},
        {"compact-retain", "EVENTS_COMPACT_RETAIN", OPT_DURATION, &c->compact_retain_ms, "DURATION",
         "keep compacted-away files this long for running queries (default 10m)"},
        {"compact-memory", "EVENTS_COMPACT_MEMORY", OPT_SIZE, &c->compact_memory, "SIZE",
         "compaction's DuckDB memory limit, which bounds its memory (default 1GiB)"},
        {"compact-chunk", "EVENTS_COMPACT_CHUNK", OPT_SIZE, &c->compact_chunk, "SIZE",
         "events one compaction statement reads at most (default: (compact-memory - 96MiB) / 32)"},
    };
    return PUT(o, room, t);
}

/* Who may call, and what one request may hold. */
static size_t request_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"tokens-file", "EVENTS_TOKENS_FILE", OPT_STR, &c->tokens_file, "PATH",
         "bearer tokens: NAME TOKEN SCOPES per line"},
        {"webhook-secrets", "EVENTS_WEBHOOK_SECRETS", OPT_STR, &c->webhook_secrets, "PATH",
         "webhook providers' secrets: provider=secret per line (docs/webhooks.md)"},
        {"webhook-allow-unsigned", "EVENTS_WEBHOOK_ALLOW_UNSIGNED", OPT_STR,
         &c->webhook_allow_unsigned, "PROVIDER,...",
         "store these providers' deliveries unverified while they have no secret"},
        {"allowed-hosts", "EVENTS_ALLOWED_HOSTS", OPT_STR, &c->allowed_hosts, "HOST,...",
         "Host names answered besides loopback ones (checked without tokens, or when given)"},
        {"cors-origins", "EVENTS_CORS_ORIGINS", OPT_STR, &c->cors_origins, "ORIGIN,...",
         "web page origins (http://host:port) that may call the server; * for any "
         "(default: none without tokens, any with tokens)"},
        {"max-body", "EVENTS_MAX_BODY", OPT_SIZE, &f->max_body, "SIZE",
         "largest request body, after gunzip (default 8MiB)"},
        {"max-events", "EVENTS_MAX_EVENTS", OPT_INT, &f->max_events, "N",
         "most events in one request; 0: as many as --max-body holds (default 0)"},
        {"max-url-args", "EVENTS_MAX_URL_ARGS", OPT_INT, &f->max_url_args, "N",
         "arguments in a URL at most, 1 to 200; more get 414 (default 100)"},
        {"max-event-bytes", "EVENTS_MAX_EVENT_BYTES", OPT_SIZE, &f->max_event_bytes, "SIZE",
         "largest event (default 256KiB)"},
        {"rejected-retain", "EVENTS_REJECTED_RETAIN", OPT_DURATION, &c->rejected_retain_ms,
         "DURATION",
         "delete hours of the quarantine (rejected/) this old; 0: keep them (default 0)"},
    };
    return PUT(o, room, t);
}

/* The spool: when segments are sealed, how many stay open, and dedup. */
static size_t spool_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"spool-max", "EVENTS_SPOOL_MAX", OPT_SIZE, &c->spool_max, "SIZE",
         "answer 503 while this much waits for the lake (default: no limit)"},
        {"seal-bytes", "EVENTS_SEAL_BYTES", OPT_SIZE, &c->seal_bytes, "SIZE",
         "seal a segment at this size (default 64MiB)"},
        {"seal-age", "EVENTS_SEAL_AGE", OPT_DURATION, &c->seal_age_ms, "DURATION",
         "seal a segment at this age (default 30s)"},
        {"max-open-segments", "EVENTS_MAX_OPEN_SEGMENTS", OPT_INT, &f->max_open, "N",
         "spool segments open at once, one per hour written; the least recently used closes "
         "first (default 64)"},
        {"dedup-window", "EVENTS_DEDUP_WINDOW", OPT_INT, &f->dedup, "N",
         "recent event ids remembered for dedup (default 1000000)"},
        {"stream-retain", "EVENTS_STREAM_RETAIN", OPT_DURATION, &c->stream_retain_ms, "DURATION",
         "delete stream log files (stream/) whose newest event is this old; 0: keep them "
         "(default 7d)"},
    };
    return PUT(o, room, t);
}

/* HTTP threads, connections and their deadlines. */
static size_t connection_options(cli_option *o, size_t room, serve_flags *f)
{
    const cli_option t[] = {
        {"threads", "EVENTS_THREADS", OPT_INT, &f->threads, "N",
         "HTTP threads (default: one per CPU)"},
        {"ingest-lane", "EVENTS_INGEST_LANE", OPT_SIZE, &f->c.ingest_lane, "SIZE",
         "POST /ingest requests of at most this many bytes, head and body, are read, committed "
         "and answered on a thread of their own (default 16KiB); 0: every request through the "
         "HTTP threads"},
        {"max-connections", "EVENTS_MAX_CONNECTIONS", OPT_INT, &f->max_conn, "N",
         "open connections at most (default 4096)"},
        {"request-timeout", "EVENTS_REQUEST_TIMEOUT", OPT_DURATION, &f->req_timeout, "DURATION",
         "a request must arrive whole within this (default 30s)"},
        {"header-timeout", "EVENTS_HEADER_TIMEOUT", OPT_DURATION, &f->c.header_timeout_ms,
         "DURATION",
         "a new connection must send its request headers whole within this (default 10s)"},
        {"idle-timeout", "EVENTS_IDLE_TIMEOUT", OPT_DURATION, &f->idle_timeout, "DURATION",
         "close idle connections after this (default 60s)"},
        {"shutdown-timeout", "EVENTS_SHUTDOWN_TIMEOUT", OPT_DURATION, &f->shutdown_timeout,
         "DURATION", "wait this long for requests at SIGTERM (default 30s)"},
    };
    return PUT(o, room, t);
}

/* Queries, and the memory of the queries and of the whole server. */
static size_t query_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"query-threads", "EVENTS_QUERY_THREADS", OPT_INT, &f->query_threads, "N",
         "queries run at once (default 2)"},
        {"query-timeout", "EVENTS_QUERY_TIMEOUT", OPT_DURATION, &f->query_timeout, "DURATION",
         "stop a query after this, answering 504 (default 30s)"},
        {"query-max-rows", "EVENTS_QUERY_MAX_ROWS", OPT_SIZE, &f->query_max_rows, "N",
         "rows in one answer at most (default 100000)"},
        {"query-max-bytes", "EVENTS_QUERY_MAX_BYTES", OPT_SIZE, &c->query_max_bytes, "SIZE",
         "bytes in one answer at most; the answer then ends with an error marker (default "
         "32MiB)"},
        {"query-memory", "EVENTS_QUERY_MEMORY", OPT_SIZE, &c->query_memory, "SIZE",
         "DuckDB's memory limit (default 1GiB)"},
        {"query-copies", "EVENTS_QUERY_COPIES", OPT_SIZE, &c->query_copies, "SIZE",
         "Parquet copies of the raw files queries read, kept in the spool for the queries "
         "after, at most (default 256MiB); 0: none"},
        {"query-copies-min", "EVENTS_QUERY_COPIES_MIN", OPT_SIZE, &c->query_copies_min, "SIZE",
         "raw files smaller than this are always read raw, not copied (default 256KiB)"},
        {"memory-max", "EVENTS_MEMORY_MAX", OPT_SIZE, &f->memory_max, "SIZE",
         "the whole server's memory at most; past it queries fail, not the server; 0: no limit "
         "(default 3/4 of the machine's memory)"},
    };
    return PUT(o, room, t);
}

/* Snapshots, the live tail, and the log. */
static size_t stream_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"max-snapshot", "EVENTS_MAX_SNAPSHOT", OPT_SIZE, &c->max_snapshot, "SIZE",
         "largest database snapshot PUT /snapshots takes (default 1GiB)"},
        {"snapshot-downloads", "EVENTS_SNAPSHOT_DOWNLOADS", OPT_INT, &f->snap_downloads, "N",
         "GET /snapshots/S/B answers at once; 503 beyond (default 16)"},
        {"tail-buffer", "EVENTS_TAIL_BUFFER", OPT_SIZE, &f->tail_buffer, "SIZE",
         "bytes a /tail client may fall behind before it is dropped (default 1MiB)"},
        {"tail-heartbeat", "EVENTS_TAIL_HEARTBEAT", OPT_DURATION, &c->tail_heartbeat_ms, "DURATION",
         "a heartbeat on every /tail stream this often (default 15s)"},
        {"tail-max-clients", "EVENTS_TAIL_MAX_CLIENTS", OPT_INT, &f->tail_clients, "N",
         "GET /tail streams at once; 503 beyond (default 100)"},
        {"tail-queue", "EVENTS_TAIL_QUEUE", OPT_SIZE, &f->tail_queue, "SIZE",
         "accepted events waiting for the tail thread; beyond, not sent to tails (default 16MiB)"},
        {"tail-max-patterns", "EVENTS_TAIL_MAX_PATTERNS", OPT_INT, &f->tail_patterns, "N",
         "patterns in one GET /tail?type=; 400 beyond (default 16)"},
        {"tail-max-pattern-bytes", "EVENTS_TAIL_MAX_PATTERN_BYTES", OPT_SIZE,
         &f->tail_pattern_bytes, "N",
         "bytes of one /tail pattern, at most 1024; 400 beyond (default 256)"},
        {"recent-events", "EVENTS_RECENT_EVENTS", OPT_INT, &f->recent_events, "N",
         "latest events GET /recent keeps in memory; 0 turns /recent off (default 1000)"},
        {"recent-bytes", "EVENTS_RECENT_BYTES", OPT_SIZE, &c->recent_bytes, "SIZE",
         "bytes of the events GET /recent keeps; the oldest go first (default 8MiB)"},
        {"events-max-limit", "EVENTS_EVENTS_MAX_LIMIT", OPT_INT, &f->events_max_limit, "N",
         "GET /events?limit= at most, 1 to 1000000; 400 beyond (default 10000)"},
        {"events-max-bytes", "EVENTS_EVENTS_MAX_BYTES", OPT_SIZE, &c->events_max_bytes, "SIZE",
         "bytes of the events of one GET /events answer (one event at least; default 8MiB)"},
        {"subscriptions-max", "EVENTS_SUBSCRIPTIONS_MAX", OPT_INT, &f->subscriptions_max, "N",
         "webhook subscriptions of the lake, 1 to 100000; POST /subscriptions beyond: 409 "
         "(default 1000)"},
        {"log-format", "EVENTS_LOG_FORMAT", OPT_STR, &f->log_format, "logfmt|json",
         "log line format (default logfmt)"},
        {"log-level", "EVENTS_LOG_LEVEL", OPT_STR, &f->log_level, "LEVEL",
         "debug, info, warn or error (default info)"},
    };
    return PUT(o, room, t);
}

/* The delivery of webhook subscriptions (server/deliver.h). */
static size_t deliver_options(cli_option *o, size_t room, serve_flags *f)
{
    server_config *c = &f->c;
    const cli_option t[] = {
        {"deliver-connections", "EVENTS_DELIVER_CONNECTIONS", OPT_INT, &f->deliver_connections, "N",
         "webhook deliveries at once, 0 to 256; 0: this server delivers no subscription "
         "(default 8)"},
        {"subscription-lease", "EVENTS_SUBSCRIPTION_LEASE", OPT_DURATION, &c->subscription_lease_ms,
         "DURATION",
         "a server delivers a subscription for this long, renewed at half term; another takes "
         "over when it lapses (default 30s)"},
        {"subscription-poll", "EVENTS_SUBSCRIPTION_POLL", OPT_DURATION, &c->subscription_poll_ms,
         "DURATION",
         "how often the lake's subscriptions are listed, and the stream looked at without a "
         "notice from ingest (default 1s)"},
        {"deliver-max-bytes", "EVENTS_DELIVER_MAX_BYTES", OPT_SIZE, &c->deliver_max_bytes, "SIZE",
         "bytes of the events of one webhook delivery (one event at least; default 1MiB)"},
    };
    return PUT(o, room, t);
}

/* Every option of `events serve`, NULL-terminated, into opts (room for max). */
static void serve_options(cli_option *opts, size_t max, serve_flags *f)
{
    size_t n = lake_options(opts, max - 1, f);
    n += request_options(opts + n, max - 1 - n, f);
    n += spool_options(opts + n, max - 1 - n, f);
    n += connection_options(opts + n, max - 1 - n, f);
    n += query_options(opts + n, max - 1 - n, f);
    n += stream_options(opts + n, max - 1 - n, f);
    n += deliver_options(opts + n, max - 1 - n, f);
    memset(&opts[n], 0, sizeof opts[n]);
}

/* --log-format and --log-level into the logger's enums. 0, or -1 with a message. */
static int parse_log(const serve_flags *f, enum log_format *lf, enum log_level *ll)
{
    if (!strcmp(f->log_format, "logfmt"))
        *lf = LOG_LOGFMT;
    else if (!strcmp(f->log_format, "json"))
        *lf = LOG_JSON;
    else {
        fprintf(stderr, "events serve: --log-format must be logfmt or json, not \"%s\"\n",
                f->log_format);
        return -1;
    }
    if (!strcmp(f->log_level, "debug"))
        *ll = LOG_DEBUG;
    else if (!strcmp(f->log_level, "info"))
        *ll = LOG_INFO;
    else if (!strcmp(f->log_level, "warn"))
        *ll = LOG_WARN;
    else if (!strcmp(f->log_level, "error"))
        *ll = LOG_ERROR;
    else {
        fprintf(stderr,
                "events serve: --log-level must be debug, info, warn or error, not \"%s\"\n",
                f->log_level);
        return -1;
    }
    return 0;
}

/* The limits of a request and of the spool, --listen, and the host and origin lists. */
static int check_requests(const serve_flags *f)
{
    const server_config *c = &f->c;
    if (f->max_body < 1024 || f->max_body > (1ull << 30)) {
        fprintf(stderr, "events serve: --max-body must be between 1KiB and 1GiB\n");
        return -1;
    }
    if (f->max_event_bytes < 64 || f->max_event_bytes > f->max_body) {
        fprintf(stderr,
                "events serve: --max-event-bytes must be between 64 bytes and --max-body\n");
        return -1;
    }
    if (c->seal_bytes < 1024 || c->seal_age_ms < 10 || f->max_events < 0 || f->max_conn < 1 ||
        f->req_timeout < 1000 || f->idle_timeout < 1000) {
        fprintf(stderr,
                "events serve: --seal-bytes >= 1KiB, --seal-age >= 10ms, --max-events >= 0, "
                "--max-connections >= 1, timeouts >= 1s\n");
        return -1;
    }
    const char *port = strrchr(c->listen, ':');
    if (port && (!port[1] || strspn(port + 1, "0123456789") != strlen(port + 1) ||
                 strlen(port + 1) > 5 || strtol(port + 1, NULL, 10) > 65535)) {
        fprintf(stderr, "events serve: --listen %s: the port must be a number from 0 to 65535\n",
                c->listen);
        return -1;
    }
    if (f->max_url_args < 1 || f->max_url_args > 200) {
        fprintf(stderr, "events serve: --max-url-args must be between 1 and 200 (libmicrohttpd's "
                        "32 KiB of connection memory holds about 450 short ones)\n");
        return -1;
    }
    char err[512];
    origins *o = origins_new(c->allowed_hosts, c->cors_origins, 0, err, sizeof err);
    if (!o) {
        fprintf(stderr, "events serve: %s\n", err);
        return -1;
    }
    origins_free(o);
    if (c->header_timeout_ms < 100 || c->header_timeout_ms > 3600000) {
        fprintf(stderr, "events serve: --header-timeout must be between 100ms and 1h\n");
        return -1;
    }
    return 0;
}

/*
 * The memory of queries and compaction, and the server's in all (memory_max
 * settles here: the default never stops a start), snapshots and compaction's
 * times.
 */
static int check_memory(serve_flags *f)
{
    const server_config *c = &f->c;
    if (c->query_memory < (128u << 20)) {
        fprintf(stderr,
                "events serve: --query-memory must be at least 128MiB (DuckDB's JSON reader needs "
                "about 32 MiB per scan)\n");
        return -1;
    }
    if (c->compact_memory < (128u << 20) || (c->compact_chunk && c->compact_chunk < (1u << 20))) {
        fprintf(stderr, "events serve: --compact-memory must be at least 128MiB, --compact-chunk "
                        "at least 1MiB\n");
        return -1;
    }
    uint64_t memory_least = c->query_memory + c->compact_memory + (256u << 20);
    if (f->memory_max == UINT64_MAX) { /* the default never stops a start: at least that room */
        f->memory_max =
            c->memory_max > memory_least || !c->memory_max ? c->memory_max : memory_least;
    } else if (f->memory_max && f->memory_max < memory_least) {
        fprintf(stderr,
                "events serve: --memory-max must leave room for --query-memory, --compact-memory "
                "and 256MiB more (at least %lluMiB here), or be 0 for no limit\n",
                (unsigned long long)(memory_least >> 20));
        return -1;
    }
    if (c->query_max_bytes < 1024) {
        fprintf(stderr, "events serve: --query-max-bytes must be at least 1KiB\n");
        return -1;
    }
    if (c->max_snapshot < 4096) {
        fprintf(stderr, "events serve: --max-snapshot must be at least 4KiB\n");
        return -1;
    }
    if (f->snap_downloads < 1 || f->snap_downloads > 100000) {
        fprintf(stderr, "events serve: --snapshot-downloads must be between 1 and 100000\n");
        return -1;
    }
    if (c->compact_retain_ms < f->query_timeout) {
        fprintf(stderr, "events serve: --compact-retain must be at least --query-timeout (a "
                        "running query may still read what compaction replaced)\n");
        return -1;
    }
    if (c->compact_after_ms < 0 || c->compact_every_ms < 0) {
        fprintf(stderr, "events serve: --compact-after and --compact-every must not be negative\n");
        return -1;
    }
    if (c->ingest_lane > (1u << 20)) {
        fprintf(stderr, "events serve: --ingest-lane must be at most 1MiB (bigger requests go "
                        "through the HTTP threads)\n");
        return -1;
    }
    if (c->table_lag_ms && c->table_lag_ms < 60000) {
        fprintf(stderr, "events serve: --table-lag must be 0 or at least 1m (each step of it is a "
                        "commit to the table)\n");
        return -1;
    }
    return 0;
}

/* The delivery engine's flags. */
static int check_deliver(const serve_flags *f)
{
    const server_config *c = &f->c;
    if (f->deliver_connections < 0 || f->deliver_connections > 256 ||
        c->subscription_lease_ms < 1000 || c->subscription_poll_ms < 50 ||
        c->subscription_poll_ms > c->subscription_lease_ms / 2 || !c->deliver_max_bytes) {
        fprintf(stderr, "events serve: --deliver-connections must be between 0 and 256, "
                        "--subscription-lease at least 1s, --subscription-poll from 50ms to half "
                        "the lease, --deliver-max-bytes above 0\n");
        return -1;
    }
    return 0;
}

/* The live tail's limits, and the spool's open segments. */
static int check_tails(const serve_flags *f)
{
    if (f->tail_buffer < 4096 || f->c.tail_heartbeat_ms < 100) {
        fprintf(
            stderr,
            "events serve: --tail-buffer must be at least 4KiB, --tail-heartbeat at least 100ms\n");
        return -1;
    }
    if (f->max_open < 1 || f->max_open > 100000) {
        fprintf(stderr, "events serve: --max-open-segments must be between 1 and 100000\n");
        return -1;
    }
    if (f->tail_clients < 1 || f->tail_clients > 100000) {
        fprintf(stderr, "events serve: --tail-max-clients must be between 1 and 100000\n");
        return -1;
    }
    if (f->tail_queue < (64u << 10) || f->tail_patterns < 1 || f->tail_patterns > 1024 ||
        f->tail_pattern_bytes < 1 || f->tail_pattern_bytes > 1024) {
        fprintf(stderr, "events serve: --tail-queue must be at least 64KiB, --tail-max-patterns "
                        "between 1 and 1024, --tail-max-pattern-bytes between 1 and 1024\n");
        return -1;
    }
    if (f->recent_events < 0 || f->recent_events > 10000000) {
        fprintf(stderr, "events serve: --recent-events must be between 0 and 10000000\n");
        return -1;
    }
    if (f->events_max_limit < 1 || f->events_max_limit > 1000000 || !f->c.events_max_bytes) {
        fprintf(stderr, "events serve: --events-max-limit must be between 1 and 1000000, "
                        "--events-max-bytes above 0\n");
        return -1;
    }
    if (f->subscriptions_max < 1 || f->subscriptions_max > 100000) {
        fprintf(stderr, "events serve: --subscriptions-max must be between 1 and 100000\n");
        return -1;
    }
    return check_deliver(f);
}

/* The checked values, in the config's own types and units. */
static void flags_to_config(serve_flags *f)
{
    server_config *c = &f->c;
    c->snapshot_downloads = (int)f->snap_downloads;
    c->tail_queue = (size_t)f->tail_queue;
    c->tail_max_patterns = (int)f->tail_patterns;
    c->tail_pattern_bytes = (size_t)f->tail_pattern_bytes;
    c->tail_max_clients = (int)f->tail_clients;
    c->recent_events = (size_t)f->recent_events;
    c->events_max_limit = (size_t)f->events_max_limit;
    c->deliver_connections = (unsigned)f->deliver_connections;
    c->subscriptions_max = (size_t)f->subscriptions_max;
    c->tail_buffer = (size_t)f->tail_buffer;
    c->max_body = (size_t)f->max_body;
    c->max_event_bytes = (size_t)f->max_event_bytes;
    c->max_events = (size_t)f->max_events;
    c->query_threads = (int)(f->query_threads ? f->query_threads : 1);
    c->query_timeout_ms = f->query_timeout ? f->query_timeout : 1;
    c->query_max_rows = f->query_max_rows ? f->query_max_rows : 1;
    c->memory_max = f->memory_max;
    c->dedup_window = (size_t)f->dedup;
    c->max_open_segments = (size_t)f->max_open;
    c->threads = (int)f->threads;
    c->max_connections = (unsigned)f->max_conn;
    c->request_timeout_s = (int)(f->req_timeout / 1000);
    c->idle_timeout_s = (int)(f->idle_timeout / 1000);
    c->max_url_args = (unsigned)f->max_url_args;
    c->shutdown_timeout_s = (int)(f->shutdown_timeout / 1000);
    const char *tok = getenv("EVENTS_TOKEN");
    c->token = tok && *tok ? tok : NULL;
}

int cmd_serve(int argc, char **argv)
{
    serve_flags f;
    flags_defaults(&f);
    cli_option opts[64];
    serve_options(opts, sizeof opts / sizeof *opts, &f);
    int status;
    if (cli_options_take_no_args("serve",
                                 "Usage: events serve [OPTIONS]\n\nReceive events on POST /ingest "
                                 "and store them durably in the lake.\nEVENTS_TOKEN=TOKEN adds "
                                 "one token with every scope.",
                                 opts, argc, argv, &status))
        return status;
    enum log_format lf;
    enum log_level ll;
    if (parse_log(&f, &lf, &ll) || check_requests(&f) || check_memory(&f) || check_tails(&f))
        return 2;
    flags_to_config(&f);
    log_setup(lf, ll);
    server_exec_for_memory_max(&f.c, argv - 1); /* main passed its own argv + 1 */
    return server_run(&f.c);
}
