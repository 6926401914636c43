/*
 * server_subs.c - the webhook subscriptions' API (admin scope; docs/http.md,
 * docs/subscriptions.md):
 *
 *   POST   /subscriptions                      create (201)
 *   GET    /subscriptions                      list, secrets redacted
 *   GET    /subscriptions/ID                   one, with its count of dead letters
 *   PATCH  /subscriptions/ID                   change fields, pause or resume
 *   DELETE /subscriptions/ID                   delete (and its dead letters)
 *   POST   /subscriptions/ID/pause|resume      state "paused" / "active"
 *   POST   /subscriptions/ID/retry             redeliver dead letters (202)
 *   POST   /subscriptions/ID/replay            deliver a range of time again (202)
 *   GET    /subscriptions/ID/dead-letters      the dead letters, oldest first
 *
 * The records live in the lake (lake/subs.h: s->subs), so every server of a
 * lake answers alike; this file never keeps one. A change is an edit applied
 * by lake_subs_update (a conditional put that another server's, or the
 * deliverer's, write may race; the loser applies its edit again), so the API
 * changes only the fields it names and never undoes a cursor the deliverer
 * wrote in between. The API asks; the deliverer (server/deliver*.c) acts:
 * a retry is retryRequested + 1, a replay a "replay" member, both picked up
 * by whichever server holds the subscription's lease.
 *
 * Bodies are read whole into r->body (server_requests.c, at most
 * SERVER__SUBS_MAX_BODY) and checked field by field by subs_fields.c. The
 * handlers run on the HTTP thread: a store call is a few small objects.
 */
#include "server_int.h"
#include "evtime.h"
#include "log.h"
#include "subs_fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An edit's own refusal (lake_subs_edit_fn): a replay already runs. */
#define SUBS_EBUSY (-100)

/* The request's path after /subscriptions: id and action ("" when absent). */
typedef struct subs_path {
    char id[LAKE_SUB_ID_MAX + 1];
    char action[16];
} subs_path;

/* ---- answers ------------------------------------------------------------------------------ */

/* A failure of lake/subs.h as its HTTP answer. */
static enum MHD_Result answer_store(server__req *r, int rc, const char *id, const char *err)
{
    switch (rc) {
    case LAKE_SUBS_ENOENT: return server__send_error(r, 404, "no subscription \"%s\"", id);
    case LAKE_SUBS_EEXIST:
        return server__send_error(r, 409, "a subscription \"%s\" exists already", id);
    case LAKE_SUBS_EINVAL: return server__send_error(r, 400, "%s", err);
    case SUBS_EBUSY: return server__send_error(r, 409, "%s", err);
    case LAKE_SUBS_ECONFLICT:
        return server__send_error(r, 503, "subscription \"%s\" is being changed: retry (%s)", id,
                                  err);
    default:
        log_msg(LOG_ERROR, "subscriptions", "id", id, "error", err, LOG_END);
        return server__send_error(r, 503, "the lake's subscriptions: %s", err);
    }
}

/* Answers o (taken) as JSON. */
static enum MHD_Result send_doc(server__req *r, unsigned status, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text) return server__send_error(r, 503, "out of memory");
    buf b = {.p = text, .len = strlen(text), .cap = strlen(text) + 1};
    enum MHD_Result ok = server__send_json(r, status, &b, NULL, NULL);
    free(text);
    return ok;
}

/* {"<member>": rec} (rec's secret redacted unless full), with deadLetters when >= 0. */
static enum MHD_Result answer_record(server__req *r, unsigned status, const char *member,
                                     json_t *rec, int full, long long dead)
{
    json_t *copy = json_deep_copy(rec);
    if (!copy) return server__send_error(r, 503, "out of memory");
    if (!full) subs_fields_redact(copy);
    if (dead >= 0) json_object_set_new(copy, "deadLetters", json_integer(dead));
    return send_doc(r, status, json_pack("{so}", member, copy));
}

/* The request's body as a JSON object (an empty body: an empty object). 0, or -1 answered. */
static int body_object(server__req *r, json_t **out, enum MHD_Result *res)
{
    json_error_t je = {0}; /* set by json_loadb only */
    *out = r->body.len ? json_loadb(r->body.p, r->body.len, 0, &je) : json_object();
    if (json_is_object(*out)) return 0;
    *res =
        *out ? server__send_error(r, 400, "body: must be a JSON object")
             : server__send_error(r, 400, "body: not JSON: %s (at byte %d)", je.text, je.position);
    json_decref(*out);
    *out = NULL;
    return -1;
}

/* ---- the collection: list, create ------------------------------------------------------- */

static enum MHD_Result list_subs(server__srv *s, server__req *r)
{
    lake_sub *v = NULL;
    size_t n = 0;
    char err[512];
    int rc = lake_subs_list(s->subs, &v, &n, err, sizeof err);
    if (rc) return answer_store(r, rc, "", err);
    atomic_store(&s->subs_known, (long long)n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_deep_copy(v[i].rec);
        subs_fields_redact(c);
        json_array_append_new(arr, c);
    }
    lake_subs_free(v, n);
    return send_doc(r, 200, json_pack("{so}", "subscriptions", arr));
}

/* 0 when another subscription fits under --subscriptions-max, else answered (409, 503). */
static int check_room(server__srv *s, server__req *r, enum MHD_Result *res)
{
    lake_sub *v = NULL;
    size_t n = 0;
    char err[512];
    int rc = lake_subs_list(s->subs, &v, &n, err, sizeof err);
    lake_subs_free(v, n);
    if (rc) {
        *res = answer_store(r, rc, "", err);
        return -1;
    }
    atomic_store(&s->subs_known, (long long)n);
    if (n < s->cfg.subscriptions_max) return 0;
    atomic_fetch_add(&s->subs_refused, 1);
    *res = server__send_error(r, 409,
                              "too many subscriptions: the lake has %zu (--subscriptions-max %zu)",
                              n, s->cfg.subscriptions_max);
    return -1;
}

static enum MHD_Result create_sub(server__srv *s, server__req *r)
{
    json_t *body = NULL, *rec = NULL;
    enum MHD_Result res;
    char err[512];
    if (body_object(r, &body, &res)) return res;
    int bad = subs_fields_create(body, evtime_now_ms(), &rec, err, sizeof err);
    json_decref(body);
    if (bad) return server__send_error(r, 400, "%s", err);
    if (check_room(s, r, &res)) {
        json_decref(rec);
        return res;
    }
    char id[LAKE_SUB_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(rec, "id")));
    lake_sub out = {0};
    int rc = lake_subs_create(s->subs, id, rec, &out, err, sizeof err);
    json_decref(rec);
    if (rc) return answer_store(r, rc, id, err);
    atomic_fetch_add(&s->subs_known, 1);
    log_msg(LOG_INFO, "subscription created", "id", id, LOG_END);
    res = answer_record(r, 201, "subscription", out.rec, 1, -1);
    lake_sub_free(&out);
    return res;
}

/* ---- one subscription: get, patch, delete, pause, resume ------------------------------- */

/* The number of id's dead letters, or -1 when they cannot be listed. */
static long long dead_count(server__srv *s, const char *id)
{
    lake_dead *d = NULL;
    size_t n = 0, total = 0;
    char err[256];
    int rc = lake_subs_dead_list(s->subs, id, 1, &d, &n, &total, err, sizeof err);
    free(d);
    return rc ? -1 : (long long)total;
}

static enum MHD_Result get_sub(server__srv *s, server__req *r, const char *id)
{
    lake_sub sub = {0};
    char err[512];
    int rc = lake_subs_get(s->subs, id, &sub, err, sizeof err);
    if (rc) return answer_store(r, rc, id, err);
    enum MHD_Result res = answer_record(r, 200, "subscription", sub.rec, 0, dead_count(s, id));
    lake_sub_free(&sub);
    return res;
}

/* An edit setting every member of ud (a JSON object); state "active" also clears reason. */
static int edit_set(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    json_t *changes = ud;
    json_object_update(rec, changes);
    if (!strcmp(json_string_value(json_object_get(changes, "state")) ?: "", "active"))
        json_object_set_new(rec, "reason", json_null());
    return 0;
}

/* Applies edit(ud) to id and answers the record written (status). */
static enum MHD_Result update_and_answer(server__srv *s, server__req *r, const char *id,
                                         lake_subs_edit_fn edit, void *ud, unsigned status)
{
    lake_sub out = {0};
    char err[512];
    int rc = lake_subs_update(s->subs, id, NULL, edit, ud, &out, err, sizeof err);
    if (rc) return answer_store(r, rc, id, err);
    enum MHD_Result res = answer_record(r, status, "subscription", out.rec, 0, -1);
    lake_sub_free(&out);
    return res;
}

static enum MHD_Result patch_sub(server__srv *s, server__req *r, const char *id)
{
    json_t *body = NULL, *changes = NULL;
    enum MHD_Result res;
    char err[512];
    if (body_object(r, &body, &res)) return res;
    int bad = subs_fields_patch(body, &changes, err, sizeof err);
    json_decref(body);
    if (bad) return server__send_error(r, 400, "%s", err);
    res = update_and_answer(s, r, id, edit_set, changes, 200);
    json_decref(changes);
    return res;
}

/* POST /subscriptions/ID/pause or /resume (which also re-enables a disabled one). */
static enum MHD_Result set_state(server__srv *s, server__req *r, const char *id, const char *state)
{
    json_t *changes = json_pack("{ss}", "state", state);
    enum MHD_Result res = update_and_answer(s, r, id, edit_set, changes, 200);
    json_decref(changes);
    return res;
}

static enum MHD_Result delete_sub(server__srv *s, server__req *r, const char *id)
{
    char err[512];
    int rc = lake_subs_delete(s->subs, id, err, sizeof err);
    if (rc) return answer_store(r, rc, id, err);
    atomic_fetch_sub(&s->subs_known, 1);
    log_msg(LOG_INFO, "subscription deleted", "id", id, LOG_END);
    buf b = BUF_INIT;
    buf_printf(&b, "{\"deleted\":\"%s\"}", id); /* ids are [A-Za-z0-9_-]: nothing to escape */
    enum MHD_Result res = server__send_json(r, 200, &b, NULL, NULL);
    buf_free(&b);
    return res;
}

/* ---- retry, replay, dead letters --------------------------------------------------------- */

/* retry's edit: one more retry asked for, of the dead letter ud (NULL: all of them). */
static int edit_retry(json_t *rec, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    json_int_t n = json_integer_value(json_object_get(rec, "retryRequested"));
    json_object_set_new(rec, "retryRequested", json_integer(n + 1));
    json_object_set_new(rec, "retryName", ud ? json_string(ud) : json_null());
    return 0;
}

/* POST /subscriptions/ID/retry, body absent or {"deadLetter":"NAME"}: 202. */
static enum MHD_Result retry_sub(server__srv *s, server__req *r, const char *id)
{
    json_t *body = NULL;
    enum MHD_Result res;
    if (body_object(r, &body, &res)) return res;
    const char *k, *name = NULL;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "deadLetter")) {
            res = server__send_error(r, 400, "%.64s: unknown field (retry takes deadLetter)", k);
            json_decref(body); /* after the answer: k is one of its keys */
            return res;
        }
        name = json_string_value(v);
    }
    if (json_object_get(body, "deadLetter") && (!name || !*name)) {
        json_decref(body);
        return server__send_error(r, 400, "deadLetter: must be a dead letter's name");
    }
    char err[512];
    buf doc = BUF_INIT;
    int rc = name ? lake_subs_dead_get(s->subs, id, name, &doc, err, sizeof err) : 0;
    buf_free(&doc);
    if (rc == LAKE_SUBS_ENOENT || rc == LAKE_SUBS_EINVAL)
        res = server__send_error(r, 404, "subscription \"%s\" has no dead letter \"%.200s\"", id,
                                 name);
    else
        res = rc ? answer_store(r, rc, id, err)
                 : update_and_answer(s, r, id, edit_retry, (void *)name, 202);
    json_decref(body);
    return res;
}

/* replay's edit: a replay from..to (ud: {"from","to","cursor"}), unless one runs. */
static int edit_replay(json_t *rec, void *ud, char *err, size_t errlen)
{
    json_t *cur = json_object_get(rec, "replay");
    if (json_is_object(cur)) {
        snprintf(err, errlen, "a replay runs already (from %lld to %lld): wait for its end",
                 (long long)json_integer_value(json_object_get(cur, "from")),
                 (long long)json_integer_value(json_object_get(cur, "to")));
        return SUBS_EBUSY;
    }
    json_object_set(rec, "replay", ud);
    return 0;
}

/* The replay a body asks for: {"from","to","cursor":""}, or NULL with the reason in err. */
static json_t *replay_of(json_t *body, char *err, size_t errlen)
{
    int64_t from = 0, to = 0;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "from") && strcmp(k, "to")) {
            snprintf(err, errlen, "%.64s: unknown field (replay takes from and to)", k);
            return NULL;
        }
    }
    if (subs_fields_time(json_object_get(body, "from"), &from))
        snprintf(err, errlen, "from: must be an RFC 3339 time or milliseconds since the epoch");
    else if (subs_fields_time(json_object_get(body, "to"), &to))
        snprintf(err, errlen, "to: must be an RFC 3339 time or milliseconds since the epoch");
    else if (from > to)
        snprintf(err, errlen, "from: must not be after to");
    else
        return json_pack("{sIsIss}", "from", (json_int_t)from, "to", (json_int_t)to, "cursor", "");
    return NULL;
}

/* POST /subscriptions/ID/replay {"from":T,"to":T}: 202; 409 while one runs. */
static enum MHD_Result replay_sub(server__srv *s, server__req *r, const char *id)
{
    json_t *body = NULL;
    enum MHD_Result res;
    if (body_object(r, &body, &res)) return res;
    char err[256];
    json_t *replay = replay_of(body, err, sizeof err);
    json_decref(body);
    if (!replay) return server__send_error(r, 400, "%s", err);
    res = update_and_answer(s, r, id, edit_replay, replay, 202);
    json_decref(replay);
    return res;
}

/* A dead letter's summary for the list: its name and the members of SUMMARY in its doc. */
static json_t *dead_summary(server__srv *s, const char *id, const lake_dead *d)
{
    static const char *const SUMMARY[] = {"failedAt", "attempts", "status", "error",
                                          "excerpt",  "count",    "first",  "last"};
    buf doc = BUF_INIT;
    char err[256];
    json_t *full = NULL, *o = json_pack("{ss}", "name", d->key);
    if (!lake_subs_dead_get(s->subs, id, d->key, &doc, err, sizeof err))
        full = json_loadb(doc.p ? doc.p : "", doc.len, 0, NULL);
    buf_free(&doc);
    for (size_t i = 0; i < sizeof SUMMARY / sizeof *SUMMARY; i++) {
        json_t *v = json_object_get(full, SUMMARY[i]);
        json_object_set(o, SUMMARY[i], v ? v : json_null());
    }
    if (!json_object_get(full, "failedAt") || json_is_null(json_object_get(o, "failedAt")))
        json_object_set_new(o, "failedAt", json_integer(d->failed_ms));
    json_decref(full);
    return o;
}

/* GET /subscriptions/ID/dead-letters?limit=N (1 to 1000, default 100), oldest first. */
static enum MHD_Result dead_letters(server__srv *s, server__req *r, const char *id)
{
    const char *lim = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "limit");
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 100;
    if (lim && (!*lim || *end || limit < 1 || limit > 1000))
        return server__send_error(r, 400, "limit=%.40s: must be a number from 1 to 1000", lim);
    lake_sub sub = {0};
    char err[512];
    int rc = lake_subs_get(s->subs, id, &sub, err, sizeof err);
    lake_sub_free(&sub);
    lake_dead *d = NULL;
    size_t n = 0, total = 0;
    if (!rc) rc = lake_subs_dead_list(s->subs, id, (size_t)limit, &d, &n, &total, err, sizeof err);
    if (rc) return answer_store(r, rc, id, err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, dead_summary(s, id, &d[i]));
    free(d);
    return send_doc(r, 200, json_pack("{sosI}", "deadLetters", arr, "total", (json_int_t)total));
}

/* ---- routing --------------------------------------------------------------------------- */

/* url's id and action: 0, or -1 when it is no subscription URL (404) or a bad id (400). */
static int parse_path(const char *url, subs_path *p, server__req *r, enum MHD_Result *res)
{
    memset(p, 0, sizeof *p);
    const char *rest = url + strlen("/subscriptions");
    if (!*rest) return 0;
    rest++; /* '/' (the router checked it) */
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n <= LAKE_SUB_ID_MAX) memcpy(p->id, rest, n);
    if (n > LAKE_SUB_ID_MAX || !lake_sub_id_valid(p->id)) {
        *res = server__send_error(r, 400,
                                  "\"%.80s\" is not a subscription id: 1 to 64 of A-Z, a-z, 0-9, "
                                  "_ and -",
                                  rest);
        return -1;
    }
    if (slash && strlen(slash + 1) < sizeof p->action)
        snprintf(p->action, sizeof p->action, "%s", slash + 1);
    if (slash && !*p->action) {
        *res = server__send_error(r, 404, "no such endpoint: %s", url);
        return -1;
    }
    return 0;
}

enum MHD_Result server__handle_subs(server__srv *s, server__req *r, const char *url)
{
    subs_path p;
    enum MHD_Result res;
    if (parse_path(url, &p, r, &res)) return res;
    const char *m = r->method;
    if (!*p.id) {
        if (!strcmp(m, "GET")) return list_subs(s, r);
        if (!strcmp(m, "POST")) return create_sub(s, r);
        return server__send_error(r, 405, "method %s not allowed on %s: GET or POST", m, url);
    }
    if (!*p.action) {
        if (!strcmp(m, "GET")) return get_sub(s, r, p.id);
        if (!strcmp(m, "PATCH")) return patch_sub(s, r, p.id);
        if (!strcmp(m, "DELETE")) return delete_sub(s, r, p.id);
        return server__send_error(r, 405, "method %s not allowed on %s: GET, PATCH or DELETE", m,
                                  url);
    }
    int post = !strcmp(m, "POST");
    if (post && !strcmp(p.action, "pause")) return set_state(s, r, p.id, "paused");
    if (post && !strcmp(p.action, "resume")) return set_state(s, r, p.id, "active");
    if (post && !strcmp(p.action, "retry")) return retry_sub(s, r, p.id);
    if (post && !strcmp(p.action, "replay")) return replay_sub(s, r, p.id);
    if (!strcmp(p.action, "dead-letters") && !strcmp(m, "GET")) return dead_letters(s, r, p.id);
    if (!strcmp(p.action, "dead-letters") || !strcmp(p.action, "pause") ||
        !strcmp(p.action, "resume") || !strcmp(p.action, "retry") || !strcmp(p.action, "replay"))
        return server__send_error(r, 405, "method %s not allowed on %s: %s", m, url,
                                  strcmp(p.action, "dead-letters") ? "POST" : "GET");
    return server__send_error(r, 404, "no such endpoint: %s %s", m, url);
}

void server__subs_metrics(server__srv *s, buf *b)
{
    metrics_gauge(b, "events_subscriptions",
                  "Live subscriptions of the lake when this server's API last listed them.",
                  atomic_load(&s->subs_known));
    metrics_counter(b, "events_subscriptions_refused_total",
                    "POST /subscriptions refused 409: the lake had --subscriptions-max.",
                    atomic_load(&s->subs_refused));
}
