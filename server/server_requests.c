/*
 * server_requests.c - a request's lifecycle on libmicrohttpd: routing, checks, body.
 *
 * libmicrohttpd calls on_uri with the request line, then on_request once the
 * headers are whole (start_request routes the request and refuses what it
 * may not ask before its body is read), once per piece of the body (read
 * into memory, bounded by --max-body and the request's deadline), once when
 * the body is whole (the handler runs), and once more after a suspended
 * request is resumed (its answer is queued). on_completed frees the request,
 * whatever happened to it; on_connection keeps the connection table (conns.h).
 */
#include "server_int.h"
#include "event.h"
#include "evtime.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUERY_MAX_BODY (1u << 20)

static int media_type_is(const char *v, const char *want)
{
    size_t n = strlen(want);
    while (*v == ' ') v++;
    return !strncasecmp(v, want, n) && (v[n] == 0 || v[n] == ';' || v[n] == ' ');
}

int server__media_type_is(const char *v, const char *want)
{
    return media_type_is(v, want);
}

/* The largest body a request of this kind may have. */
static size_t body_limit(const server__srv *s, const server__req *r)
{
    if (r->kind == SERVER__K_SUBS) return SERVER__SUBS_MAX_BODY;
    return r->kind == SERVER__K_QUERY ? QUERY_MAX_BODY : s->cfg.max_body;
}

/*
 * What is refused before routing: a Host or an Origin that may not call the
 * server (origins.h), and a body framing libmicrohttpd cannot read (it would
 * wait for the end of the connection and never answer).
 */
static enum MHD_Result check_request(server__srv *s, server__req *r)
{
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!origins_host_ok(s->origins, host)) {
        metrics_refused(METRICS_REFUSED_HOST);
        return server__send_error(
            r, 403,
            "Host \"%.200s\" is not allowed: this server answers only requests "
            "addressed to a loopback name or address, or to a host of "
            "--allowed-hosts",
            host);
    }
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    int refused;
    r->cors = origins_allow(s->origins, origin, host, &refused);
    if (refused) {
        metrics_refused(METRICS_REFUSED_ORIGIN);
        return server__send_error(r, 403,
                                  "requests from the web page origin \"%.200s\" are refused: it is "
                                  "neither this server's own origin nor one of --cors-origins",
                                  origin);
    }
    const char *te =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked")) {
        metrics_refused(METRICS_REFUSED_TRANSFER_ENCODING);
        r->close = 1;
        return server__send_error(
            r, 501,
            "unsupported Transfer-Encoding \"%.100s\": send the body with "
            "Content-Length or Transfer-Encoding: chunked (and compress it with "
            "Content-Encoding: gzip)",
            te);
    }
    return MHD_YES;
}

/* 1 when a step of a request's start let it go on: it sent no answer and failed nothing. */
static int went_on(enum MHD_Result res, const server__req *r)
{
    return res == MHD_YES && r->state != SERVER__ST_RESPONDED;
}

/* What the URL asks for: r->kind and r->route (K_NONE when nothing). */
static enum MHD_Result route(server__req *r, const char *url, const char *method)
{
    if (!strcmp(url, "/ingest") || !strcmp(url, "/e")) {
        r->kind = SERVER__K_INGEST, r->route = METRICS_ROUTE_INGEST;
    } else if (!strcmp(url, "/v1/logs")) {
        /* OTLP logs take /ingest's path, from the body limit to the group commit; answers,
         * errors included, are OTLP's, in the encoding of the request (JSON unless protobuf) */
        r->kind = SERVER__K_INGEST, r->route = METRICS_ROUTE_OTLP_LOGS;
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        r->otlp = otlp_encoding_of(ct) == OTLP_PROTOBUF ? OTLP_PROTOBUF : OTLP_JSON;
    } else if (!strcmp(url, "/query")) {
        r->kind = SERVER__K_QUERY, r->route = METRICS_ROUTE_QUERY;
    } else if (!strcmp(url, "/health")) {
        r->kind = SERVER__K_HEALTH, r->route = METRICS_ROUTE_HEALTH;
    } else if (!strcmp(url, "/metrics")) {
        r->kind = SERVER__K_METRICS, r->route = METRICS_ROUTE_METRICS;
    } else if (!strcmp(url, "/tail")) {
        r->kind = SERVER__K_TAIL, r->route = METRICS_ROUTE_TAIL;
    } else if (!strcmp(url, "/webhooks") || !strncmp(url, "/webhooks/", 10)) {
        r->kind = SERVER__K_WEBHOOK, r->route = METRICS_ROUTE_WEBHOOKS;
    } else if (!strcmp(url, "/recent")) {
        r->kind = SERVER__K_RECENT, r->route = METRICS_ROUTE_RECENT;
    } else if (!strcmp(url, "/events")) {
        r->kind = SERVER__K_EVENTS, r->route = METRICS_ROUTE_EVENTS;
    } else if (!strcmp(url, "/subscriptions") || !strncmp(url, "/subscriptions/", 15)) {
        r->kind = SERVER__K_SUBS, r->route = METRICS_ROUTE_SUBSCRIPTIONS;
        snprintf(r->method, sizeof r->method, "%s", method);
    } else if (!strcmp(url, "/") || !strncmp(url, "/assets/", 8)) {
        r->kind = SERVER__K_WEB, r->route = METRICS_ROUTE_DASHBOARD;
    } else {
        char err[160];
        int sp = snapshots_parse_url(url, r->snap_source, r->snap_bookmark, err, sizeof err);
        if (sp == -1) {
            r->route = METRICS_ROUTE_SNAPSHOTS;
            return server__send_error(r, 400, "%s", err);
        }
        if (sp >= 0) {
            r->route = METRICS_ROUTE_SNAPSHOTS;
            r->kind = sp == 1                  ? SERVER__K_SNAP_LIST
                      : !strcmp(method, "PUT") ? SERVER__K_SNAP_PUT
                                               : SERVER__K_SNAP_GET;
        }
    }
    return MHD_YES;
}

/* OPTIONS, on any URL: the CORS preflight's answer. */
static enum MHD_Result answer_preflight(server__req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    server__add_cors(resp, r);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    /* what the original's browser clients may send: a bearer key, a JSON or gzip body,
     * and their correlation and request ids */
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Content-Encoding, X-Correlation-ID, "
                            "X-Request-ID");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    enum MHD_Result ok = MHD_queue_response(r->conn, 204, resp);
    MHD_destroy_response(resp);
    server__answered(r, 204);
    return ok;
}

/* Refuses a URL with no endpoint (404) and a method the endpoint does not take (405). */
static enum MHD_Result check_method(server__req *r, const char *url, const char *method)
{
    if (r->kind == SERVER__K_NONE)
        return server__send_error(r, 404, "no such endpoint: %s %s", method, url);
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_post = !strcmp(method, "POST");
    int wants_post =
        r->kind == SERVER__K_INGEST || r->kind == SERVER__K_QUERY || r->kind == SERVER__K_WEBHOOK;
    if (r->kind == SERVER__K_SNAP_PUT) {
        /* PUT is the only method besides GET here */
    } else if (r->kind == SERVER__K_SUBS) {
        if (!is_get && !is_post && strcmp(method, "PATCH") && strcmp(method, "DELETE"))
            return server__send_error(r, 405, "method %s not allowed on %s", method, url);
    } else if ((wants_post && !is_post) || (!wants_post && !is_get)) {
        return server__send_error(r, 405, "method %s not allowed on %s", method, url);
    }
    return MHD_YES;
}

/* With tokens: the request's token (r->tok), refused (401, 403) unless it has the scope. */
static enum MHD_Result check_token(server__srv *s, server__req *r)
{
    if (r->kind == SERVER__K_HEALTH || r->kind == SERVER__K_WEB || !auth_count(s->auth))
        return MHD_YES;
    const char *h =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    char bearer[600];
    const char *qt = r->kind == SERVER__K_TAIL || r->kind == SERVER__K_WEBHOOK
                         ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "token")
                         : NULL;
    if (!h && qt) { /* EventSource and most webhook senders cannot set headers: ?token= */
        snprintf(bearer, sizeof bearer, "Bearer %s", qt);
        h = bearer;
    }
    r->tok = auth_lookup(s->auth, h);
    const char *who = r->tok ? r->tok->name : NULL;
    unsigned scopes = r->tok ? r->tok->scopes : 0;
    if (!scopes)
        return server__send_error(r, 401,
                                  h ? "invalid bearer token"
                                    : "missing bearer token (Authorization: Bearer TOKEN)");
    unsigned need = r->kind == SERVER__K_INGEST     ? AUTH_SCOPE_INGEST
                    : r->kind == SERVER__K_QUERY    ? AUTH_SCOPE_QUERY
                    : r->kind == SERVER__K_WEBHOOK  ? AUTH_SCOPE_WEBHOOKS
                    : r->kind == SERVER__K_SNAP_PUT ? (AUTH_SCOPE_INGEST | AUTH_SCOPE_ADMIN)
                    : r->kind == SERVER__K_SUBS     ? AUTH_SCOPE_ADMIN
                                                    : (AUTH_SCOPE_QUERY | AUTH_SCOPE_ADMIN);
    if (!(scopes & need))
        return server__send_error(r, 403, "token %s lacks the %s scope", who,
                                  r->kind == SERVER__K_INGEST     ? "ingest"
                                  : r->kind == SERVER__K_QUERY    ? "query"
                                  : r->kind == SERVER__K_WEBHOOK  ? "webhooks"
                                  : r->kind == SERVER__K_SNAP_PUT ? "ingest or admin"
                                  : r->kind == SERVER__K_SUBS     ? "admin"
                                                                  : "query or admin");
    return MHD_YES;
}

/*
 * Refuses a body announced over the request's limit (413), and reserves what
 * was announced, but no more than 1 MiB before data arrives: clients that
 * announce big bodies and send nothing cost little.
 */
static enum MHD_Result reserve_body(server__srv *s, server__req *r)
{
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return MHD_YES;
    unsigned long long len = strtoull(cl, NULL, 10);
    if (len > body_limit(s, r))
        return server__send_error(r, 413, "body of %llu bytes is over the limit of %zu bytes", len,
                                  body_limit(s, r));
    if (buf_reserve(&r->body, (size_t)(len < (1u << 20) ? len : (1u << 20))))
        return server__send_error(r, 503, "out of memory");
    return MHD_YES;
}

/* POST /query: a JSON or plain-text body. */
static enum MHD_Result check_query(server__srv *s, server__req *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && !media_type_is(ct, "application/json") && !media_type_is(ct, "text/plain"))
        return server__send_error(r, 415,
                                  "unsupported Content-Type \"%.100s\": use application/json", ct);
    return reserve_body(s, r);
}

/* POST /v1/logs: its encoding, and the event type its ?type= gives. */
static enum MHD_Result check_otlp_type(server__req *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (otlp_encoding_of(ct) == OTLP_NONE)
        return server__send_error(r, 415,
                                  "unsupported Content-Type \"%.100s\": use application/json or "
                                  "application/x-protobuf",
                                  ct ? ct : "");
    const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
    if (type && !event_type_valid(type, strlen(type)))
        return server__send_error(
            r, 400,
            "type \"%.150s\" is not an event type: [a-z0-9_]+(.[a-z0-9_-]+)*, "
            "at most %d bytes",
            type, EVENT_TYPE_MAX);
    return MHD_YES;
}

/* POST /ingest and /e: the body's format (r->fmt) from its Content-Type. */
static enum MHD_Result ingest_format(server__req *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || media_type_is(ct, "application/json") || media_type_is(ct, "text/plain")) {
        r->fmt = INGEST_JSON;
    } else if (media_type_is(ct, "application/x-ndjson") ||
               media_type_is(ct, "application/ndjson") || media_type_is(ct, "application/jsonl") ||
               media_type_is(ct, "application/x-jsonlines")) {
        r->fmt = INGEST_NDJSON;
    } else {
        return server__send_error(r, 415,
                                  "unsupported Content-Type \"%.100s\": use application/json or "
                                  "application/x-ndjson",
                                  ct);
    }
    return MHD_YES;
}

/* An ingest request: its body's size, type and encoding, and its URL's arguments. */
static enum MHD_Result check_ingest(server__srv *s, server__req *r, const char *url)
{
    enum MHD_Result res = reserve_body(s, r);
    if (went_on(res, r)) res = r->otlp ? check_otlp_type(r) : ingest_format(r);
    if (!went_on(res, r)) return res;
    const char *ce =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && (!strcasecmp(ce, "gzip") || !strcasecmp(ce, "x-gzip")))
        r->gzip = 1;
    else if (ce && *ce && strcasecmp(ce, "identity"))
        return server__send_error(r, 415,
                                  "unsupported Content-Encoding \"%.100s\": use gzip or none", ce);
    snprintf(r->path, sizeof r->path, "%s", url);
    return server__check_ingest_args(r);
}

/* POST /webhooks: its body's announced size, then its provider and headers. */
static enum MHD_Result check_webhook(server__srv *s, server__req *r, const char *url)
{
    enum MHD_Result res = reserve_body(s, r);
    return went_on(res, r) ? server__check_webhook(s, r, url) : res;
}

/* PUT /snapshots/S/B: its announced size, and the temporary file its body goes to. */
static enum MHD_Result begin_snapshot(server__srv *s, server__req *r)
{
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->cfg.max_snapshot)
        return server__send_error(r, 413, "snapshot of %s bytes is over the limit of %llu bytes",
                                  cl, (unsigned long long)s->cfg.max_snapshot);
    char err[300];
    if (!(r->snap = snapshots_begin(s->spool, r->snap_source, r->snap_bookmark, err, sizeof err))) {
        log_msg(LOG_ERROR, "snapshot upload", "error", err, LOG_END);
        return server__send_error(r, 503, "cannot store the upload: %s", err);
    }
    return MHD_YES;
}

/*
 * A request whose headers are whole: checked, routed, its token and its
 * headers checked for its endpoint. Answered here when it is refused, else
 * left for its body (on_request).
 */
static enum MHD_Result start_request(server__srv *s, server__req *r, const char *url,
                                     const char *method)
{
    enum MHD_Result res = check_request(s, r);
    if (went_on(res, r)) res = route(r, url, method);
    if (went_on(res, r) && !strcmp(method, "OPTIONS")) return answer_preflight(r);
    if (went_on(res, r)) res = check_method(r, url, method);
    if (went_on(res, r)) res = check_token(s, r);
    if (!went_on(res, r)) return res;
    switch (r->kind) {
    case SERVER__K_QUERY: return check_query(s, r);
    case SERVER__K_INGEST: return check_ingest(s, r, url);
    case SERVER__K_SNAP_PUT: return begin_snapshot(s, r);
    case SERVER__K_WEBHOOK: return check_webhook(s, r, url);
    case SERVER__K_SUBS: return check_query(s, r); /* a JSON body, at most SERVER__SUBS_MAX_BODY */
    default: return MHD_YES;
    }
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
static conns_slot *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/*
 * What the URI callback leaves in a request's context, before libmicrohttpd
 * reads its headers: the URL has %00 (libmicrohttpd would decode it into a NUL
 * that cuts the path the handler sees), or the request was already refused.
 * Only their addresses are used, as markers: no one writes them, so no lock.
 */
static char uri_has_nul, uri_refused;

/*
 * libmicrohttpd calls this with the raw URL as soon as the request line is in.
 * More URL arguments than fit its 32 KiB connection memory (about 450 short
 * ones) make it stall without an answer, and it parses them before any other
 * callback: so a URL with more than --max-url-args is answered 414 here,
 * straight on the socket, and the connection is shut down.
 */
void *server__on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    server__srv *s = cls;
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
        conns_refuse(s->conns, conn_of(conn), ci->connect_fd, 414, "URI Too Long", msg,
                     METRICS_REFUSED_URL_ARGUMENTS);
    return &uri_refused;
}

/*
 * The headers are whole: the request is made (*con_cls) and started. The
 * connection is no longer waiting for its headers; a body must then arrive
 * whole within the request's time limit.
 */
static enum MHD_Result begin_request(server__srv *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, int has_nul, void **con_cls)
{
    int64_t deadline = evtime_mono_ms() + (int64_t)s->cfg.request_timeout_s * 1000;
    if (conns_request_began(s->conns, conn_of(conn), has_body(conn) ? deadline : 0)) return MHD_NO;
    server__req *r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->srv = s;
    r->conn = conn;
    r->route = METRICS_ROUTE_OTHER;
    r->t0_ns = evtime_mono_ns();
    r->deadline_ms = deadline;
    *con_cls = r;
    /* Counted before looking at stopping; shutdown sets stopping before reading inflight
     * (both sequentially consistent), so it either waits for this request or this
     * request sees stopping and is never suspended under MHD_stop_daemon. */
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->stopping)) {
        r->kind = SERVER__K_NONE;
        return server__send_error(r, 503, "server is shutting down");
    }
    if (has_nul) {
        metrics_refused(METRICS_REFUSED_URL_NUL);
        return server__send_error(r, 400, "the URL has an encoded NUL byte (%%00)");
    }
    return start_request(s, r, url, method);
}

/* A suspended request resumed by the writer or a query worker: its answer is queued. */
static enum MHD_Result answer_resumed(server__srv *s, server__req *r)
{
    atomic_fetch_sub(&s->waiting, 1);
    if (r->kind == SERVER__K_QUERY) {
        unsigned st = 0;
        enum MHD_Result ok = query_http_respond(r->job, r->conn, r->cors, &st);
        server__answered(r, st ? st : 500);
        return ok;
    }
    if (r->answer_status == 200 && s->deliver) deliver_notify(s->deliver, r->res.n);
    if (r->answer_status == 200 && s->recent) /* before publish, which takes the lines */
        recent_add(s->recent, r->res.lines.p, r->res.ev, r->res.n);
    if (r->answer_status == 200 && tail_hub_active(s->tail)) server__publish(s, r);
    return server__send_response(r, r->answer_status, server__answer_type(r),
                                 r->answer.p ? r->answer.p : "", r->answer.len,
                                 r->answer_status == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, "1");
}

/* Drops the rest of r's body; once it is in, r is answered status with msg. */
static void discard_body(server__req *r, unsigned status, const char *msg)
{
    r->discard_status = status;
    snprintf(r->discard_error, sizeof r->discard_error, "%s", msg);
}

/* A piece of a snapshot upload, to its temporary file. */
static void write_snapshot_piece(server__srv *s, server__req *r, const char *upload, size_t n)
{
    char err[300];
    if (snapshots_size(r->snap) + n > s->cfg.max_snapshot) {
        snprintf(err, sizeof err, "snapshot is over the limit of %llu bytes",
                 (unsigned long long)s->cfg.max_snapshot);
        discard_body(r, 413, err);
    } else if (snapshots_write(r->snap, upload, n, err, sizeof err)) {
        discard_body(r, 503, err);
    }
}

/*
 * A piece of the body: to r->body (ingest, query) or the snapshot's file, or
 * dropped. MHD cannot answer mid-body, so a body over its limit is read to
 * the end and then answered 413; only the deadline cuts it short.
 */
static enum MHD_Result read_body(server__srv *s, server__req *r, const char *upload, size_t n)
{
    if (evtime_mono_ms() > r->deadline_ms) {
        char msg[96];
        snprintf(msg, sizeof msg, "request not received within %d s", s->cfg.request_timeout_s);
        return server__abort_mid_body(r, 408, "Request Timeout", msg);
    }
    if (r->kind == SERVER__K_SNAP_PUT && !r->discard_status) {
        write_snapshot_piece(s, r, upload, n);
        return MHD_YES;
    }
    if ((r->kind != SERVER__K_INGEST && r->kind != SERVER__K_QUERY &&
         r->kind != SERVER__K_WEBHOOK && r->kind != SERVER__K_SUBS) ||
        r->discard_status)
        return MHD_YES; /* dropped */
    if (r->kind == SERVER__K_INGEST)
        atomic_fetch_add_explicit(&metrics_global.bytes_received, n, memory_order_relaxed);
    if (r->body.len + n > body_limit(s, r)) {
        char msg[96];
        snprintf(msg, sizeof msg, "body is over the limit of %zu bytes", body_limit(s, r));
        discard_body(r, 413, msg);
        buf_free(&r->body);
    } else if (buf_append(&r->body, upload, n)) {
        discard_body(r, 503, "out of memory");
        buf_free(&r->body);
    }
    return MHD_YES;
}

/* The body is whole (or there was none): the endpoint's handler answers. */
static enum MHD_Result handle(server__srv *s, server__req *r, const char *url)
{
    if (r->discard_status) return server__send_error(r, r->discard_status, "%s", r->discard_error);
    switch (r->kind) {
    case SERVER__K_INGEST: return server__handle_ingest(s, r);
    case SERVER__K_QUERY: return server__handle_query(s, r);
    case SERVER__K_HEALTH: return server__handle_health(s, r);
    case SERVER__K_METRICS: return server__handle_metrics(s, r);
    case SERVER__K_TAIL: return server__handle_tail(s, r);
    case SERVER__K_RECENT: return server__handle_recent(s, r);
    case SERVER__K_EVENTS: return server__handle_events(s, r);
    case SERVER__K_SUBS: return server__handle_subs(s, r, url);
    case SERVER__K_WEB: return server__handle_web(r, url);
    case SERVER__K_WEBHOOK: return server__handle_webhook(s, r);
    case SERVER__K_SNAP_PUT:
    case SERVER__K_SNAP_LIST:
    case SERVER__K_SNAP_GET: return server__handle_snapshots(s, r);
    default: return server__send_error(r, 404, "no such endpoint");
    }
}

/* libmicrohttpd's request callback: each call is one step of the request's life. */
enum MHD_Result server__on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls)
{
    (void)version;
    server__srv *s = cls;
    server__req *r = *con_cls;
    if (r == (void *)&uri_refused) return MHD_NO;
    int has_nul = r == (void *)&uri_has_nul;
    if (!r || has_nul) return begin_request(s, conn, url, method, has_nul, con_cls);
    if (r->state == SERVER__ST_RESPONDED) {
        *upload_size = 0; /* the rest of an upload we already answered */
        return MHD_YES;
    }
    if (r->state == SERVER__ST_WAITING) return answer_resumed(s, r);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return read_body(s, r, upload, n);
    }
    /* a connection closed for its deadline is not answered */
    if (conns_body_done(s->conns, conn_of(conn))) return MHD_NO;
    return handle(s, r, url);
}

void server__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    server__srv *s = cls;
    server__req *r = *con_cls;
    conns_request_ended(s->conns, conn_of(conn));
    if (r == (void *)&uri_has_nul || r == (void *)&uri_refused) *con_cls = r = NULL;
    if (!r) return;
    /* A client that closed its connection while its request waited for the group
     * commit is noticed only after the resume, here, without another handler call. */
    if (r->state == SERVER__ST_WAITING) atomic_fetch_sub(&s->waiting, 1);
    if (!r->status)
        metrics_request(r->route, 499,
                        evtime_mono_ns() - r->t0_ns); /* no answer: the client left */
    snapshots_abort(r->snap);
    if (r->snap_download) atomic_fetch_sub(&s->snap_downloads, 1);
    buf_free(&r->body);
    buf_free(&r->answer);
    ingest_result_free(&r->res);
    query_http_release(r->job);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

void server__on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                           enum MHD_ConnectionNotificationCode toe)
{
    server__srv *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_ctx = ci ? conns_opened(s->conns, ci->connect_fd) : NULL;
        atomic_fetch_add(&metrics_global.connections_open, 1);
    } else {
        conns_closed(s->conns, *socket_ctx);
        *socket_ctx = NULL;
        atomic_fetch_add(&metrics_global.connections_open, -1);
    }
}

void server__mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    log_msg(LOG_DEBUG, "http", "detail", msg, LOG_END);
}
