/*
 * test_stream.c - stream positions and the stream log (issue 16), through a real server.
 *
 * Every stored event's line ends with its position "{sid}.{seq:016x}": seqs
 * go up by one per stored event, across requests, concurrent groups and
 * restarts, and skip nothing for duplicates or refused records; a client may
 * not send a member of the reserved prefix. The stream log (stream/{sid}/)
 * holds exactly the stored lines in seq order, also after a crash that cut
 * the spool's stream segment short. The writer's list of the stream
 * segments in its spool is checked on a writer of its own, and the stream
 * log's retention (--stream-retain) on a lake of its own and through a server.
 */
#include "harness.h"
#include "layout.h"
#include "retain.h"
#include "test.h"
#include "writer.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* The lines under lake/sub, each with its seq (0: no position), sorted by seq; *n of them. */
typedef struct posline {
    uint64_t seq;
    char sid[LAKE_SID_LEN + 1];
    char *line;
} posline;

static int posline_cmp(const void *a, const void *b)
{
    const posline *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static posline *lines_under(const char *lake, const char *sub, size_t *n)
{
    buf all = BUF_INIT;
    lake_read_under(lake, sub, &all, NULL);
    posline *v = NULL;
    *n = 0;
    for (const char *p = all.p, *nl; p && (nl = strchr(p, '\n')); p = nl + 1) {
        v = realloc(v, (*n + 1) * sizeof *v);
        posline *l = &v[(*n)++];
        l->line = strndup(p, (size_t)(nl + 1 - p));
        if (lake_pos_parse(p, (size_t)(nl + 1 - p), l->sid, &l->seq)) l->seq = 0;
    }
    if (*n) qsort(v, *n, sizeof *v, posline_cmp);
    buf_free(&all);
    return v;
}

static void poslines_free(posline *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].line);
    free(v);
}

/* The id of a stored line. */
static char *id_of(const char *line)
{
    json_t *v = json_loads(line, 0, NULL);
    const char *id = json_string_value(json_object_get(v, "id"));
    char *r = strdup(id ? id : "");
    json_decref(v);
    return r;
}

static void read_sid(const char *lake, char sid[LAKE_SID_LEN + 1])
{
    char path[1200];
    size_t n;
    snprintf(path, sizeof path, "%s/.spool/stream-id", lake);
    char *t = test_read_file(path, &n);
    snprintf(sid, LAKE_SID_LEN + 1, "%s", t ? t : "");
    free(t);
}

/* Posts body to /ingest; the answer's status and body. */
static long post(const srv *s, const char *body, char *answer, size_t cap)
{
    resp r;
    http_ingest(s, body, &r);
    long st = r.status;
    if (answer) snprintf(answer, cap, "%s", r.body.p ? r.body.p : "");
    resp_free(&r);
    return st;
}

/*
 * The lines under lake/events, by seq: there must be want of them, each with a position of the
 * spool's sid, seqs 1..want with no gap and no repeat. *n of them (free with poslines_free).
 */
static posline *stored(const char *lake, size_t want, size_t *n)
{
    char sid[LAKE_SID_LEN + 1];
    read_sid(lake, sid);
    CHECK(lake_sid_valid(sid));
    posline *v = lines_under(lake, "events", n);
    CHECK_INT(want, *n);
    for (size_t i = 0; i < *n && !test_failed_now(); i++) {
        CHECK_STR(sid, v[i].sid);
        CHECK_INT(i + 1, v[i].seq);
        if (test_failed_now()) fprintf(stderr, "  line %zu: %s", i, v[i].line);
    }
    return v;
}

typedef struct poster {
    const srv *s;
    int id, failed;
} poster;

static void *post_main(void *arg)
{
    poster *p = arg;
    for (int k = 0; k < 20; k++) {
        char body[2048];
        int o = snprintf(body, sizeof body, "[");
        for (int i = 0; i < 10; i++)
            o += snprintf(body + o, sizeof body - (size_t)o,
                          "%s{\"type\":\"t\",\"id\":\"p%d-%d-%d\"}", i ? "," : "", p->id, k, i);
        snprintf(body + o, sizeof body - (size_t)o, "]");
        if (post(p->s, body, NULL, 0) != 200) p->failed++;
    }
    return NULL;
}

TEST(test_stream_numbers_every_stored_event_once_across_requests_and_groups)
{
    char *lake = srv_lake_dir("stream-seq");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    poster p[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (poster){&s, i, 0};
        pthread_create(&th[i], NULL, post_main, &p[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK_INT(0, p[i].failed);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    size_t n;
    posline *v = stored(lake, 800, &n);
    poslines_free(v, n);
    srv_lake_cleanup(&s, lake);
}

TEST(test_stream_gives_a_duplicate_no_seq)
{
    char *lake = srv_lake_dir("stream-dup");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char a[4096];
    CHECK_INT(200, post(&s, "[{\"type\":\"t\",\"id\":\"a1\"},{\"type\":\"t\",\"id\":\"a2\"}]", a,
                        sizeof a));
    CHECK_INT(200, post(&s, "[{\"type\":\"t\",\"id\":\"a2\"},{\"type\":\"t\",\"id\":\"a3\"}]", a,
                        sizeof a));
    CHECK_CONTAINS("\"accepted\":1,\"duplicates\":1", a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    size_t n;
    posline *v = stored(lake, 3, &n);
    REQUIRE_INT(3, n);
    const char *want[] = {"a1", "a2", "a3"};
    for (size_t i = 0; i < n; i++) {
        char *id = id_of(v[i].line);
        CHECK_STR(want[i], id);
        free(id);
    }
    poslines_free(v, n);
    srv_lake_cleanup(&s, lake);
}

TEST(test_stream_gives_a_refused_record_no_position)
{
    char *lake = srv_lake_dir("stream-quarantine");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    CHECK_INT(200, post(&s, "[{\"id\":\"untyped\"},{\"type\":\"t\",\"id\":\"ok1\"}]", NULL, 0));
    CHECK_INT(200, post(&s, "[{\"type\":\"t\",\"id\":\"ok2\"}]", NULL, 0));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    size_t n, nq;
    posline *q = lines_under(lake, "rejected", &nq);
    REQUIRE_INT(1, nq);
    CHECK(!strstr(q[0].line, "_events_pos"));
    poslines_free(q, nq);
    posline *v = stored(lake, 2, &n);
    poslines_free(v, n);
    srv_lake_cleanup(&s, lake);
}

TEST(test_stream_refuses_a_member_of_the_reserved_prefix)
{
    char *lake = srv_lake_dir("stream-reserved");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    char a[4096];
    CHECK_INT(200, post(&s,
                        "[{\"type\":\"t\",\"_events_pos\":\"abcdefgh.0000000000000001\"},"
                        "{\"type\":\"t\",\"_events_x\":1},"
                        "{\"type\":\"t\",\"data\":{\"_events_pos\":1}}]",
                        a, sizeof a));
    CHECK_CONTAINS("\"accepted\":1", a);
    CHECK_CONTAINS("{\"index\":0,\"error\":\"member \\\"_events_pos\\\": the prefix "
                   "\\\"_events_\\\" is reserved for members the server adds\"}",
                   a);
    CHECK_CONTAINS("{\"index\":1,\"error\":\"member \\\"_events_x\\\"", a);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    size_t nq;
    posline *q = lines_under(lake, "rejected", &nq);
    REQUIRE_INT(2, nq);
    CHECK_CONTAINS("\"class\":\"reserved\"", q[0].line);
    poslines_free(q, nq);
    srv_lake_cleanup(&s, lake);
}

/* Posts n events of ids {tag}-0.. and expects them all accepted. */
static void post_n(const srv *s, const char *tag, int n)
{
    char body[4096];
    int o = snprintf(body, sizeof body, "[");
    for (int i = 0; i < n; i++)
        o += snprintf(body + o, sizeof body - (size_t)o, "%s{\"type\":\"t\",\"id\":\"%s-%d\"}",
                      i ? "," : "", tag, i);
    snprintf(body + o, sizeof body - (size_t)o, "]");
    CHECK_INT(200, post(s, body, NULL, 0));
}

TEST(test_stream_numbering_goes_on_after_sigterm_and_sigkill)
{
    char *lake = srv_lake_dir("stream-restart");
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    post_n(&s, "a", 5);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    post_n(&s, "b", 5);
    srv_stop(&s, SIGKILL);
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    post_n(&s, "c", 5);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    size_t n;
    posline *v = stored(lake, 15, &n);
    for (size_t i = 0; i < n; i++) {
        char *id = id_of(v[i].line);
        CHECK(id[0] == "abc"[i / 5]);
        free(id);
    }
    poslines_free(v, n);
    char why[1024] = "";
    CHECK_INT(0, lake_stream_check(lake, why, sizeof why));
    if (why[0]) fprintf(stderr, "  %s\n", why);
    srv_lake_cleanup(&s, lake);
}

TEST(test_stream_log_holds_the_stored_lines_in_seq_order)
{
    char *lake = srv_lake_dir("stream-log");
    srv s = {0};
    const char *args[] = {"--seal-age", "200ms", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    for (int k = 0; k < 6; k++) {
        char tag[8];
        snprintf(tag, sizeof tag, "r%d", k);
        post_n(&s, tag, 7);
        if (k == 2) usleep(500000); /* a seal in between: more than one stream file */
    }
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char why[1024] = "";
    CHECK_INT(0, lake_stream_check(lake, why, sizeof why));
    if (why[0]) fprintf(stderr, "  %s\n", why);
    int files;
    buf b = BUF_INIT;
    lake_read_under(lake, "stream", &b, &files);
    CHECK(files >= 2);
    buf_free(&b);
    srv_lake_cleanup(&s, lake);
}

TEST(test_stream_log_is_rebuilt_after_a_crash_cut_it_short)
{
    char *lake = srv_lake_dir("stream-rebuild");
    srv s = {0};
    const char *args[] = {"--seal-age", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    post_n(&s, "a", 10);
    post_n(&s, "b", 10);
    post_n(&s, "c", 10);
    srv_stop(&s, SIGKILL);
    /* what a power loss can leave: the unsynced stream segment short, its last line torn */
    CHECK_INT(0, sh("f=$(ls %s/.spool/stream-*.jsonl) && test $(echo \"$f\" | wc -l) = 1 && "
                    "truncate -s -700 \"$f\"",
                    lake));
    REQUIRE_INT(0, srv_start(&s, lake, args));
    post_n(&s, "d", 10);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    char why[1024] = "";
    CHECK_INT(0, lake_stream_check(lake, why, sizeof why));
    if (why[0]) fprintf(stderr, "  %s\n", why);
    size_t n;
    posline *v = lines_under(lake, "stream", &n);
    CHECK_INT(40, n);
    poslines_free(v, n);
    srv_lake_cleanup(&s, lake);
}

/* ---- the writer's list of its stream segments ----------------------------------------- */

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int done_flag; /* set by on_done under done_mu, cleared by the test before a submit */

static void on_done(lake_batch *b, void *ud)
{
    (void)b;
    (void)ud;
    pthread_mutex_lock(&done_mu);
    done_flag = 1;
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
}

TEST(test_stream_writer_lists_its_stream_segments_for_readers)
{
    char *dir = test_tmpdir("stream-writer"), spool[1200], err[512];
    snprintf(spool, sizeof spool, "%s/.spool", dir);
    store *st;
    REQUIRE_INT(0, store_open(dir, &st, err, sizeof err));
    lake_writer_config c = {.spool_dir = spool, .store = st, .seal_age_ms = 3600000};
    lake_writer *w;
    REQUIRE_INT(0, lake_writer_open(&c, &w, err, sizeof err));
    char lines[256];
    const char *one = "{\"id\":\"x\",\"type\":\"t\"" LAKE_POS_PLACEHOLDER "\n";
    size_t len = strlen(one);
    snprintf(lines, sizeof lines, "%s%s", one, one);
    lake_event ev[2] = {{.off = 0, .len = (uint32_t)len, .hour = 493000},
                        {.off = (uint32_t)len, .len = (uint32_t)len, .hour = 493000}};
    lake_batch b = {.lines = lines, .ev = ev, .n = 2, .done = on_done};
    done_flag = 0;
    lake_writer_submit(w, &b);
    pthread_mutex_lock(&done_mu);
    while (!done_flag) pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);
    REQUIRE_INT(0, b.status);
    char want[64];
    snprintf(want, sizeof want, "\"_events_pos\":\"%s.0000000000000002\"}\n", lake_writer_sid(w));
    CHECK_CONTAINS(want, lines + len);
    lake_writer_stream_seg *v;
    size_t n;
    REQUIRE_INT(0, lake_writer_stream_segments(w, &v, &n, err, sizeof err));
    REQUIRE_INT(1, n);
    CHECK_INT(1, v[0].first);
    CHECK_INT(2, v[0].last);
    CHECK_INT(2 * len, v[0].bytes);
    CHECK_INT(1, v[0].open);
    size_t flen;
    char *t = test_read_file(v[0].path, &flen);
    CHECK(t && flen == 2 * len && !memcmp(t, lines, flen));
    free(t);
    free(v);
    lake_writer_flush(w); /* sealed and moved: the open one starts at 3 */
    REQUIRE_INT(0, lake_writer_stream_segments(w, &v, &n, err, sizeof err));
    REQUIRE_INT(1, n);
    CHECK_INT(3, v[0].first);
    CHECK_INT(2, v[0].last);
    CHECK_INT(0, v[0].bytes);
    free(v);
    lake_writer_close(w);
    store_close(st);
    test_rmtree(dir);
    free(dir);
}

/* ---- retention ------------------------------------------------------------------------ */

TEST(test_stream_expire_deletes_the_files_last_written_before_the_retention)
{
    char *dir = test_tmpdir("stream-expire");
    /* two sids; a.., b.. last written at 2026-11-25 10:00, c.. at 12:00 (UTC) */
    CHECK_INT(0, sh("cd %s && mkdir -p stream/aaaaaaaa stream/bbbbbbbb events && "
                    "echo x > stream/aaaaaaaa/0000000000000001.jsonl && "
                    "echo x > stream/aaaaaaaa/0000000000000009.jsonl && "
                    "echo x > stream/bbbbbbbb/0000000000000001.jsonl && echo x > events/e.jsonl && "
                    "touch -d '2026-11-25T10:00:00Z' stream/aaaaaaaa/0000000000000001.jsonl "
                    "stream/bbbbbbbb/0000000000000001.jsonl events/e.jsonl && "
                    "touch -d '2026-11-25T12:00:00Z' stream/aaaaaaaa/0000000000000009.jsonl",
                    dir));
    store *s;
    char err[512];
    REQUIRE_INT(0, store_open(dir, &s, err, sizeof err));
    int64_t now = INT64_C(1795600800000) + 3 * 3600000; /* 13:00; the retention 2 h: 11:00 */
    uint64_t files = 0;
    CHECK_INT(0, lake_stream_expire(s, now, 2 * 3600000, &files, NULL, err, sizeof err));
    CHECK_INT(2, files);
    CHECK_INT(0, sh("cd %s && test ! -e stream/bbbbbbbb && test -e events/e.jsonl && "
                    "test \"$(ls stream/aaaaaaaa)\" = 0000000000000009.jsonl",
                    dir));
    store_close(s);
    test_rmtree(dir);
    free(dir);
}

TEST(test_stream_retain_flag_expires_old_stream_files)
{
    char *lake = srv_lake_dir("stream-retain");
    srv s = {0};
    const char *args[] = {"--seal-age", "100ms", "--stream-retain", "1s", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    CHECK_INT(0, srv_metric(&s, "events_stream_expired_files_total"));
    post_n(&s, "old", 3);
    long long n = 0;
    for (int i = 0; i < 300 && n < 1; i++) { /* sealed, then expired: at most 30 s */
        usleep(100000);
        n = srv_metric(&s, "events_stream_expired_files_total");
    }
    CHECK_INT(1, n);
    CHECK_INT(3, srv_metric(&s, "events_stream_seq"));
    CHECK_INT(1, srv_metric(&s, "events_stream_files_sealed_total"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    CHECK_INT(0, sh("test -z \"$(find %s/stream -type f 2>/dev/null)\"", lake));
    size_t k;
    posline *v = lines_under(lake, "events", &k); /* events are not touched */
    CHECK_INT(3, k);
    poslines_free(v, k);
    srv_lake_cleanup(&s, lake);
}
