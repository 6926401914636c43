/*
 * ingest.h - from a request body to a batch for the lake writer.
 *
 * Accepted bodies: the seed's {"events":[…]}, a bare JSON array of events,
 * or NDJSON (one event per line), each optionally gzip-compressed. Every
 * event is validated on its own (event.h): a bad event is refused while its
 * neighbours go on. A refused record is never dropped: its quarantine line
 * (quarantine.h) goes to the writer with the accepted events, and the answer
 * lists the first INGEST_REJECTED_LISTED of them with their reasons, counts
 * them all and says where they are kept, so that an answer stays small
 * (under 4 KiB, what some log shippers read of it) whatever the body. Only a
 * body that is not JSON at all, or not one of those shapes, fails as a whole
 * (400), and a body over a limit fails with 413.
 *
 * A wrapper may name its batch, {"batchId":"…","events":[…]} (in either
 * order): the original's clients retry a whole body with the same batchId.
 * Its events without an id of their own then get one derived from the
 * batchId and their index in the body (ingest_batch_id), so that the
 * writer's dedup window stores a retried body once.
 *
 * This module knows nothing of HTTP; server.c calls it and the fuzz target
 * drives it directly.
 */
#ifndef EVENTS_INGEST_H
#define EVENTS_INGEST_H

#include "buf.h"
#include "event.h"
#include "writer.h"

#include <stddef.h>

enum ingest_format { INGEST_JSON, INGEST_NDJSON };

typedef struct ingest_limits {
    size_t max_body;   /* bytes after decompression; default 8 MiB */
    size_t max_events; /* per request; default ingest_max_events_for(max_body) */
} ingest_limits;

#define INGEST_MAX_BODY_DEFAULT (8u << 20)

/*
 * The most events a body of max_body bytes can hold: the smallest event is
 * "{}" (with a default type, ingest_options.type) and a separator, 3 bytes.
 * The default of --max-events, so that no body within the body limit is
 * refused for its count.
 */
static inline size_t ingest_max_events_for(size_t max_body)
{
    return max_body / 3 + 1;
}

/* Refused records the answer lists by default, and the longest reason it shows (JSON text). */
#define INGEST_REJECTED_LISTED 10
#define INGEST_REASON_SHOWN    160

/* What a request says about its records besides its body (all may be NULL or 0). */
typedef struct ingest_options {
    const char *type;       /* the type of events without one (?type=, the token's type=) */
    const char *ts_key;     /* the member an event's time is read from without "ts" */
    const char *token;      /* the token's name, kept with refused records */
    const char *route;      /* the path, kept with refused records; NULL: "/ingest" */
    const char *request_id; /* the request's ULID, in the answer and the quarantine */
    int list_all;           /* list every refused record (?rejected=all), reasons uncut */
} ingest_options;

/* How a body fails: ingest_gunzip's result, ingest_result's code. */
#define INGEST_EINVAL (-1) /* not gzip, corrupt or truncated, or not a body of events */
#define INGEST_EBIG   (-2) /* inflates past the limit, or more events than it may hold */
#define INGEST_ENOMEM (-3) /* out of memory */

typedef struct ingest_result {
    int code;        /* 0: parsed (some events may be rejected); else an INGEST_E* code */
    char error[256]; /* why, when code != 0 */
    size_t received; /* events in the body */
    size_t rejected;
    uint64_t rejected_by[EVENT_R_COUNT]; /* refused records by reason (enum event_reason) */
    buf rejects; /* the answer's list: ',' separated {"index":i,"error":"…"} objects */
    int list_all;
    char request_id[27];
    buf lines; /* normalised lines of the valid events */
    lake_event *ev;
    size_t n, cap;
    buf qlines; /* quarantine lines of the refused records (quarantine.h) */
    lake_event *qev;
    size_t qn, qcap;
    /* the body's batchId, once read: as sent when it is a valid id of at most EVENT_ID_MAX
     * bytes (else empty), and its hash ("b_" and 32 hex digits); has_batch 0: none */
    int has_batch;
    char batch_raw[EVENT_ID_MAX + 1], batch_hash[35];
} ingest_result;

/*
 * Checks a request's type and ts_key (from its URL or its token) before its
 * body is read. 0, or -1 with a message naming the value in err.
 */
int ingest_options_check(const char *type, const char *ts_key, char *err, size_t errlen);

/*
 * Inflates a gzip body into out, refusing to produce more than max bytes.
 * Returns 0, or one of the codes above with err set.
 */
int ingest_gunzip(const char *in, size_t n, size_t max, buf *out, char *err, size_t errlen);

/*
 * Parses body into r (which must be zeroed or reset). opts (NULL: none) must
 * have been checked with ingest_options_check.
 */
void ingest_parse(event_ctx *ctx, const char *body, size_t n, enum ingest_format fmt,
                  const ingest_limits *lim, const ingest_options *opts, ingest_result *r);

/*
 * Adds one event, given as the JSON text [text, text + n), to r exactly as
 * one element of a body: counted in received, then normalised into lines or
 * listed in rejects with its reason, under the same limits. Front ends that
 * read other body formats (otlp.c) hand every record they make into an event
 * through here, so that each rule and each refusal of /ingest applies to it.
 * Returns 0, or -1 with r->code set: INGEST_EBIG past max_events, INGEST_EINVAL if text is
 * not JSON, 503 out of memory. Refused records go to the quarantine with
 * opts' token, route and request id, as /ingest's do.
 */
int ingest_add(event_ctx *ctx, const char *text, size_t n, const ingest_limits *lim,
               const ingest_options *opts, ingest_result *r);

/*
 * Around the ingest_add calls of one request (ingest_parse makes them itself):
 * the request's options (NULL: none) set on ctx and r, and taken off ctx.
 */
void ingest_begin(event_ctx *ctx, const ingest_options *opts, ingest_result *r);
void ingest_end(event_ctx *ctx);

/*
 * The id of the event at index of a body whose batchId r has read, into out
 * (EVENT_ID_MAX + 1 bytes): "<batchId>:<index>" when that is a valid id,
 * else "b_<first 32 hex digits of SHA-256(batchId)>:<index>". Returns its length.
 */
size_t ingest_batch_id(const ingest_result *r, size_t index, char *out);

/* Empties r for reuse, keeping its memory. */
void ingest_result_reset(ingest_result *r);
void ingest_result_free(ingest_result *r);

/*
 * Appends the 200 answer for a parsed body whose valid events and refused
 * records the writer has made durable (accepted + duplicates == r->n):
 *   {"ok":true,"received":N,"accepted":A,"duplicates":D,"rejected":[…]}
 * and, when records were refused, "rejectedCount", "requestId" and
 * "quarantine" (where they are kept).
 */
int ingest_answer(const ingest_result *r, size_t accepted, size_t duplicates, buf *out);

/* Appends {"ok":false,"error":"…"}. */
int ingest_error_json(buf *out, const char *msg);

#endif
