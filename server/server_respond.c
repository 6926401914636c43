/*
 * server_respond.c - the server's answers.
 *
 * Every answer to a request is queued here, so that each carries the same
 * headers (CORS, Cache-Control: no-store, Connection: close when the request
 * must be its connection's last) and is counted once in /metrics when it is
 * queued. An error has the body its route speaks: OTLP's google.rpc.Status on
 * /v1/logs, else {"ok":false,"error":…}. An answer to a request whose body is
 * still arriving cannot go through libmicrohttpd: abort_mid_body writes it on
 * the socket itself. Every answer but OTLP's protobuf ends with a newline
 * (text_response); snapshot files, dashboard assets and /tail's stream are
 * not sent from here and keep their bytes.
 */
#include "server_int.h"
#include "evtime.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Records the request as answered. Counted when the answer is queued, not when MHD
 * completes the request, so a client that has its answer finds it in /metrics. */
void server__answered(server__req *r, unsigned status)
{
    r->status = status;
    r->state = SERVER__ST_RESPONDED;
    metrics_request(r->route, status, evtime_mono_ns() - r->t0_ns);
}

/* The CORS headers of an answer to r (origins.h). */
void server__add_cors(struct MHD_Response *resp, const server__req *r)
{
    if (!r->cors) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors);
    if (strcmp(r->cors, "*")) MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
}

/*
 * A text answer (JSON, Prometheus text: any but OTLP's protobuf) ends with a
 * newline, so that curl's output and `cat` of a saved answer end their line.
 * Returns the answer's resource, body copied with its newline; NULL out of memory.
 */
static struct MHD_Response *text_response(const char *ctype, const char *body, size_t len)
{
    int nl = ctype && strcmp(ctype, otlp_content_type(OTLP_PROTOBUF)) &&
             (len == 0 || body[len - 1] != '\n');
    if (!nl)
        return MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    char *p = malloc(len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, body, len);
    p[len] = '\n';
    struct MHD_Response *resp = MHD_create_response_from_buffer(len + 1, p, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(p);
    return resp;
}

enum MHD_Result server__send_response(server__req *r, unsigned status, const char *ctype,
                                      const char *body, size_t len, const char *h1, const char *v1)
{
    struct MHD_Response *resp = text_response(ctype, body, len);
    if (!resp) return MHD_NO;
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    server__add_cors(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (h1) MHD_add_response_header(resp, h1, v1);
    if (r->close && !(h1 && !strcmp(h1, MHD_HTTP_HEADER_CONNECTION)))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    server__answered(r, status);
    return ok;
}

enum MHD_Result server__send_json(server__req *r, unsigned status, const buf *b, const char *h1,
                                  const char *v1)
{
    return server__send_response(r, status, "application/json", b->p ? b->p : "", b->len, h1, v1);
}

/* The Content-Type of r's answers: OTLP's answer in the request's encoding, else JSON. */
const char *server__answer_type(const server__req *r)
{
    return r->otlp ? otlp_content_type(r->otlp) : "application/json";
}

enum MHD_Result server__send_error(server__req *r, unsigned status, const char *fmt, ...)
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
        h = MHD_HTTP_HEADER_ALLOW, v = r->kind == SERVER__K_INGEST || r->kind == SERVER__K_QUERY ||
                                               r->kind == SERVER__K_WEBHOOK
                                           ? "POST, OPTIONS"
                                           : "GET, OPTIONS";
    enum MHD_Result ok =
        server__send_response(r, status, server__answer_type(r), b.p ? b.p : "", b.len, h, v);
    buf_free(&b);
    if (status >= 500)
        log_msg(LOG_WARN, "request failed", "status", status == 503 ? "503" : "500", "error", msg,
                LOG_END);
    return ok;
}

enum MHD_Result server__send_error_details(server__req *r, unsigned status, const char *error,
                                           const char *details)
{
    buf b = BUF_INIT;
    int rc = buf_puts(&b, "{\"ok\":false,\"error\":") || buf_json_str(&b, error, strlen(error)) ||
             buf_puts(&b, ",\"details\":") || buf_json_str(&b, details, strlen(details)) ||
             buf_putc(&b, '}');
    enum MHD_Result ok = rc ? server__send_error(r, 503, "out of memory")
                            : server__send_json(r, status, &b, NULL, NULL);
    buf_free(&b);
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
enum MHD_Result server__abort_mid_body(server__req *r, unsigned status, const char *reason,
                                       const char *msg)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    server__answered(r, status);
    if (!ci) return MHD_NO;
    int fd = ci->connect_fd;
    char cors[400] = "";
    if (r->cors)
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\n%s", r->cors,
                 strcmp(r->cors, "*") ? "Vary: Origin\r\n" : "");
    char discard[160]; /* the connection is given up either way */
    if (conns_write_error(fd, status, reason, cors, msg, discard, sizeof discard) == 0) {
        shutdown(fd, SHUT_WR);
        char sink[4096];
        for (int i = 0; i < 64 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {
        }
    }
    return MHD_NO;
}
