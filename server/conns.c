/*
 * conns.c - the header deadline and room at the connection limit (conns.h).
 *
 * Each connection is WAITING (for a request's headers), BUSY (inside a
 * request) or CLOSING (shut down by this table, not yet closed by
 * libmicrohttpd). WAITING connections are kept in one list in the order they
 * began to wait, so the one to evict is its head and the watcher's scan is
 * over waiting connections only. `open` counts WAITING and BUSY ones: a
 * CLOSING connection no longer holds a slot, although its descriptor lives
 * until libmicrohttpd notices (which is why the server gives libmicrohttpd a
 * higher limit than --max-connections).
 */
#include "conns.h"

#include "buf.h"
#include "evtime.h"
#include "ingest.h"
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { WAITING, BUSY, CLOSING };

struct conns_slot {
    int fd;
    int state;
    int64_t since_ms;          /* WAITING: when it began to wait */
    unsigned requests;         /* requests begun on it */
    conns_slot *prev, *next;   /* in the waiting list while WAITING */
    int64_t body_deadline;     /* BUSY with a body still arriving: when it must be whole; else 0 */
    conns_slot *bprev, *bnext; /* in the receiving list while body_deadline is set */
};

struct conns_table {
    conns_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* wakes the watcher to stop */
    conns_slot *head, *tail;   /* WAITING, oldest first */
    conns_slot *bhead, *btail; /* bodies arriving, earliest deadline first */
    unsigned open;             /* WAITING + BUSY */
    int stop;
    pthread_t watcher;
};

int conns_write_error(int fd, unsigned status, const char *reason, const char *extra_headers,
                      const char *msg, char *err, size_t errlen)
{
    buf body = BUF_INIT, all = BUF_INIT;
    ingest_error_json(&body, msg);
    buf_printf(&all,
               "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
               status, reason, body.len, extra_headers ? extra_headers : "");
    buf_append(&all, body.p, body.len);
    int rc = -1;
    if (!all.p || !body.p) {
        snprintf(err, errlen, "cannot write the %u answer: out of memory", status);
    } else {
        ssize_t n = send(fd, all.p, all.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)all.len)
            rc = 0;
        else if (n < 0)
            snprintf(err, errlen, "cannot send the %u answer: %s", status, strerror(errno));
        else
            snprintf(err, errlen, "sent %zd of the %u answer's %zu bytes", n, status, all.len);
    }
    buf_free(&body);
    buf_free(&all);
    return rc;
}

/* The answer to a connection refused before a handler has it: best effort, the connection is
 * shut down whether or not it went out. */
static void write_refusal(int fd, unsigned status, const char *reason, const char *extra_headers,
                          const char *msg)
{
    char discard[160];
    conns_write_error(fd, status, reason, extra_headers, msg, discard, sizeof discard);
}

static void unlink_waiting(conns_table *t, conns_slot *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        t->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        t->tail = c->prev;
    c->prev = c->next = NULL;
}

static void append_waiting(conns_table *t, conns_slot *c)
{
    c->state = WAITING;
    c->since_ms = evtime_mono_ms();
    c->prev = t->tail;
    c->next = NULL;
    if (t->tail)
        t->tail->next = c;
    else
        t->head = c;
    t->tail = c;
}

static void unlink_receiving(conns_table *t, conns_slot *c)
{
    if (!c->body_deadline) return;
    if (c->bprev)
        c->bprev->bnext = c->bnext;
    else
        t->bhead = c->bnext;
    if (c->bnext)
        c->bnext->bprev = c->bprev;
    else
        t->btail = c->bprev;
    c->bprev = c->bnext = NULL;
    c->body_deadline = 0;
}

/* Every request has the same timeout: appending keeps the list in deadline order. */
static void append_receiving(conns_table *t, conns_slot *c, int64_t deadline)
{
    c->body_deadline = deadline;
    c->bprev = t->btail;
    c->bnext = NULL;
    if (t->btail)
        t->btail->bnext = c;
    else
        t->bhead = c;
    t->btail = c;
}

/* A body not whole by its deadline: answered 408, shut down. t->mu held. */
static void close_receiving(conns_table *t, conns_slot *c)
{
    unlink_receiving(t, c);
    c->state = CLOSING;
    t->open--;
    metrics_refused(METRICS_REFUSED_BODY_TIMEOUT);
    char msg[96];
    snprintf(msg, sizeof msg, "request not received within %g s",
             (double)t->cfg.request_timeout_ms / 1000.0);
    write_refusal(c->fd, 408, "Request Timeout", "", msg);
    shutdown(c->fd, SHUT_RDWR);
}

/* Shuts a WAITING connection down, with an answer if it never had a request. t->mu held. */
static void close_waiting(conns_table *t, conns_slot *c, enum metrics_refusal why)
{
    unlink_waiting(t, c);
    c->state = CLOSING;
    t->open--;
    metrics_refused(why); /* before the client can see it, and ask /metrics */
    if (!c->requests) {
        char msg[200];
        if (why == METRICS_REFUSED_HEADER_TIMEOUT) {
            snprintf(msg, sizeof msg, "request headers not received within %g s",
                     (double)t->cfg.header_timeout_ms / 1000.0);
            write_refusal(c->fd, 408, "Request Timeout", "", msg);
        } else {
            snprintf(msg, sizeof msg,
                     "connection closed to make room: the server is at its connection limit "
                     "(--max-connections %u) and this connection had not sent its request "
                     "headers",
                     t->cfg.max);
            write_refusal(c->fd, 503, "Service Unavailable", "Retry-After: 1\r\n", msg);
        }
    }
    shutdown(c->fd, SHUT_RDWR);
}

conns_slot *conns_opened(conns_table *t, int fd)
{
    conns_slot *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    pthread_mutex_lock(&t->mu);
    if (t->open >= t->cfg.max && t->head) close_waiting(t, t->head, METRICS_REFUSED_EVICTED);
    if (t->open >= t->cfg.max) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the server is at its connection limit (--max-connections %u) and every "
                 "connection is busy",
                 t->cfg.max);
        metrics_refused(METRICS_REFUSED_CONNECTION_LIMIT);
        write_refusal(fd, 503, "Service Unavailable", "Retry-After: 1\r\n", msg);
        shutdown(fd, SHUT_RDWR);
        c->state = CLOSING;
    } else {
        append_waiting(t, c);
        t->open++;
    }
    pthread_mutex_unlock(&t->mu);
    return c;
}

int conns_closing(conns_table *t, conns_slot *c)
{
    if (!c) return 0;
    pthread_mutex_lock(&t->mu);
    int closing = c->state == CLOSING;
    pthread_mutex_unlock(&t->mu);
    return closing;
}

void conns_closed(conns_table *t, conns_slot *c)
{
    if (!c) return;
    pthread_mutex_lock(&t->mu);
    if (c->state == WAITING) unlink_waiting(t, c);
    unlink_receiving(t, c);
    if (c->state != CLOSING) t->open--;
    pthread_mutex_unlock(&t->mu);
    free(c);
}

int conns_request_began(conns_table *t, conns_slot *c, int64_t body_deadline_ms)
{
    if (!c) return 0;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    if (c->state == CLOSING) {
        rc = -1;
    } else if (c->state == WAITING) {
        unlink_waiting(t, c);
        c->state = BUSY;
        c->requests++;
        if (body_deadline_ms) append_receiving(t, c, body_deadline_ms);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int conns_body_done(conns_table *t, conns_slot *c)
{
    if (!c) return 0;
    pthread_mutex_lock(&t->mu);
    int rc = c->state == CLOSING ? -1 : 0;
    unlink_receiving(t, c);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void conns_request_ended(conns_table *t, conns_slot *c)
{
    if (!c) return;
    pthread_mutex_lock(&t->mu);
    unlink_receiving(t, c);
    if (c->state == BUSY) append_waiting(t, c);
    pthread_mutex_unlock(&t->mu);
}

void conns_refuse(conns_table *t, conns_slot *c, int fd, unsigned status, const char *reason,
                  const char *msg, enum metrics_refusal why)
{
    pthread_mutex_lock(&t->mu);
    if (c && c->state == WAITING) {
        unlink_waiting(t, c);
        t->open--;
    } else if (c && c->state == BUSY) {
        unlink_receiving(t, c);
        t->open--;
    }
    if (c) c->state = CLOSING;
    metrics_refused(why);
    write_refusal(fd, status, reason, "", msg);
    shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&t->mu);
}

/* ---- the watcher ------------------------------------------------------------ */

static void *watcher_main(void *arg)
{
    conns_table *t = arg;
    int64_t tick = t->cfg.header_timeout_ms / 10;
    if (tick < 20) tick = 20;
    if (tick > 500) tick = 500;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + tick * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        if (t->stop) break;
        int64_t now = evtime_mono_ms();
        for (conns_slot *c = t->head, *next; c; c = next) {
            next = c->next;
            /* a kept-alive connection that is only idle is libmicrohttpd's to close, at
             * --idle-timeout after its last byte: the second more leaves it that, and this
             * catches the ones that kept it alive by trickling a header */
            int64_t limit = c->requests ? t->cfg.idle_timeout_ms + 1000 : t->cfg.header_timeout_ms;
            if (now - c->since_ms >= limit) close_waiting(t, c, METRICS_REFUSED_HEADER_TIMEOUT);
        }
        while (t->bhead && t->bhead->body_deadline <= now) close_receiving(t, t->bhead);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

conns_table *conns_new(const conns_config *cfg, char *err, size_t errlen)
{
    conns_table *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->watcher, NULL, watcher_main, t)) {
        snprintf(err, errlen, "cannot start the connection watcher");
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        return NULL;
    }
    return t;
}

void conns_free(conns_table *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->watcher, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}
