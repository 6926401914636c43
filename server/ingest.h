/*
 * ingest.h - from a request body to a batch for the lake writer.
 *
 * Accepted bodies: the seed's {"events":[…]}, a bare JSON array of events,
 * or NDJSON (one event per line), each optionally gzip-compressed. Every
 * event is validated on its own (event.h): a bad event is listed in the
 * answer's "rejected" with its index and reason while its neighbours go on.
 * Only a body that is not JSON at all, or not one of those shapes, fails as
 * a whole (400), and a body over a limit fails with 413.
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
    size_t max_events; /* per request; default 10,000 */
} ingest_limits;

#define INGEST_MAX_BODY_DEFAULT   (8u << 20)
#define INGEST_MAX_EVENTS_DEFAULT 10000

typedef struct ingest_result {
    unsigned status; /* 0: parsed (some events may be rejected); else 400 or 413 */
    char error[256]; /* why, when status != 0 */
    size_t received; /* events in the body */
    size_t rejected;
    buf rejects; /* ',' separated {"index":i,"error":"…"} objects */
    buf lines;   /* normalised lines of the valid events */
    lake_event *ev;
    size_t n, cap;
} ingest_result;

/*
 * Inflates a gzip body into out, refusing to produce more than max bytes.
 * Returns 0, 400 (not gzip, corrupt or truncated), 413 (inflates past max)
 * or 503 (out of memory), with err set.
 */
unsigned ingest_gunzip(const char *in, size_t n, size_t max, buf *out, char *err, size_t errlen);

/* Parses body into r (which must be zeroed or reset). */
void ingest_parse(event_ctx *ctx, const char *body, size_t n, enum ingest_format fmt,
                  const ingest_limits *lim, ingest_result *r);

/*
 * Adds one event, given as the JSON text [text, text + n), to r exactly as
 * one element of a body: counted in received, then normalised into lines or
 * listed in rejects with its reason, under the same limits. Front ends that
 * read other body formats (otlp.c) hand every record they make into an event
 * through here, so that each rule and each refusal of /ingest applies to it.
 * Returns 0, or -1 with r->status set: 413 past max_events, 400 if text is
 * not JSON, 503 out of memory.
 */
int ingest_add(event_ctx *ctx, const char *text, size_t n, const ingest_limits *lim,
               ingest_result *r);

/* Empties r for reuse, keeping its memory. */
void ingest_result_reset(ingest_result *r);
void ingest_result_free(ingest_result *r);

/*
 * Appends the 200 answer for a parsed body whose valid events the writer
 * has made durable (accepted + duplicates == r->n).
 */
int ingest_answer(const ingest_result *r, size_t accepted, size_t duplicates, buf *out);

/* Appends {"ok":false,"error":"…"}. */
int ingest_error_json(buf *out, const char *msg);

#endif
