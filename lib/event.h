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
 *   ts          optional; RFC 3339 (any offset) or integer epoch milliseconds,
 *               1970..9999; the server sets its receive time when absent
 *   do          optional; an object (the emitter's identity) or null
 *   receivedAt  set by the server; a client's value is replaced
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

enum { EVENT_OK = 0, EVENT_REJECTED = 1, EVENT_SYNTAX = -1, EVENT_NOMEM = -2 };

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

#endif
