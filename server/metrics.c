/*
 * metrics.c - counters and their Prometheus text exposition.
 */
#include "metrics.h"

#include <stdio.h>

/* Set once to zeros at load; every thread adds to it with relaxed atomics, no lock; only
 * /metrics reads it, and nothing resets it while the process runs. */
metrics metrics_global;

static const unsigned codes[METRICS_CODES] = {200, 204, 400, 401, 403, 404, 405, 408,
                                              410, 413, 415, 429, 500, 503, 504, 0};
static const char *const route_names[METRICS_ROUTE_COUNT] = {
    "ingest",    "query", "health",   "metrics", "snapshots", "tail",         "dashboard",
    "otlp_logs", "other", "webhooks", "recent",  "events",    "subscriptions"};

static const char *const webhook_outcomes[METRICS_WH_COUNT] = {
    "accepted",          "unverified",      "duplicate", "challenge",        "missing_signature",
    "invalid_signature", "stale_timestamp", "no_secret", "unknown_provider", "refused"};

static const char *const refusal_names[METRICS_REFUSED_COUNT] = {
    "host",          "origin",  "header_timeout",    "evicted",     "connection_limit",
    "url_arguments", "url_nul", "transfer_encoding", "body_timeout"};

void metrics_refused(enum metrics_refusal why)
{
    atomic_fetch_add_explicit(&metrics_global.refused[why], 1, memory_order_relaxed);
}

void metrics_webhook(int provider, enum metrics_webhook outcome)
{
    int p = provider >= 0 && provider < WEBHOOKS_COUNT ? provider : WEBHOOKS_COUNT;
    atomic_fetch_add_explicit(&metrics_global.webhooks[p][outcome], 1, memory_order_relaxed);
}

/* events_webhooks_total{provider,outcome}: every pair, zeros included, so alerts see them. */
static void render_webhooks(buf *b, const metrics *m)
{
    buf_puts(b, "# HELP events_webhooks_total Webhook deliveries by provider and outcome.\n"
                "# TYPE events_webhooks_total counter\n");
    for (int p = 0; p < METRICS_WH_PROVIDERS; p++)
        for (int o = 0; o < METRICS_WH_COUNT; o++) {
            if ((p == WEBHOOKS_COUNT) != (o == METRICS_WH_UNKNOWN_PROVIDER)) continue;
            buf_printf(b, "events_webhooks_total{provider=\"%s\",outcome=\"%s\"} %llu\n",
                       p < WEBHOOKS_COUNT ? webhooks_name(p) : "unknown", webhook_outcomes[o],
                       (unsigned long long)atomic_load(&m->webhooks[p][o]));
        }
}

void metrics_request(enum metrics_route route, unsigned status, int64_t ns)
{
    int i = 0;
    while (i < METRICS_CODES - 2 && codes[i] != status) i++;
    if (codes[i] != status) i = METRICS_CODES - 1; /* any other code */
    atomic_fetch_add_explicit(&metrics_global.requests[route][i], 1, memory_order_relaxed);
    histo_add(&metrics_global.latency[route], ns);
}

static void render_histo(buf *b, const char *name, const char *labels, const histo *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < HISTO_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < HISTO_BUCKETS - 1)
            buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "",
                       histo_bounds[i], (unsigned long long)cum);
        else
            buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
                       (unsigned long long)cum);
    }
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    buf_printf(b, "%s_sum%s%s%s %.9f\n", name, open, labels, close,
               (double)atomic_load(&h->sum_ns) / 1e9);
    buf_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
               (unsigned long long)atomic_load(&h->count));
}

void metrics_counter(buf *b, const char *name, const char *help, uint64_t v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
               (unsigned long long)v);
}

void metrics_gauge(buf *b, const char *name, const char *help, long long v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

/* The connections, and the ingest lane's share of them (server_lane.c). */
static void render_connections(buf *b, metrics *m)
{
    metrics_gauge(b, "events_http_connections_open", "Open HTTP connections.",
                  (long long)atomic_load(&m->connections_open));
    metrics_counter(b, "events_ingest_lane_requests_total",
                    "Ingest requests read, committed and answered on the ingest lane.",
                    atomic_load(&m->lane_requests));
    metrics_counter(b, "events_ingest_lane_handoffs_total",
                    "Connections the ingest lane gave to the HTTP server's threads, each at a "
                    "request it does not take.",
                    atomic_load(&m->lane_handoffs));
}

int metrics_render(buf *b, const lake_writer_stats *ws)
{
    metrics *m = &metrics_global;
    metrics_counter(b, "events_ingested_total", "Events accepted and made durable.",
                    atomic_load(&m->events_accepted));
    metrics_counter(b, "events_rejected_total", "Events rejected by validation.",
                    atomic_load(&m->events_rejected));
    metrics_counter(b, "events_duplicate_total", "Events answered as duplicates of a recent id.",
                    atomic_load(&m->events_duplicate));
    buf_puts(b,
             "# HELP events_rejected_by_reason_total Events rejected by validation, by the class "
             "of the reason.\n# TYPE events_rejected_by_reason_total counter\n");
    for (int i = 0; i < EVENT_R_COUNT; i++)
        buf_printf(b, "events_rejected_by_reason_total{reason=\"%s\"} %llu\n", event_reason_name(i),
                   (unsigned long long)atomic_load(&m->rejected_by[i]));
    metrics_counter(b, "events_quarantined_total",
                    "Rejected records made durable in the lake's quarantine (rejected/).",
                    atomic_load(&m->quarantined));
    metrics_counter(b, "events_quarantined_bytes_total",
                    "Bytes of quarantine lines written to the spool.",
                    atomic_load(&m->quarantined_bytes));
    metrics_counter(b, "events_received_bytes_total",
                    "Request body bytes received on /ingest, as sent.",
                    atomic_load(&m->bytes_received));
    metrics_counter(b, "events_stored_bytes_total", "Bytes of event lines written to the spool.",
                    atomic_load(&m->bytes_stored));
    render_connections(b, m);

    buf_puts(b, "# HELP events_http_requests_total HTTP requests by route and status code.\n"
                "# TYPE events_http_requests_total counter\n");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
        for (int i = 0; i < METRICS_CODES; i++) {
            uint64_t v = atomic_load(&m->requests[r][i]);
            if (!v || (codes[i] == 0 && i != METRICS_CODES - 1)) continue;
            if (i == METRICS_CODES - 1)
                buf_printf(b, "events_http_requests_total{route=\"%s\",code=\"other\"} %llu\n",
                           route_names[r], (unsigned long long)v);
            else
                buf_printf(b, "events_http_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
                           route_names[r], codes[i], (unsigned long long)v);
        }
    buf_puts(b, "# HELP events_http_refused_total Requests and connections the HTTP layer refused "
                "or closed, by reason.\n# TYPE events_http_refused_total counter\n");
    for (int i = 0; i < METRICS_REFUSED_COUNT; i++)
        buf_printf(b, "events_http_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
                   (unsigned long long)atomic_load(&m->refused[i]));
    render_webhooks(b, m);
    buf_puts(b, "# HELP events_http_request_duration_seconds Time from the first byte of a "
                "request to its answer.\n# TYPE events_http_request_duration_seconds histogram\n");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_names[r]);
        render_histo(b, "events_http_request_duration_seconds", labels, &m->latency[r]);
    }
    if (ws) {
        buf_puts(b, "# HELP events_fsync_duration_seconds Latency of the group commit's "
                    "fdatasync.\n# TYPE events_fsync_duration_seconds histogram\n");
        render_histo(b, "events_fsync_duration_seconds", "", ws->fsync);
        metrics_counter(b, "events_commits_total", "Group commits made durable.", ws->commits);
        metrics_counter(b, "events_commit_failures_total",
                        "Group commits that failed (answered 503).", ws->commit_failures);
        metrics_counter(b, "events_segments_sealed_total", "Spool segments moved into the lake.",
                        ws->segments_sealed);
        metrics_counter(b, "events_seal_failures_total",
                        "Attempts to move a segment that failed and were retried.",
                        ws->seal_failures);
        metrics_gauge(b, "events_segments_open", "Spool segments being written.",
                      (long long)ws->segments_open);
        metrics_gauge(b, "events_spool_bytes", "Bytes in the spool not yet in the lake.",
                      (long long)ws->spool_bytes);
        metrics_counter(b, "events_segments_evicted_total",
                        "Segments closed early to stay within --max-open-segments.",
                        ws->segments_evicted);
        metrics_counter(b, "events_spool_segments_rescued_total",
                        "Spool segments found deleted or replaced under the server and written "
                        "again from its open descriptor.",
                        ws->segments_rescued);
        metrics_counter(b, "events_spool_recreated_total",
                        "Times the spool directory was found removed or moved and made again.",
                        ws->spool_recreated);
        metrics_counter(b, "events_spool_segments_lost_total",
                        "Spool segments of acknowledged events deleted beyond saving.",
                        ws->segments_lost);
        metrics_counter(b, "events_lost_total",
                        "Acknowledged events deleted from the spool beyond saving.",
                        ws->events_lost);
        metrics_gauge(b, "events_stream_seq",
                      "The last stream position (seq) this server gave: events numbered so far "
                      "in its stream.",
                      (long long)ws->stream_seq);
        metrics_counter(b, "events_stream_files_sealed_total",
                        "Stream log segments moved into the lake (stream/).",
                        ws->stream_files_sealed);
    }
    return b->p ? 0 : -1;
}
