/*
 * tail.c - Server-Sent Events of accepted events (tail.h).
 *
 * Locks: the hub's mutex guards the client list; each client's mutex guards
 * its buffer and state. A publisher takes the hub's, then each client's;
 * libmicrohttpd's reader callback takes only its client's. A client is
 * suspended only by its reader, with its mutex held and `suspended` set in
 * the same critical section, and resumed only by whoever clears `suspended`:
 * so it is never resumed twice or while running.
 *
 * A suspended connection is not watched by libmicrohttpd, so a client that
 * goes away would keep its slot (and count against --tail-max-clients) until
 * the next heartbeat tried to write to it. So the watcher thread, which also
 * sends the heartbeats, waits in epoll for the clients' sockets to be shut
 * down by their peer (EPOLLRDHUP: a tail client sends nothing after its
 * request, so that is its leaving) and ends such a client's stream at once:
 * libmicrohttpd then closes the connection and frees the client. Epoll
 * entries carry a client's id, not its address, and are looked up under the
 * hub's mutex, so an event for a client already freed finds nothing.
 */
#include "tail.h"

#include "buf.h"
#include "evtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPEN, ENDING };

typedef struct client {
    tail_hub *h;
    struct MHD_Connection *conn;
    uint64_t id; /* its key in the watcher's epoll set; 0: not watched */
    int fd;      /* the connection's socket */
    pthread_mutex_t mu;
    buf out;
    size_t sent; /* bytes of out already given to libmicrohttpd */
    int suspended, state;
    char *patbuf;
    char **pats;
    size_t npats;
    struct client *prev, *next;
} client;

struct tail_hub {
    pthread_mutex_t mu;
    int ep;   /* epoll: the clients' sockets, for their peer leaving, and wake */
    int wake; /* eventfd: tail_hub_close wakes the watcher */
    uint64_t next_id;
    client *head;
    size_t max;
    int64_t heartbeat_ms;
    int closed;
    _Atomic int active;
    _Atomic uint64_t dropped;
    pthread_t watcher;
};

/* Appends text, or drops the client when it would fall too far behind. c->mu held. */
static void queue(client *c, const char *p, size_t n, const char *p2, size_t n2, const char *p3,
                  size_t n3)
{
    if (c->state != OPEN) return;
    if (c->out.len - c->sent + n + n2 + n3 > c->h->max) {
        /* what is queued goes, except the rest of a message already partly sent: the
         * client must see whole messages, then the last one */
        size_t to = c->sent;
        if (c->sent &&
            !(c->sent >= 2 && c->out.p[c->sent - 2] == '\n' && c->out.p[c->sent - 1] == '\n')) {
            const char *end = memmem(c->out.p + c->sent - 1, c->out.len - (c->sent - 1), "\n\n", 2);
            to = end ? (size_t)(end - c->out.p) + 2 : c->out.len;
        }
        memmove(c->out.p, c->out.p + c->sent, to - c->sent);
        c->out.len = to - c->sent;
        c->sent = 0;
        buf_printf(&c->out,
                   "event: dropped\ndata: {\"error\":\"this client fell more than %zu bytes behind "
                   "the events; reconnect to go on\"}\n\n",
                   c->h->max);
        c->state = ENDING;
        c->h->dropped++;
    } else {
        buf_append(&c->out, p, n);
        if (n2) buf_append(&c->out, p2, n2);
        if (n3) buf_append(&c->out, p3, n3);
    }
    if (c->suspended) {
        c->suspended = 0;
        MHD_resume_connection(c->conn);
    }
}

/*
 * A glob of '*' (any run) and '?' (any one character) over s, in O(len(p) *
 * len(s)) at worst: on a mismatch only the last '*' is retried. (fnmatch(3)
 * backtracks over every '*', which a pattern like "*a*a*a*a*b" turns into a
 * cost that grows as a power of the type's length, paid on the ingest path.)
 */
static int glob(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = ++p;
            resume = s;
        } else if (*p && (*p == '?' || *p == *s)) {
            p++, s++;
        } else if (star) {
            p = star;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*') p++;
    return !*p;
}

static int matches(const client *c, const char *type)
{
    if (!c->npats) return 1;
    for (size_t i = 0; i < c->npats; i++)
        if (glob(c->pats[i], type)) return 1;
    return 0;
}

void tail_publish(tail_hub *h, const char *type, size_t type_len, const char *json, size_t len)
{
    char t[256];
    if (type_len >= sizeof t) type_len = sizeof t - 1;
    memcpy(t, type, type_len);
    t[type_len] = 0;
    pthread_mutex_lock(&h->mu);
    for (client *c = h->head; c; c = c->next) {
        if (!matches(c, t)) continue;
        pthread_mutex_lock(&c->mu);
        queue(c, "data: ", 6, json, len, "\n\n", 2);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&h->mu);
}

/* The client's peer has gone: its stream ends now, with nothing more to send. h->mu held. */
static void hang_up(tail_hub *h, client *c)
{
    epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->id = 0;
    pthread_mutex_lock(&c->mu);
    c->out.len = c->sent = 0;
    c->state = ENDING;
    if (c->suspended) {
        c->suspended = 0;
        MHD_resume_connection(c->conn);
    }
    pthread_mutex_unlock(&c->mu);
}

static void heartbeat(tail_hub *h)
{
    char line[64], now[EVTIME_LEN + 1];
    evtime_format(evtime_now_ms(), now);
    int n = snprintf(line, sizeof line, ": heartbeat %s\n\n", now);
    for (client *c = h->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        queue(c, line, (size_t)n, NULL, 0, NULL, 0);
        pthread_mutex_unlock(&c->mu);
    }
}

static void *watcher_main(void *arg)
{
    tail_hub *h = arg;
    int64_t beat = evtime_mono_ms() + h->heartbeat_ms;
    for (;;) {
        int64_t wait = beat - evtime_mono_ms();
        struct epoll_event ev[64];
        int n = epoll_wait(h->ep, ev, 64, wait > 0 ? (int)(wait < 60000 ? wait : 60000) : 0);
        pthread_mutex_lock(&h->mu);
        if (h->closed) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        for (int i = 0; i < n; i++) {
            for (client *c = h->head; c; c = c->next)
                if (c->id && c->id == ev[i].data.u64) {
                    hang_up(h, c);
                    break;
                }
        }
        if (evtime_mono_ms() >= beat) {
            heartbeat(h);
            beat = evtime_mono_ms() + h->heartbeat_ms;
        }
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

tail_hub *tail_hub_new(size_t buffer_max, int64_t heartbeat_ms)
{
    tail_hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->max = buffer_max ? buffer_max : (1u << 20);
    h->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 15000;
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    pthread_mutex_init(&h->mu, NULL);
    if (h->ep < 0 || h->wake < 0 || epoll_ctl(h->ep, EPOLL_CTL_ADD, h->wake, &ev) ||
        pthread_create(&h->watcher, NULL, watcher_main, h)) {
        if (h->ep >= 0) close(h->ep);
        if (h->wake >= 0) close(h->wake);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    return h;
}

void tail_hub_close(tail_hub *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        return;
    }
    h->closed = 1;
    uint64_t one = 1;
    if (write(h->wake, &one, sizeof one) < 0) { /* the counter cannot overflow here */
    }
    static const char end[] = "event: end\ndata: {\"reason\":\"the server is stopping\"}\n\n";
    for (client *c = h->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        queue(c, end, sizeof end - 1, NULL, 0, NULL, 0);
        c->state = ENDING;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->watcher, NULL);
}

void tail_hub_free(tail_hub *h)
{
    if (!h) return;
    tail_hub_close(h);
    close(h->ep);
    close(h->wake);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int tail_hub_active(tail_hub *h)
{
    return h && atomic_load_explicit(&h->active, memory_order_relaxed) > 0;
}

void tail_hub_counts(tail_hub *h, uint64_t *clients, uint64_t *dropped)
{
    *clients = (uint64_t)atomic_load(&h->active);
    *dropped = atomic_load(&h->dropped);
}

/* ---- one client ------------------------------------------------------------ */

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    client *c = cls;
    pthread_mutex_lock(&c->mu);
    size_t pending = c->out.len - c->sent;
    if (pending) {
        size_t n = pending < max ? pending : max;
        memcpy(out, c->out.p + c->sent, n);
        c->sent += n;
        if (c->sent == c->out.len) {
            c->out.len = c->sent = 0;
        } else if (c->sent >= 65536 && c->sent * 2 >= c->out.len) {
            /* a client that keeps up only partly: what it has read is given back */
            memmove(c->out.p, c->out.p + c->sent, c->out.len - c->sent);
            c->out.len -= c->sent;
            c->sent = 0;
        }
        pthread_mutex_unlock(&c->mu);
        return (ssize_t)n;
    }
    if (c->state != OPEN) {
        pthread_mutex_unlock(&c->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    c->suspended = 1;
    MHD_suspend_connection(c->conn);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void client_free(void *cls)
{
    client *c = cls;
    tail_hub *h = c->h;
    pthread_mutex_lock(&h->mu);
    if (c->prev)
        c->prev->next = c->next;
    else if (h->head == c)
        h->head = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->id) epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
    h->active--;
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_destroy(&c->mu);
    buf_free(&c->out);
    free(c->pats);
    free(c->patbuf);
    free(c);
}

struct MHD_Response *tail_response(tail_hub *h, struct MHD_Connection *conn, const char *patterns)
{
    client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->h = h;
    c->conn = conn;
    pthread_mutex_init(&c->mu, NULL);
    if (patterns && *patterns) {
        size_t n = 1;
        for (const char *p = patterns; *p; p++) n += *p == ',';
        c->patbuf = strdup(patterns);
        c->pats = calloc(n, sizeof *c->pats);
        if (!c->patbuf || !c->pats) {
            free(c->patbuf);
            free(c->pats);
            pthread_mutex_destroy(&c->mu);
            free(c);
            return NULL;
        }
        for (char *save = NULL, *t = strtok_r(c->patbuf, ",", &save); t;
             t = strtok_r(NULL, ",", &save))
            if (*t) c->pats[c->npats++] = t;
    }
    buf_printf(&c->out, "retry: 2000\n: tail %s\n\n", patterns && *patterns ? patterns : "*");
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        c->h = h;
        pthread_mutex_destroy(&c->mu);
        buf_free(&c->out);
        free(c->pats);
        free(c->patbuf);
        free(c);
        return NULL;
    }
    c->next = h->head;
    if (h->head) h->head->prev = c;
    h->head = c;
    h->active++;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = ++h->next_id};
        c->fd = ci->connect_fd;
        if (!epoll_ctl(h->ep, EPOLL_CTL_ADD, c->fd, &ev)) c->id = ev.data.u64;
    }
    pthread_mutex_unlock(&h->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, c, client_free);
    if (!r) {
        client_free(c);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}
