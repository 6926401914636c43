/*
 * test_stream.c - reading the stream log (lake/stream.h) and GET /events
 * (issue 16): cursors, paging over several sids and files, limits, the type
 * filter, since=, an expired cursor, files arriving between two reads, the
 * writer's local files. The stream files are laid out by the test itself, in
 * a real lake directory, exactly in the format of docs/lake.md: lines ending
 * with "_events_pos", named stream/<sid>/<first seq 16 hex>.jsonl.
 */
#include "cache.h"
#include "harness.h"
#include "evtime.h"
#include "layout.h"
#include "stream.h"
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 INT64_C(1795000000000) /* 2026-11-18T… */

/* The stored line of event seq of sid, received at at_ms, of type t. */
static void line_of(buf *b, const char *sid, uint64_t seq, int64_t at_ms, const char *t)
{
    char at[EVTIME_LEN + 1];
    evtime_format(at_ms, at);
    buf_printf(b,
               "{\"id\":\"%s-%llu\",\"type\":\"%s\",\"ts\":\"%s\",\"receivedAt\":\"%s\","
               "\"n\":%llu,\"_events_pos\":\"%s.%016llx\"}\n",
               sid, (unsigned long long)seq, t, at, at, (unsigned long long)seq, sid,
               (unsigned long long)seq);
}

/* The lines of n events of sid from first, event k received at at0_ms + k * step_ms. */
static void file_lines(buf *b, const char *sid, uint64_t first, uint64_t n, int64_t at0_ms,
                       int64_t step_ms)
{
    for (uint64_t k = 0; k < n; k++)
        line_of(b, sid, first + k, at0_ms + (int64_t)(first + k) * step_ms,
                (first + k) % 3 ? "a.x" : "b.y");
}

/* Writes stream/<sid>/<first>.jsonl into the lake directory (file_lines). */
static void write_file(const char *lake, const char *sid, uint64_t first, uint64_t n,
                       int64_t at0_ms, int64_t step_ms)
{
    char key[LAKE_KEY_MAX], path[4096];
    lake_stream_key(sid, first, key);
    mkdir(lake, 0755);
    snprintf(path, sizeof path, "%s/stream", lake);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/stream/%s", lake, sid);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s", lake, key);
    buf b = BUF_INIT;
    file_lines(&b, sid, first, n, at0_ms, step_ms);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b.p, 1, b.len, f);
        fclose(f);
    }
    buf_free(&b);
}

typedef struct fixture {
    char *dir;
    store *s;
    lake_stream *st;
} fixture;

static int fx_open(fixture *x)
{
    char err[512];
    x->dir = test_tmpdir("stream");
    if (store_fs_open(x->dir, &x->s, err, sizeof err) ||
        lake_stream_open(x->s, NULL, &x->st, err, sizeof err)) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    return 0;
}

static void fx_close(fixture *x)
{
    lake_stream_close(x->st);
    store_close(x->s);
    test_rmtree(x->dir);
    free(x->dir);
}

/* One read after cursor text (NULL: none); returns the code; res to free by the caller. */
static int read_after(fixture *x, const char *after, size_t limit, lake_stream_res *res)
{
    lake_cursor c = {0};
    char err[512];
    if (after && lake_cursor_parse(after, strlen(after), &c, err, sizeof err)) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return -9;
    }
    lake_stream_req q = {.after = &c, .since_ms = -1, .limit = limit, .max_bytes = 1u << 30};
    memset(res, 0, sizeof *res);
    int rc = lake_stream_read(x->st, &q, res, err, sizeof err);
    lake_cursor_free(&c);
    return rc;
}

static char *cursor_text(const lake_cursor *c)
{
    buf b = BUF_INIT;
    lake_cursor_format(c, &b);
    if (!buf_cstr(&b)) return strdup("");
    return b.p; /* NUL-terminated: buf_cstr */
}

TEST(cursor_round_trips)
{
    const char *t = "0abc1234.0000000000000010,zz000000.ffffffffffffffff";
    lake_cursor c;
    char err[256];
    REQUIRE_INT(0, lake_cursor_parse(t, strlen(t), &c, err, sizeof err));
    CHECK_INT(2, c.n);
    CHECK_STR("0abc1234", c.p[0].sid);
    CHECK_INT(16, c.p[0].seq);
    char *back = cursor_text(&c);
    CHECK_STR(t, back);
    free(back);
    lake_cursor_free(&c);
    REQUIRE_INT(0, lake_cursor_parse("", 0, &c, err, sizeof err));
    CHECK_INT(0, c.n);
}

TEST(bad_cursors_are_refused)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"abc", "is not <sid>.<seq>"},
        {"ABCDEFGH.0000000000000001", "not a stream id"},
        {"abcdefgh.000000000000000G", "not 16 lowercase hex"},
        {"abcdefgh.00000000000000A1", "not 16 lowercase hex"},
        {"abcdefgh-0000000000000001", "is not <sid>.<seq>"},
        {"bbbbbbbb.0000000000000001,aaaaaaaa.0000000000000001", "out of order"},
        {"aaaaaaaa.0000000000000001,aaaaaaaa.0000000000000002", "there twice"},
        {"aaaaaaaa.0000000000000001,", "pair 2"},
        {"aaaaaaaa.00000000000000001", "is not <sid>.<seq>"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lake_cursor c;
        char err[256] = "";
        CHECK_INT(LAKE_STREAM_EINVAL,
                  lake_cursor_parse(bad[i].text, strlen(bad[i].text), &c, err, sizeof err));
        CHECK_CONTAINS(bad[i].why, err);
    }
    /* more sids than the bound */
    buf b = BUF_INIT;
    for (int i = 0; i <= LAKE_STREAM_MAX_SIDS; i++)
        buf_printf(&b, "%s%08x.0000000000000001", i ? "," : "", i);
    lake_cursor c;
    char err[256] = "";
    CHECK_INT(LAKE_STREAM_EINVAL, lake_cursor_parse(b.p, b.len, &c, err, sizeof err));
    CHECK_CONTAINS("more than the limit", err);
    buf_free(&b);
}

/* Three sids, several files each, interleaved in time. */
static void three_sids(const char *dir)
{
    write_file(dir, "aaaaaaaa", 1, 10, T0, 1000);
    write_file(dir, "aaaaaaaa", 11, 1500, T0, 1000);
    write_file(dir, "aaaaaaaa", 1511, 7, T0, 1000);
    write_file(dir, "bbbbbbbb", 1, 300, T0 + 500, 3000);
    write_file(dir, "bbbbbbbb", 301, 300, T0 + 500, 3000);
    write_file(dir, "cccccccc", 5, 40, T0 + 250, 7000);
}

/* Pages through everything with limit, checking each event comes once, in order. */
static size_t page_all(fixture *x, size_t limit, char **last_cursor)
{
    uint64_t next[3] = {1, 1, 5};
    const char *sids[3] = {"aaaaaaaa", "bbbbbbbb", "cccccccc"};
    char *cur = NULL, prev_at[EVTIME_LEN + 1] = "";
    size_t total = 0;
    for (int page = 0; page < 100000; page++) {
        lake_stream_res res;
        int rc = read_after(x, cur, limit, &res);
        if (rc) test_fail(__FILE__, __LINE__, "read: %d", rc);
        buf_cstr(&res.events);
        free(cur);
        cur = cursor_text(&res.next);
        size_t n = res.count;
        /* the lines, one by one: {…},{…} */
        char *text = res.events.p;
        for (size_t i = 0; i < n && text; i++) {
            char *pos = strstr(text, "\"_events_pos\":\"");
            char *at = strstr(text, "\"receivedAt\":\"");
            if (!pos || !at) break;
            pos += 15, at += 14;
            int k = pos[0] == 'a' ? 0 : pos[0] == 'b' ? 1 : 2;
            CHECK(!strncmp(pos, sids[k], 8));
            unsigned long long seq = strtoull(pos + 9, NULL, 16);
            if (seq != next[k])
                test_fail(__FILE__, __LINE__, "%s: seq %llx, expected %llx", sids[k], seq,
                          (unsigned long long)next[k]);
            next[k] = seq + 1;
            CHECK(strncmp(prev_at, at, EVTIME_LEN) <= 0);
            memcpy(prev_at, at, EVTIME_LEN);
            text = strstr(pos, "}");
            total++;
        }
        lake_stream_res_free(&res);
        if (!n || test_failed_now()) break;
    }
    CHECK_INT(1517, next[0] - 1);
    CHECK_INT(600, next[1] - 1);
    CHECK_INT(44, next[2] - 1);
    *last_cursor = cur;
    return total;
}

TEST(paging_visits_every_event_once_in_order)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    three_sids(x.dir);
    char *cur;
    CHECK_INT(1517 + 600 + 40, page_all(&x, 7, &cur));
    CHECK_STR("aaaaaaaa.00000000000005ed,bbbbbbbb.0000000000000258,cccccccc.000000000000002c", cur);
    free(cur);
    CHECK_INT(1517 + 600 + 40, page_all(&x, 10000, &cur));
    free(cur);
    /* nothing new: next is the cursor itself */
    lake_stream_res res;
    const char *end =
        "aaaaaaaa.00000000000005ed,bbbbbbbb.0000000000000258,cccccccc.000000000000002c";
    CHECK_INT(0, read_after(&x, end, 100, &res));
    CHECK_INT(0, res.count);
    cur = cursor_text(&res.next);
    CHECK_STR(end, cur);
    free(cur);
    lake_stream_res_free(&res);
    fx_close(&x);
}

TEST(limit_and_max_bytes_bound_an_answer)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 50, T0, 1000);
    lake_stream_res res;
    CHECK_INT(0, read_after(&x, NULL, 20, &res));
    CHECK_INT(20, res.count);
    char *cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.0000000000000014", cur);
    free(cur);
    size_t one = (size_t)(strchr(res.events.p, '}') - res.events.p) + 1;
    lake_stream_res_free(&res);
    lake_cursor c = {0};
    char err[256];
    /* room for two lines and a bit: two; for less than one: one all the same */
    lake_stream_req q = {.after = &c, .since_ms = -1, .limit = 100, .max_bytes = 2 * one + 5};
    memset(&res, 0, sizeof res);
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(2, res.count);
    CHECK(res.cut);
    lake_stream_res_free(&res);
    q.max_bytes = 1;
    memset(&res, 0, sizeof res);
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(1, res.count);
    lake_stream_res_free(&res);
    fx_close(&x);
}

static int only_b(const lake_stream_event *e, void *ud)
{
    (void)ud;
    return e->type && e->tn == 3 && !memcmp(e->type, "b.y", 3);
}

TEST(type_filter_skips_events_and_moves_the_cursor_past_them)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 30, T0, 1000); /* seq % 3 == 0: b.y */
    lake_cursor c = {0};
    char err[256];
    lake_stream_req q = {
        .after = &c, .since_ms = -1, .limit = 4, .max_bytes = 1 << 20, .filter = only_b};
    lake_stream_res res = {0};
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(4, res.count);
    buf_cstr(&res.events);
    CHECK_CONTAINS("\"aaaaaaaa.000000000000000c\"", res.events.p);
    CHECK(!strstr(res.events.p, "a.x"));
    char *cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.000000000000000c", cur);
    free(cur);
    lake_stream_res_free(&res);
    /* the rest: 6 more b.y, and the cursor at the end though the last ones are a.x */
    memset(&res, 0, sizeof res);
    q.after = &(lake_cursor){&(lake_stream_pos){"aaaaaaaa", 12}, 1};
    q.limit = 100;
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(6, res.count);
    cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.000000000000001e", cur);
    free(cur);
    lake_stream_res_free(&res);
    fx_close(&x);
}

/* Stops at the event received at T0 + 4 s (the fourth): a replay's end. */
static int until_fourth(const lake_stream_event *e, void *ud)
{
    return memcmp(e->at, ud, EVTIME_LEN) < 0 ? 1 : LAKE_STREAM_STOP;
}

TEST(filter_stop_ends_the_read_before_the_event)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 10, T0, 1000);
    char at[EVTIME_LEN + 1];
    evtime_format(T0 + 4000, at);
    lake_cursor c = {0};
    char err[256];
    lake_stream_req q = {.after = &c,
                         .since_ms = -1,
                         .limit = 100,
                         .max_bytes = 1 << 20,
                         .filter = until_fourth,
                         .filter_ud = at};
    lake_stream_res res = {0};
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(3, res.count);
    CHECK_INT(1, res.stopped);
    char *cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.0000000000000003", cur);
    free(cur);
    lake_stream_res_free(&res);
    fx_close(&x);
}

TEST(since_starts_at_the_first_event_received_at_or_after_it)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    three_sids(x.dir);
    char err[256];
    /* a: event k at T0+k s; b: event k at T0+0.5+3k s; c: event k at T0+0.25+7k s */
    lake_stream_req q = {.since_ms = T0 + 1400 * 1000, .limit = 3, .max_bytes = 1 << 20};
    lake_stream_res res = {0};
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(3, res.count);
    char *cur = cursor_text(&res.next);
    /* a from 1400 (in its second file), b from 467, c ended (its last is at 308 s) */
    CHECK_STR("aaaaaaaa.0000000000000579,bbbbbbbb.00000000000001d3,cccccccc.000000000000002c", cur);
    free(cur);
    buf_cstr(&res.events);
    CHECK_CONTAINS("\"_events_pos\":\"aaaaaaaa.0000000000000578\"", res.events.p);
    lake_stream_res_free(&res);
    /* before everything: from the oldest; after everything: nothing, every sid at its end */
    q.since_ms = T0 - 1000000;
    memset(&res, 0, sizeof res);
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.0000000000000003,bbbbbbbb.0000000000000000,cccccccc.0000000000000004",
              cur); /* a's first three come before b's first (3.5 s) */
    free(cur);
    lake_stream_res_free(&res);
    q.since_ms = T0 + 100000 * 1000;
    memset(&res, 0, sizeof res);
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(0, res.count);
    cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.00000000000005ed,bbbbbbbb.0000000000000258,cccccccc.000000000000002c", cur);
    free(cur);
    lake_stream_res_free(&res);
    fx_close(&x);
}

TEST(expired_cursor_is_refused_with_the_oldest)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    three_sids(x.dir);
    char path[4096], key[LAKE_KEY_MAX];
    lake_stream_key("aaaaaaaa", 1, key);
    snprintf(path, sizeof path, "%s/%s", x.dir, key);
    REQUIRE_INT(0, remove(path)); /* retention took a's oldest file */
    lake_stream_res res;
    CHECK_INT(LAKE_STREAM_EEXPIRED, read_after(&x, "aaaaaaaa.0000000000000003", 10, &res));
    char *cur = cursor_text(&res.oldest);
    CHECK_STR("aaaaaaaa.000000000000000a,bbbbbbbb.0000000000000000,cccccccc.0000000000000004", cur);
    free(cur);
    lake_stream_res_free(&res);
    /* right before the oldest kept: not expired */
    CHECK_INT(0, read_after(&x, "aaaaaaaa.000000000000000a", 1, &res));
    CHECK_INT(1, res.count);
    lake_stream_res_free(&res);
    fx_close(&x);
}

TEST(files_arriving_between_reads_are_read_without_a_gap)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 10, T0, 1000);
    write_file(x.dir, "aaaaaaaa", 21, 10, T0, 1000); /* 11..20 not sealed yet */
    lake_stream_res res;
    CHECK_INT(0, read_after(&x, NULL, 100, &res));
    CHECK_INT(10, res.count); /* stops at the hole */
    char *cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.000000000000000a", cur);
    lake_stream_res_free(&res);
    write_file(x.dir, "aaaaaaaa", 11, 10, T0, 1000);
    CHECK_INT(0, read_after(&x, cur, 100, &res));
    CHECK_INT(20, res.count);
    buf_cstr(&res.events);
    CHECK(!strncmp(res.events.p, "{\"id\":\"aaaaaaaa-11\"", 19));
    free(cur);
    cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.000000000000001e", cur);
    lake_stream_res_free(&res);
    write_file(x.dir, "aaaaaaaa", 31, 5, T0, 1000); /* the next sealed file */
    CHECK_INT(0, read_after(&x, cur, 100, &res));
    CHECK_INT(5, res.count);
    free(cur);
    lake_stream_res_free(&res);
    fx_close(&x);
}

/*
 * The writer's open segment in x's directory: lines first..last of sid aaaaaaaa (in b, which
 * the caller frees), its path in path; the offset after the first n lines is returned.
 */
static size_t local_segment(const fixture *x, uint64_t first, uint64_t last, int n, buf *b,
                            char path[4096])
{
    for (uint64_t k = first; k <= last; k++)
        line_of(b, "aaaaaaaa", k, T0 + (int64_t)k * 1000, "a.x");
    snprintf(path, 4096, "%s/spool-segment.jsonl", x->dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b->p, 1, b->len, f);
        fclose(f);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) off = (size_t)(strchr(b->p + off, '\n') - b->p) + 1;
    return off;
}

TEST(local_files_are_read_up_to_their_committed_length)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 10, T0, 1000);
    /* the writer's open segment: 11.., of which 3 lines and a half are committed */
    buf b = BUF_INIT;
    char path[4096];
    size_t three = local_segment(&x, 11, 15, 3, &b, path);
    lake_stream_local l = {"aaaaaaaa", 11, path, three + 20};
    lake_cursor c = {0};
    char err[256];
    lake_stream_req q = {
        .after = &c, .since_ms = -1, .limit = 100, .max_bytes = 1 << 20, .local = &l, .nlocal = 1};
    lake_stream_res res = {0};
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(13, res.count);
    char *cur = cursor_text(&res.next);
    CHECK_STR("aaaaaaaa.000000000000000d", cur);
    free(cur);
    lake_stream_res_free(&res);
    /* a local file gone (moved into the lake meanwhile): the sid stops there, no error */
    remove(path);
    memset(&res, 0, sizeof res);
    CHECK_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
    CHECK_INT(10, res.count);
    lake_stream_res_free(&res);
    buf_free(&b);
    fx_close(&x);
}

TEST(paging_through_a_growing_local_file_visits_every_event_once)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    buf b = BUF_INIT;
    char path[4096];
    /* committed: 20 lines, then all 40 (the segment grows between pages) */
    size_t twenty = local_segment(&x, 1, 40, 20, &b, path);
    lake_stream_local l = {"aaaaaaaa", 1, path, twenty};
    lake_cursor c = {0};
    char err[256];
    uint64_t want = 1;
    for (int page = 0; page < 40 && want <= 40; page++) {
        if (want > 20) l.len = b.len;
        lake_stream_req q = {.after = &c,
                             .since_ms = -1,
                             .limit = 3,
                             .max_bytes = 1 << 20,
                             .local = &l,
                             .nlocal = 1,
                             .sep = '\n'};
        lake_stream_res res = {0};
        REQUIRE_INT(0, lake_stream_read(x.st, &q, &res, err, sizeof err));
        for (const char *p = buf_cstr(&res.events); p && *p; want++) {
            lake_stream_pos pos;
            const char *nl = strchr(p, '\n'), *e = nl ? nl : p + strlen(p);
            CHECK_INT(0, lake_stream_line_pos(p, (size_t)(e - p), &pos));
            CHECK_INT((long long)want, (long long)pos.seq);
            p = nl ? nl + 1 : e;
        }
        lake_cursor_free(&c);
        c = res.next;
        res.next = (lake_cursor){0};
        lake_stream_res_free(&res);
    }
    CHECK_INT(41, (long long)want);
    lake_cursor_free(&c);
    buf_free(&b);
    fx_close(&x);
}

TEST(a_line_without_its_position_is_an_error)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    write_file(x.dir, "aaaaaaaa", 1, 3, T0, 1000);
    char path[4096], key[LAKE_KEY_MAX];
    lake_stream_key("aaaaaaaa", 4, key);
    snprintf(path, sizeof path, "%s/%s", x.dir, key);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fputs("{\"id\":\"x\",\"type\":\"a.x\",\"receivedAt\":\"2026-11-18T00:00:00.000Z\"}\n", f);
    fclose(f);
    lake_stream_res res;
    CHECK_INT(LAKE_STREAM_EIO, read_after(&x, "aaaaaaaa.0000000000000002", 10, &res));
    lake_stream_res_free(&res);
    fx_close(&x);
}

static long get(const srv *s, const char *path, resp *r)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    http_do("GET", url, NULL, NULL, 0, 30000, r);
    return r->status;
}

TEST(get_events_pages_through_the_stream)
{
    srv s = {0};
    char *lake = srv_lake_dir("events");
    three_sids(lake);
    const char *args[] = {"--events-max-limit", "500", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    CHECK_INT(200, get(&s, "/events?limit=5", &r));
    json_t *a = json_loads(r.body.p, 0, NULL);
    CHECK(r.body.len && r.body.p[r.body.len - 1] == '\n');
    CHECK_INT(5, json_integer_value(json_object_get(a, "count")));
    CHECK_INT(5, json_array_size(json_object_get(a, "events")));
    CHECK_STR("aaaaaaaa-1", json_string_value(json_object_get(
                                json_array_get(json_object_get(a, "events"), 0), "id")));
    CHECK_STR("aaaaaaaa.0000000000000004,bbbbbbbb.0000000000000001",
              json_string_value(json_object_get(a, "next")));
    json_decref(a);
    resp_free(&r);
    /* page to the end, with the type filter */
    char path[512] = "/events?limit=500&type=b.*";
    long got = 0;
    for (int i = 0; i < 100; i++) {
        CHECK_INT(200, get(&s, path, &r));
        a = json_loads(r.body.p, 0, NULL);
        long n = (long)json_integer_value(json_object_get(a, "count"));
        got += n;
        snprintf(path, sizeof path, "/events?limit=500&type=b.*&after=%s",
                 json_string_value(json_object_get(a, "next")));
        json_decref(a);
        resp_free(&r);
        if (!n) break;
    }
    CHECK_INT(505 + 200 + 13, got); /* seq % 3 == 0 are b.y */
    CHECK_INT(200, get(&s, "/events?since=2026-11-18T10:00:00Z&limit=1", &r));
    resp_free(&r);
    CHECK(srv_metric(&s, "events_stream_reads_total") >= 3);
    CHECK(srv_metric(&s, "events_stream_events_read_total") >= 5);
    srv_lake_cleanup(&s, lake);
}

TEST(get_events_refuses_bad_arguments)
{
    srv s = {0};
    char *lake = srv_lake_dir("events-bad");
    three_sids(lake);
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    static const struct {
        const char *path, *why;
    } bad[] = {
        {"/events?after=nope", "after=: bad cursor"},
        {"/events?after=aaaaaaaa.0000000000000001,aaaaaaaa.0000000000000002", "there twice"},
        {"/events?limit=0", "limit=0"},
        {"/events?limit=10001", "--events-max-limit"},
        {"/events?limit=ten", "limit=ten"},
        {"/events?since=yesterday", "since=yesterday"},
        {"/events?since=2026-11-18T10:00:00Z&after=aaaaaaaa.0000000000000001", "not both"},
        {"/events?type=,,,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        resp r;
        CHECK_INT(400, get(&s, bad[i].path, &r));
        CHECK_CONTAINS(bad[i].why, r.body.p);
        resp_free(&r);
    }
    srv_lake_cleanup(&s, lake);
}

TEST(get_events_answers_410_for_an_expired_cursor)
{
    srv s = {0};
    char *lake = srv_lake_dir("events-410");
    three_sids(lake);
    char path[4096], key[LAKE_KEY_MAX];
    lake_stream_key("aaaaaaaa", 1, key);
    snprintf(path, sizeof path, "%s/%s", lake, key);
    REQUIRE_INT(0, remove(path));
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    resp r;
    CHECK_INT(410, get(&s, "/events?after=aaaaaaaa.0000000000000002", &r));
    json_t *a = json_loads(r.body.p, 0, NULL);
    CHECK_CONTAINS("cursor expired", json_string_value(json_object_get(a, "error")));
    CHECK_STR("aaaaaaaa.000000000000000a,bbbbbbbb.0000000000000000,cccccccc.0000000000000004",
              json_string_value(json_object_get(a, "oldest")));
    json_decref(a);
    resp_free(&r);
    CHECK_INT(1, srv_metric(&s, "events_stream_expired_total"));
    srv_lake_cleanup(&s, lake);
}

/* Reads from the start, limit events a page, to the end: the events read, the last cursor. */
static size_t read_to_end(fixture *x, size_t limit, char **cur)
{
    size_t total = 0;
    for (int page = 0; page < 10000; page++) {
        lake_stream_res res;
        if (read_after(x, *cur, limit, &res)) test_fail(__FILE__, __LINE__, "read failed");
        total += res.count;
        free(*cur);
        *cur = cursor_text(&res.next);
        size_t n = res.count;
        lake_stream_res_free(&res);
        if (!n || test_failed_now()) break;
    }
    return total;
}

TEST(paging_through_more_files_than_are_kept_mapped)
{
    fixture x;
    REQUIRE_INT(0, fx_open(&x));
    for (uint64_t f = 0; f < 40; f++) write_file(x.dir, "aaaaaaaa", 1 + f * 25, 25, T0, 1000);
    for (uint64_t f = 0; f < 10; f++) write_file(x.dir, "bbbbbbbb", 1 + f * 30, 30, T0, 3000);
    char *cur = NULL;
    size_t total = read_to_end(&x, 33, &cur);
    CHECK_INT(1000 + 300, total);
    CHECK_STR("aaaaaaaa.00000000000003e8,bbbbbbbb.000000000000012c", cur);
    free(cur);
    fx_close(&x);
}

/* An s3 lake (radosgw on loopback): the files are fetched into the cache and read from there. */
TEST(an_s3_lake_is_read_through_the_cache)
{
    REQUIRE_INT(0, s3_start());
    char url[300], err[512], key[LAKE_KEY_MAX];
    snprintf(url, sizeof url, "s3://%s/stream-%d", getenv("EVENTS_S3_BUCKET"), (int)getpid());
    store *s = NULL;
    REQUIRE_INT(0, store_open(url, &s, err, sizeof err));
    static const struct {
        const char *sid;
        uint64_t first, n;
    } files[] = {{"aaaaaaaa", 1, 40}, {"aaaaaaaa", 41, 60}, {"bbbbbbbb", 1, 70}};
    for (size_t i = 0; i < 3; i++) {
        buf b = BUF_INIT;
        file_lines(&b, files[i].sid, files[i].first, files[i].n, T0, 1000);
        lake_stream_key(files[i].sid, files[i].first, key);
        CHECK_INT(0, store_put(s, key, b.p, b.len, 0, err, sizeof err));
        buf_free(&b);
    }
    char *dir = test_tmpdir("stream-cache");
    lake_cache *c = NULL;
    lake_stream *st = NULL;
    REQUIRE_INT(0, lake_cache_open(dir, 0, &c, err, sizeof err));
    REQUIRE_INT(0, lake_stream_open(s, c, &st, err, sizeof err));
    fixture x = {dir, s, st};
    char *cur = NULL;
    size_t total = read_to_end(&x, 30, &cur);
    CHECK_INT(170, total);
    CHECK_STR("aaaaaaaa.0000000000000064,bbbbbbbb.0000000000000046", cur);
    free(cur);
    lake_cache_stats cs;
    lake_cache_stats_get(c, &cs);
    CHECK_INT(3, cs.misses); /* each file fetched once */
    lake_stream_close(st);
    lake_cache_close(c);
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

static long get_as(const srv *s, const char *path, const char *auth, resp *r)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    const char *h[] = {auth, NULL};
    http_do("GET", url, h, NULL, 0, 30000, r);
    return r->status;
}

TEST(get_events_takes_the_query_or_admin_scope)
{
    srv s = {0};
    char *lake = srv_lake_dir("events-auth");
    three_sids(lake);
    char tokens[4096];
    srv_tokens_file(lake,
                    "feeder  feeder-key-0123456789ab  ingest\n"
                    "reader  reader-key-0123456789ab  query\n"
                    "keeper  keeper-key-0123456789ab admin\n",
                    tokens, sizeof tokens);
    const char *args[] = {"--tokens-file", tokens, NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    resp r;
    CHECK_INT(401, get_as(&s, "/events", NULL, &r));
    resp_free(&r);
    CHECK_INT(403, get_as(&s, "/events", "Authorization: Bearer feeder-key-0123456789ab", &r));
    CHECK_CONTAINS("query or admin", r.body.p);
    resp_free(&r);
    CHECK_INT(200, get_as(&s, "/events", "Authorization: Bearer reader-key-0123456789ab", &r));
    resp_free(&r);
    CHECK_INT(200, get_as(&s, "/events", "Authorization: Bearer keeper-key-0123456789ab", &r));
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

/* ---- GET /tail from a position ----------------------------------------------------------- */

/* A raw HTTP/1.0 GET /tail (the body is the stream), with one more header line h (or NULL). */
static int tail_open(const srv *s, const char *query, const char *h)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) return -1;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET /tail%s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s\r\n", query,
                     h ? h : "", h ? "\r\n" : "");
    return write(fd, req, (size_t)n) == n ? fd : -1;
}

/* Reads fd into b until want appears count times (or stop once), the stream ends (*closed), or
 * 20 s pass. */
static int tail_read_or(int fd, buf *b, const char *want, int count, const char *stop, int *closed)
{
    for (int waited = 0; waited < 20000; waited += 20) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 20) > 0) {
            char chunk[65536];
            ssize_t r = read(fd, chunk, sizeof chunk);
            if (r <= 0) {
                *closed = 1;
                break;
            }
            buf_append(b, chunk, (size_t)r);
        }
        int seen = 0;
        for (const char *p = buf_cstr(b); p && (p = strstr(p, want)); p += strlen(want)) seen++;
        if (seen >= count || (stop && strstr(b->p, stop))) return seen;
    }
    int seen = 0;
    for (const char *p = buf_cstr(b); p && (p = strstr(p, want)); p += strlen(want)) seen++;
    return seen;
}

static int tail_read(int fd, buf *b, const char *want, int count, int *closed)
{
    return tail_read_or(fd, b, want, count, NULL, closed);
}

#define END_CURSOR "aaaaaaaa.00000000000005ed,bbbbbbbb.0000000000000258,cccccccc.000000000000002c"

/* How many times needle is in hay. */
static int times_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/*
 * The catch-up reads the lake's files and the server's own segments not sealed yet (x1), then
 * goes live (x2): each event once, x1 from the catch-up, x2 live.
 */
TEST(tail_from_last_event_id_catches_up_then_goes_live_without_a_repeat)
{
    srv s = {0};
    char *lake = srv_lake_dir("tail-after");
    three_sids(lake);
    REQUIRE_INT(0, srv_start(&s, lake, NULL)); /* seals after 30 s: x1 stays in the spool */
    resp r;
    http_ingest(&s, "[{\"type\":\"a.x\",\"id\":\"x1\"}]", &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    int fd = tail_open(&s, "",
                       "Last-Event-ID: aaaaaaaa.00000000000005e0,bbbbbbbb.0000000000000250,"
                       "cccccccc.000000000000002a");
    REQUIRE(fd >= 0);
    buf b = BUF_INIT;
    int closed = 0;
    CHECK_INT(13 + 8 + 2 + 1, tail_read(fd, &b, "\ndata: {", 24, &closed));
    /* the lake's sids read to their ends (the server's own sid sorts anywhere among them) */
    CHECK_CONTAINS("aaaaaaaa.00000000000005ed", b.p);
    CHECK_CONTAINS("bbbbbbbb.0000000000000258", b.p);
    CHECK_CONTAINS("cccccccc.000000000000002c", b.p);
    CHECK_INT(1, times_in(b.p, "{\"id\":\"x1\""));
    http_ingest(&s, "[{\"type\":\"a.x\",\"id\":\"x2\"}]", &r);
    CHECK_INT(200, r.status);
    resp_free(&r);
    CHECK_INT(25, tail_read(fd, &b, "\ndata: {", 25, &closed));
    CHECK_INT(1, times_in(b.p, "{\"id\":\"x1\""));
    CHECK_INT(1, times_in(b.p, "{\"id\":\"x2\""));
    CHECK(!closed);
    close(fd);
    buf_free(&b);
    srv_lake_cleanup(&s, lake);
}

TEST(tail_catch_up_beyond_the_buffer_ends_for_the_client_to_reconnect)
{
    srv s = {0};
    char *lake = srv_lake_dir("tail-more");
    three_sids(lake);
    const char *args[] = {"--tail-buffer", "64KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    size_t total = 0;
    char last[300] = "";
    for (int round = 0; round < 100; round++) {
        char h[400];
        snprintf(h, sizeof h, "Last-Event-ID: %s", last);
        int fd = tail_open(&s, "", h), closed = 0;
        REQUIRE(fd >= 0);
        buf b = BUF_INIT;
        int more = tail_read_or(fd, &b, "event: more", 1, "id: " END_CURSOR "\n", &closed);
        int n = 0;
        for (const char *p = buf_cstr(&b); p && (p = strstr(p, "\ndata: {\"id\"")); p += 8) n++;
        total += (size_t)n;
        const char *id = NULL;
        for (const char *p = b.p; p && (p = strstr(p, "\nid: ")); p += 5) id = p + 5;
        if (id) snprintf(last, sizeof last, "%.*s", (int)strcspn(id, "\n"), id);
        close(fd);
        buf_free(&b);
        if (!more) break;
    }
    CHECK_INT(1517 + 600 + 40, total);
    CHECK_STR(END_CURSOR, last);
    srv_lake_cleanup(&s, lake);
}

TEST(tail_refuses_a_bad_last_event_id)
{
    srv s = {0};
    char *lake = srv_lake_dir("tail-bad");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char url[512];
    snprintf(url, sizeof url, "%s/tail", s.url);
    const char *h[] = {"Last-Event-ID: nope", NULL};
    resp r;
    http_do("GET", url, h, NULL, 0, 10000, &r);
    CHECK_INT(400, r.status);
    CHECK_CONTAINS("bad cursor", r.body.p);
    resp_free(&r);
    snprintf(url, sizeof url, "%s/tail?since=never", s.url);
    http_do("GET", url, NULL, NULL, 0, 10000, &r);
    CHECK_INT(400, r.status);
    resp_free(&r);
    srv_lake_cleanup(&s, lake);
}

/* `events tail --from FROM --format ndjson` against s, its output to path; its pid. */
static pid_t spawn_tail(const srv *s, const char *from, const char *path)
{
    remove(path); /* what it writes only */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
        execl(events_bin(), events_bin(), "tail", "--server", s->url, "--from", from, "--format",
              "ndjson", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Lines in the file at path, waiting up to 20 s for want of them. */
static int lines_within(const char *path, int want)
{
    int n = 0;
    for (int waited = 0; waited < 20000 && n < want; waited += 50) {
        size_t len = 0;
        char *t = test_read_file(path, &len);
        n = 0;
        for (size_t i = 0; t && i < len; i++) n += t[i] == '\n';
        free(t);
        if (n < want) usleep(50000);
    }
    return n;
}

TEST(cli_tail_from_a_cursor_or_a_time_reads_the_stream_in_parts)
{
    srv s = {0};
    char *lake = srv_lake_dir("tail-cli");
    three_sids(lake);
    const char *args[] = {"--tail-buffer", "64KiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char out[4096];
    snprintf(out, sizeof out, "%s.tail", lake);
    pid_t pid = spawn_tail(&s, "", out); /* from the oldest: several parts of 32 KiB */
    CHECK_INT(1517 + 600 + 40, lines_within(out, 1517 + 600 + 40));
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    pid = spawn_tail(
        &s, "aaaaaaaa.00000000000005ec,bbbbbbbb.0000000000000258,cccccccc.000000000000002c", out);
    CHECK_INT(1, lines_within(out, 1));
    char *t = test_read_file(out, NULL);
    CHECK_CONTAINS("\"id\":\"aaaaaaaa-1517\"", t);
    free(t);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    pid = spawn_tail(&s, "2026-11-18T10:00:00Z", out); /* a time: ?since= */
    CHECK(lines_within(out, 1) >= 1);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    remove(out);
    srv_lake_cleanup(&s, lake);
}
