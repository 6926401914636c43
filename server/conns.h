/*
 * conns.h - which connections the server keeps open: a deadline for a
 * request's headers, and room for a new client at the connection limit.
 *
 * libmicrohttpd closes a connection only after it has sent nothing for the
 * idle timeout, so a client that sends one header line every few seconds
 * keeps its connection for ever, and a few hundred of them hold every slot
 * (slowloris). The table adds what libmicrohttpd lacks:
 *
 *  - a deadline for the headers: a new connection must have sent the whole
 *    header of its first request within header_timeout_ms of its accept, a
 *    kept-alive one the next request's header within idle_timeout_ms of the
 *    end of its last request. A watcher thread closes those that miss it;
 *    one that never had a request is answered 408 first.
 *  - room for a new client: with max connections open, a new one closes the
 *    connection that has waited longest for a request header (answered 503
 *    if it never had a request, closed as idle if it had). Real clients send
 *    their headers in one go, so that is an attacker's, or an idle
 *    keep-alive. Only when every other connection is inside a request (a body
 *    arriving, an ingest waiting for its commit, a query, a live tail) is the
 *    new connection refused, answered 503.
 *  - a deadline for a request's body: libmicrohttpd checks --request-timeout
 *    only when bytes arrive, so a client that sends its headers and then
 *    nothing would hold its connection for --idle-timeout. The watcher answers
 *    408 and closes a connection whose body is not whole by its deadline.
 *
 * Threads: conns_opened and conns_closed are called from libmicrohttpd's
 * connection notifications, conns_request_began and conns_request_ended from
 * its request callbacks, all in the thread that owns the connection; the
 * watcher runs in its own thread. One mutex guards the table.
 *
 * A connection is closed with shutdown(2), never close(2): libmicrohttpd sees
 * the client leave and closes it in its own thread, then calls conns_closed.
 * The descriptor is only used under the table's mutex and before conns_closed,
 * so a number that libmicrohttpd may have reused is never touched.
 */
#ifndef EVENTS_CONNS_H
#define EVENTS_CONNS_H

#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct conns_table conns_table;
typedef struct conns_slot conns_slot;

typedef struct conns_config {
    unsigned max;               /* connections open at most (--max-connections) */
    int64_t header_timeout_ms;  /* a new connection's first request header (--header-timeout) */
    int64_t idle_timeout_ms;    /* a kept-alive connection's next request header (--idle-timeout) */
    int64_t request_timeout_ms; /* a request whole, its body included (--request-timeout) */
} conns_config;

/* Starts the watcher. NULL with err set if it cannot. */
conns_table *conns_new(const conns_config *cfg, char *err, size_t errlen);

/* Stops the watcher and frees the table: after libmicrohttpd has stopped (and closed all). */
void conns_free(conns_table *t);

/*
 * A new connection on descriptor fd. Makes room for it (see above), or refuses
 * it (answers 503 and shuts it down). Returns the connection's entry for the
 * other calls, NULL when out of memory (the connection is then not tracked, and
 * every call accepts NULL).
 */
conns_slot *conns_opened(conns_table *t, int fd);

/* 1 if the table has shut c down (refused, made room with, past a deadline). */
int conns_closing(conns_table *t, conns_slot *c);

/* libmicrohttpd is closing the connection: forgets it and frees c. */
void conns_closed(conns_table *t, conns_slot *c);

/*
 * The headers of a request on c are whole; body_deadline_ms (monotonic) is
 * when its body must be whole, 0 if it has none. -1 if c is being closed
 * (refuse the request).
 */
int conns_request_began(conns_table *t, conns_slot *c, int64_t body_deadline_ms);

/* The body of the request on c is whole. -1 if c was closed for its deadline (answer nothing). */
int conns_body_done(conns_table *t, conns_slot *c);

/* The request on c has ended: c waits for the next request's header. */
void conns_request_ended(conns_table *t, conns_slot *c);

/*
 * Refuses the request on c (descriptor fd; c may be NULL) before libmicrohttpd
 * has its headers: writes the error answer (see conns_write_error), shuts the
 * connection down, frees its slot and counts why.
 */
void conns_refuse(conns_table *t, conns_slot *c, int fd, unsigned status, const char *reason,
                  const char *msg, enum metrics_refusal why);

/*
 * Writes a whole error answer (status, reason phrase, JSON body {"ok":false,
 * "error":msg}, Connection: close, extra_headers: "" or lines ending in CRLF)
 * straight to the socket without blocking. For answers libmicrohttpd cannot
 * queue. Returns 0 if it was all sent, else -1 with the reason in err (the
 * socket would block, or is gone).
 */
int conns_write_error(int fd, unsigned status, const char *reason, const char *extra_headers,
                      const char *msg, char *err, size_t errlen);

#endif
