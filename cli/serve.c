/*
 * serve.c - `events serve`: flags and environment into a server_config.
 */
#include "cli.h"
#include "log.h"
#include "origins.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_serve(int argc, char **argv)
{
    server_config c;
    server_config_defaults(&c);
    uint64_t max_body = c.max_body, seal_bytes = c.seal_bytes, max_event_bytes = c.max_event_bytes,
             spool_max = c.spool_max, query_memory = c.query_memory,
             compact_memory = c.compact_memory, compact_chunk = c.compact_chunk,
             query_max_rows = c.query_max_rows, query_max_bytes = c.query_max_bytes,
             max_snapshot = c.max_snapshot, memory_max = UINT64_MAX; /* not given */
    int64_t seal_age = c.seal_age_ms, req_timeout = (int64_t)c.request_timeout_s * 1000,
            idle_timeout = (int64_t)c.idle_timeout_s * 1000,
            shutdown_timeout = (int64_t)c.shutdown_timeout_s * 1000,
            header_timeout = c.header_timeout_ms;
    int64_t query_timeout = c.query_timeout_ms;
    uint64_t cache_max = c.cache_max, tail_buffer = c.tail_buffer, tail_queue = c.tail_queue,
             tail_pattern_bytes = c.tail_pattern_bytes;
    long query_threads = c.query_threads;
    long tail_clients = c.tail_max_clients, tail_patterns = c.tail_max_patterns;
    long snap_downloads = c.snapshot_downloads;
    long threads = 0, dedup = (long)c.dedup_window, max_conn = c.max_connections,
         max_events = (long)c.max_events, max_open = (long)c.max_open_segments,
         max_url_args = c.max_url_args;
    const char *log_format = "logfmt", *log_level = "info";
    const cli_option opts[] = {
        {"listen", "EVENTS_LISTEN", OPT_STR, &c.listen, "HOST:PORT",
         "address to listen on (default 127.0.0.1:8080)"},
        {"lake", "EVENTS_LAKE", OPT_STR, &c.lake, "DIR|URL",
         "the lake: a directory, file:///dir or s3://bucket/prefix (default ./events-lake)"},
        {"spool", "EVENTS_SPOOL", OPT_STR, &c.spool, "DIR",
         "local spool of open segments (default LAKE/.spool, or ./events-spool for s3)"},
        {"cache", "EVENTS_CACHE", OPT_STR, &c.cache, "DIR",
         "local cache of an s3 lake's files for queries (default ./events-cache)"},
        {"cache-max", "EVENTS_CACHE_MAX", OPT_SIZE, &cache_max, "SIZE",
         "the cache's size at most (default 1GiB)"},
        {"compact-every", "EVENTS_COMPACT_EVERY", OPT_DURATION, &c.compact_every_ms, "DURATION",
         "run compaction this often; 0: never (default 5m)"},
        {"compact-after", "EVENTS_COMPACT_AFTER", OPT_DURATION, &c.compact_after_ms, "DURATION",
         "compact an hour this long after it ends (default 10m)"},
        {"compact-retain", "EVENTS_COMPACT_RETAIN", OPT_DURATION, &c.compact_retain_ms, "DURATION",
         "keep compacted-away files this long for running queries (default 10m)"},
        {"compact-memory", "EVENTS_COMPACT_MEMORY", OPT_SIZE, &compact_memory, "SIZE",
         "compaction's DuckDB memory limit, which bounds its memory (default 1GiB)"},
        {"compact-chunk", "EVENTS_COMPACT_CHUNK", OPT_SIZE, &compact_chunk, "SIZE",
         "events one compaction statement reads at most (default: (compact-memory - 96MiB) / 32)"},
        {"tokens-file", "EVENTS_TOKENS_FILE", OPT_STR, &c.tokens_file, "PATH",
         "bearer tokens: NAME TOKEN SCOPES per line"},
        {"allowed-hosts", "EVENTS_ALLOWED_HOSTS", OPT_STR, &c.allowed_hosts, "HOST,...",
         "Host names answered besides loopback ones (checked without tokens, or when given)"},
        {"cors-origins", "EVENTS_CORS_ORIGINS", OPT_STR, &c.cors_origins, "ORIGIN,...",
         "web page origins (http://host:port) that may call the server; * for any "
         "(default: none without tokens, any with tokens)"},
        {"max-body", "EVENTS_MAX_BODY", OPT_SIZE, &max_body, "SIZE",
         "largest request body, after gunzip (default 8MiB)"},
        {"max-events", "EVENTS_MAX_EVENTS", OPT_INT, &max_events, "N",
         "most events in one request; 0: as many as --max-body holds (default 0)"},
        {"max-url-args", "EVENTS_MAX_URL_ARGS", OPT_INT, &max_url_args, "N",
         "arguments in a URL at most, 1 to 200; more get 414 (default 100)"},
        {"max-event-bytes", "EVENTS_MAX_EVENT_BYTES", OPT_SIZE, &max_event_bytes, "SIZE",
         "largest event (default 256KiB)"},
        {"rejected-retain", "EVENTS_REJECTED_RETAIN", OPT_DURATION, &c.rejected_retain_ms,
         "DURATION",
         "delete hours of the quarantine (rejected/) this old; 0: keep them (default 0)"},
        {"spool-max", "EVENTS_SPOOL_MAX", OPT_SIZE, &spool_max, "SIZE",
         "answer 503 while this much waits for the lake (default: no limit)"},
        {"seal-bytes", "EVENTS_SEAL_BYTES", OPT_SIZE, &seal_bytes, "SIZE",
         "seal a segment at this size (default 64MiB)"},
        {"seal-age", "EVENTS_SEAL_AGE", OPT_DURATION, &seal_age, "DURATION",
         "seal a segment at this age (default 30s)"},
        {"max-open-segments", "EVENTS_MAX_OPEN_SEGMENTS", OPT_INT, &max_open, "N",
         "spool segments open at once, one per hour written; the least recently used closes "
         "first (default 64)"},
        {"dedup-window", "EVENTS_DEDUP_WINDOW", OPT_INT, &dedup, "N",
         "recent event ids remembered for dedup (default 1000000)"},
        {"threads", "EVENTS_THREADS", OPT_INT, &threads, "N",
         "HTTP threads (default: one per CPU)"},
        {"max-connections", "EVENTS_MAX_CONNECTIONS", OPT_INT, &max_conn, "N",
         "open connections at most (default 4096)"},
        {"request-timeout", "EVENTS_REQUEST_TIMEOUT", OPT_DURATION, &req_timeout, "DURATION",
         "a request must arrive whole within this (default 30s)"},
        {"header-timeout", "EVENTS_HEADER_TIMEOUT", OPT_DURATION, &header_timeout, "DURATION",
         "a new connection must send its request headers whole within this (default 10s)"},
        {"idle-timeout", "EVENTS_IDLE_TIMEOUT", OPT_DURATION, &idle_timeout, "DURATION",
         "close idle connections after this (default 60s)"},
        {"shutdown-timeout", "EVENTS_SHUTDOWN_TIMEOUT", OPT_DURATION, &shutdown_timeout, "DURATION",
         "wait this long for requests at SIGTERM (default 30s)"},
        {"query-threads", "EVENTS_QUERY_THREADS", OPT_INT, &query_threads, "N",
         "queries run at once (default 2)"},
        {"query-timeout", "EVENTS_QUERY_TIMEOUT", OPT_DURATION, &query_timeout, "DURATION",
         "stop a query after this, answering 504 (default 30s)"},
        {"query-max-rows", "EVENTS_QUERY_MAX_ROWS", OPT_SIZE, &query_max_rows, "N",
         "rows in one answer at most (default 100000)"},
        {"query-max-bytes", "EVENTS_QUERY_MAX_BYTES", OPT_SIZE, &query_max_bytes, "SIZE",
         "bytes in one answer at most; the answer then ends with an error marker (default "
         "32MiB)"},
        {"query-memory", "EVENTS_QUERY_MEMORY", OPT_SIZE, &query_memory, "SIZE",
         "DuckDB's memory limit (default 1GiB)"},
        {"memory-max", "EVENTS_MEMORY_MAX", OPT_SIZE, &memory_max, "SIZE",
         "the whole server's memory at most; past it queries fail, not the server; 0: no limit "
         "(default 3/4 of the machine's memory)"},
        {"max-snapshot", "EVENTS_MAX_SNAPSHOT", OPT_SIZE, &max_snapshot, "SIZE",
         "largest database snapshot PUT /snapshots takes (default 1GiB)"},
        {"snapshot-downloads", "EVENTS_SNAPSHOT_DOWNLOADS", OPT_INT, &snap_downloads, "N",
         "GET /snapshots/S/B answers at once; 503 beyond (default 16)"},
        {"tail-buffer", "EVENTS_TAIL_BUFFER", OPT_SIZE, &tail_buffer, "SIZE",
         "bytes a /tail client may fall behind before it is dropped (default 1MiB)"},
        {"tail-heartbeat", "EVENTS_TAIL_HEARTBEAT", OPT_DURATION, &c.tail_heartbeat_ms, "DURATION",
         "a heartbeat on every /tail stream this often (default 15s)"},
        {"tail-max-clients", "EVENTS_TAIL_MAX_CLIENTS", OPT_INT, &tail_clients, "N",
         "GET /tail streams at once; 503 beyond (default 100)"},
        {"tail-queue", "EVENTS_TAIL_QUEUE", OPT_SIZE, &tail_queue, "SIZE",
         "accepted events waiting for the tail thread; beyond, not sent to tails (default 16MiB)"},
        {"tail-max-patterns", "EVENTS_TAIL_MAX_PATTERNS", OPT_INT, &tail_patterns, "N",
         "patterns in one GET /tail?type=; 400 beyond (default 16)"},
        {"tail-max-pattern-bytes", "EVENTS_TAIL_MAX_PATTERN_BYTES", OPT_SIZE, &tail_pattern_bytes,
         "N", "bytes of one /tail pattern, at most 1024; 400 beyond (default 256)"},
        {"log-format", "EVENTS_LOG_FORMAT", OPT_STR, &log_format, "logfmt|json",
         "log line format (default logfmt)"},
        {"log-level", "EVENTS_LOG_LEVEL", OPT_STR, &log_level, "LEVEL",
         "debug, info, warn or error (default info)"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int i = cli_options_parse("serve", opts, argc, argv);
    if (i == -2) {
        cli_options_help(
            "Usage: events serve [OPTIONS]\n\nReceive events on POST /ingest and store "
            "them durably in the lake.\nEVENTS_TOKEN=TOKEN adds one token with every scope.",
            opts);
        return 0;
    }
    if (i < 0) return 2;
    if (i < argc) {
        fprintf(stderr, "events serve: unexpected argument \"%s\"\n", argv[i]);
        return 2;
    }
    enum log_format lf;
    enum log_level ll;
    if (!strcmp(log_format, "logfmt"))
        lf = LOG_LOGFMT;
    else if (!strcmp(log_format, "json"))
        lf = LOG_JSON;
    else {
        fprintf(stderr, "events serve: --log-format must be logfmt or json, not \"%s\"\n",
                log_format);
        return 2;
    }
    if (!strcmp(log_level, "debug"))
        ll = LOG_DEBUG;
    else if (!strcmp(log_level, "info"))
        ll = LOG_INFO;
    else if (!strcmp(log_level, "warn"))
        ll = LOG_WARN;
    else if (!strcmp(log_level, "error"))
        ll = LOG_ERROR;
    else {
        fprintf(stderr,
                "events serve: --log-level must be debug, info, warn or error, not \"%s\"\n",
                log_level);
        return 2;
    }
    if (max_body < 1024 || max_body > (1ull << 30)) {
        fprintf(stderr, "events serve: --max-body must be between 1KiB and 1GiB\n");
        return 2;
    }
    if (max_event_bytes < 64 || max_event_bytes > max_body) {
        fprintf(stderr,
                "events serve: --max-event-bytes must be between 64 bytes and --max-body\n");
        return 2;
    }
    if (seal_bytes < 1024 || seal_age < 10 || max_events < 0 || max_conn < 1 ||
        req_timeout < 1000 || idle_timeout < 1000) {
        fprintf(stderr,
                "events serve: --seal-bytes >= 1KiB, --seal-age >= 10ms, --max-events >= 0, "
                "--max-connections >= 1, timeouts >= 1s\n");
        return 2;
    }
    const char *port = strrchr(c.listen, ':');
    if (port && (!port[1] || strspn(port + 1, "0123456789") != strlen(port + 1) ||
                 strlen(port + 1) > 5 || strtol(port + 1, NULL, 10) > 65535)) {
        fprintf(stderr, "events serve: --listen %s: the port must be a number from 0 to 65535\n",
                c.listen);
        return 2;
    }
    if (max_url_args < 1 || max_url_args > 200) {
        fprintf(stderr, "events serve: --max-url-args must be between 1 and 200 (libmicrohttpd's "
                        "32 KiB of connection memory holds about 450 short ones)\n");
        return 2;
    }
    {
        char err[512];
        origins *o = origins_new(c.allowed_hosts, c.cors_origins, 0, err, sizeof err);
        if (!o) {
            fprintf(stderr, "events serve: %s\n", err);
            return 2;
        }
        origins_free(o);
    }
    if (header_timeout < 100 || header_timeout > 3600000) {
        fprintf(stderr, "events serve: --header-timeout must be between 100ms and 1h\n");
        return 2;
    }
    if (query_memory < (128u << 20)) {
        fprintf(stderr,
                "events serve: --query-memory must be at least 128MiB (DuckDB's JSON reader needs "
                "about 32 MiB per scan)\n");
        return 2;
    }
    if (compact_memory < (128u << 20) || (compact_chunk && compact_chunk < (1u << 20))) {
        fprintf(stderr, "events serve: --compact-memory must be at least 128MiB, --compact-chunk "
                        "at least 1MiB\n");
        return 2;
    }
    uint64_t memory_least = query_memory + compact_memory + (256u << 20);
    if (memory_max == UINT64_MAX) { /* the default never stops a start: at least that room */
        memory_max = c.memory_max > memory_least || !c.memory_max ? c.memory_max : memory_least;
    } else if (memory_max && memory_max < memory_least) {
        fprintf(stderr,
                "events serve: --memory-max must leave room for --query-memory, --compact-memory "
                "and 256MiB more (at least %lluMiB here), or be 0 for no limit\n",
                (unsigned long long)(memory_least >> 20));
        return 2;
    }
    if (query_max_bytes < 1024) {
        fprintf(stderr, "events serve: --query-max-bytes must be at least 1KiB\n");
        return 2;
    }
    if (max_snapshot < 4096) {
        fprintf(stderr, "events serve: --max-snapshot must be at least 4KiB\n");
        return 2;
    }
    if (snap_downloads < 1 || snap_downloads > 100000) {
        fprintf(stderr, "events serve: --snapshot-downloads must be between 1 and 100000\n");
        return 2;
    }
    c.snapshot_downloads = (int)snap_downloads;
    if (c.compact_retain_ms < query_timeout) {
        fprintf(stderr, "events serve: --compact-retain must be at least --query-timeout (a "
                        "running query may still read what compaction replaced)\n");
        return 2;
    }
    if (c.compact_after_ms < 0 || c.compact_every_ms < 0) {
        fprintf(stderr, "events serve: --compact-after and --compact-every must not be negative\n");
        return 2;
    }
    if (tail_buffer < 4096 || c.tail_heartbeat_ms < 100) {
        fprintf(
            stderr,
            "events serve: --tail-buffer must be at least 4KiB, --tail-heartbeat at least 100ms\n");
        return 2;
    }
    if (max_open < 1 || max_open > 100000) {
        fprintf(stderr, "events serve: --max-open-segments must be between 1 and 100000\n");
        return 2;
    }
    if (tail_clients < 1 || tail_clients > 100000) {
        fprintf(stderr, "events serve: --tail-max-clients must be between 1 and 100000\n");
        return 2;
    }
    if (tail_queue < (64u << 10) || tail_patterns < 1 || tail_patterns > 1024 ||
        tail_pattern_bytes < 1 || tail_pattern_bytes > 1024) {
        fprintf(stderr, "events serve: --tail-queue must be at least 64KiB, --tail-max-patterns "
                        "between 1 and 1024, --tail-max-pattern-bytes between 1 and 1024\n");
        return 2;
    }
    c.tail_queue = (size_t)tail_queue;
    c.tail_max_patterns = (int)tail_patterns;
    c.tail_pattern_bytes = (size_t)tail_pattern_bytes;
    c.tail_max_clients = (int)tail_clients;
    c.tail_buffer = (size_t)tail_buffer;
    c.cache_max = cache_max;
    c.max_snapshot = max_snapshot;
    c.max_body = (size_t)max_body;
    c.max_event_bytes = (size_t)max_event_bytes;
    c.max_events = (size_t)max_events;
    c.seal_bytes = seal_bytes;
    c.spool_max = spool_max;
    c.query_threads = (int)(query_threads ? query_threads : 1);
    c.query_timeout_ms = query_timeout ? query_timeout : 1;
    c.query_max_rows = query_max_rows ? query_max_rows : 1;
    c.query_max_bytes = query_max_bytes;
    c.query_memory = query_memory;
    c.compact_memory = compact_memory;
    c.memory_max = memory_max;
    c.compact_chunk = compact_chunk;
    c.seal_age_ms = seal_age;
    c.dedup_window = (size_t)dedup;
    c.max_open_segments = (size_t)max_open;
    c.threads = (int)threads;
    c.max_connections = (unsigned)max_conn;
    c.request_timeout_s = (int)(req_timeout / 1000);
    c.idle_timeout_s = (int)(idle_timeout / 1000);
    c.header_timeout_ms = header_timeout;
    c.max_url_args = (unsigned)max_url_args;
    c.shutdown_timeout_s = (int)(shutdown_timeout / 1000);
    const char *tok = getenv("EVENTS_TOKEN");
    c.token = tok && *tok ? tok : NULL;
    log_setup(lf, ll);
    server_exec_for_memory_max(&c, argv - 1); /* main passed its own argv + 1 */
    return server_run(&c);
}
