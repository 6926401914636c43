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
#include "webhooks.h"
#include "writer.h"

#include <stdatomic.h>
#include <stdint.h>

enum metrics_route {
    METRICS_ROUTE_INGEST,
    METRICS_ROUTE_QUERY,
    METRICS_ROUTE_HEALTH,
    METRICS_ROUTE_METRICS,
    METRICS_ROUTE_SNAPSHOTS,
    METRICS_ROUTE_TAIL,
    METRICS_ROUTE_DASHBOARD,
    METRICS_ROUTE_OTLP_LOGS,
    METRICS_ROUTE_OTHER,
    METRICS_ROUTE_WEBHOOKS,
    METRICS_ROUTE_RECENT,
    METRICS_ROUTE_EVENTS,
    METRICS_ROUTE_SUBSCRIPTIONS,
    METRICS_ROUTE_COUNT
};

#define METRICS_CODES 16

/* What the HTTP layer refused or closed before a handler answered (docs/http.md). */
enum metrics_refusal {
    METRICS_REFUSED_HOST,              /* Host not allowed (no tokens, or --allowed-hosts) */
    METRICS_REFUSED_ORIGIN,            /* a cross-origin request from an origin not allowed */
    METRICS_REFUSED_HEADER_TIMEOUT,    /* request headers not whole in time (--header-timeout) */
    METRICS_REFUSED_EVICTED,           /* closed to make room at --max-connections */
    METRICS_REFUSED_CONNECTION_LIMIT,  /* at --max-connections with every connection busy */
    METRICS_REFUSED_URL_ARGUMENTS,     /* more URL arguments than --max-url-args */
    METRICS_REFUSED_URL_NUL,           /* %00 in the URL */
    METRICS_REFUSED_TRANSFER_ENCODING, /* a Transfer-Encoding other than chunked */
    METRICS_REFUSED_BODY_TIMEOUT, /* a body not whole within --request-timeout, the client silent */
    METRICS_REFUSED_COUNT
};

/* What became of a webhook delivery (POST /webhooks, docs/webhooks.md). */
enum metrics_webhook {
    METRICS_WH_ACCEPTED,          /* stored, signature verified */
    METRICS_WH_UNVERIFIED,        /* stored unsigned (--webhook-allow-unsigned) */
    METRICS_WH_DUPLICATE,         /* a delivery id already stored: answered, not stored again */
    METRICS_WH_CHALLENGE,         /* Slack's url_verification answered */
    METRICS_WH_MISSING_SIGNATURE, /* a header the signature needs is missing */
    METRICS_WH_INVALID_SIGNATURE, /* malformed, or signed by no secret */
    METRICS_WH_STALE_TIMESTAMP,   /* the timestamp is outside the tolerance, old or future */
    METRICS_WH_NO_SECRET,         /* the provider has no secret */
    METRICS_WH_UNKNOWN_PROVIDER,  /* not a provider the server knows */
    METRICS_WH_REFUSED,           /* the body: not JSON, its event refused, too large */
    METRICS_WH_COUNT
};

/* Providers counted: webhooks.h's and one for an unknown name. */
#define METRICS_WH_PROVIDERS (WEBHOOKS_COUNT + 1)

typedef struct metrics {
    _Atomic uint64_t events_accepted, events_rejected, events_duplicate;
    _Atomic uint64_t rejected_by[EVENT_R_COUNT];     /* refused records by reason (event.h) */
    _Atomic uint64_t quarantined, quarantined_bytes; /* refused records made durable, their lines */
    _Atomic uint64_t bytes_received; /* request bodies as sent (compressed if gzip) */
    _Atomic uint64_t bytes_stored;   /* lines written to the spool */
    _Atomic int64_t connections_open;
    _Atomic uint64_t lane_requests; /* requests answered on the ingest lane (server_lane.c) */
    _Atomic uint64_t lane_handoffs; /* connections the lane gave to libmicrohttpd */
    _Atomic uint64_t requests[METRICS_ROUTE_COUNT][METRICS_CODES];
    histo latency[METRICS_ROUTE_COUNT];
    _Atomic uint64_t refused[METRICS_REFUSED_COUNT];
    _Atomic uint64_t webhooks[METRICS_WH_PROVIDERS][METRICS_WH_COUNT]; /* by provider, outcome */
} metrics;

extern metrics metrics_global;

/* Counts a finished request and its latency. */
void metrics_request(enum metrics_route route, unsigned status, int64_t ns);

/* Counts a webhook delivery's outcome; provider -1 (or out of range) is an unknown one. */
void metrics_webhook(int provider, enum metrics_webhook outcome);

/* Counts a refusal. */
void metrics_refused(enum metrics_refusal why);

/* Appends the Prometheus text exposition. */
int metrics_render(buf *out, const lake_writer_stats *ws);

/* One counter or gauge with its HELP and TYPE lines. */
void metrics_counter(buf *b, const char *name, const char *help, uint64_t v);
void metrics_gauge(buf *b, const char *name, const char *help, long long v);

#endif
