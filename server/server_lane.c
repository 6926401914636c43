/*
 * server_lane.c - the ingest lane: small POST /ingest requests read,
 * committed and answered on a thread of their own, beside libmicrohttpd.
 *
 * Through libmicrohttpd a single-event request costs two thread hand-offs
 * (HTTP thread to writer, writer back to the suspended connection) and the
 * system calls of a suspend and a resume: it ran at about half the rate of
 * GET /health (bench/README.md). On the lane, the thread that reads the
 * requests commits them itself, one group (one fdatasync) per round of
 * epoll_wait, and answers them in the same round.
 *
 * With the lane on (--ingest-lane SIZE, the default), the server accepts its
 * connections itself. The acceptor thread looks at a new connection's first
 * bytes with MSG_PEEK (nothing is read) and gives it to the lane thread if
 * they begin a POST to /ingest or /e, else to libmicrohttpd
 * (MHD_add_connection), untouched (not even a socket option set). On the
 * lane, a request is taken only if it is whole in the socket, head and body,
 * at most SIZE bytes: HTTP/1.1 with a Content-Length, no URL arguments, no
 * Origin, Transfer-Encoding, Content-Encoding, Expect or Upgrade, Connection
 * absent or keep-alive, a Host the server answers, a JSON or NDJSON
 * Content-Type (or none) and, with tokens, a token with the ingest scope.
 * That is, requests libmicrohttpd's path would take without a question;
 * anything else (a refusal to make, another endpoint, a request not whole
 * after LANE_PEEKS looks or LANE_WAIT_MS, the server stopping) is handed,
 * connection and all, to libmicrohttpd at the request's first byte, which
 * answers it as it answers every request. So every refusal is made in one
 * place, server_requests.c.
 *
 * A request taken is parsed as server_ingest.c parses one (ingest.h), its
 * batch committed with the round's by lake_writer_commit on this thread
 * (with any batch libmicrohttpd's threads queued meanwhile), and answered
 * with the bytes libmicrohttpd would send. Its metrics, the live tail,
 * /recent and the subscriptions' delivery see it as they see the others.
 *
 * The connection table (conns.h) counts the lane's connections and closes
 * those that miss a deadline with shutdown(2), as it does libmicrohttpd's;
 * the lane then reads the end of the stream and closes them. A stalled disk
 * stalls the lane's connections, as it would stall their commits anyway, but
 * not the acceptor: the other endpoints keep answering.
 */
#include "server_int.h"
#include "event.h"
#include "evtime.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A request not yet whole is looked at LANE_PEEKS times, for LANE_WAIT_MS, before it is handed
 * over: enough for the pieces of any client's request, too little for a slow one to matter. */
#define LANE_PEEKS   8
#define LANE_WAIT_MS 250
#define LANE_EVENTS  256 /* epoll events per round */
#define LANE_ACCEPTS 64  /* connections accepted per round, then the others' turn */

typedef struct lane_conn lane_conn;
struct lane_conn {
    int fd;
    conns_slot *slot;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int peeks;        /* looks at the current request, not yet whole */
    int again;        /* bytes may wait after the request taken: look again */
    int gone;         /* the client left while its request was committed */
    int polled;       /* in its thread's epoll set */
    server__req *req; /* taken this round, waiting for the commit */
    buf out;          /* an answer not yet sent whole */
    size_t out_off;
    lane_conn *prev, *next;   /* the thread's connections (or the inbox, by next) */
    lane_conn *rnext;         /* the round's list */
    int64_t wait_until;       /* waiting for a request to arrive whole until then; 0: not */
    lane_conn *wprev, *wnext; /* the thread's waiting connections, by wait_until */
};

/*
 * One thread's connections, the acceptor's or the lane's, each touched by its
 * thread only, and those of them waiting for their request to arrive whole
 * (or, in the acceptor, for a first byte), oldest first: past LANE_WAIT_MS they
 * are handed over, and libmicrohttpd's deadlines take them from there.
 */
typedef struct lane_set {
    lane_conn *head;
    lane_conn *whead, *wtail;
} lane_set;

struct server__lane {
    server__srv *srv;
    int lfd;
    int aep, lep; /* the epoll sets of the acceptor and of the lane */
    int aev, lev; /* eventfds that wake them: stop, and the lane's inbox */
    pthread_t athr, lthr;
    int athr_started, lthr_started;
    _Atomic int stop;
    size_t max;  /* --ingest-lane: a request's head and body at most */
    char *bytes; /* the lane thread's buffer, max bytes */
    lane_set accepting, lane;
    pthread_mutex_t mu; /* the inbox */
    lane_conn *inbox;
    char date[40]; /* the lane thread's Date header, of date_s */
    time_t date_s;
};

/* epoll data of the listening socket and of the eventfds (their addresses mark them) */
static char mark_listen, mark_wake;

/* ---- connections ------------------------------------------------------------ */

static void set_add(lane_set *set, lane_conn *c)
{
    c->prev = NULL;
    c->next = set->head;
    if (set->head) set->head->prev = c;
    set->head = c;
}

/* c waits for its request (from now, unless it waits already). */
static void wait_start(lane_set *set, lane_conn *c)
{
    if (c->wait_until) return;
    c->wait_until = evtime_mono_ms() + LANE_WAIT_MS;
    c->wnext = NULL;
    c->wprev = set->wtail;
    if (set->wtail)
        set->wtail->wnext = c;
    else
        set->whead = c;
    set->wtail = c;
}

/* c waits no more (unlinked by the list's ends first, which no waiting c is without). */
static void wait_stop(lane_set *set, lane_conn *c)
{
    if (!c->wait_until && set->whead != c) return;
    if (set->whead == c)
        set->whead = c->wnext;
    else if (c->wprev)
        c->wprev->wnext = c->wnext;
    if (set->wtail == c)
        set->wtail = c->wprev;
    else if (c->wnext)
        c->wnext->wprev = c->wprev;
    c->wprev = c->wnext = NULL;
    c->wait_until = 0;
}

/* epoll_wait's timeout: until the first waiting connection's time is up, or none. */
static int wait_timeout(const lane_set *set)
{
    if (!set->whead) return -1;
    int64_t left = set->whead->wait_until - evtime_mono_ms();
    return left < 0 ? 0 : left > LANE_WAIT_MS ? LANE_WAIT_MS : (int)left;
}

static void set_remove(lane_set *set, lane_conn *c)
{
    wait_stop(set, c);
    if (set->head == c)
        set->head = c->next;
    else if (c->prev)
        c->prev->next = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Forgets c in the connection table and frees it; its descriptor is the caller's to give. */
static void conn_release(server__lane *l, lane_conn *c)
{
    conns_closed(l->srv->conns, c->slot);
    atomic_fetch_add(&metrics_global.connections_open, -1);
    buf_free(&c->out);
    free(c);
}

static void conn_close(server__lane *l, lane_set *set, lane_conn *c)
{
    set_remove(set, c);
    int fd = c->fd;
    conn_release(l, c);
    close(fd);
}

/* c to libmicrohttpd, at a request's first byte: it answers that request and the rest. */
static void hand_over(server__lane *l, int ep, lane_set *set, lane_conn *c)
{
    if (conns_closing(l->srv->conns, c->slot)) { /* already refused and counted: not twice */
        conn_close(l, set, c);
        return;
    }
    if (c->polled) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    set_remove(set, c);
    int fd = c->fd;
    struct sockaddr_storage addr = c->addr;
    socklen_t alen = c->addrlen;
    conn_release(l, c);
    atomic_fetch_add_explicit(&metrics_global.lane_handoffs, 1, memory_order_relaxed);
    /* closes the socket itself when it cannot take it */
    if (MHD_add_connection(l->srv->daemon, fd, (const struct sockaddr *)&addr, alen) != MHD_YES)
        log_msg(LOG_DEBUG, "http", "detail", "libmicrohttpd did not take a connection", LOG_END);
}

/* The connections of set whose request has not arrived whole in time, to libmicrohttpd. */
static void hand_over_late(server__lane *l, int ep, lane_set *set)
{
    int64_t now = evtime_mono_ms();
    while (set->whead && set->whead->wait_until <= now) hand_over(l, ep, set, set->whead);
}

static void wake(int efd)
{
    uint64_t one = 1;
    ssize_t n = write(efd, &one, sizeof one);
    (void)n; /* an eventfd's counter full is a wake-up pending already */
}

static void drain(int efd)
{
    uint64_t v;
    ssize_t n = read(efd, &v, sizeof v);
    (void)n;
}

/* ---- the acceptor ------------------------------------------------------------- */

enum { SORT_WAIT, SORT_DONE };
static int sort_out(server__lane *l, lane_conn *c, uint32_t ev);

/* Accepts what waits (at most LANE_ACCEPTS), each into the acceptor's set. */
static void accept_some(server__lane *l)
{
    for (int i = 0; i < LANE_ACCEPTS; i++) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        int fd = accept4(l->lfd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: the others' turn, then try again (not a busy loop) */
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
            }
            return; /* EAGAIN, or a connection gone before it was taken */
        }
        lane_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->addr = addr;
        c->addrlen = alen;
        atomic_fetch_add(&metrics_global.connections_open, 1);
        c->slot = conns_opened(l->srv->conns, fd); /* at the limit: answered 503, shut down */
        set_add(&l->accepting, c);
        wait_start(&l->accepting, c);
        /* most clients' first bytes are in by now: sorted at once, without epoll */
        if (sort_out(l, c, 0) == SORT_WAIT) {
            struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
            if (epoll_ctl(l->aep, EPOLL_CTL_ADD, fd, &e))
                conn_close(l, &l->accepting, c);
            else
                c->polled = 1;
        }
    }
}

/* 1 if the n bytes at p are a prefix of want (or want whole, then more). */
static int begins(const char *p, size_t n, const char *want)
{
    size_t w = strlen(want);
    return !memcmp(p, want, n < w ? n : w);
}

/*
 * A new connection's first bytes: to the lane, to libmicrohttpd, or wait for
 * more (SORT_WAIT; c is then the acceptor's still, else it is gone from it).
 */
static int sort_out(server__lane *l, lane_conn *c, uint32_t ev)
{
    char b[16];
    ssize_t n = recv(c->fd, b, sizeof b, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return SORT_WAIT;
    if (n <= 0) {
        conn_close(l, &l->accepting, c); /* gone before its first request */
        return SORT_DONE;
    }
    size_t k = (size_t)n;
    int lane = (k >= 13 && begins(b, k, "POST /ingest ")) || (k >= 8 && begins(b, k, "POST /e "));
    int maybe = !lane && k < 13 && (begins(b, k, "POST /ingest ") || begins(b, k, "POST /e "));
    /* more may come, unless the client has finished sending */
    if (maybe && ++c->peeks < LANE_PEEKS && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return SORT_WAIT;
    if (!lane || atomic_load(&l->srv->stopping)) {
        hand_over(l, l->aep, &l->accepting, c);
        return SORT_DONE;
    }
    if (c->polled) epoll_ctl(l->aep, EPOLL_CTL_DEL, c->fd, NULL);
    c->polled = 0;
    set_remove(&l->accepting, c);
    c->peeks = 0;
    pthread_mutex_lock(&l->mu);
    c->next = l->inbox;
    l->inbox = c;
    pthread_mutex_unlock(&l->mu);
    wake(l->lev);
    return SORT_DONE;
}

static void *acceptor_main(void *arg)
{
    server__lane *l = arg;
    struct epoll_event evs[LANE_EVENTS];
    while (!atomic_load(&l->stop)) {
        int n = epoll_wait(l->aep, evs, LANE_EVENTS, wait_timeout(&l->accepting));
        for (int i = 0; i < n && !atomic_load(&l->stop); i++) {
            void *p = evs[i].data.ptr;
            if (p == &mark_listen)
                accept_some(l);
            else if (p == &mark_wake)
                drain(l->aev);
            else
                sort_out(l, p, evs[i].events);
        }
        hand_over_late(l, l->aep, &l->accepting);
    }
    return NULL;
}

/* ---- a request's head --------------------------------------------------------- */

enum { LANE_TAKE, LANE_MORE, LANE_HAND };

/* What the lane needs of a request it takes. */
typedef struct lane_head {
    size_t head, body;      /* bytes of the head (with its blank line) and of the body */
    enum ingest_format fmt; /* from Content-Type */
    const auth_token *tok;  /* with tokens: the request's */
    const char *route;      /* "/ingest" or "/e" */
    const char *cors;       /* Access-Control-Allow-Origin without an Origin ("*" or NULL) */
} lane_head;

/* The headers the lane looks at; a second one of them is handed over. */
enum { H_HOST, H_LENGTH, H_TYPE, H_AUTH, H_CONNECTION, H_COUNT };

static const char *const HEADER_NAMES[H_COUNT] = {"host", "content-length", "content-type",
                                                  "authorization", "connection"};
/* headers that make a request libmicrohttpd's: CORS, framing, encodings, protocol changes */
static const char *const HANDED_NAMES[] = {"origin", "transfer-encoding", "content-encoding",
                                           "expect", "upgrade",           "trailer",
                                           "te",     "http2-settings"};

static int is_token_char(unsigned char ch)
{
    return ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* The value of a header in out (NUL-terminated), 0; -1 if it has a control byte or does not fit. */
static int header_value(const char *v, size_t n, char *out, size_t cap)
{
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= cap) return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 32 && v[i] != '\t') return -1;
    memcpy(out, v, n);
    out[n] = 0;
    return 0;
}

/* The header lines between p and end (each ending in CRLF) into vals; LANE_HAND on anything odd. */
static int read_headers(const char *p, const char *end, char vals[H_COUNT][600])
{
    int seen[H_COUNT] = {0};
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n') return LANE_HAND;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return LANE_HAND;
        size_t nlen = (size_t)(colon - p);
        for (size_t i = 0; i < nlen; i++)
            if (!is_token_char((unsigned char)p[i])) return LANE_HAND;
        for (size_t i = 0; i < sizeof HANDED_NAMES / sizeof *HANDED_NAMES; i++)
            if (nlen == strlen(HANDED_NAMES[i]) && !strncasecmp(p, HANDED_NAMES[i], nlen))
                return LANE_HAND;
        for (int h = 0; h < H_COUNT; h++) {
            if (nlen != strlen(HEADER_NAMES[h]) || strncasecmp(p, HEADER_NAMES[h], nlen)) continue;
            if (seen[h]++ ||
                header_value(colon + 1, (size_t)(eol - colon - 1), vals[h], sizeof vals[h]))
                return LANE_HAND;
        }
        p = eol + 2;
    }
    return seen[H_HOST] && seen[H_LENGTH] ? LANE_TAKE : LANE_HAND;
}

/* The body's format from its Content-Type (NULL: none); -1 for one /ingest refuses. */
static int format_of(const char *ct)
{
    if (!ct || server__media_type_is(ct, "application/json") ||
        server__media_type_is(ct, "text/plain"))
        return INGEST_JSON;
    if (server__media_type_is(ct, "application/x-ndjson") ||
        server__media_type_is(ct, "application/ndjson") ||
        server__media_type_is(ct, "application/jsonl") ||
        server__media_type_is(ct, "application/x-jsonlines"))
        return INGEST_NDJSON;
    return -1;
}

/*
 * The request at the start of the n bytes at p: LANE_TAKE with *h, LANE_MORE
 * if it may be one the lane takes but is not whole yet, LANE_HAND otherwise.
 */
static int read_head(server__lane *l, const char *p, size_t n, lane_head *h)
{
    server__srv *s = l->srv;
    static const char *const lines[] = {"POST /ingest HTTP/1.1\r\n", "POST /e HTTP/1.1\r\n"};
    size_t k = 0;
    for (; k < 2; k++)
        if (begins(p, n, lines[k])) break;
    if (k == 2) return LANE_HAND;
    const char *blank = memmem(p, n, "\r\n\r\n", 4);
    if (!blank) return n < l->max ? LANE_MORE : LANE_HAND;
    h->route = k == 0 ? "/ingest" : "/e";
    h->head = (size_t)(blank + 4 - p);
    char vals[H_COUNT][600]; /* only the first byte of each needs clearing */
    for (int i = 0; i < H_COUNT; i++) vals[i][0] = 0;
    const char *first = p + strlen(lines[k]);
    if (first > blank + 2 || read_headers(first, blank + 2, vals) != LANE_TAKE) return LANE_HAND;
    const char *cl = vals[H_LENGTH];
    if (!*cl || strlen(cl) > 9 || strspn(cl, "0123456789") != strlen(cl)) return LANE_HAND;
    h->body = (size_t)strtoul(cl, NULL, 10);
    if (h->body > s->cfg.max_body || h->head + h->body > l->max) return LANE_HAND;
    if (*vals[H_CONNECTION] && strcasecmp(vals[H_CONNECTION], "keep-alive")) return LANE_HAND;
    int refused = 0;
    if (!origins_host_ok(s->origins, vals[H_HOST])) return LANE_HAND;
    h->cors = origins_allow(s->origins, NULL, vals[H_HOST], &refused);
    if (refused || (h->cors && strcmp(h->cors, "*"))) return LANE_HAND;
    int fmt = format_of(*vals[H_TYPE] ? vals[H_TYPE] : NULL);
    if (fmt < 0) return LANE_HAND;
    h->fmt = (enum ingest_format)fmt;
    h->tok = NULL;
    if (auth_count(s->auth)) {
        h->tok = auth_lookup(s->auth, *vals[H_AUTH] ? vals[H_AUTH] : NULL);
        if (!h->tok || !(h->tok->scopes & AUTH_SCOPE_INGEST)) return LANE_HAND;
    }
    return n < h->head + h->body ? LANE_MORE : LANE_TAKE;
}

/* ---- the lane ------------------------------------------------------------------- */

/* On the lane thread, within lake_writer_commit: the batch is durable or failed. */
static void lane_done(lake_batch *b, void *ud)
{
    server__ingest_answer(ud, b);
}

/* r answered status with msg in /ingest's error body, without a commit. */
static void refuse(server__req *r, unsigned status, const char *msg)
{
    r->answer_status = status;
    ingest_error_json(&r->answer, msg);
    if (status >= 500) log_msg(LOG_WARN, "request failed", "status", "503", "error", msg, LOG_END);
}

/* The body of a request taken: parsed into r; its batch onto *batches unless it needs none. */
static void parse_body(server__lane *l, server__req *r, const lane_head *h, const char *body,
                       lake_batch **batches)
{
    atomic_fetch_add_explicit(&metrics_global.bytes_received, h->body, memory_order_relaxed);
    const char *why = NULL;
    unsigned st = server__ingest_parse(l->srv, r, body, h->body, &why);
    if (st == 200) r->answer_status = 200;
    if (st && st != 200) refuse(r, st, why);
    if (st) return;
    server__batch_fill(r, lane_done);
    r->batch.next = *batches;
    *batches = &r->batch;
}

/*
 * The next request of c, if its bytes are in: taken (c onto *round, its batch
 * onto *batches), handed over, or left to wait. c may be closed.
 */
static void take(server__lane *l, lane_conn *c, uint32_t ev, lane_conn **round,
                 lake_batch **batches)
{
    server__srv *s = l->srv;
    if (atomic_load(&s->stopping)) {
        hand_over(l, l->lep, &l->lane, c); /* answered 503 there */
        return;
    }
    ssize_t n = recv(c->fd, l->bytes, l->max, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        conn_close(l, &l->lane, c);
        return;
    }
    lane_head h;
    int what = read_head(l, l->bytes, (size_t)n, &h);
    if (what == LANE_MORE && ++c->peeks < LANE_PEEKS &&
        !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        wait_start(&l->lane, c);
        return;
    }
    if (what != LANE_TAKE) { /* a request not whole from a client that sent all it will is
                              * libmicrohttpd's too: it counts the client gone as it does */
        hand_over(l, l->lep, &l->lane, c);
        return;
    }
    wait_stop(&l->lane, c);
    c->peeks = 0;
    size_t whole = h.head + h.body;
    c->again = (size_t)n > whole;
    if (recv(c->fd, l->bytes, whole, 0) != (ssize_t)whole ||
        conns_request_began(s->conns, c->slot, 0)) {
        conn_close(l, &l->lane, c);
        return;
    }
    server__req *r = calloc(1, sizeof *r);
    if (!r) {
        conns_request_ended(s->conns, c->slot);
        conn_close(l, &l->lane, c);
        return;
    }
    r->srv = s;
    r->kind = SERVER__K_INGEST;
    r->route = METRICS_ROUTE_INGEST;
    r->t0_ns = evtime_mono_ns();
    r->tok = h.tok;
    r->cors = h.cors;
    r->fmt = h.fmt;
    snprintf(r->path, sizeof r->path, "%s", h.route);
    parse_body(l, r, &h, l->bytes + h.head, batches);
    c->req = r;
    c->rnext = *round;
    *round = c;
}

/* The Date header's value for now: libmicrohttpd's, recomputed once a second. */
static const char *date_now(server__lane *l)
{
    time_t t = time(NULL);
    if (t != l->date_s) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(l->date, sizeof l->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_s = t;
    }
    return l->date;
}

/* Sends what c->out holds; 0 when it is all sent or waits for room, -1 if c is broken. */
static int send_out(lane_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t k = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) return 0; /* EPOLLOUT will say when */
        if (k <= 0) return -1;
        c->out_off += (size_t)k;
    }
    c->out.len = c->out_off = 0;
    return 0;
}

/* r's end: counted as answered status (499: its client left), its memory freed. */
static void request_end(server__lane *l, lane_conn *c, server__req *r, unsigned status)
{
    if (status == 499)
        metrics_request(r->route, 499, evtime_mono_ns() - r->t0_ns);
    else
        server__answered(r, status);
    atomic_fetch_add_explicit(&metrics_global.lane_requests, 1, memory_order_relaxed);
    conns_request_ended(l->srv->conns, c->slot);
    buf_free(&r->answer);
    ingest_result_free(&r->res);
    free(r);
    c->req = NULL;
}

/*
 * After the round's commit: r's answer, as libmicrohttpd would write it (with
 * the headers of server_respond.c, in its order), sent. -1 if c is broken.
 */
static int answer(server__lane *l, lane_conn *c, server__req *r)
{
    server__srv *s = l->srv;
    unsigned st = r->answer_status ? r->answer_status : 503;
    if (st == 200 && r->res.n) {
        if (s->deliver) deliver_notify(s->deliver, r->res.n);
        if (s->recent) recent_add(s->recent, r->res.lines.p, r->res.ev, r->res.n);
        if (tail_hub_active(s->tail)) server__publish(s, r);
    }
    const char *body = r->answer.p ? r->answer.p : "";
    size_t len = r->answer.len;
    int nl = len == 0 || body[len - 1] != '\n';
    int rc = buf_printf(&c->out, "HTTP/1.1 %u %s\r\nDate: %s\r\nContent-Type: application/json\r\n",
                        st, MHD_get_reason_phrase_for(st), date_now(l)) ||
             (r->cors && buf_printf(&c->out, "Access-Control-Allow-Origin: %s\r\n", r->cors)) ||
             buf_printf(&c->out, "Cache-Control: no-store\r\n%sContent-Length: %zu\r\n\r\n",
                        st == 503 ? "Retry-After: 1\r\n" : "", len + (size_t)nl) ||
             buf_append(&c->out, body, len) || (nl && buf_putc(&c->out, '\n'));
    request_end(l, c, r, st);
    return rc ? -1 : send_out(c);
}

/* Has the connection's socket looked at again: an event comes if bytes wait in it. */
static int look_again(server__lane *l, lane_conn *c)
{
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    return epoll_ctl(l->lep, EPOLL_CTL_MOD, c->fd, &e);
}

/* The inbox's connections into the lane's set and epoll (ready ones show in the next round). */
static void take_inbox(server__lane *l)
{
    pthread_mutex_lock(&l->mu);
    lane_conn *c = l->inbox;
    l->inbox = NULL;
    pthread_mutex_unlock(&l->mu);
    while (c) {
        lane_conn *next = c->next;
        int one = 1; /* answers go out whole in one send: no reason to wait for an ACK */
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_add(&l->lane, c);
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(l->lep, EPOLL_CTL_ADD, c->fd, &e))
            conn_close(l, &l->lane, c);
        else
            c->polled = 1;
        c = next;
    }
}

/* One event of a lane connection: its answer sent on, its next request taken. */
static void on_event(server__lane *l, lane_conn *c, uint32_t ev, lane_conn **round,
                     lake_batch **batches)
{
    if (c->out.len) {
        if (send_out(c)) {
            conn_close(l, &l->lane, c);
            return;
        }
        if (c->out.len) { /* still waiting for room: its next request after */
            c->again = 1;
            return;
        }
    }
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || c->again) {
        c->again = 0;
        take(l, c, ev, round, batches);
    }
}

/*
 * The events that came while the round was committed, kept in evs for the
 * next round: a client that left meanwhile (its request is committed, but
 * no one waits for the answer: counted 499, as libmicrohttpd's threads count
 * a client gone before its answer). Returns how many there are.
 */
static int left_meanwhile(server__lane *l, struct epoll_event *evs)
{
    int n = epoll_wait(l->lep, evs, LANE_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        lane_conn *c = evs[i].data.ptr;
        if (c != (void *)&mark_wake && c->req &&
            (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            c->gone = 1;
    }
    return n > 0 ? n : 0;
}

/* c closed: its event kept for the next round is dropped. */
static void forget_event(lane_conn *c, struct epoll_event *evs, int n)
{
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr == c) evs[i].data.ptr = NULL;
}

static void *lane_main(void *arg)
{
    server__lane *l = arg;
    struct epoll_event evs[LANE_EVENTS];
    int kept = 0; /* events in evs from the round before */
    while (!atomic_load(&l->stop)) {
        lane_conn *round = NULL;
        lake_batch *batches = NULL;
        int n = kept ? kept : epoll_wait(l->lep, evs, LANE_EVENTS, wait_timeout(&l->lane));
        kept = 0;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &mark_wake) {
                drain(l->lev);
                take_inbox(l);
            } else if (p) {
                on_event(l, p, evs[i].events, &round, &batches);
            }
        }
        hand_over_late(l, l->lep, &l->lane);
        if (batches) lake_writer_commit(l->srv->writer, batches);
        if (round) kept = left_meanwhile(l, evs);
        while (round) {
            lane_conn *c = round;
            round = c->rnext;
            int broken;
            if (c->gone) {
                request_end(l, c, c->req, 499);
                broken = 1;
            } else {
                broken = answer(l, c, c->req);
            }
            if (!broken && c->again && !c->out.len) {
                c->again = 0;
                broken = look_again(l, c); /* more requests were sent behind this one */
            }
            if (broken) {
                forget_event(c, evs, kept);
                conn_close(l, &l->lane, c);
            }
        }
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------- */

static void close_set(server__lane *l, lane_set *set)
{
    while (set->head) conn_close(l, set, set->head);
}

void server__lane_stop(server__srv *s)
{
    server__lane *l = s->lane;
    if (!l) return;
    atomic_store(&l->stop, 1);
    if (l->athr_started) {
        wake(l->aev);
        pthread_join(l->athr, NULL);
    }
    if (l->lthr_started) {
        wake(l->lev);
        pthread_join(l->lthr, NULL);
    }
    close_set(l, &l->accepting);
    close_set(l, &l->lane);
    while (l->inbox) {
        lane_conn *c = l->inbox;
        l->inbox = c->next;
        set_add(&l->lane, c);
        conn_close(l, &l->lane, c);
    }
    int fds[] = {l->lfd, l->aep, l->lep, l->aev, l->lev};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0) close(fds[i]);
    pthread_mutex_destroy(&l->mu);
    free(l->bytes);
    free(l);
    s->lane = NULL;
}

int server__lane_start(server__srv *s, int lfd, char *err, size_t errlen)
{
    server__lane *l = calloc(1, sizeof *l);
    if (!l) {
        close(lfd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->srv = s;
    l->lfd = lfd;
    l->max = (size_t)s->cfg.ingest_lane;
    pthread_mutex_init(&l->mu, NULL);
    s->lane = l;
    l->aep = epoll_create1(EPOLL_CLOEXEC);
    l->lep = epoll_create1(EPOLL_CLOEXEC);
    l->aev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->lev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &mark_listen};
    struct epoll_event ea = {.events = EPOLLIN, .data.ptr = &mark_wake};
    struct epoll_event ew = {.events = EPOLLIN, .data.ptr = &mark_wake};
    if (!(l->bytes = malloc(l->max))) {
        snprintf(err, errlen, "out of memory for the ingest lane's %zu bytes", l->max);
        goto fail;
    }
    if (l->aep < 0 || l->lep < 0 || l->aev < 0 || l->lev < 0 ||
        epoll_ctl(l->aep, EPOLL_CTL_ADD, lfd, &el) ||
        epoll_ctl(l->aep, EPOLL_CTL_ADD, l->aev, &ea) ||
        epoll_ctl(l->lep, EPOLL_CTL_ADD, l->lev, &ew)) {
        snprintf(err, errlen, "ingest lane: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&l->lthr, NULL, lane_main, l)) {
        snprintf(err, errlen, "cannot start the ingest lane's thread");
        goto fail;
    }
    l->lthr_started = 1;
    if (pthread_create(&l->athr, NULL, acceptor_main, l)) {
        snprintf(err, errlen, "cannot start the acceptor thread");
        goto fail;
    }
    l->athr_started = 1;
    return 0;
fail:
    server__lane_stop(s);
    return -1;
}
