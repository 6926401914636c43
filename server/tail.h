/*
 * tail.h - GET /tail: newly accepted events as Server-Sent Events.
 *
 * Each client has a pattern list and a bounded buffer of SSE text. Ingest
 * publishes every accepted event once it is durable, just before the answer:
 * publishing only copies the event into the buffers of the clients whose
 * patterns match, under each client's own lock, so a slow client never slows
 * ingest. A client whose buffer would pass its bound is dropped: its buffer
 * is replaced by one final `event: dropped` and the stream ends. A client
 * with nothing to send is suspended (libmicrohttpd holds no thread for it)
 * and resumed by the next event or heartbeat (a comment line, every
 * heartbeat_ms). A client that goes away is noticed at once (its socket is
 * watched for the peer's shutdown), and its stream and slot end then.
 *
 * Patterns: comma-separated globs, '*' any run of characters and '?' any one
 * character, over the event type ("rpc.call",
 * "collection.*", "ws.*,lifecycle.*"); empty or absent: every event.
 */
#ifndef EVENTS_TAIL_H
#define EVENTS_TAIL_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tail_hub tail_hub;

/* buffer_max: bytes a client may fall behind (0: 1 MiB); heartbeat_ms (0: 15 s). */
tail_hub *tail_hub_new(size_t buffer_max, int64_t heartbeat_ms);

/* Ends every stream (they finish with `event: end`); no new client is taken. */
void tail_hub_close(tail_hub *h);
void tail_hub_free(tail_hub *h); /* after the HTTP daemon has stopped */

/* 1 if any client listens: publishing is skipped otherwise. */
int tail_hub_active(tail_hub *h);

/* One accepted event: its type and its normalised JSON line (without the newline). */
void tail_publish(tail_hub *h, const char *type, size_t type_len, const char *json, size_t len);

/* Clients connected now, and dropped for being slow since the start. */
void tail_hub_counts(tail_hub *h, uint64_t *clients, uint64_t *dropped);

/*
 * The streaming response for a new client of conn with the patterns (may be
 * NULL). NULL if the hub is closed or out of memory.
 */
struct MHD_Response *tail_response(tail_hub *h, struct MHD_Connection *conn, const char *patterns);

#endif
