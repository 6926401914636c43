/*
 * test_lane.c - the ingest lane (server_lane.c): what it takes, what it hands
 * to libmicrohttpd, and that a client cannot tell the two apart.
 *
 * The requests here are written on raw sockets, byte for byte, because what
 * the lane takes depends on the bytes: their headers, whether they have
 * arrived whole, what follows them on the connection.
 */
#include "harness.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int connect_to(const srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int send_all(int fd, const char *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Bytes read from a connection past the answer read_answer returned, by descriptor. */
static buf unread[1024];

/* Closes fd and forgets what was read from it. */
static void hang_up(int fd)
{
    if (fd < 0) return;
    if (fd < 1024) {
        buf_free(&unread[fd]);
        unread[fd] = (buf)BUF_INIT;
    }
    close(fd);
}

/*
 * The next answer from fd, within 10 s: its head without the Date line (which
 * differs from second to second) in out, then its body. Bytes of the answers
 * after it are kept for the next call. Returns the status, 0 if the
 * connection closed or timed out first.
 */
static int read_answer(int fd, buf *out)
{
    buf *in = &unread[fd];
    out->len = 0;
    buf_cstr(out);
    int status = 0;
    for (int waited = 0; waited < 10000;) {
        const char *end = in->len ? strstr(buf_cstr(in), "\r\n\r\n") : NULL;
        if (end) {
            const char *cl = strcasestr(in->p, "\r\nContent-Length: ");
            size_t head = (size_t)(end + 4 - in->p);
            size_t body = cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0;
            if (in->len >= head + body) {
                for (const char *p = in->p; p < end + 2;) {
                    const char *eol = strstr(p, "\r\n");
                    if (strncmp(p, "Date: ", 6)) buf_append(out, p, (size_t)(eol + 2 - p));
                    p = eol + 2;
                }
                buf_puts(out, "\r\n");
                buf_append(out, in->p + head, body);
                buf_cstr(out);
                status = atoi(in->p + 9);
                memmove(in->p, in->p + head + body, in->len - head - body);
                in->len -= head + body;
                break;
            }
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) {
            waited += 50;
            continue;
        }
        char b[4096];
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n <= 0) break;
        buf_append(in, b, (size_t)n);
    }
    return status;
}

/* A POST of body to path with the given header lines (each ending in CRLF). */
static void post(buf *out, const char *path, const char *headers, const char *body)
{
    buf_printf(out, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n%s", path,
               headers, strlen(body), body);
}

static json_t *lake_events(const char *lake)
{
    buf all = BUF_INIT;
    int files = 0;
    lake_read_all(lake, &all, &files);
    json_t *arr = json_array();
    char *save = NULL;
    for (char *line = strtok_r(all.p, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *e = json_loads(line, 0, NULL);
        if (e) json_array_append_new(arr, e);
    }
    buf_free(&all);
    return arr;
}

/* 1 if the lake holds an event with this id. */
static int lake_has(json_t *events, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "id")) ?: "", id)) return 1;
    }
    return 0;
}

#define TOKENS                                                                                     \
    "shipper ingest-token-0123456789 ingest\nreader query-token-01234567890 query\n"               \
    "operator admin-token-012345678901 admin\n"
#define INGEST_AUTH "Authorization: Bearer ingest-token-0123456789\r\n"

/* Each request, on a connection of its own, and whether the lane takes it. */
static const struct {
    const char *what, *path, *headers, *body;
    int lane; /* answered on the lane; else handed to libmicrohttpd */
} CASES[] = {
    {"one event", "/ingest", INGEST_AUTH "Content-Type: application/json\r\n",
     "{\"events\":[{\"id\":\"lane-1\",\"type\":\"a.b\",\"ts\":\"2026-12-07T10:00:00Z\"}]}", 1},
    {"by /e, NDJSON", "/e", INGEST_AUTH "Content-Type: application/x-ndjson\r\n",
     "{\"id\":\"lane-2\",\"type\":\"a.b\",\"ts\":\"2026-12-07T10:00:00Z\"}\n", 1},
    {"no Content-Type, keep-alive", "/ingest", INGEST_AUTH "Connection: keep-alive\r\n",
     "[{\"id\":\"lane-3\",\"type\":\"a.b\",\"ts\":\"2026-12-07T10:00:00Z\"}]", 1},
    {"malformed JSON", "/ingest", INGEST_AUTH, "{\"events\":[", 1},
    {"a record refused", "/ingest", INGEST_AUTH, "[{\"id\":\"lane-4\",\"type\":\"Bad Type\"}]", 1},
    {"no events", "/ingest", INGEST_AUTH, "[]", 1},
    {"a header the lane does not read, with a control byte (libmicrohttpd takes it too)", "/ingest",
     INGEST_AUTH "X-Pad: a\001b\r\n", "[]", 1},
    {"no token", "/ingest", "", "[]", 0},
    {"a token without ingest", "/ingest", "Authorization: Bearer query-token-01234567890\r\n", "[]",
     0},
    {"a token twice", "/ingest", INGEST_AUTH INGEST_AUTH, "[]", 0},
    {"an origin", "/ingest", INGEST_AUTH "Origin: https://elsewhere.example\r\n", "[]", 0},
    {"another Content-Type", "/ingest", INGEST_AUTH "Content-Type: text/csv\r\n", "[]", 0},
    {"a Content-Encoding", "/ingest", INGEST_AUTH "Content-Encoding: br\r\n", "[]", 0},
    {"URL arguments", "/ingest?type=bad%20type", INGEST_AUTH, "[]", 0},
    {"Connection: close", "/ingest", INGEST_AUTH "Connection: close\r\n",
     "[{\"id\":\"lane-5\",\"type\":\"a.b\",\"ts\":\"2026-12-07T10:00:00Z\"}]", 0},
    {"a body over --max-body", "/ingest", INGEST_AUTH, NULL, 0}, /* big_body() */
    {"another endpoint", "/query", INGEST_AUTH, "{\"sql\":\"SELECT 1\"}", 0},
};

/* Requests whose framing or headers are odd: each one handed over, answered as the HTTP threads
 * answer it (most 400, the connection closed). */
static const char *const ODD[] = {
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" INGEST_AUTH "Content-Length: +2\r\n\r\n[]",
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" INGEST_AUTH
    "Content-Length: 99999999999\r\n\r\n[]",
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" INGEST_AUTH
    "Content-Length: 2\r\nContent-Length: 2\r\n\r\n[]",
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n folded\r\n" INGEST_AUTH
    "Content-Length: 2\r\n\r\n[]",
    "POST /ingest HTTP/1.0\r\nHost: 127.0.0.1\r\n" INGEST_AUTH "Content-Length: 2\r\n\r\n[]",
    "POST /ingest HTTP/1.1\nHost: 127.0.0.1\n" INGEST_AUTH "Content-Length: 2\n\n[]",
    "POST /ingest HTTP/1.1\r\n" INGEST_AUTH "Content-Length: 2\r\n\r\n[]",
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" INGEST_AUTH
    "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
    "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" INGEST_AUTH
    "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n[]",
};

/* An event of 1,100 bytes: over --max-body 1KiB, under the lane's 16 KiB. */
static const char *big_body(void)
{
    static char b[1200];
    snprintf(b, sizeof b, "[{\"id\":\"lane-6\",\"type\":\"a.b\",\"data\":{\"pad\":\"%01060d\"}}]",
             0);
    return b;
}

/* Each request id (a ULID, made per request) in an answer written as 26 'X's. */
static void same_request_ids(buf *a)
{
    const char *marks[] = {"\"requestId\":\"", "requestId = '"};
    for (size_t m = 0; m < 2; m++)
        for (char *p = a->p; (p = strstr(p, marks[m]));) {
            p += strlen(marks[m]);
            for (int i = 0; i < 26 && p[i] && p[i] != '"' && p[i] != '\''; i++) p[i] = 'X';
        }
}

/* A metric of a server with tokens (its admin token's), -1 if absent. */
static long long metric(const srv *s, const char *name)
{
    char url[128], key[160];
    snprintf(url, sizeof url, "%s/metrics", s->url);
    snprintf(key, sizeof key, "\n%s ", name);
    const char *h[] = {"Authorization: Bearer admin-token-012345678901", NULL};
    resp r;
    long long v = -1;
    if (http_do("GET", url, h, NULL, 0, 0, &r) == 0 && r.status == 200 && r.body.p) {
        const char *p = strstr(r.body.p, key);
        if (p) v = atoll(p + strlen(key));
    }
    resp_free(&r);
    return v;
}

TEST(test_lane_answers_every_request_as_the_http_threads_do)
{
    srv on = {0}, off = {0};
    char *lake_on = srv_lake_dir("lane-on"), *lake_off = srv_lake_dir("lane-off");
    char tok_on[1100], tok_off[1100];
    srv_tokens_file(lake_on, TOKENS, tok_on, sizeof tok_on);
    srv_tokens_file(lake_off, TOKENS, tok_off, sizeof tok_off);
    const char *a_on[] = {"--tokens",          tok_on, "--max-body", "1KiB",
                          "--max-event-bytes", "512",  NULL};
    const char *a_off[] = {"--tokens", tok_off,         "--max-body", "1KiB", "--max-event-bytes",
                           "512",      "--ingest-lane", "0",          NULL};
    REQUIRE_INT(0, srv_start(&on, lake_on, a_on));
    REQUIRE_INT(0, srv_start(&off, lake_off, a_off));
    int taken = 0, handed = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        buf req = BUF_INIT, ans_on = BUF_INIT, ans_off = BUF_INIT;
        post(&req, CASES[i].path, CASES[i].headers, CASES[i].body ? CASES[i].body : big_body());
        int fd_on = connect_to(&on), fd_off = connect_to(&off);
        REQUIRE(fd_on >= 0 && fd_off >= 0);
        int st_on = send_all(fd_on, req.p, req.len) ? 0 : read_answer(fd_on, &ans_on);
        int st_off = send_all(fd_off, req.p, req.len) ? 0 : read_answer(fd_off, &ans_off);
        hang_up(fd_on);
        hang_up(fd_off);
        same_request_ids(&ans_on);
        same_request_ids(&ans_off);
        if (st_on != st_off || strcmp(ans_on.p, ans_off.p))
            test_fail(__FILE__, __LINE__, "%s: the lane answered\n%s\nthe HTTP threads\n%s",
                      CASES[i].what, ans_on.p, ans_off.p);
        CHECK(st_on >= 200);
        taken += CASES[i].lane;
        handed += !CASES[i].lane;
        buf_free(&req);
        buf_free(&ans_on);
        buf_free(&ans_off);
    }
    for (size_t i = 0; i < sizeof ODD / sizeof *ODD; i++) {
        buf ans_on = BUF_INIT, ans_off = BUF_INIT;
        int fd_on = connect_to(&on), fd_off = connect_to(&off);
        REQUIRE(fd_on >= 0 && fd_off >= 0);
        int st_on = send_all(fd_on, ODD[i], strlen(ODD[i])) ? 0 : read_answer(fd_on, &ans_on);
        int st_off = send_all(fd_off, ODD[i], strlen(ODD[i])) ? 0 : read_answer(fd_off, &ans_off);
        hang_up(fd_on);
        hang_up(fd_off);
        if (st_on != st_off || strcmp(ans_on.p, ans_off.p))
            test_fail(__FILE__, __LINE__, "%s\nthe lane answered\n%s\nthe HTTP threads\n%s", ODD[i],
                      ans_on.p, ans_off.p);
        handed++;
        buf_free(&ans_on);
        buf_free(&ans_off);
    }
    CHECK_INT(taken, metric(&on, "events_ingest_lane_requests_total"));
    CHECK_INT(0, metric(&off, "events_ingest_lane_requests_total"));
    /* each handed request's connection, and the metrics requests' own */
    CHECK_INT(handed + 2, metric(&on, "events_ingest_lane_handoffs_total"));
    CHECK_INT(0, srv_stop(&on, SIGTERM));
    CHECK_INT(0, srv_stop(&off, SIGTERM));
    json_t *ev_on = lake_events(lake_on), *ev_off = lake_events(lake_off);
    CHECK_INT(json_array_size(ev_off), json_array_size(ev_on));
    for (int k = 1; k <= 5; k++) {
        char id[16];
        snprintf(id, sizeof id, "lane-%d", k);
        CHECK_INT(k != 4, lake_has(ev_on, id)); /* lane-4 refused, into the quarantine */
    }
    json_decref(ev_on);
    json_decref(ev_off);
    srv_lake_cleanup(&on, lake_on);
    srv_lake_cleanup(&off, lake_off);
}

/* One event's request, with its id. */
static void one_event(buf *req, const char *id)
{
    char body[160];
    snprintf(body, sizeof body,
             "[{\"id\":\"%s\",\"type\":\"a.b\",\"ts\":\"2026-12-07T10:00:00Z\"}]", id);
    post(req, "/ingest", "", body);
}

TEST(test_lane_keeps_a_connection_through_pipelined_and_other_requests)
{
    srv s = {0};
    char *lake = srv_lake_dir("lane");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    int fd = connect_to(&s);
    REQUIRE(fd >= 0);
    buf req = BUF_INIT, ans = BUF_INIT;
    /* three requests in one write: answered in order, each on the lane */
    one_event(&req, "p-1");
    one_event(&req, "p-2");
    one_event(&req, "p-3");
    CHECK_INT(0, send_all(fd, req.p, req.len));
    for (int i = 0; i < 3; i++) {
        CHECK_INT(200, read_answer(fd, &ans));
        CHECK(strstr(ans.p, "\"accepted\":1") != NULL);
    }
    CHECK_INT(3, srv_metric(&s, "events_ingest_lane_requests_total"));
    /* a request in two pieces: the lane waits for its body */
    req.len = 0;
    one_event(&req, "p-4");
    size_t half = req.len - 10;
    CHECK_INT(0, send_all(fd, req.p, half));
    pause_ms(100);
    CHECK_INT(0, send_all(fd, req.p + half, req.len - half));
    CHECK_INT(200, read_answer(fd, &ans));
    CHECK_INT(4, srv_metric(&s, "events_ingest_lane_requests_total"));
    /* another endpoint on the same connection: libmicrohttpd's from then on */
    const char *health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    CHECK_INT(0, send_all(fd, health, strlen(health)));
    CHECK_INT(200, read_answer(fd, &ans));
    CHECK(strstr(ans.p, "\"status\":\"ok\"") != NULL);
    req.len = 0;
    one_event(&req, "p-5");
    CHECK_INT(0, send_all(fd, req.p, req.len));
    CHECK_INT(200, read_answer(fd, &ans));
    CHECK_INT(4, srv_metric(&s, "events_ingest_lane_requests_total"));
    hang_up(fd);
    /* a request a few bytes at a time, more pieces than the lane waits for: handed over whole */
    fd = connect_to(&s);
    REQUIRE(fd >= 0);
    req.len = 0;
    one_event(&req, "p-6");
    for (size_t off = 0; off < req.len; off += 8) {
        CHECK_INT(0, send_all(fd, req.p + off, req.len - off < 8 ? req.len - off : 8));
        pause_ms(5);
    }
    CHECK_INT(200, read_answer(fd, &ans));
    hang_up(fd);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    json_t *ev = lake_events(lake);
    CHECK_INT(6, json_array_size(ev));
    for (int k = 1; k <= 6; k++) {
        char id[16];
        snprintf(id, sizeof id, "p-%d", k);
        CHECK(lake_has(ev, id));
    }
    json_decref(ev);
    buf_free(&req);
    buf_free(&ans);
    srv_lake_cleanup(&s, lake);
}

typedef struct pipeliner {
    int fd;
    buf req;
    int sent; /* 1 once every byte is sent */
} pipeliner;

static void *send_pipeline(void *arg)
{
    pipeliner *p = arg;
    p->sent = send_all(p->fd, p->req.p, p->req.len) == 0;
    return NULL;
}

TEST(test_lane_serves_others_while_a_client_does_not_read_its_answers)
{
    srv s = {0};
    char *lake = srv_lake_dir("lane");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    /* 2,000 requests in a row on a connection with a small receive buffer, its answers not read
     * for a while: they fill the sockets, and the lane holds what it cannot send */
    pipeliner p = {.fd = socket(AF_INET, SOCK_STREAM, 0), .req = BUF_INIT};
    int small = 4096;
    setsockopt(p.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE_INT(0, connect(p.fd, (struct sockaddr *)&a, sizeof a));
    for (int i = 0; i < 2000; i++) {
        char id[24];
        snprintf(id, sizeof id, "slow-%d", i);
        one_event(&p.req, id);
    }
    pthread_t th;
    pthread_create(&th, NULL, send_pipeline, &p);
    pause_ms(200);
    /* another client is answered meanwhile */
    buf req = BUF_INIT, ans = BUF_INIT;
    int other = connect_to(&s);
    REQUIRE(other >= 0);
    one_event(&req, "other-1");
    CHECK_INT(0, send_all(other, req.p, req.len));
    CHECK_INT(200, read_answer(other, &ans));
    hang_up(other);
    /* the slow client reads at last: every request it sent is answered, in order */
    int answered = 0;
    for (int i = 0; i < 2000 && read_answer(p.fd, &ans) == 200; i++) answered++;
    pthread_join(th, NULL);
    CHECK(p.sent);
    CHECK_INT(2000, answered);
    hang_up(p.fd);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    json_t *ev = lake_events(lake);
    CHECK_INT(2001, json_array_size(ev));
    json_decref(ev);
    buf_free(&p.req);
    buf_free(&req);
    buf_free(&ans);
    srv_lake_cleanup(&s, lake);
}

/* 1 if the server closes fd within timeout_ms (what it wrote before is dropped). */
static int closed_within(int fd, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) continue;
        char b[512];
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    }
    return 0;
}

TEST(test_lane_connections_keep_the_server_deadlines_and_limit)
{
    srv s = {0};
    char *lake = srv_lake_dir("lane");
    const char *args[] = {
        "--header-timeout", "1s", "--idle-timeout", "1s", "--max-connections", "3", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    /* a request that never ends its head, and a connection idle after its request */
    int slow = connect_to(&s), idle = connect_to(&s);
    REQUIRE(slow >= 0 && idle >= 0);
    CHECK_INT(0, send_all(slow, "POST /ingest HTTP/1.1\r\nHost: 1", 31));
    buf req = BUF_INIT, ans = BUF_INIT;
    one_event(&req, "d-1");
    CHECK_INT(0, send_all(idle, req.p, req.len));
    CHECK_INT(200, read_answer(idle, &ans));
    CHECK_INT(1, srv_metric(&s, "events_ingest_lane_requests_total"));
    CHECK(closed_within(slow, 5000));
    CHECK(closed_within(idle, 5000));
    hang_up(slow);
    hang_up(idle);
    /* at the limit, a new connection closes one waiting for its request, lane or not */
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_to(&s);
        CHECK_INT(0, send_all(fds[i], "POST /in", 8));
        pause_ms(50);
    }
    int late = connect_to(&s);
    REQUIRE(late >= 0);
    req.len = 0;
    one_event(&req, "d-2");
    CHECK_INT(0, send_all(late, req.p, req.len));
    CHECK_INT(200, read_answer(late, &ans));
    CHECK(closed_within(fds[0], 2000)); /* the one that waited longest */
    for (int i = 0; i < 3; i++) hang_up(fds[i]);
    hang_up(late);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    buf_free(&req);
    buf_free(&ans);
    srv_lake_cleanup(&s, lake);
}

/* Load on the lane from a few connections while the server is stopped: what it acknowledged is
 * in the lake, nothing twice. */
typedef struct loader {
    const srv *s;
    int n, acked;
    char acked_ids[400][24];
} loader;

static void *load(void *arg)
{
    loader *ld = arg;
    int fd = connect_to(ld->s);
    buf req = BUF_INIT, ans = BUF_INIT;
    for (int i = 0; fd >= 0 && i < 400; i++) {
        char id[24];
        snprintf(id, sizeof id, "l%d-%d", ld->n, i);
        req.len = 0;
        one_event(&req, id);
        if (send_all(fd, req.p, req.len)) break;
        int st = read_answer(fd, &ans);
        if (st == 200 && strstr(ans.p, "\"accepted\":1"))
            snprintf(ld->acked_ids[ld->acked++], sizeof ld->acked_ids[0], "%s", id);
        else
            break; /* 503 while stopping, or closed */
    }
    if (fd >= 0) hang_up(fd);
    buf_free(&req);
    buf_free(&ans);
    return NULL;
}

TEST(test_lane_keeps_every_acknowledged_event_through_a_stop)
{
    srv s = {0};
    char *lake = srv_lake_dir("lane");
    REQUIRE_INT(0, srv_start(&s, lake, NULL));
    enum { LOADERS = 4 };
    static loader lds[LOADERS];
    pthread_t th[LOADERS];
    for (int i = 0; i < LOADERS; i++) {
        lds[i] = (loader){.s = &s, .n = i};
        pthread_create(&th[i], NULL, load, &lds[i]);
    }
    pause_ms(300);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    int acked = 0;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(th[i], NULL);
        acked += lds[i].acked;
    }
    json_t *ev = lake_events(lake);
    CHECK(acked > 0);
    CHECK(json_array_size(ev) >= (size_t)acked);
    for (int i = 0; i < LOADERS; i++)
        for (int k = 0; k < lds[i].acked; k++)
            if (!lake_has(ev, lds[i].acked_ids[k]))
                test_fail(__FILE__, __LINE__, "acknowledged %s is not in the lake",
                          lds[i].acked_ids[k]);
    json_decref(ev);
    srv_lake_cleanup(&s, lake);
}
