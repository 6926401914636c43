/*
 * deliver_batch.c - a subscription's batches: the read of the stream with
 * its pattern and filters, the request body, and the dead letter.
 *
 * The read is lake_stream_read with a filter that sees each stored line: the
 * type against the pattern (pattern_match), then, only when the subscription
 * has filters, the line's "collection" and "do" members, found by a scan of
 * its top-level members (lib/jscan.h: no tree, no allocation). A replay's
 * filter also ends the read (LAKE_STREAM_STOP) at the first event received
 * after the range. The lines the read returns are copied once, into the body
 * (deliver.h), behind room for the signature's prefix; nothing is parsed
 * again. A dead letter is that body's events with a header of why; a retry
 * reads the header with jansson and splices the events back as they are.
 */
#include "deliver_int.h"
#include "codec.h"
#include "evtime.h"
#include "jscan.h"
#include "pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const TYPES[] = {"events.batch", "events.replay", "events.retry"};

/* The value of member key of the JSON object at p: 1 with [*v, *ve), or 0. */
static int obj_get(const char *p, const char *end, const char *key, const char **v, const char **ve)
{
    jscan js = {0};
    enum jtype t;
    size_t kn = strlen(key);
    p = jscan_ws(&js, p, end);
    if (p >= end || *p != '{') return 0;
    p = jscan_ws(&js, p + 1, end);
    while (p && p < end && *p == '"') {
        const char *ke = jscan_string(&js, p, end), *val = ke ? jscan_ws(&js, ke, end) : NULL;
        if (!val || val >= end || *val != ':') return 0;
        val = jscan_ws(&js, val + 1, end);
        const char *vend = jscan_value(&js, val, end, &t);
        if (!vend) return 0;
        if ((size_t)(ke - p) == kn + 2 && !memcmp(p + 1, key, kn)) {
            *v = val, *ve = vend;
            return 1;
        }
        p = jscan_ws(&js, vend, end);
        if (p >= end || *p != ',') return 0;
        p = jscan_ws(&js, p + 1, end);
    }
    return 0;
}

/* 1 if the JSON string token [p, q) (quotes included) is want. */
static int str_is(const char *p, const char *q, const char *want)
{
    size_t n = (size_t)(q - p), wn = strlen(want);
    if (n < 2 || *p != '"') return 0;
    n -= 2;
    if (!memchr(p + 1, '\\', n)) return n == wn && !memcmp(p + 1, want, n);
    char tmp[512];
    size_t m = jscan_unescape(p + 1, q - 1, tmp, sizeof tmp);
    return m != (size_t)-1 && m == wn && !memcmp(tmp, want, m);
}

/* 1 if the event's members match the subscription's filters (an absent member does not). */
static int filters_match(const char *line, size_t len, const deliver__conf *c)
{
    const char *end = line + len, *v, *ve, *dv, *dve;
    if (c->f_coll && !(obj_get(line, end, "collection", &v, &ve) && str_is(v, ve, c->f_coll)))
        return 0;
    if (!c->f_class && !c->f_id) return 1;
    if (!obj_get(line, end, "do", &dv, &dve)) return 0;
    if (c->f_class && !(obj_get(dv, dve, "class", &v, &ve) && str_is(v, ve, c->f_class))) return 0;
    return !c->f_id || (obj_get(dv, dve, "id", &v, &ve) && str_is(v, ve, c->f_id));
}

typedef struct matcher {
    const deliver__conf *c;
    char to_at[EVTIME_LEN + 1]; /* a replay's end; "" none */
    size_t n;                   /* events taken */
    int64_t first_ms;           /* receivedAt of the first */
    lake_stream_pos first;      /* its position */
} matcher;

static int match(const lake_stream_event *e, void *ud)
{
    matcher *m = ud;
    if (m->to_at[0] && memcmp(e->at, m->to_at, EVTIME_LEN) > 0) return LAKE_STREAM_STOP;
    if (!e->type || !pattern_match(m->c->pattern, e->type, e->tn)) return 0;
    if ((m->c->f_coll || m->c->f_class || m->c->f_id) && !filters_match(e->line, e->len, m->c))
        return 0;
    if (!m->n++) {
        if (evtime_parse(e->at, EVTIME_LEN, &m->first_ms)) m->first_ms = 0;
        if (lake_stream_line_pos(e->line, e->len, &m->first)) m->first.sid[0] = 0;
    }
    return 1;
}

static void pos_text(const lake_stream_pos *p, char out[48])
{
    snprintf(out, 48, "%s.%016llx", p->sid, (unsigned long long)p->seq);
}

/* The body of b (mode, count, first and last set): events[0..n) spliced in. */
static int build_body(deliver__batch *b, const char *id, const char *events, size_t n)
{
    char hex[65] = "", ts[EVTIME_LEN + 1];
    buf h = BUF_INIT;
    int bad = buf_printf(&h, "%s\n%s\n%s\n%s", id, TYPES[b->mode], b->first, b->last);
    if (!bad) sha256_hex_of(h.p, h.len, hex);
    buf_free(&h);
    snprintf(b->msg_id, sizeof b->msg_id, "msg_%.32s", hex);
    evtime_format(evtime_now_ms(), ts);
    buf *m = &b->msg;
    bad = bad || buf_reserve(m, DELIVER__PREFIX + n + 512) ||
          buf_append(m, b->msg_id, DELIVER__MSG_ID) ||
          buf_puts(m, ".0000000000.") || /* the timestamp, written by each attempt */
          buf_printf(m, "{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":{\"subscription\":",
                     TYPES[b->mode], ts) ||
          buf_json_str(m, id, strlen(id)) || buf_puts(m, ",\"events\":[");
    b->ev_off = m->len, b->ev_len = n;
    bad = bad || buf_append(m, events, n) || buf_puts(m, "],\"from\":") ||
          buf_json_str(m, b->from, strlen(b->from)) || buf_puts(m, ",\"next\":") ||
          buf_json_str(m, b->next, strlen(b->next)) || buf_puts(m, "}}");
    return bad ? -1 : 0;
}

/* A batch of the read r (count > 0). */
static int new_batch(deliver__read *r, const matcher *m, deliver__batch **out)
{
    deliver__batch *b = calloc(1, sizeof *b);
    if (!b) return -1;
    b->mode = r->mode, b->count = r->res.count, b->oldest_ms = m->first_ms;
    lake_stream_pos p;
    buf from = BUF_INIT, next = BUF_INIT;
    int bad = 0;
    if (!lake_stream_line_pos(r->res.events.p, r->res.events.len, &p)) pos_text(&p, b->last);
    if (m->first.sid[0]) pos_text(&m->first, b->first);
    bad = (r->after && lake_cursor_format(r->after, &from)) ||
          lake_cursor_format(&r->res.next, &next) ||
          !(b->from = strdup(from.len ? buf_cstr(&from) : "")) ||
          !(b->next = strdup(next.len ? buf_cstr(&next) : "")) ||
          build_body(b, r->id, r->res.events.p, r->res.events.len);
    buf_free(&from);
    buf_free(&next);
    if (bad) {
        deliver__batch_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

int deliver__read_batch(deliver *d, deliver__read *r, deliver__batch **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    matcher m = {.c = r->conf};
    if (r->mode == DELIVER__REPLAY) evtime_format(r->replay_to, m.to_at);
    lake_stream_req q = {.after = r->after,
                         .since_ms = r->after && r->after->n ? -1 : r->since_ms,
                         .limit = r->conf->batch,
                         .max_bytes = d->cfg.max_bytes,
                         .filter = match,
                         .filter_ud = &m};
    int rc = d->cfg.read(d->cfg.read_ud, &q, &r->res, err, errlen);
    if (rc) return rc;
    r->oldest_ms = m.first_ms;
    if (!r->res.count) {
        r->ended =
            r->mode == DELIVER__REPLAY && (r->res.stopped || r->now_ms > r->replay_to + 1000);
        return 0;
    }
    if (r->mode == DELIVER__MAIN && r->res.count < r->conf->batch && !r->res.cut &&
        m.first_ms + r->conf->max_wait_ms > r->now_ms) {
        r->wait = 1;
        return 0;
    }
    if (new_batch(r, &m, out)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The header of a dead letter (doc, NUL-terminated) into b, and its events spliced. */
static int batch_of_dead(deliver__batch *b, const char *id, const char *doc, size_t len)
{
    const char *ev = strstr(doc, "\"events\":["), *end = doc + len;
    while (end > doc && end[-1] != ']') end--;
    buf t = BUF_INIT; /* the header alone: what comes before the events, which come last */
    int bad = !ev || end <= ev + 10 || buf_append(&t, doc, (size_t)(ev - doc)) ||
              buf_puts(&t, "\"events\":[]}");
    json_t *h = bad ? NULL : json_loadb(t.p, t.len, 0, NULL);
    buf_free(&t);
    const char *first = json_string_value(json_object_get(h, "first")),
               *last = json_string_value(json_object_get(h, "last")),
               *from = json_string_value(json_object_get(h, "from")),
               *next = json_string_value(json_object_get(h, "next"));
    bad = !h || !first || !last || !from || !next;
    if (!bad) {
        snprintf(b->first, sizeof b->first, "%s", first);
        snprintf(b->last, sizeof b->last, "%s", last);
        b->count = (size_t)deliver__rec_int(h, "count", 0);
        bad = !(b->from = strdup(from)) || !(b->next = strdup(next)) ||
              build_body(b, id, ev + 10, (size_t)(end - 1 - (ev + 10)));
    }
    json_decref(h);
    return bad ? -1 : 0;
}

int deliver__retry_batch(deliver *d, const char *id, const char *after, const char *name,
                         char key[LAKE_KEY_MAX], deliver__batch **out, char *err, size_t errlen)
{
    *out = NULL;
    key[0] = 0;
    lake_dead *v = NULL;
    size_t n = 0, total = 0, i = 0;
    int rc = lake_subs_dead_list(d->subs, id, 100000, &v, &n, &total, err, errlen);
    while (!rc && i < n && (strcmp(v[i].key, after) <= 0 || (name[0] && strcmp(v[i].key, name))))
        i++;
    if (rc || i == n) {
        free(v);
        return rc;
    }
    snprintf(key, LAKE_KEY_MAX, "%s", v[i].key);
    free(v);
    buf doc = BUF_INIT;
    deliver__batch *b = calloc(1, sizeof *b);
    rc = b ? lake_subs_dead_get(d->subs, id, key, &doc, err, errlen) : -1;
    if (b) b->mode = DELIVER__RETRY, snprintf(b->dead, sizeof b->dead, "%s", key);
    if (!rc && (!buf_cstr(&doc) || batch_of_dead(b, id, doc.p, doc.len))) {
        snprintf(err, errlen, "dead letter %s is malformed", key);
        rc = -1;
    }
    buf_free(&doc);
    if (rc) {
        deliver__batch_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Appends s as a JSON string, its bytes outside valid UTF-8 replaced by '?'. */
static int json_text(buf *out, const char *s, size_t n)
{
    if (jscan_utf8_valid(s, n)) return buf_json_str(out, s, n);
    char *t = malloc(n + 1);
    if (!t) return -1;
    for (size_t i = 0; i < n; i++) t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    int rc = buf_json_str(out, t, n);
    free(t);
    return rc;
}

int deliver__dead_doc(const deliver__batch *b, const char *id, int64_t now_ms, buf *out)
{
    int bad = buf_puts(out, "{\"subscription\":") || buf_json_str(out, id, strlen(id)) ||
              buf_printf(out, ",\"failedAt\":%lld,\"attempts\":%u,\"status\":%ld,\"error\":",
                         (long long)now_ms, b->attempts, b->status) ||
              json_text(out, b->error, strlen(b->error)) || buf_puts(out, ",\"excerpt\":") ||
              json_text(out, b->excerpt.p ? b->excerpt.p : "", b->excerpt.len) ||
              buf_printf(out, ",\"count\":%zu,\"first\":\"%s\",\"last\":\"%s\",\"from\":", b->count,
                         b->first, b->last) ||
              buf_json_str(out, b->from, strlen(b->from)) || buf_puts(out, ",\"next\":") ||
              buf_json_str(out, b->next, strlen(b->next)) || buf_puts(out, ",\"events\":[") ||
              buf_append(out, b->msg.p + b->ev_off, b->ev_len) || buf_puts(out, "]}");
    return bad ? -1 : 0;
}
