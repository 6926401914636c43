/*
 * test_tail.c - GET /tail (Server-Sent Events) and `events tail` against a
 * real server: patterns, heartbeats, a slow client dropped without holding
 * ingest up, tokens, and the end of the streams at shutdown.
 */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A raw HTTP/1.0 client of /tail (no chunked encoding: the body is the stream). */
typedef struct sse {
    int fd;
    buf in;
} sse;

static int sse_open(sse *c, const srv *s, const char *query, const char *auth, int rcvbuf)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) return -1;
    buf req = BUF_INIT;
    buf_printf(&req, "GET /tail%s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", query ? query : "",
               auth ? "Authorization: Bearer " : "", auth ? auth : "", auth ? "\r\n" : "");
    int rc = req.p && write(c->fd, req.p, req.len) == (ssize_t)req.len ? 0 : -1;
    buf_free(&req);
    return rc;
}

/* Reads for up to ms, or until want appears (count times). Returns 1 if it did. */
static int sse_wait(sse *c, const char *want, int count, int ms)
{
    for (int waited = 0;; waited += 20) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        while (poll(&pf, 1, 0) > 0) { /* whatever has arrived */
            char b[65536];
            ssize_t r = read(c->fd, b, sizeof b);
            if (r <= 0) break;
            buf_append(&c->in, b, (size_t)r);
        }
        int seen = 0;
        for (const char *p = buf_cstr(&c->in); p && (p = strstr(p, want)); p += strlen(want))
            seen++;
        if (seen >= count) return 1;
        if (waited >= ms) return 0;
        poll(&pf, 1, 20);
    }
}

/* Reads until the server closes (or ms). 1 if it closed. */
static int sse_until_closed(sse *c, int ms)
{
    time_t end = time(NULL) + (ms + 999) / 1000;
    while (time(NULL) <= end) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, 20) > 0) {
            char b[65536];
            ssize_t r = read(c->fd, b, sizeof b);
            if (r <= 0) return 1;
            buf_append(&c->in, b, (size_t)r);
        }
    }
    return 0;
}

static void sse_close(sse *c)
{
    close(c->fd);
    buf_free(&c->in);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The value of a counter in /metrics, or -1. */
static long long metric(const srv *s, const char *name)
{
    char url[128], key[128];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    snprintf(key, sizeof key, "\n%s ", name);
    resp r;
    long long v = -1;
    if (!http_do("GET", url, NULL, NULL, 0, 5000, &r) && r.status == 200) {
        const char *p = strstr(r.body.p, key);
        if (p) v = atoll(p + strlen(key));
    }
    resp_free(&r);
    return v;
}

static const char *const FAST_HEARTBEAT[] = {"--tail-heartbeat", "300ms", "--tail-buffer", "64KiB",
                                             NULL};

/* Five events, two of them rpc.call t1 (one stored): each stream gets what its pattern matches. */
static void streams_get_what_their_pattern_matches(srv *s, sse *some, sse *all, sse *q)
{
    resp r;
    CHECK_INT(
        0,
        http_ingest(
            s,
            "[{\"id\":\"t1\",\"type\":\"rpc.call\",\"method\":\"m\"},"
            "{\"id\":\"t2\",\"type\":\"ws.connect\"},"
            "{\"id\":\"t3\",\"type\":\"collection.insert\",\"collection\":\"c\",\"docId\":\"d\"},"
            "{\"id\":\"t4\",\"type\":\"rpc.callback\"},"
            "{\"id\":\"t1\",\"type\":\"rpc.call\",\"method\":\"m\"}]",
            &r));
    CHECK_INT(200, r.status);
    resp_free(&r);
    CHECK(sse_wait(some, "data: ", 2, 3000));
    CHECK(sse_wait(all, "data: ", 4, 3000));
    /* rpc.call and collection.insert, once each (the duplicate t1 was not stored) */
    CHECK_INT(2, count(some->in.p, "data: "));
    CHECK_INT(1, count(some->in.p, "\"id\":\"t1\""));
    CHECK_INT(1, count(some->in.p, "\"id\":\"t3\""));
    CHECK_INT(0, count(some->in.p, "\"id\":\"t2\""));
    CHECK_INT(0, count(some->in.p, "\"id\":\"t4\""));
    CHECK(strstr(some->in.p, "\"id\":\"t1\"") < strstr(some->in.p, "\"id\":\"t3\""));
    CHECK_INT(4, count(all->in.p, "data: "));
    CHECK(sse_wait(q, "data: ", 1, 3000));
    CHECK_INT(1, count(q->in.p, "data: "));
    CHECK_INT(1, count(q->in.p, "\"id\":\"t1\""));
    CHECK_CONTAINS("data: {\"id\":\"t2\",\"type\":\"ws.connect\",\"ts\":", all->in.p);
}

/* A pattern that makes a backtracking matcher take ages on a long type does not hold ingest. */
static void hard_pattern_does_not_hold_ingest(srv *s, sse *hard)
{
    resp r;
    char body[512], type[129];
    memset(type, 'a', 128);
    type[128] = 0;
    snprintf(body, sizeof body, "[{\"id\":\"long\",\"type\":\"%s\"}]", type);
    CHECK_INT(0, http_ingest(s, body, &r)); /* answered: matching did not hold it up */
    CHECK_INT(200, r.status);
    resp_free(&r);
    CHECK(!sse_wait(hard, "data: ", 1, 300));
}

/* A POST to /tail is 405. */
static void tail_refuses_post(const srv *s)
{
    resp r;
    CHECK_INT(0, http_do("POST", "http://127.0.0.1:1/", NULL, NULL, 0, 1, &r) == 0 ? 1 : 0);
    resp_free(&r);
    char url[128];
    snprintf(url, sizeof url, "%s/tail", s->url);
    CHECK_INT(0, http_do("POST", url, NULL, "x", 1, 5000, &r));
    CHECK_INT(405, r.status);
    resp_free(&r);
}

/* `events tail` with its arguments, its output and errors into the file out. */
static pid_t spawn_cli_tail(const char *out, const char *url, const char *arg1, const char *arg2)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(events_bin(), "events", "tail", "--server", url, arg1, arg2, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* What the two commands wrote: NDJSON when piped, and the pretty format without colours. */
static void cli_tail_output(pid_t pid, const char *out, pid_t ppid, const char *pout)
{
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *t = test_read_file(out, NULL);
    CHECK_CONTAINS("{\"id\":\"c1\",\"type\":\"ws.close\"", t);
    CHECK(!strstr(t, "\"c2\""));
    CHECK_CONTAINS("events tail: the server is stopping", t);
    free(t);
    waitpid(ppid, &st, 0);
    t = test_read_file(pout, NULL);
    CHECK_CONTAINS(" ws.close ", t);
    CHECK_CONTAINS("- {\"code\":1000}", t);
    CHECK_CONTAINS(" rpc.call ", t);
    CHECK_CONTAINS("r1 Room.send 12.5 ms", t);
    CHECK(!strstr(t, "\033[")); /* no colours into a file */
    free(t);
}

TEST(tail_filters_by_pattern_and_sends_heartbeats)
{
    char *dir = test_tmpdir("tail");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s;
    memset(&s, 0, sizeof s);
    REQUIRE_INT(0, srv_start(&s, lake, FAST_HEARTBEAT));
    sse some, all, q, hard;
    REQUIRE_INT(0, sse_open(&some, &s, "?type=collection.*,rpc.call", NULL, 0));
    REQUIRE_INT(0, sse_open(&all, &s, NULL, NULL, 0));
    REQUIRE_INT(0, sse_open(&q, &s, "?type=%3Fpc.c*l", NULL, 0)); /* ?pc.c*l */
    REQUIRE_INT(0, sse_open(&hard, &s, "?type=*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", NULL, 0));
    CHECK(sse_wait(&hard, ": tail ", 1, 5000));
    CHECK(sse_wait(&some, ": tail collection.*,rpc.call", 1, 5000));
    CHECK(sse_wait(&all, ": tail *", 1, 5000));
    CHECK_CONTAINS("Content-Type: text/event-stream", some.in.p);
    streams_get_what_their_pattern_matches(&s, &some, &all, &q);
    hard_pattern_does_not_hold_ingest(&s, &hard);
    sse_close(&q);
    sse_close(&hard);
    CHECK(sse_wait(&some, ": heartbeat ", 3, 3000)); /* every 300 ms here */
    tail_refuses_post(&s);

    /* the command line, piped and pretty, both connected (with some and all; the closed ones are
     * gone at the next heartbeat) */
    char out[1300], pout[1300];
    snprintf(out, sizeof out, "%s/tail.out", dir);
    snprintf(pout, sizeof pout, "%s/pretty.out", dir);
    pid_t pid = spawn_cli_tail(out, s.url, "ws.*", NULL);
    pid_t ppid = spawn_cli_tail(pout, s.url, "--format", "pretty");
    for (int i = 0; i < 200 && metric(&s, "events_tail_clients") != 4; i++) usleep(50000);
    CHECK_INT(4, metric(&s, "events_tail_clients"));
    resp r;
    CHECK_INT(
        0,
        http_ingest(
            &s,
            "[{\"id\":\"c1\",\"type\":\"ws.close\",\"code\":1000},{\"id\":\"c2\",\"type\":\"rpc."
            "call\","
            "\"method\":\"send\",\"durationMs\":12.5,\"do\":{\"id\":\"r1\",\"class\":\"Room\"}}]",
            &r));
    resp_free(&r);
    usleep(500000);

    /* at shutdown every stream ends, saying why, and the server exits at once */
    int64_t t0 = time(NULL);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    CHECK(time(NULL) - t0 < 10);
    CHECK(sse_until_closed(&some, 3000));
    CHECK_CONTAINS("event: end\ndata: {\"reason\":\"the server is stopping\"}", some.in.p);
    cli_tail_output(pid, out, ppid, pout);
    sse_close(&some);
    sse_close(&all);
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

/* The events_tail_clients gauge of /metrics, or -1. */
static long tail_clients(const srv *s)
{
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    resp r;
    long v = -1;
    if (http_do("GET", url, NULL, NULL, 0, 0, &r) == 0 && r.status == 200) {
        const char *p = strstr(r.body.p, "\nevents_tail_clients ");
        if (p) v = atol(p + 21);
    }
    resp_free(&r);
    return v;
}

TEST(tail_frees_the_slot_of_a_client_that_goes)
{
    char *dir = test_tmpdir("tail");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s;
    memset(&s, 0, sizeof s);
    /* no heartbeat during the test: only the client's leaving can free its slot */
    const char *args[] = {"--tail-max-clients", "1", "--tail-heartbeat", "1h", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    for (int round = 0; round < 3; round++) {
        sse c;
        REQUIRE_INT(0, sse_open(&c, &s, NULL, NULL, 0));
        CHECK(sse_wait(&c, ": tail *", 1, 5000));
        CHECK_INT(1, tail_clients(&s));
        sse_close(&c);
        long n = -1;
        for (int i = 0; i < 50 && (n = tail_clients(&s)) != 0; i++) usleep(100000); /* 5 s */
        CHECK_INT(0, n);
    }
    /* and the next client gets the slot */
    sse c;
    REQUIRE_INT(0, sse_open(&c, &s, NULL, NULL, 0));
    CHECK(sse_wait(&c, ": tail *", 1, 5000));
    CHECK(!strncmp(c.in.p, "HTTP/1.1 200 OK\r\n", 17));
    sse_close(&c);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    free(dir);
}

TEST(tail_drops_a_slow_client_and_ingest_goes_on)
{
    char *dir = test_tmpdir("tail-slow");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s;
    memset(&s, 0, sizeof s);
    const char *const args[] = {"--tail-buffer", "1MiB", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    sse slow, fast;
    REQUIRE_INT(0, sse_open(&slow, &s, NULL, NULL, 4096));
    REQUIRE_INT(0, sse_open(&fast, &s, NULL, NULL, 0));
    CHECK(sse_wait(&fast, ": tail *", 1, 5000));
    /* the slow client reads nothing while 6,000 events (~13 MB, more than the kernel buffers
     * between it and the server hold) are ingested */
    buf body = BUF_INIT;
    int ok = 0;
    for (int b = 0; b < 60; b++) {
        body.len = 0;
        buf_putc(&body, '[');
        for (int i = 0; i < 100; i++)
            buf_printf(&body, "%s{\"id\":\"s%d-%d\",\"type\":\"custom.load\",\"pad\":\"%02000d\"}",
                       i ? "," : "", b, i, i);
        buf_putc(&body, ']');
        resp r;
        if (!http_ingest(&s, buf_cstr(&body), &r) && r.status == 200) ok++;
        resp_free(&r);
        /* the fast client keeps up: it has this request's events before the next one (the
         * tail thread delivers them after the answer) */
        char last[32];
        snprintf(last, sizeof last, "\"id\":\"s%d-99\"", b);
        if (!sse_wait(&fast, last, 1, 10000)) {
            test_fail(__FILE__, __LINE__, "the fast client did not get %s", last);
            break;
        }
    }
    buf_free(&body);
    CHECK_INT(60, ok);
    CHECK(ok == 60 && sse_wait(&fast, "data: ", 6000, 10000));
    /* the slow one was dropped: when it reads at last, its stream says so and ends */
    CHECK(sse_until_closed(&slow, 10000));
    CHECK_CONTAINS(
        "event: dropped\ndata: {\"error\":\"this client fell more than 1048576 bytes behind",
        slow.in.p);
    CHECK(count(slow.in.p, "data: {\"id\"") < 6000);
    /* every message it got is whole: the drop never cuts one */
    int torn = 0;
    for (const char *l = strstr(slow.in.p, "\r\n\r\n"); l && *l;) {
        const char *nl = strchr(l, '\n');
        if (!nl) break;
        if (!strncmp(l, "data: {", 7) && nl[-1] != '}') torn++;
        l = nl + 1;
    }
    CHECK_INT(0, torn);
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", s.url);
    resp r;
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 5000, &r));
    CHECK_CONTAINS("events_tail_dropped_total 1\n", r.body.p);
    CHECK_CONTAINS("events_tail_clients 1\n", r.body.p);
    resp_free(&r);
    sse_close(&slow);
    sse_close(&fast);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

TEST(tail_refuses_too_many_or_too_long_patterns)
{
    char *dir = test_tmpdir("tail-limits");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    const char *const args[] = {"--tail-max-patterns", "3", "--tail-max-pattern-bytes", "16", NULL};
    srv s;
    memset(&s, 0, sizeof s);
    REQUIRE_INT(0, srv_start(&s, lake, args));
    char url[256];
    resp r;
    snprintf(url, sizeof url, "%s/tail?type=a.*,b.*,c.*,d.*", s.url);
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 5000, &r));
    CHECK_INT(400, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"type: 4 patterns, more than the 3 this server takes "
              "(--tail-max-patterns)\"}\n",
              r.body.p);
    resp_free(&r);
    snprintf(url, sizeof url, "%s/tail?type=rpc.*,collection.update.x", s.url);
    CHECK_INT(0, http_do("GET", url, NULL, NULL, 0, 5000, &r));
    CHECK_INT(400, r.status);
    CHECK_STR("{\"ok\":false,\"error\":\"type: a pattern of 19 bytes is longer than the 16 this "
              "server takes (--tail-max-pattern-bytes)\"}\n",
              r.body.p);
    resp_free(&r);
    /* empty patterns do not count; three of 16 bytes are fine */
    sse ok;
    REQUIRE_INT(0, sse_open(&ok, &s, "?type=,aaaaaaaaaaaaaa.*,,b.*,c.*,", NULL, 0));
    CHECK(sse_wait(&ok, ": tail ,aaaaaaaaaaaaaa.*,,b.*,c.*,", 1, 5000));
    CHECK_CONTAINS("200 OK", ok.in.p);
    sse_close(&ok);
    CHECK_INT(2, metric(&s, "events_tail_refused_total"));
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

TEST(tail_patterns_match_as_fnmatch_does)
{
    char *dir = test_tmpdir("tail-glob");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s;
    memset(&s, 0, sizeof s);
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    uint64_t rng = 11;
#define RND() ((unsigned)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33))
    /* types of a small alphabet, so that patterns of it often match */
    enum { NTYPES = 120, NCLIENTS = 24 };
    char types[NTYPES][24];
    for (int i = 0; i < NTYPES; i++) {
        int n = 1 + (int)(RND() % 12), k = 0;
        for (int j = 0; j < n; j++) {
            char c = "abab_."[RND() % 6];
            if (c == '.' && (k == 0 || types[i][k - 1] == '.')) c = 'a';
            types[i][k++] = c;
        }
        if (types[i][k - 1] == '.') types[i][k - 1] = 'b';
        types[i][k] = 0;
    }
    char pats[NCLIENTS][3][24];
    int npats[NCLIENTS];
    sse c[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        npats[i] = 1 + (int)(RND() % 3);
        char q[128] = "?type=";
        for (int p = 0; p < npats[i]; p++) {
            int n = 1 + (int)(RND() % 10);
            for (int j = 0; j < n; j++) pats[i][p][j] = "ab.*?*_"[RND() % 7];
            pats[i][p][n] = 0;
            for (int j = 0; j < n; j++) /* %3F for '?' in the query string */
                snprintf(q + strlen(q), sizeof q - strlen(q), pats[i][p][j] == '?' ? "%%3F" : "%c",
                         pats[i][p][j]);
            if (p + 1 < npats[i]) strcat(q, ",");
        }
        REQUIRE_INT(0, sse_open(&c[i], &s, q, NULL, 0));
    }
    for (int i = 0; i < NCLIENTS; i++) CHECK(sse_wait(&c[i], ": tail ", 1, 5000));
    buf body = BUF_INIT;
    buf_putc(&body, '[');
    for (int i = 0; i < NTYPES; i++)
        buf_printf(&body, "%s{\"id\":\"g%03d\",\"type\":\"%s\"}", i ? "," : "", i, types[i]);
    buf_putc(&body, ']');
    resp r;
    CHECK_INT(0, http_ingest(&s, buf_cstr(&body), &r));
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"accepted\":120", r.body.p);
    resp_free(&r);
    buf_free(&body);
    /* a last event every client takes, so that each stream is known to be complete */
    CHECK_INT(0, http_ingest(&s,
                             "[{\"id\":\"zz-end\",\"type\":\"a\"},{\"id\":\"zz-end2\","
                             "\"type\":\"b\"},{\"id\":\"zz-end3\",\"type\":\"_\"}]",
                             &r));
    resp_free(&r);
    int wrong = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        int want_end = 0;
        for (int p = 0; p < npats[i]; p++)
            want_end += !fnmatch(pats[i][p], "a", 0) || !fnmatch(pats[i][p], "b", 0) ||
                        !fnmatch(pats[i][p], "_", 0);
        if (want_end) sse_wait(&c[i], "\"id\":\"zz-end", 1, 5000);
    }
    usleep(300000); /* for the clients that take none of the last events */
    for (int i = 0; i < NCLIENTS; i++) {
        sse_wait(&c[i], "never", 1, 0);
        for (int t = 0; t < NTYPES; t++) {
            int want = 0;
            for (int p = 0; p < npats[i]; p++) want |= !fnmatch(pats[i][p], types[t], 0);
            char id[32];
            snprintf(id, sizeof id, "\"id\":\"g%03d\"", t);
            int got = count(c[i].in.p, id);
            if (got != want && wrong++ < 10)
                test_fail(__FILE__, __LINE__,
                          "patterns %s,%s,%s (%d) and type %s: expected %d, got %d", pats[i][0],
                          npats[i] > 1 ? pats[i][1] : "", npats[i] > 2 ? pats[i][2] : "", npats[i],
                          types[t], want, got);
        }
        sse_close(&c[i]);
    }
#undef RND
    CHECK_INT(0, wrong);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

/*
 * Subscribers whose patterns are slow to match, and events of types never
 * seen before (each costs a match against every pattern): the tail thread
 * falls behind, ingest does not wait for it, and what does not fit in the
 * tail queue is counted and announced in the streams, where the gap is.
 */
TEST(tail_queue_full_loses_events_for_tails_not_for_ingest)
{
    char *dir = test_tmpdir("tail-queue");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    const char *const args[] = {
        "--tail-queue", "64KiB", "--tail-max-patterns", "32", "--tail-max-pattern-bytes",
        "1024",         NULL};
    srv s;
    memset(&s, 0, sizeof s);
    REQUIRE_INT(0, srv_start(&s, lake, args));
    /* 30 patterns of 1,000 bytes, none matching: every new type costs 30 passes over it */
    buf q = BUF_INIT;
    buf_puts(&q, "?type=");
    for (int p = 0; p < 30; p++) {
        if (p) buf_putc(&q, ',');
        for (int i = 0; i < 999; i++) buf_putc(&q, i % 2 ? 'a' : '*');
        buf_putc(&q, 'z');
    }
    enum { HOSTILE = 8 };
    sse hostile[HOSTILE], all;
    for (int i = 0; i < HOSTILE; i++)
        REQUIRE_INT(0, sse_open(&hostile[i], &s, buf_cstr(&q), NULL, 0));
    buf_free(&q);
    REQUIRE_INT(0, sse_open(&all, &s, NULL, NULL, 0));
    for (int i = 0; i < HOSTILE; i++) CHECK(sse_wait(&hostile[i], ": tail ", 1, 5000));
    CHECK(sse_wait(&all, ": tail *", 1, 5000));
    /* requests of 500 events of new 120-byte types, until the tail queue overflows */
    buf body = BUF_INIT;
    int sent = 0, requests = 0;
    long long lost = 0;
    int64_t give_up = time(NULL) + 60;
    for (; requests < 40 && lost <= 0 && time(NULL) < give_up; requests++) {
        body.len = 0;
        buf_putc(&body, '[');
        for (int i = 0; i < 500; i++) {
            buf_printf(&body, "%s{\"id\":\"q%d-%d\",\"type\":\"t%05d.", i ? "," : "", requests, i,
                       sent + i);
            for (int k = 0; k < 110; k++) buf_putc(&body, 'a');
            buf_puts(&body, "\"}");
        }
        buf_putc(&body, ']');
        resp r;
        CHECK_INT(0, http_ingest(&s, buf_cstr(&body), &r));
        CHECK_INT(200, r.status);
        resp_free(&r);
        sent += 500;
        lost = metric(&s, "events_tail_lost_total");
    }
    buf_free(&body);
    CHECK(lost > 0);
    /* the tail thread catches up: every event was delivered or counted as lost */
    for (int i = 0; i < 600 && metric(&s, "events_tail_queue_bytes") != 0; i++) usleep(100000);
    lost = metric(&s, "events_tail_lost_total");
    CHECK(sse_wait(&all, "\"id\":\"never\"", 1, 500) == 0);
    int delivered = count(all.in.p, "data: {\"id\":\"q");
    long long announced = 0;
    for (const char *p = all.in.p; (p = strstr(p, "event: lost\ndata: {\"events\":")); p++)
        announced += atoll(p + strlen("event: lost\ndata: {\"events\":"));
    fprintf(stderr, "  %d events in %d requests: %d delivered, %lld lost\n", sent, requests,
            delivered, lost);
    CHECK_INT(sent, delivered + lost);
    CHECK_INT(lost, announced);
    CHECK_CONTAINS("events were not sent here\"}", all.in.p);
    for (int i = 0; i < HOSTILE; i++) {
        CHECK_INT(0, count(hostile[i].in.p, "data: {"));
        sse_close(&hostile[i]);
    }
    sse_close(&all);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

TEST(tail_needs_a_query_token)
{
    char *dir = test_tmpdir("tail-auth");
    char lake[1200], tokens[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    fputs("reader rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr query\nwriter wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww "
          "ingest\n",
          f);
    fclose(f);
    const char *const args[] = {"--tokens-file", tokens, "--tail-max-clients", "1", NULL};
    srv s;
    memset(&s, 0, sizeof s);
    REQUIRE_INT(0, srv_start(&s, lake, args));
    sse c;
    REQUIRE_INT(0, sse_open(&c, &s, NULL, NULL, 0));
    CHECK(sse_until_closed(&c, 5000));
    CHECK_CONTAINS("401", c.in.p);
    CHECK_CONTAINS("missing bearer token", c.in.p);
    sse_close(&c);
    REQUIRE_INT(0, sse_open(&c, &s, NULL, "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww", 0));
    CHECK(sse_until_closed(&c, 5000));
    CHECK_CONTAINS("403", c.in.p);
    sse_close(&c);
    REQUIRE_INT(0, sse_open(&c, &s, "?token=rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr", NULL, 0));
    CHECK(sse_wait(&c, ": tail *", 1, 5000));
    CHECK_CONTAINS("200 OK", c.in.p);
    /* one stream at most here: a second is refused while the first is open */
    sse second;
    REQUIRE_INT(0, sse_open(&second, &s, "?token=rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr", NULL, 0));
    CHECK(sse_until_closed(&second, 5000));
    CHECK_CONTAINS("503", second.in.p);
    CHECK_CONTAINS("1 live tails are open", second.in.p);
    sse_close(&second);
    sse_close(&c);
    REQUIRE_INT(0, sse_open(&c, &s, "?token=wrong", NULL, 0));
    CHECK(sse_until_closed(&c, 5000));
    CHECK_CONTAINS("invalid bearer token", c.in.p);
    sse_close(&c);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    free(dir);
}

/* Runs `events ARGS` (a shell fragment); returns its exit status and its output in *out. */
static int ev(char **out, const char *dir, const char *args)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/cli.out", dir);
    int rc = sh("'%s' %s > '%s' 2>&1", events_bin(), args, path);
    *out = test_read_file(path, NULL);
    return rc;
}

TEST(tail_demo_compact_serve_refuse_bad_input)
{
    char *dir = test_tmpdir("cli-bad");
    char *o = NULL, args[1400];
    CHECK_INT(2, ev(&o, dir, "tail --format fancy"));
    CHECK_CONTAINS("--format must be pretty or ndjson, not \"fancy\"", o);
    free(o);
    CHECK_INT(2, ev(&o, dir, "tail 'rpc.*' 'ws.*'"));
    CHECK_CONTAINS("one PATTERN at most", o);
    free(o);
    CHECK_INT(1, ev(&o, dir, "tail --server http://127.0.0.1:1"));
    CHECK_CONTAINS("events tail: http://127.0.0.1:1/tail:", o);
    free(o);
    CHECK_INT(2, ev(&o, dir, "demo --rooms 0"));
    CHECK_CONTAINS("--rooms 1 to 64", o);
    free(o);
    CHECK_INT(2, ev(&o, dir, "demo extra"));
    CHECK_CONTAINS("unexpected argument \"extra\"", o);
    free(o);
    snprintf(args, sizeof args, "compact --lake '%s/lake' --lease 10ms", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--lease at least 1s", o);
    free(o);
    snprintf(args, sizeof args, "compact --lake '%s/lake' --memory 64MiB", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--memory must be at least 128MiB", o);
    free(o);
    snprintf(args, sizeof args, "compact --lake '%s/lake' --chunk 1k", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--chunk at least 1MiB", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --compact-memory 100MiB", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--compact-memory must be at least 128MiB", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --compact-chunk 512k", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--compact-chunk at least 1MiB", o);
    free(o);
    CHECK_INT(1, ev(&o, dir, "compact --lake 's3://'"));
    CHECK_CONTAINS("expected s3://bucket", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --tail-buffer 1k", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--tail-buffer must be at least 4KiB", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --tail-max-clients 0", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--tail-max-clients must be between 1 and 100000", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --tail-max-pattern-bytes 2000", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--tail-max-pattern-bytes between 1 and 1024", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --snapshot-downloads 0", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--snapshot-downloads must be between 1 and 100000", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --tail-queue 1k", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--tail-queue must be at least 64KiB", o);
    free(o);
    snprintf(args, sizeof args, "serve --lake '%s/lake' --compact-retain 5s", dir);
    CHECK_INT(2, ev(&o, dir, args));
    CHECK_CONTAINS("--compact-retain must be at least --query-timeout", o);
    free(o);
    test_rmtree(dir);
    free(dir);
}
