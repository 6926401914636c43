/*
 * tail.c - Server-Sent Events of accepted events (tail.h).
 *
 * The flow: ingest's HTTP thread -> tail_publish (the request's lines and
 * offsets, taken over and linked onto the queue: no copy) -> the tail thread
 * -> the type table (which clients want this type) -> each such client's
 * buffer -> libmicrohttpd's reader callback -> the socket. Ingest's cost is
 * one lock; what clients ask for costs only the tail thread, and when it
 * falls behind by more than the queue's bound, events are not sent to live
 * tails (counted, and announced in each stream where the gap is) instead of
 * slowing ingest down.
 *
 * Matching: each pattern is compiled at subscribe time (glob.h): one pass
 * over the type, whatever the pattern. The clients that
 * want a type are worked out on its first event and kept in a table keyed by
 * a SipHash of the type (so that types cannot be made to collide); the
 * table is emptied when a client comes or goes, or when it is half full.
 *
 * Locks: q_mu guards the queue (publishers, the tail thread). mu guards the
 * client list and the type table (the tail thread, tail_response,
 * client_free). Each client's mu guards its buffer and state. Order: mu,
 * then a client's mu; q_mu is never held with another. A client is suspended
 * only by its reader, with its mutex held and `suspended` set in the same
 * critical section, and resumed only by whoever clears `suspended`: so it is
 * never resumed twice or while running.
 *
 * A suspended connection is not watched by libmicrohttpd, so a client that
 * goes away would keep its slot (and count against --tail-max-clients) until
 * the next heartbeat tried to write to it. So a watcher thread waits in epoll
 * for the clients' sockets to be shut down by their peer (EPOLLRDHUP: a tail
 * client sends nothing after its request, so that is its leaving) and ends
 * such a client's stream at once: libmicrohttpd then closes the connection
 * and frees the client. Epoll entries carry a client's id, not its address,
 * and are looked up under mu, so an event for a client already freed finds
 * nothing.
 */
#include "tail.h"

#include "buf.h"
#include "glob.h"
#include "evrand.h"
#include "evtime.h"
#include "siphash.h"

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

/* ---- clients and the hub ------------------------------------------------------- */

typedef struct tail_client {
    tail_hub *h;
    struct MHD_Connection *conn;
    uint64_t id; /* its key in the watcher's epoll set; 0: not watched */
    int fd;      /* the connection's socket */
    pthread_mutex_t mu;
    buf out;
    size_t sent; /* bytes of out already given to libmicrohttpd */
    int suspended, state;
    glob_list types; /* none: every event */
    struct tail_client *prev, *next;
    /* A client that gave a Last-Event-ID (tail_response_after): under mu */
    int ids;         /* each event's id: is the cursor after it (pos) */
    int catching;    /* the stream is being read: live events wait in held */
    buf held;        /* those live events' lines, each ending with a newline */
    lake_cursor pos; /* the cursor after the last event sent, or read by the catch-up */
} client;

/* One request's events on the queue (owned); n 0 is a gap: `lost` events were not queued here. */
typedef struct chunk {
    struct chunk *next;
    char *lines;
    lake_event *ev;
    size_t n, bytes;
    uint64_t lost;
} chunk;

static void chunk_free(chunk *ch)
{
    free(ch->lines);
    free(ch->ev);
    free(ch);
}

/* The clients that want one type; hash 0: an empty slot. */
typedef struct type_entry {
    uint64_t hash;
    char *type;
    size_t len, n, cap;
    client **who;
} type_entry;

#define TYPE_SLOTS 1024 /* a power of two; emptied at half full */

struct tail_hub {
    tail_config cfg;
    pthread_mutex_t mu; /* head, closed, the type table */
    client *head;
    int closed;
    type_entry types[TYPE_SLOTS];
    size_t ntypes;
    type_entry *last; /* the entry of the previous event: a batch is often of one type */
    int types_stale;  /* a client came or went: empty the table before using it */
    uint8_t key[16];  /* SipHash key of the type table */

    pthread_mutex_t q_mu; /* the queue */
    pthread_cond_t q_cv;  /* on CLOCK_MONOTONIC: work, closing, or the next heartbeat */
    chunk *q_head, *q_tail;
    size_t q_bytes;
    int closing;
    pthread_t thread;

    int ep;           /* epoll: the clients' sockets, for their peer leaving, and wake */
    int wake;         /* eventfd: tail_hub_close wakes the watcher */
    uint64_t next_id; /* under mu */
    pthread_t watcher;

    _Atomic int active;
    _Atomic uint64_t dropped, refused, lost, queue_bytes;
};

/* Appends text, or drops the client when it would fall too far behind. c->mu held. */
static void queue(client *c, const char *p, size_t n, const char *p2, size_t n2, const char *p3,
                  size_t n3)
{
    if (c->state != OPEN) return;
    if (c->out.len - c->sent + n + n2 + n3 > c->h->cfg.buffer_max) {
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
                   c->h->cfg.buffer_max);
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

static int matches(const client *c, const char *type, size_t len)
{
    return glob_list_match(&c->types, type, len);
}

/* Queues text to every client. h->mu held. */
static void to_all(tail_hub *h, const char *text, size_t n)
{
    for (client *c = h->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        queue(c, text, n, NULL, 0, NULL, 0);
        pthread_mutex_unlock(&c->mu);
    }
}

/* ---- the type table (h->mu held) ------------------------------------------------ */

static void types_clear(tail_hub *h)
{
    for (size_t i = 0; i < TYPE_SLOTS; i++) {
        free(h->types[i].type);
        h->types[i].type = NULL;
        h->types[i].hash = 0;
        h->types[i].n = 0;
    }
    h->ntypes = 0;
    h->last = NULL;
    h->types_stale = 0;
}

/* The entry of a type, filled on first use; NULL when out of memory. */
static type_entry *types_get(tail_hub *h, const char *type, size_t len)
{
    if (h->types_stale || h->ntypes >= TYPE_SLOTS / 2) types_clear(h);
    if (h->last && h->last->len == len && !memcmp(h->last->type, type, len)) return h->last;
    uint8_t d[16];
    siphash128(type, len, h->key, d);
    uint64_t hash;
    memcpy(&hash, d, sizeof hash);
    hash |= 1; /* never 0, the empty slot */
    size_t i = (size_t)hash & (TYPE_SLOTS - 1);
    for (; h->types[i].hash; i = (i + 1) & (TYPE_SLOTS - 1)) {
        type_entry *e = &h->types[i];
        if (e->hash == hash && e->len == len && !memcmp(e->type, type, len)) return h->last = e;
    }
    type_entry *e = &h->types[i];
    if (!(e->type = malloc(len ? len : 1))) return NULL;
    memcpy(e->type, type, len);
    e->len = len;
    e->n = 0;
    for (client *c = h->head; c; c = c->next) {
        if (!matches(c, type, len)) continue;
        if (e->n == e->cap) {
            size_t nc = e->cap ? e->cap * 2 : 8;
            client **nw = realloc(e->who, nc * sizeof *nw);
            if (!nw) {
                free(e->type);
                e->type = NULL;
                return NULL;
            }
            e->who = nw;
            e->cap = nc;
        }
        e->who[e->n++] = c;
    }
    e->hash = hash;
    h->ntypes++;
    return h->last = e;
}

/* ---- the tail thread -------------------------------------------------------------- */

/*
 * Sends one event to c (c->mu held). A client with ids: an event at or
 * before its position was sent by the catch-up and is skipped; else its id:
 * is the cursor after it. While catching up, the event waits in held.
 */
static void send_event(client *c, const char *json, size_t len)
{
    if (c->catching) {
        if (buf_append(&c->held, json, len) || buf_putc(&c->held, '\n')) c->state = ENDING;
        return;
    }
    lake_stream_pos p;
    uint64_t last;
    if (!c->ids || lake_stream_line_pos(json, len, &p)) {
        queue(c, "data: ", 6, json, len, "\n\n", 2);
        return;
    }
    if (!lake_cursor_get(&c->pos, p.sid, &last) && last >= p.seq) return; /* sent already */
    buf id = BUF_INIT;
    if (lake_cursor_set(&c->pos, p.sid, p.seq) || buf_puts(&id, "id: ") ||
        lake_cursor_format(&c->pos, &id) || buf_puts(&id, "\ndata: "))
        queue(c, "data: ", 6, json, len, "\n\n", 2);
    else
        queue(c, id.p, id.len, json, len, "\n\n", 2);
    buf_free(&id);
}

static void deliver_event(tail_hub *h, const char *type, size_t tlen, const char *json, size_t len)
{
    pthread_mutex_lock(&h->mu);
    type_entry *e = types_get(h, type, tlen);
    if (e) {
        for (size_t i = 0; i < e->n; i++) {
            client *c = e->who[i];
            pthread_mutex_lock(&c->mu);
            send_event(c, json, len);
            pthread_mutex_unlock(&c->mu);
        }
    } else { /* out of memory for the table: match one by one */
        for (client *c = h->head; c; c = c->next) {
            if (!matches(c, type, tlen)) continue;
            pthread_mutex_lock(&c->mu);
            send_event(c, json, len);
            pthread_mutex_unlock(&c->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

static void deliver(tail_hub *h, const chunk *ch)
{
    if (!ch->n) {
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "event: lost\ndata: {\"events\":%llu,\"error\":\"the server's tail queue "
                         "was full: %llu events were not sent here\"}\n\n",
                         (unsigned long long)ch->lost, (unsigned long long)ch->lost);
        pthread_mutex_lock(&h->mu);
        to_all(h, msg, (size_t)n);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    for (size_t i = 0; i < ch->n; i++) {
        const lake_event *e = &ch->ev[i];
        if (!e->stored) continue;
        const char *p = ch->lines + e->off;
        size_t len = e->len;
        while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
        /* a normalised line: {"id":…,"type":"…",… */
        const char *t = memmem(p, len < 1024 ? len : 1024, "\"type\":\"", 8);
        if (!t) continue;
        t += 8;
        const char *q = memchr(t, '"', len - (size_t)(t - p));
        if (q) deliver_event(h, t, (size_t)(q - t), p, len);
    }
}

static void heartbeat(tail_hub *h)
{
    char line[64], now[EVTIME_LEN + 1];
    evtime_format(evtime_now_ms(), now);
    int n = snprintf(line, sizeof line, ": heartbeat %s\n\n", now);
    pthread_mutex_lock(&h->mu);
    to_all(h, line, (size_t)n);
    pthread_mutex_unlock(&h->mu);
}

static void *tail_main(void *arg)
{
    tail_hub *h = arg;
    int64_t beat = evtime_mono_ms() + h->cfg.heartbeat_ms;
    pthread_mutex_lock(&h->q_mu);
    for (;;) {
        while (!h->q_head && !h->closing && evtime_mono_ms() < beat) {
            struct timespec ts = {(time_t)(beat / 1000), (long)(beat % 1000) * 1000000};
            pthread_cond_timedwait(&h->q_cv, &h->q_mu, &ts);
        }
        chunk *list = h->q_head;
        h->q_head = h->q_tail = NULL;
        int closing = h->closing;
        pthread_mutex_unlock(&h->q_mu);
        while (list) {
            chunk *ch = list;
            list = ch->next;
            deliver(h, ch);
            pthread_mutex_lock(&h->q_mu);
            h->q_bytes -= ch->bytes;
            atomic_store(&h->queue_bytes, h->q_bytes);
            pthread_mutex_unlock(&h->q_mu);
            chunk_free(ch);
        }
        if (!closing && evtime_mono_ms() >= beat) {
            heartbeat(h);
            beat = evtime_mono_ms() + h->cfg.heartbeat_ms;
        }
        pthread_mutex_lock(&h->q_mu);
        if (closing && !h->q_head) break;
    }
    pthread_mutex_unlock(&h->q_mu);
    return NULL;
}

/* ---- clients that leave ------------------------------------------------------------- */

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

static void *watcher_main(void *arg)
{
    tail_hub *h = arg;
    for (;;) {
        struct epoll_event ev[64];
        int n = epoll_wait(h->ep, ev, 64, -1);
        pthread_mutex_lock(&h->mu);
        if (h->closed) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        for (int i = 0; i < n; i++)
            for (client *c = h->head; c && ev[i].data.u64; c = c->next)
                if (c->id == ev[i].data.u64) {
                    hang_up(h, c);
                    break;
                }
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

/* ---- publishing (ingest's threads) --------------------------------------------------- */

/* Records that n events were not queued, as a gap after what is queued. h->q_mu held. */
static void mark_lost(tail_hub *h, size_t n)
{
    atomic_fetch_add(&h->lost, n);
    if (h->q_tail && !h->q_tail->n) {
        h->q_tail->lost += n;
        return;
    }
    chunk *gap = calloc(1, sizeof *gap);
    if (!gap) return; /* counted, not announced */
    gap->lost = n;
    if (h->q_tail)
        h->q_tail->next = gap;
    else
        h->q_head = gap;
    h->q_tail = gap;
    pthread_cond_signal(&h->q_cv);
}

void tail_publish(tail_hub *h, char *lines, size_t lines_len, lake_event *ev, size_t n)
{
    chunk *ch = n ? malloc(sizeof *ch) : NULL;
    pthread_mutex_lock(&h->q_mu);
    size_t bytes = sizeof *ch + lines_len + n * sizeof *ev;
    if (!n || h->closing || !ch || (h->q_bytes && h->q_bytes + bytes > h->cfg.queue_max)) {
        if (n && !h->closing) mark_lost(h, n);
        pthread_mutex_unlock(&h->q_mu);
        free(ch);
        free(lines);
        free(ev);
        return;
    }
    *ch = (chunk){NULL, lines, ev, n, bytes, 0};
    h->q_bytes += bytes;
    atomic_store(&h->queue_bytes, h->q_bytes);
    if (h->q_tail)
        h->q_tail->next = ch;
    else
        h->q_head = ch;
    h->q_tail = ch;
    pthread_cond_signal(&h->q_cv);
    pthread_mutex_unlock(&h->q_mu);
}

/* ---- the hub ------------------------------------------------------------------------ */

tail_hub *tail_hub_new(const tail_config *cfg)
{
    tail_hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cfg = *cfg;
    if (!h->cfg.buffer_max) h->cfg.buffer_max = 1u << 20;
    if (h->cfg.heartbeat_ms <= 0) h->cfg.heartbeat_ms = 15000;
    if (!h->cfg.queue_max) h->cfg.queue_max = 16u << 20;
    if (h->cfg.max_patterns <= 0) h->cfg.max_patterns = 16;
    if (!h->cfg.max_pattern_bytes) h->cfg.max_pattern_bytes = 256;
    if (h->cfg.max_pattern_bytes > TAIL_PATTERN_BYTES_MAX)
        h->cfg.max_pattern_bytes = TAIL_PATTERN_BYTES_MAX;
    for (int i = 0; i < 2; i++) {
        uint64_t r = evrand_u64();
        memcpy(h->key + 8 * i, &r, sizeof r);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->q_mu, NULL);
    pthread_cond_init(&h->q_cv, &ca);
    pthread_condattr_destroy(&ca);
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (h->ep >= 0 && h->wake >= 0 && !epoll_ctl(h->ep, EPOLL_CTL_ADD, h->wake, &ev) &&
        !pthread_create(&h->thread, NULL, tail_main, h)) {
        if (!pthread_create(&h->watcher, NULL, watcher_main, h)) return h;
        pthread_mutex_lock(&h->q_mu);
        h->closing = 1;
        pthread_cond_signal(&h->q_cv);
        pthread_mutex_unlock(&h->q_mu);
        pthread_join(h->thread, NULL);
    }
    if (h->ep >= 0) close(h->ep);
    if (h->wake >= 0) close(h->wake);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->q_mu);
    pthread_cond_destroy(&h->q_cv);
    free(h);
    return NULL;
}

void tail_hub_close(tail_hub *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    int was = h->closed;
    h->closed = 1;
    pthread_mutex_unlock(&h->mu);
    if (was) return;
    uint64_t one = 1;
    if (write(h->wake, &one, sizeof one) < 0) { /* the counter cannot overflow here */
    }
    pthread_join(h->watcher, NULL);
    /* what is queued is delivered first, then every stream ends */
    pthread_mutex_lock(&h->q_mu);
    h->closing = 1;
    pthread_cond_signal(&h->q_cv);
    pthread_mutex_unlock(&h->q_mu);
    pthread_join(h->thread, NULL);
    static const char end[] = "event: end\ndata: {\"reason\":\"the server is stopping\"}\n\n";
    pthread_mutex_lock(&h->mu);
    for (client *c = h->head; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        queue(c, end, sizeof end - 1, NULL, 0, NULL, 0);
        c->state = ENDING;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&h->mu);
}

void tail_hub_free(tail_hub *h)
{
    if (!h) return;
    tail_hub_close(h);
    pthread_mutex_lock(&h->mu);
    types_clear(h);
    for (size_t i = 0; i < TYPE_SLOTS; i++) free(h->types[i].who);
    pthread_mutex_unlock(&h->mu);
    close(h->ep);
    close(h->wake);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->q_mu);
    pthread_cond_destroy(&h->q_cv);
    free(h);
}

int tail_hub_active(tail_hub *h)
{
    return h && atomic_load_explicit(&h->active, memory_order_relaxed) > 0;
}

void tail_hub_stats(tail_hub *h, tail_stats *st)
{
    st->clients = (uint64_t)atomic_load(&h->active);
    st->dropped = atomic_load(&h->dropped);
    st->refused = atomic_load(&h->refused);
    st->lost = atomic_load(&h->lost);
    st->queue_bytes = atomic_load(&h->queue_bytes);
}

int tail_check_patterns(tail_hub *h, const char *patterns, char *err, size_t errlen)
{
    if (!glob_list_check(patterns, h->cfg.max_patterns, h->cfg.max_pattern_bytes, err, errlen))
        return 0;
    h->refused++;
    return -1;
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

static void client_destroy(client *c)
{
    pthread_mutex_destroy(&c->mu);
    buf_free(&c->out);
    buf_free(&c->held);
    lake_cursor_free(&c->pos);
    glob_list_free(&c->types);
    free(c);
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
    h->types_stale = 1; /* the table may name c */
    if (c->id) epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
    h->active--;
    pthread_mutex_unlock(&h->mu);
    client_destroy(c);
}

struct MHD_Response *tail_response(tail_hub *h, struct MHD_Connection *conn, const char *patterns)
{
    return tail_response_after(h, conn, patterns, NULL, NULL);
}

struct MHD_Response *tail_response_after(tail_hub *h, struct MHD_Connection *conn,
                                         const char *patterns, const lake_cursor *after,
                                         tail_client **out)
{
    client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->h = h;
    c->conn = conn;
    pthread_mutex_init(&c->mu, NULL);
    if (out) {
        c->ids = c->catching = 1;
        for (size_t i = 0; after && i < after->n; i++)
            if (lake_cursor_set(&c->pos, after->p[i].sid, after->p[i].seq)) {
                client_destroy(c);
                return NULL;
            }
        *out = c;
    }
    if (glob_list_compile(patterns, &c->types) ||
        buf_printf(&c->out, "retry: 2000\n: tail %s\n\n", patterns && *patterns ? patterns : "*")) {
        client_destroy(c);
        return NULL;
    }
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        client_destroy(c);
        return NULL;
    }
    c->next = h->head;
    if (h->head) h->head->prev = c;
    h->head = c;
    h->types_stale = 1; /* c is in no entry of the table yet */
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

void tail_catch_up(tail_client *c, const char *lines, size_t len)
{
    if (!len) return; /* lines may be NULL then */
    pthread_mutex_lock(&c->mu);
    c->catching = 0; /* sent as live ones are, with their ids */
    for (const char *p = lines, *end = lines + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n) send_event(c, p, n);
        p += n + 1;
    }
    c->catching = 1;
    pthread_mutex_unlock(&c->mu);
}

void tail_caught_up(tail_client *c, const lake_cursor *next, int whole)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; next && i < next->n; i++)
        if (lake_cursor_set(&c->pos, next->p[i].sid, next->p[i].seq)) whole = 0;
    c->catching = 0;
    if (whole) {
        buf held = c->held;
        c->held = (buf)BUF_INIT;
        for (size_t o = 0; o < held.len;) {
            const char *p = held.p + o, *nl = memchr(p, '\n', held.len - o);
            size_t n = nl ? (size_t)(nl - p) : held.len - o;
            send_event(c, p, n);
            o += n + 1;
        }
        buf_free(&held);
    } else if (c->state == OPEN) { /* the client reconnects with its last id, and goes on */
        buf_puts(&c->out, "event: more\ndata: {\"more\":true}\n\n");
        c->state = ENDING;
    }
    pthread_mutex_unlock(&c->mu);
}
