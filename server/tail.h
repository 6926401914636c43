/*
 * tail.h - GET /tail: newly accepted events as Server-Sent Events.
 *
 * Ingest only hands accepted events over: tail_publish links one request's
 * events onto a bounded queue, whatever the clients ask for, and returns. One tail thread delivers
 * them: it decides which clients want an event (patterns are compiled when a client subscribes,
 * matching is linear in the type's length, and its outcome is remembered per type) and copies the
 * event into those clients' bounded buffers of SSE text. When the queue is full, events are not
 * sent to live tails: they are counted, and every client is told where the gap is (`event: lost`,
 * with the count). A client whose own buffer would pass its bound is dropped: its buffer is
 * replaced by one final `event: dropped` and the stream ends. A client with
 * nothing to send is suspended (libmicrohttpd holds no thread for it) and
 * resumed by the next event or heartbeat (a comment line every heartbeat_ms,
 * sent by the tail thread). A client that goes away is noticed at once (its
 * socket is watched for the peer's shutdown), and its stream and slot end then.
 *
 * Patterns: comma-separated globs, '*' any run of characters and '?' any one
 * character, over the event type ("rpc.call", "collection.*",
 * "ws.*,lifecycle.*"); empty or absent: every event. Their count and length
 * are bounded (tail_check_patterns).
 *
 * Threads: tail_publish from any thread (ingest's HTTP threads); the other
 * functions from libmicrohttpd's threads and the server's main thread.
 */
#ifndef EVENTS_TAIL_H
#define EVENTS_TAIL_H

#include "stream.h"
#include "writer.h"

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tail_hub tail_hub;
typedef struct tail_client tail_client;

typedef struct tail_config {
    size_t buffer_max;        /* bytes a client may fall behind; 0: 1 MiB */
    int64_t heartbeat_ms;     /* 0: 15 s */
    size_t queue_max;         /* bytes of events waiting for the tail thread; 0: 16 MiB */
    int max_patterns;         /* patterns in one subscription; 0: 16 */
    size_t max_pattern_bytes; /* bytes of one pattern, at most TAIL_PATTERN_BYTES_MAX; 0: 256 */
} tail_config;

#define TAIL_PATTERN_BYTES_MAX 1024

tail_hub *tail_hub_new(const tail_config *cfg);

/* Ends every stream (they finish with `event: end`, after the events already queued); no new
 * client is taken, and events published from now on are not sent. */
void tail_hub_close(tail_hub *h);
void tail_hub_free(tail_hub *h); /* after the HTTP daemon has stopped */

/* 1 if any client listens: publishing is skipped otherwise. */
int tail_hub_active(tail_hub *h);

/*
 * The accepted events of one request, in order: lines holds their normalised
 * JSON lines, ev[i] the offset and length of each (those not stored, the
 * duplicates, are skipped). Takes lines and ev (malloc'd; the hub frees
 * them), so that handing them over costs ingest nothing but a lock; never
 * waits for the tail thread.
 */
void tail_publish(tail_hub *h, char *lines, size_t lines_len, lake_event *ev, size_t n);

typedef struct tail_stats {
    uint64_t clients;     /* connected now */
    uint64_t dropped;     /* clients dropped for falling behind, since the start */
    uint64_t refused;     /* subscriptions refused for their patterns */
    uint64_t lost;        /* events not sent to live tails: the queue was full */
    uint64_t queue_bytes; /* waiting for the tail thread now */
} tail_stats;

void tail_hub_stats(tail_hub *h, tail_stats *st);

/*
 * 0 if patterns (may be NULL) are within the hub's bounds; else -1, counted as
 * refused, with the reason in err (for a 400).
 */
int tail_check_patterns(tail_hub *h, const char *patterns, char *err, size_t errlen);

/*
 * The streaming response for a new client of conn with the patterns (may be
 * NULL; checked with tail_check_patterns first). NULL if the hub is closed or
 * out of memory.
 */
struct MHD_Response *tail_response(tail_hub *h, struct MHD_Connection *conn, const char *patterns);

/*
 * A client that reads the stream first (Last-Event-ID, ?after=, ?since=): as
 * tail_response, and *out is the client, catching up: live events wait for
 * the catch-up to end, and every event's id: is the cursor after it (from
 * after, and the events' positions). The caller then feeds the events read
 * from the stream (tail_catch_up, as often as needed) and ends the catch-up
 * (tail_caught_up), before it queues the response.
 */
struct MHD_Response *tail_response_after(tail_hub *h, struct MHD_Connection *conn,
                                         const char *patterns, const lake_cursor *after,
                                         tail_client **out);
/* Sends lines read from the stream (newline-separated, as lake_stream_read gives with sep '\n'). */
void tail_catch_up(tail_client *c, const char *lines, size_t len);
/*
 * Ends the catch-up at next (the reader's cursor). whole: the stream is read to
 * its end, so the live events that waited are sent, but those at or before
 * the position reached (sent by the catch-up); else the stream ends with
 * `event: more` after what was sent, for the client to reconnect with its
 * last id.
 */
void tail_caught_up(tail_client *c, const lake_cursor *next, int whole);

#endif
