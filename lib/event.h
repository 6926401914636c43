/*
 * event.h - the event envelope: validation and normalisation of one event.
 *
 * An event is a JSON object. The server accepts it if it is well-formed,
 * small enough, not nested too deep, all its strings are valid UTF-8, its
 * top-level keys are unique, and its envelope fields are right:
 *
 *   type        required; [a-z0-9_]+(\.[a-z0-9_-]+)*, at most 128 bytes
 *   id          optional; 1-64 characters of [0-9A-Za-z_.:-] (a ULID when the
 *               library sets it); the server sets a ULID when it is absent
 *   ts          optional; ISO 8601 (RFC 3339, also without a zone = UTC) or an
 *               epoch number in seconds, milliseconds, microseconds or
 *               nanoseconds, told apart by size (event_epoch_ms), 1970..9999;
 *               the server sets its receive time when absent
 *   do          optional; an object (the emitter's identity) or null
 *   receivedAt  set by the server; a client's value is replaced
 *   _events_*   reserved for members the server derives: refused (server side)
 *
 * Normalising writes the event as one line of the lake:
 *   {"id":…,"type":…,"ts":"<UTC ms>","receivedAt":"<UTC ms>",<other members>}\n
 * with the other members byte for byte as sent (minus insignificant
 * whitespace), in their original order.
 */
#ifndef EVENTS_EVENT_H
#define EVENTS_EVENT_H

#include "buf.h"
#include "evtime.h"
#include "jscan.h"

#include <stdint.h>

#define EVENT_MAX_BYTES_DEFAULT (256 * 1024)
#define EVENT_MAX_DEPTH_DEFAULT 64
#define EVENT_TYPE_MAX          128
#define EVENT_ID_MAX            64

/* Top-level members the server derives (the stream position "_events_pos", …) start with this:
 * the server refuses an event that brings one (EVENT_R_RESERVED); a client context lets it pass. */
#define EVENT_RESERVED_PREFIX "_events_"

enum { EVENT_OK = 0, EVENT_REJECTED = 1, EVENT_SYNTAX = -1, EVENT_NOMEM = -2 };

/* Why an event was rejected, by class (counted in /metrics, kept in the quarantine). */
enum event_reason {
    EVENT_R_NOT_OBJECT,    /* not a JSON object */
    EVENT_R_TYPE,          /* "type" missing or invalid */
    EVENT_R_ID,            /* "id" invalid */
    EVENT_R_TS,            /* "ts" (or the ts_key member) invalid */
    EVENT_R_DO,            /* "do" not an object */
    EVENT_R_DUPLICATE_KEY, /* a top-level key twice */
    EVENT_R_TOO_LARGE,     /* over max_event_bytes */
    EVENT_R_TOO_DEEP,      /* over max_depth */
    EVENT_R_ENCODING,      /* a string defect: UTF-8, control character, escape, \u0000 */
    EVENT_R_SYNTAX,        /* an NDJSON line that is not JSON, or has more after the event */
    EVENT_R_RESERVED,      /* a top-level member named with EVENT_RESERVED_PREFIX (server only) */
    EVENT_R_COUNT
};

/* "not_object", "type", "id", "ts", "do", "duplicate_key", "too_large", "too_deep", "encoding",
 * "syntax", "reserved"; NULL for a value out of range. */
const char *event_reason_name(int reason);

/* Scratch state for normalising many events on one thread. */
typedef struct event_ctx {
    size_t max_event_bytes;
    unsigned max_depth;
    int64_t now_ms;           /* receive time */
    char now[EVTIME_LEN + 1]; /* the same, formatted */
    /*
     * libevents builds events with the same code: client set, the line gets no
     * receivedAt and no newline, and do_member ("\"do\":{…}") is written
     * after ts when the event has no "do" of its own.
     */
    int client;
    const char *do_member;
    size_t do_member_len;
    /*
     * Per request (the server's ingest options; NULL when not given): the type of an
     * event that has none (absent or null), and the member its time is read from when
     * it has no "ts" (kept in the event as sent). Both are checked by the caller
     * (event_type_valid, event_ts_key_valid).
     */
    const char *default_type;
    size_t default_type_len;
    const char *ts_key;
    size_t ts_key_len;
    /*
     * Per event (NULL: none): the id of an event that brings none (absent or null), in place
     * of a new ULID, and taken as the client's (deduplicated). ingest.c sets it from a body's
     * batchId; it must be a valid id (event_id_valid).
     */
    const char *default_id;
    size_t default_id_len;
    int reason;               /* enum event_reason of the last EVENT_REJECTED */
    struct event_member *mem; /* scratch, grown as needed */
    size_t memcap;
    buf keys; /* decoded escaped keys */
} event_ctx;

typedef struct event_info {
    size_t line_off, line_len; /* the line appended to out, '\n' included */
    size_t id_off;             /* the id's characters, inside out */
    unsigned id_len;
    int client_id;                    /* 1 if the id came from the client */
    int has_ts, has_do, has_received; /* the event carried these members */
    int64_t ts_ms;
} event_info;

/* Sets limits to their defaults and now to the current time. */
void event_ctx_init(event_ctx *c);
/* Sets the receive time used for ids, missing ts and receivedAt. */
void event_ctx_set_now(event_ctx *c, int64_t now_ms);
void event_ctx_free(event_ctx *c);

/*
 * Scans the JSON value at p (no leading whitespace) and, if it is an
 * acceptable event, appends its normalised line to out and describes it in
 * *info. *next is set past the value whenever it is well-formed.
 *
 * Returns EVENT_OK; EVENT_REJECTED with a reason in why (the value was
 * skipped, scanning may go on); EVENT_SYNTAX when the text is not JSON
 * (s->err, s->err_at say why and where); EVENT_NOMEM.
 */
int event_normalise(event_ctx *c, jscan *s, const char *p, const char *end, const char **next,
                    buf *out, event_info *info, char *why, size_t whylen);

/* 1 if t[0..n) is a valid event type. */
int event_type_valid(const char *t, size_t n);

/* 1 if id[0..n) is a valid event id. */
int event_id_valid(const char *id, size_t n);

/*
 * 1 if k[0..n) may name the member a time is read from (ts_key): 1-64 of
 * [A-Za-z0-9_.@$-], and none of the envelope's other members (id, type, do,
 * receivedAt). "ts" is the default.
 */
int event_ts_key_valid(const char *k, size_t n);

/*
 * The epoch number p[0..end) (a JSON number) as milliseconds. Its unit is
 * told by its integer part: below 1e11 seconds, below 1e14 milliseconds,
 * below 1e17 microseconds, else nanoseconds; finer than a millisecond is
 * cut. 0, or -1 if it is negative or outside 1970..9999.
 */
int event_epoch_ms(const char *p, const char *end, int64_t *ms);

#endif
