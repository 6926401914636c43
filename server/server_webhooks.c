/*
 * server_webhooks.c - POST /webhooks?provider=NAME and /webhooks/NAME.
 *
 * Before the body: the provider must be known (400) and have a secret, or be
 * allowed unsigned (403 saying how to set one), and the body be JSON or form
 * fields (415). Once the body is whole: its signature is verified over the
 * raw bytes (webhooks.h; 401 with details), and the delivery becomes one
 * event, which takes /ingest's path: ingest_add (every rule and limit of an
 * event, the quarantine for a refused one), the lake writer, the connection
 * suspended until the group commit is durable. The writer's dedup window
 * answers a provider's retry, whose event id is its delivery id, as a
 * duplicate. Slack's url_verification is answered its challenge, unstored.
 */
#include "server_int.h"
#include "evtime.h"
#include "log.h"
#include "ulid.h"

#include <stdio.h>
#include <string.h>

int server__webhooks_start(server__srv *s, char *err, size_t errlen)
{
    const server_config *cfg = &s->cfg;
    if (!(s->hooks = webhooks_secrets_new())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->webhook_secrets) {
        char warn[512];
        if (webhooks_secrets_load(s->hooks, cfg->webhook_secrets, warn, sizeof warn, err, errlen))
            return -1;
        if (warn[0])
            log_msg(LOG_WARN, "webhook secrets file readable by anyone", "warning", warn, LOG_END);
    }
    if (webhooks_secrets_env(s->hooks, err, errlen)) return -1;
    return webhooks_allow_unsigned(s->hooks, cfg->webhook_allow_unsigned, err, errlen);
}

/* r->hook, from /webhooks/NAME or ?provider=NAME; answered 400 when it names none or an unknown
 * one. */
static enum MHD_Result find_provider(server__req *r, const char *url)
{
    const char *arg = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "provider");
    const char *name = url[9] == '/' ? url + 10 : arg;
    if (url[9] == '/' && arg && strcmp(arg, name))
        return server__send_error(
            r, 400, "the path names provider \"%.60s\" and ?provider= \"%.60s\"", name, arg);
    if (!name || !*name)
        return server__send_error(r, 400,
                                  "which provider? POST /webhooks/NAME or /webhooks?provider=NAME, "
                                  "NAME one of: %s",
                                  webhooks_names());
    if ((r->hook = webhooks_provider_of(name)) < 0) {
        metrics_webhook(-1, METRICS_WH_UNKNOWN_PROVIDER);
        return server__send_error(r, 400, "unknown webhook provider \"%.60s\": known are %s", name,
                                  webhooks_names());
    }
    return MHD_YES;
}

/* 1 when the request's body is form fields, 0 JSON, -1 neither. */
static int body_form(const server__req *r)
{
    const char *ct =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || server__media_type_is(ct, "application/json")) return 0;
    return server__media_type_is(ct, "application/x-www-form-urlencoded") ? 1 : -1;
}

enum MHD_Result server__check_webhook(server__srv *s, server__req *r, const char *url)
{
    enum MHD_Result res = find_provider(r, url);
    if (res != MHD_YES || r->state == SERVER__ST_RESPONDED) return res;
    const char *name = webhooks_name(r->hook);
    if (!webhooks_has_secret(s->hooks, r->hook) && !webhooks_unsigned_allowed(s->hooks, r->hook)) {
        char var[64];
        snprintf(var, sizeof var, "EVENTS_WEBHOOK_SECRET_%s", name);
        for (char *p = var + 22; *p; p++) *p = (char)(*p - ('a' <= *p && *p <= 'z' ? 32 : 0));
        metrics_webhook(r->hook, METRICS_WH_NO_SECRET);
        return server__send_error(r, 403,
                                  "no secret for webhook provider %s: set one with a line "
                                  "%s=SECRET in the --webhook-secrets file or with %s, or take its "
                                  "deliveries unverified with --webhook-allow-unsigned %s",
                                  name, name, var, name);
    }
    const char *ce =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (body_form(r) < 0 || (ce && *ce && strcasecmp(ce, "identity"))) {
        metrics_webhook(r->hook, METRICS_WH_REFUSED);
        return server__send_error(r, 415,
                                  "a webhook body is application/json or "
                                  "application/x-www-form-urlencoded, not compressed");
    }
    snprintf(r->path, sizeof r->path, "/webhooks");
    return MHD_YES;
}

static const char *header_of(void *ud, const char *name)
{
    const server__req *r = ud;
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* A delivery whose signature did not verify: 401 with what was wrong. */
static enum MHD_Result refuse_signature(server__req *r, int rc, const char *why)
{
    metrics_webhook(r->hook, rc == WEBHOOKS_EMISSING ? METRICS_WH_MISSING_SIGNATURE
                             : rc == WEBHOOKS_EBAD   ? METRICS_WH_INVALID_SIGNATURE
                                                     : METRICS_WH_STALE_TIMESTAMP);
    char details[512];
    snprintf(details, sizeof details, "%s: %s", webhooks_name(r->hook), why);
    return server__send_error_details(r, 401, "Invalid signature", details);
}

/* The 200 answer of a stored (or duplicate) delivery: the event line as stored. */
static void answer_stored(server__req *r, int duplicate)
{
    const lake_event *e = &r->res.ev[0];
    buf *b = &r->answer;
    buf_printf(
        b, "{\"accepted\":true,\"verified\":%s,\"event\":", r->hook_verified ? "true" : "false");
    buf_append(b, r->res.lines.p + e->off, e->len - 1); /* without its newline */
    buf_puts(b, duplicate ? ",\"duplicate\":true}" : "}");
}

/* Writer thread: the delivery's event is durable (or quarantined), or failed. */
static void webhook_done(lake_batch *b, void *ud)
{
    server__req *r = ud;
    enum metrics_webhook outcome = METRICS_WH_REFUSED;
    if (b->status) {
        r->answer_status = 503;
        ingest_error_json(&r->answer, b->error);
    } else if (r->res.n == 1) {
        server__count_batch(r, b);
        int dup = b->duplicates > 0;
        r->answer_status = 200;
        answer_stored(r, dup);
        outcome = dup                ? METRICS_WH_DUPLICATE
                  : r->hook_verified ? METRICS_WH_ACCEPTED
                                     : METRICS_WH_UNVERIFIED;
    } else { /* refused by ingest's rules, kept in the quarantine */
        server__count_batch(r, b);
        r->answer_status = r->res.rejected_by[EVENT_R_TOO_LARGE] ? 413 : 400;
        buf_printf(&r->answer,
                   "{\"ok\":false,\"error\":\"the event of this delivery was refused; it is kept "
                   "in the quarantine (rejected/)\",\"requestId\":\"%s\",\"rejected\":[",
                   r->res.request_id);
        buf_append(&r->answer, r->res.rejects.p ? r->res.rejects.p : "", r->res.rejects.len);
        buf_puts(&r->answer, "]}");
    }
    metrics_webhook(r->hook, outcome);
    MHD_resume_connection(r->conn);
}

/* The event made of a delivery, through ingest's rules to the lake writer. */
static enum MHD_Result submit_event(server__srv *s, server__req *r, const webhooks_event *ev,
                                    int64_t now)
{
    event_ctx *ctx = server__thread_ctx(s);
    if (!ctx) return server__send_error(r, 503, "out of memory");
    event_ctx_set_now(ctx, now);
    char request_id[ULID_LEN + 1];
    ulid_make(now, request_id);
    ingest_options o = {.token = r->tok ? r->tok->name : NULL,
                        .route = r->path,
                        .request_id = request_id,
                        .list_all = 1};
    ingest_begin(ctx, &o, &r->res);
    ingest_add(ctx, ev->json.p, ev->json.len, &s->lim, &o, &r->res);
    ingest_end(ctx);
    buf_free(&r->body);
    if (r->res.code) {
        metrics_webhook(r->hook, METRICS_WH_REFUSED);
        return server__send_error(r, r->res.code == INGEST_ENOMEM ? 503 : 400, "%s", r->res.error);
    }
    return server__submit(s, r, webhook_done);
}

enum MHD_Result server__handle_webhook(server__srv *s, server__req *r)
{
    webhooks_delivery d = {.provider = r->hook,
                           .header = header_of,
                           .ud = r,
                           .body = r->body.p ? r->body.p : "",
                           .n = r->body.len,
                           .form = body_form(r) == 1};
    char err[400];
    int64_t now = evtime_now_ms();
    r->hook_verified = webhooks_has_secret(s->hooks, r->hook);
    int rc = r->hook_verified ? webhooks_verify(&d, s->hooks, now, err, sizeof err) : 0;
    if (rc == WEBHOOKS_ENOMEM) return server__send_error(r, 503, "out of memory");
    if (rc) return refuse_signature(r, rc, err);
    webhooks_event ev = {.json = BUF_INIT};
    rc = webhooks_make_event(&d, r->hook_verified, now, &ev, err, sizeof err);
    enum MHD_Result res;
    if (rc) {
        metrics_webhook(r->hook, METRICS_WH_REFUSED);
        res = server__send_error(r, rc == WEBHOOKS_ENOMEM ? 503 : 400, "%s", err);
    } else if (ev.challenge) {
        metrics_webhook(r->hook, METRICS_WH_CHALLENGE);
        res = server__send_json(r, 200, &ev.json, NULL, NULL);
    } else {
        res = submit_event(s, r, &ev, now);
    }
    buf_free(&ev.json);
    return res;
}
