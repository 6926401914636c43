/*
 * metrics.h - the server's counters, rendered as Prometheus text at /metrics.
 *
 * One process-wide instance (metrics_global), updated with relaxed atomics
 * from any thread; the lake writer keeps its own counters and is read when
 * rendering.
 */
#ifndef EVENTS_METRICS_H
#define EVENTS_METRICS_H

#include "buf.h"
#include "event.h"
#include "histo.h"
#include "writer.h"

#include <stdatomic.h>
#include <stdint.h>

enum metrics_route {
    ROUTE_INGEST,
    ROUTE_QUERY,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_SNAPSHOTS,
    ROUTE_TAIL,
    ROUTE_DASHBOARD,
    ROUTE_OTLP_LOGS,
    ROUTE_OTHER,
    ROUTE_COUNT
};

#define METRICS_CODES 16

/* What the HTTP layer refused or closed before a handler answered (docs/http.md). */
enum metrics_refusal {
    REFUSED_HOST,              /* Host not allowed (no tokens, or --allowed-hosts) */
    REFUSED_ORIGIN,            /* a cross-origin request from an origin not allowed */
    REFUSED_HEADER_TIMEOUT,    /* request headers not whole in time (--header-timeout) */
    REFUSED_EVICTED,           /* closed to make room at --max-connections */
    REFUSED_CONNECTION_LIMIT,  /* at --max-connections with every connection busy */
    REFUSED_URL_ARGUMENTS,     /* more URL arguments than --max-url-args */
    REFUSED_URL_NUL,           /* %00 in the URL */
    REFUSED_TRANSFER_ENCODING, /* a Transfer-Encoding other than chunked */
    REFUSED_BODY_TIMEOUT,      /* a body not whole within --request-timeout, the client silent */
    REFUSED_COUNT
};

typedef struct metrics {
    _Atomic uint64_t events_accepted, events_rejected, events_duplicate;
    _Atomic uint64_t rejected_by[EVENT_R_COUNT];     /* refused records by reason (event.h) */
    _Atomic uint64_t quarantined, quarantined_bytes; /* refused records made durable, their lines */
    _Atomic uint64_t bytes_received; /* request bodies as sent (compressed if gzip) */
    _Atomic uint64_t bytes_stored;   /* lines written to the spool */
    _Atomic int64_t connections_open;
    _Atomic uint64_t requests[ROUTE_COUNT][METRICS_CODES];
    histo latency[ROUTE_COUNT];
    _Atomic uint64_t refused[REFUSED_COUNT];
} metrics;

extern metrics metrics_global;

/* Counts a finished request and its latency. */
void metrics_request(enum metrics_route route, unsigned status, int64_t ns);

/* Counts a refusal. */
void metrics_refused(enum metrics_refusal why);

/* Appends the Prometheus text exposition. */
int metrics_render(buf *out, const lake_writer_stats *ws);

/* One counter or gauge with its HELP and TYPE lines. */
void metrics_counter(buf *b, const char *name, const char *help, uint64_t v);
void metrics_gauge(buf *b, const char *name, const char *help, long long v);

#endif
