/*
 * server.h - `events serve`: the HTTP server in front of the lake.
 *
 * Endpoints (docs/http.md has the full reference):
 *   POST /ingest, POST /e   events in, answered once durable   scope ingest
 *                           (refused records to the quarantine; ?type= ?ts_key= ?rejected=all)
 *   POST /v1/logs           OpenTelemetry logs (OTLP/HTTP)     scope ingest
 *   POST /query             SQL over the lake (DuckDB)         scope query
 *   GET  /health            liveness and spool state           none
 *   GET  /metrics           Prometheus text                    query or admin
 *   PUT  /snapshots/S/B     a database snapshot into the lake  ingest or admin
 *   GET  /snapshots[/S/B]   the snapshots' manifests, a file   query or admin
 *   GET  /tail?type=P       accepted events as SSE (Last-Event-ID: the stream first)  query or
 * admin POST /webhooks/NAME     a provider's signed delivery       webhooks (or admin) GET
 * /recent?limit=N    the latest events, from memory     query or admin GET  /events?after=C    the
 * stream log after a cursor      query or admin OPTIONS *               CORS preflight none
 *   POST/GET/PATCH/DELETE /subscriptions[/ID[/ACTION]]  webhook subscriptions   admin
 */
#ifndef EVENTS_SERVER_H
#define EVENTS_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct server_config {
    const char *listen;        /* "host:port"; port 0 picks a free one. Default 127.0.0.1:8080 */
    const char *lake;          /* directory, file:// or s3:// URL. Default ./events-lake */
    const char *spool;         /* default {lake}/.spool for a directory lake, else ./events-spool */
    const char *cache;         /* an s3 lake's local file cache; default ./events-cache */
    uint64_t cache_max;        /* default 1 GiB */
    int64_t compact_every_ms;  /* run compaction this often; 0: never. Default 5 min */
    int64_t compact_after_ms;  /* compact an hour this long after it ends; default 10 min */
    int64_t table_lag_ms;      /* an event sealed is in the table within about this; 0: only due
                                * hours are compacted. Default 5 min, at least 1 min */
    int64_t compact_retain_ms; /* keep replaced files this long; default 10 min */
    uint64_t compact_memory;   /* compaction's DuckDB memory limit; default 1 GiB */
    uint64_t memory_max; /* the process's data memory (RLIMIT_DATA); 0: none. Default 3/4 of RAM */
    uint64_t compact_chunk;  /* events one compaction statement reads; 0 (default): from memory */
    const char *tokens_file; /* NULL: no tokens file */
    const char *token;       /* one admin token (EVENTS_TOKEN), or NULL */
    size_t max_body;         /* default 8 MiB (after decompression) */
    size_t max_events;       /* 0 (default): as many as --max-body can hold (ingest.h) */
    size_t max_event_bytes;  /* default 256 KiB */
    int64_t rejected_retain_ms; /* expire hours of the quarantine this old; 0 (default): never */
    uint64_t seal_bytes;        /* default 64 MiB */
    int64_t seal_age_ms;        /* default 30 s */
    size_t dedup_window;        /* default 1,000,000 ids */
    uint64_t spool_max; /* answer 503 while this much waits in the spool; 0: no limit (default) */
    size_t max_open_segments;  /* spool segments open at once (one per hour written); default 64 */
    int threads;               /* HTTP threads; default: one per CPU */
    uint64_t ingest_lane;      /* POST /ingest of this many bytes at most on the lane; 0: off.
                                * Default 16 KiB (server_lane.c) */
    int request_timeout_s;     /* whole request, first byte to last; default 30 */
    int idle_timeout_s;        /* idle keep-alive connection; default 60 */
    int64_t header_timeout_ms; /* a new connection's request headers, whole; default 10 s */
    unsigned max_url_args;     /* arguments in a URL; more get 414. Default 100 */
    const char *allowed_hosts; /* more Host names answered besides loopback (origins.h) */
    const char *cors_origins;  /* web page origins that may call the server (origins.h) */
    unsigned max_connections;  /* default 4096 */
    int shutdown_timeout_s;    /* wait for in-flight requests at SIGTERM; default 30 */
    int query_threads;         /* queries run at once; default 2 */
    int64_t query_timeout_ms;  /* default 30 s */
    uint64_t query_max_rows;   /* rows in one answer; default 100,000 */
    uint64_t query_max_bytes;  /* bytes of one answer's rows; default 32 MiB */
    uint64_t query_memory;     /* DuckDB's memory limit; default 1 GiB */
    uint64_t query_copies;     /* Parquet copies of raw files, in the spool; default 256 MiB */
    uint64_t query_copies_min; /* raw files smaller are not copied; default 256 KiB */
    uint64_t max_snapshot;     /* largest snapshot upload; default 1 GiB */
    int snapshot_downloads;    /* GET /snapshots/S/B answers at once, 503 beyond; default 16 */
    size_t tail_buffer;        /* bytes a /tail client may fall behind; default 1 MiB */
    int64_t tail_heartbeat_ms; /* a comment on every /tail stream this often; default 15 s */
    int tail_max_clients;      /* /tail streams at once, 503 beyond; default 100 */
    size_t tail_queue;         /* accepted events waiting for the tail thread; default 16 MiB */
    int tail_max_patterns;     /* patterns in one /tail subscription; default 16 */
    size_t tail_pattern_bytes; /* bytes of one /tail pattern; default 256 */
    const char *webhook_secrets;        /* provider=secret lines (docs/webhooks.md), or NULL */
    const char *webhook_allow_unsigned; /* "github,slack": providers taken unsigned, or NULL */
    size_t recent_events;      /* events GET /recent keeps; 0: /recent is off. Default 1000 */
    uint64_t recent_bytes;     /* bytes of their lines; default 8 MiB */
    int64_t stream_retain_ms;  /* expire stream log files this old; 0: never. Default 7 days */
    size_t events_max_limit;   /* GET /events?limit= at most; default 10000 */
    uint64_t events_max_bytes; /* bytes of one GET /events answer's events; default 8 MiB */

    /* the delivery of webhook subscriptions (deliver.h) */
    unsigned deliver_connections;  /* webhook deliveries at once; 0: none here. Default 8 */
    int64_t subscription_lease_ms; /* a subscription's lease; default 30 s */
    int64_t subscription_poll_ms;  /* the subscriptions' listing period; default 1 s */
    uint64_t deliver_max_bytes;    /* bytes of the events of one delivery; default 1 MiB */
    size_t subscriptions_max;      /* webhook subscriptions of the lake; more: 409. Default 1000 */
} server_config;

/*
 * DuckDB's jemalloc keeps the address ranges of memory it has freed
 * (opt.retain), and memory_max (RLIMIT_DATA) counts them: after one query of
 * gigabytes the server would stay at its limit. jemalloc reads its settings
 * from DUCKDB_JE_MALLOC_CONF before main runs, so with memory_max set and the
 * variable unset, this sets it to "retain:false" and executes the program
 * again with the same argv (main's own, NULL-terminated); it returns only if
 * there is nothing to do or the exec failed. Call it before any thread starts.
 */
void server_exec_for_memory_max(const server_config *cfg, char **argv);

/* 3/4 of the machine's physical memory (or of its cgroup's limit, if lower); 0 if unknown. */
uint64_t server_memory_default(void);

/* Fills cfg with the defaults above. */
void server_config_defaults(server_config *cfg);

/*
 * Runs the server until SIGTERM or SIGINT, then stops accepting, finishes
 * in-flight requests, seals every segment and returns 0. Returns 1 (with a
 * log line saying why) when it cannot start.
 */
int server_run(const server_config *cfg);

#endif
