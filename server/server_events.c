/*
 * server_events.c - GET /events?after=CURSOR&limit=N&type=PATTERN&since=TIME:
 * the stream log, page by page (docs/http.md).
 *
 * The handler checks the arguments (400 naming the bad one), reads with the
 * server's lake_stream (lake/stream.h) on the HTTP thread, as GET /recent
 * answers from memory: a read is bounded by limit, --events-max-bytes and a
 * scan budget, so it is short, and a file of an s3 lake is fetched once into
 * the cache. The answer splices the stored lines as they are:
 * {"events":[…],"next":"<cursor>","count":n}. An expired cursor is 410 with
 * the oldest cursor kept.
 *
 * The writer's local stream segments (not in the lake yet) are the reader's
 * extra sources (lake_stream_req.local), taken by local_files below, so that
 * an event is readable as soon as it is acknowledged.
 */
#include "server_int.h"
#include "evtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int type_matches(const lake_stream_event *e, void *ud)
{
    return e->type && glob_list_match(ud, e->type, e->tn);
}

/* The limit argument: 0, or -1 when it is not a number from 1 to the flag's. */
static int parse_limit(const server__srv *s, const char *lim, size_t *out)
{
    *out = s->cfg.events_max_limit < 100 ? s->cfg.events_max_limit : 100;
    if (!lim) return 0;
    char *end;
    unsigned long long v = strtoull(lim, &end, 10);
    if (!*lim || *end || *lim < '0' || *lim > '9' || v < 1 || v > s->cfg.events_max_limit)
        return -1;
    *out = (size_t)v;
    return 0;
}

/*
 * The writer's stream segments still in the spool, to read as well as the lake's (taken before
 * the lake is listed): the open one no further than its last committed group. One block: the
 * entries, then their paths. None when the writer cannot list them (out of memory).
 */
static size_t local_files(server__srv *s, lake_stream_local **l)
{
    *l = NULL;
    lake_writer_stream_seg *seg = NULL;
    size_t n = 0, room = 0, k = 0;
    char err[128];
    if (lake_writer_stream_segments(s->writer, &seg, &n, err, sizeof err) || !n) {
        free(seg);
        return 0;
    }
    for (size_t i = 0; i < n; i++) room += strlen(seg[i].path) + 1;
    lake_stream_local *out = malloc(n * sizeof *out + room);
    char *paths = out ? (char *)(out + n) : NULL;
    for (size_t i = 0; out && i < n; i++) {
        if (seg[i].open && seg[i].last < seg[i].first) continue; /* nothing committed in it yet */
        size_t len = strlen(seg[i].path) + 1;
        memcpy(paths, seg[i].path, len);
        snprintf(out[k].sid, sizeof out[k].sid, "%s", lake_writer_sid(s->writer));
        out[k].first = seg[i].first;
        out[k].path = paths;
        out[k].len = seg[i].open ? seg[i].bytes : UINT64_MAX;
        paths += len;
        k++;
    }
    free(seg);
    *l = out;
    return out ? k : 0;
}

/* A read of the lake and of the writer's segments as they are now. */
static int read_with_local(server__srv *s, const lake_stream_req *q, lake_stream_res *res,
                           char *err, size_t errlen)
{
    lake_stream_req rq = *q;
    lake_stream_local *local;
    rq.nlocal = local_files(s, &local);
    rq.local = local;
    int rc = lake_stream_read(s->stream, &rq, res, err, errlen);
    free(local);
    return rc;
}

int server__stream_read(void *ud, const lake_stream_req *q, lake_stream_res *res, char *err,
                        size_t errlen)
{
    return read_with_local(ud, q, res, err, errlen);
}

/* The answer of a read: the lines spliced into {"events":[…],"next":…,"count":n}. */
static int render(const lake_stream_res *res, buf *b)
{
    int bad = buf_puts(b, "{\"events\":[") || buf_append(b, res->events.p, res->events.len) ||
              buf_puts(b, "],\"next\":\"") || lake_cursor_format(&res->next, b) ||
              buf_printf(b, "\",\"count\":%zu}\n", res->count);
    return bad ? -1 : 0;
}

/* The answer to a read that failed: 410 with the oldest cursor, 400, or 500. */
static enum MHD_Result send_failure(server__srv *s, server__req *r, int rc,
                                    const lake_stream_res *res, const char *err)
{
    if (rc == LAKE_STREAM_EINVAL) return server__send_error(r, 400, "%s", err);
    if (rc != LAKE_STREAM_EEXPIRED) return server__send_error(r, 500, "%s", err);
    atomic_fetch_add_explicit(&s->events_expired, 1, memory_order_relaxed);
    buf b = BUF_INIT;
    int bad = buf_puts(&b, "{\"ok\":false,\"error\":") || buf_json_str(&b, err, strlen(err)) ||
              buf_puts(&b, ",\"oldest\":\"") || lake_cursor_format(&res->oldest, &b) ||
              buf_puts(&b, "\"}\n");
    enum MHD_Result ok = bad ? server__send_error(r, 503, "out of memory")
                             : server__send_json(r, 410, &b, NULL, NULL);
    buf_free(&b);
    return ok;
}

/* Reads and answers: the arguments are checked. */
static enum MHD_Result read_and_answer(server__srv *s, server__req *r, const char *type,
                                       lake_stream_req *q)
{
    (void)type; /* q's filter */
    lake_stream_res res = {0};
    char err[512];
    int rc = read_with_local(s, q, &res, err, sizeof err);
    enum MHD_Result ok;
    if (rc) {
        ok = send_failure(s, r, rc, &res, err);
    } else {
        atomic_fetch_add_explicit(&s->events_reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->events_read, res.count, memory_order_relaxed);
        if (res.cut) atomic_fetch_add_explicit(&s->events_cut, 1, memory_order_relaxed);
        buf b = BUF_INIT;
        ok = render(&res, &b) ? server__send_error(r, 503, "out of memory")
                              : server__send_json(r, 200, &b, NULL, NULL);
        buf_free(&b);
    }
    lake_stream_res_free(&res);
    return ok;
}

/* The position arguments: after (or Last-Event-ID for /tail) into cur, since into *since_ms. */
static enum MHD_Result parse_position(server__req *r, const char *after, lake_cursor *cur,
                                      int64_t *since_ms)
{
    const char *since = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "since");
    char err[256];
    if (since && evtime_parse(since, strlen(since), since_ms))
        return server__send_error(
            r, 400, "since=%.60s: not an RFC 3339 time (2026-11-25T10:00:00Z)", since);
    if (since && after && *after)
        return server__send_error(r, 400, "give after= or since=, not both");
    if (after && lake_cursor_parse(after, strlen(after), cur, err, sizeof err))
        return server__send_error(r, 400, "after=: %s", err);
    return MHD_YES;
}

static enum MHD_Result tail_from(server__srv *s, server__req *r, const char *type,
                                 lake_stream_req *q);

typedef enum MHD_Result (*read_fn)(server__srv *s, server__req *r, const char *type,
                                   lake_stream_req *q);

/* q's position (after, or ?since=) and type filter from the request, then fn reads and answers. */
static enum MHD_Result with_position(server__srv *s, server__req *r, const char *after,
                                     const char *type, lake_stream_req *q, read_fn fn)
{
    lake_cursor cur = {0};
    enum MHD_Result ok = parse_position(r, after, &cur, &q->since_ms);
    if (r->state == SERVER__ST_RESPONDED || ok != MHD_YES) return ok;
    glob_list types = {0};
    if (type && *type && glob_list_compile(type, &types)) {
        ok = server__send_error(r, 503, "out of memory");
    } else {
        lake_stream_req rq = *q; /* q with the position and the filter, for this call */
        rq.after = &cur;
        if (types.n) rq.filter = type_matches, rq.filter_ud = &types;
        ok = fn(s, r, type, &rq);
    }
    glob_list_free(&types);
    lake_cursor_free(&cur);
    return ok;
}

/* GET /events?after=CURSOR&limit=N&type=PATTERN&since=TIME */
enum MHD_Result server__handle_events(server__srv *s, server__req *r)
{
    const char *after = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "after");
    const char *lim = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "limit");
    const char *type = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "type");
    lake_stream_req q = {.since_ms = -1, .max_bytes = s->cfg.events_max_bytes};
    if (parse_limit(s, lim, &q.limit))
        return server__send_error(r, 400,
                                  "limit=%.40s: must be a number from 1 to %zu "
                                  "(--events-max-limit)",
                                  lim, s->cfg.events_max_limit);
    char err[256];
    if (glob_list_check(type, s->cfg.tail_max_patterns, s->cfg.tail_pattern_bytes, err, sizeof err))
        return server__send_error(r, 400, "%s", err);
    return with_position(s, r, after, type, &q, read_and_answer);
}

/* ---- GET /tail from a position ------------------------------------------------------- */

int server__tail_wants_stream(server__req *r)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID") ||
           MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "after") ||
           MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "since");
}

/*
 * Feeds c the stream's events after q->after, page by page, up to half of
 * --tail-buffer; then ends the catch-up: whole when the stream was read to its
 * end (live follows), else the client reconnects from its last id.
 */
static void catch_up(server__srv *s, tail_client *c, const lake_stream_req *q,
                     lake_stream_res *first)
{
    lake_cursor cur = first->next;
    first->next = (lake_cursor){0};
    uint64_t budget = s->cfg.tail_buffer / 2, used = first->events.len;
    tail_catch_up(c, first->events.p, first->events.len);
    /* at least one read after c was registered: an event acknowledged before it is in the
     * writer's segments then, one acknowledged after it comes live */
    int whole = 0, failed = 0;
    while (!whole && !failed && used < budget) {
        lake_stream_res res = {0};
        char err[512];
        lake_stream_req rq = *q; /* the next page: from cur */
        rq.after = &cur, rq.since_ms = -1, rq.max_bytes = budget - used;
        failed = read_with_local(s, &rq, &res, err, sizeof err) != 0;
        if (!failed) {
            tail_catch_up(c, res.events.p, res.events.len);
            used += res.events.len;
            whole = res.count == 0;
            lake_cursor_free(&cur);
            cur = res.next;
            res.next = (lake_cursor){0};
        }
        lake_stream_res_free(&res);
    }
    tail_caught_up(c, &cur, whole && !failed);
    lake_cursor_free(&cur);
}

/* The first read (its failures answered), then the stream opened and caught up. */
static enum MHD_Result tail_from(server__srv *s, server__req *r, const char *type,
                                 lake_stream_req *q)
{
    lake_stream_res res = {0};
    char err[512];
    int rc = read_with_local(s, q, &res, err, sizeof err);
    if (rc) {
        enum MHD_Result ok = send_failure(s, r, rc, &res, err);
        lake_stream_res_free(&res);
        return ok;
    }
    tail_client *c = NULL;
    struct MHD_Response *resp = atomic_load(&s->stopping)
                                    ? NULL
                                    : tail_response_after(s->tail, r->conn, type, q->after, &c);
    if (!resp) {
        lake_stream_res_free(&res);
        return server__send_error(r, 503, "the server is stopping");
    }
    /* registered before the reads that end the catch-up: what they miss comes live */
    catch_up(s, c, q, &res);
    lake_stream_res_free(&res);
    server__add_cors(resp, r);
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    server__answered(r, 200);
    return ok;
}

enum MHD_Result server__tail_after(server__srv *s, server__req *r, const char *type)
{
    const char *after = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (!after) after = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "after");
    lake_stream_req q = {.since_ms = -1,
                         .limit = s->cfg.events_max_limit,
                         .max_bytes = s->cfg.tail_buffer / 2,
                         .sep = '\n'};
    return with_position(s, r, after, type, &q, tail_from);
}

void server__events_metrics(server__srv *s, buf *b)
{
    metrics_counter(b, "events_stream_reads_total", "GET /events answers with events or none.",
                    atomic_load(&s->events_reads));
    metrics_counter(b, "events_stream_events_read_total", "Events GET /events answered.",
                    atomic_load(&s->events_read));
    metrics_counter(b, "events_stream_expired_total",
                    "GET /events refused 410: the cursor's next event is no longer kept.",
                    atomic_load(&s->events_expired));
    metrics_counter(b, "events_stream_answers_cut_total",
                    "GET /events answers stopped at --events-max-bytes before their limit.",
                    atomic_load(&s->events_cut));
}
