/*
 * otlp_int.h - inside otlp: the event builder the two readers share.
 *
 * otlp_json.c and otlp_pb.c read the two encodings of a request; both write
 * each record through this builder, which holds the event being made and
 * decides its type, its ts and its id once the record's members are written.
 * Every value is written as canonical JSON (strings decoded and escaped again
 * by buf_json_str, numbers printed from their value, base64 from the bytes),
 * and the members in one fixed order, so that a record sent in either
 * encoding, with its fields in any order, makes the same bytes, and so the
 * same id.
 *
 * Memory failures are sticky: a write that cannot grow its buffer sets nomem
 * and leaves the buffer as it was; otlp__record_end reports it.
 */
#ifndef EVENTS_OTLP_INT_H
#define EVENTS_OTLP_INT_H

#include "otlp.h"

#include <stdint.h>

/* Attribute keys that name an event's type (docs/http.md). */
enum otlp__type_source {
    OTLP__SRC_NONE,
    OTLP__SRC_EVENTS_TYPE,
    OTLP__SRC_EVENT_NAME_ATTR,
    OTLP__SRC_EVENT_NAME,
    OTLP__SRC_COUNT
};

typedef struct otlp__builder {
    event_ctx *ctx;
    const ingest_limits *lim;
    const ingest_options *opts; /* the request's, for the quarantine of refused records */
    ingest_result *r;
    const char *default_type;
    buf resource; /* "resource":{…} of the records being read, or empty */
    buf scope;    /* "scope":{…} of the records being read, or empty */
    buf ev;       /* the record being made into an event */
    buf tmp;      /* scratch for decoded strings */
    int members;  /* members written to ev so far */
    size_t src_off[OTLP__SRC_COUNT], src_len[OTLP__SRC_COUNT]; /* type sources, inside ev */
    int nomem;
} otlp__builder;

void otlp__builder_init(otlp__builder *b, event_ctx *ctx, const char *default_type,
                        const ingest_limits *lim, ingest_result *r);
void otlp__builder_free(otlp__builder *b);

/* Appends to o, setting b->nomem when memory runs out. */
void otlp__put(otlp__builder *b, buf *o, const char *p, size_t n);
void otlp__puts(otlp__builder *b, buf *o, const char *s);
void otlp__put_str(otlp__builder *b, buf *o, const char *s, size_t n); /* a JSON string */
void otlp__put_int(otlp__builder *b, buf *o, int64_t v);
void otlp__put_uint(otlp__builder *b, buf *o, uint64_t v);
/* A JSON number; NaN and the infinities, which JSON has not, as "NaN", "Infinity", "-Infinity". */
void otlp__put_double(otlp__builder *b, buf *o, double v);
void otlp__put_base64(otlp__builder *b, buf *o, const void *p, size_t n);
/*
 * A trace or span id, as the member key of ev, in lowercase hex; nothing
 * (returns 0) when it is not n_want bytes long or is all zeros: no id, says
 * the OTLP specification.
 */
int otlp__put_id(otlp__builder *b, const char *key, const uint8_t *p, size_t n, size_t n_want);
/* Writes ,"key": (no comma when *first, which it clears) into o. */
void otlp__key(otlp__builder *b, buf *o, int *first, const char *key, size_t n);

/* Starts a record: ev is emptied and opened. */
void otlp__record_begin(otlp__builder *b);
/* Writes ,"key": to ev, to be followed by the member's value. */
void otlp__member(otlp__builder *b, const char *key);
/* The type source an attribute key is, or OTLP__SRC_NONE. */
enum otlp__type_source otlp__type_source_of(const char *key, size_t n);
/* The value written to ev since off is that of type source src. */
void otlp__note(otlp__builder *b, enum otlp__type_source src, size_t off);

/*
 * Ends the record: writes its times, resource, scope, type, ts and id, and
 * hands the event to ingest_add. Returns 0, or -1 with b->r->code set.
 */
int otlp__record_end(otlp__builder *b, uint64_t time_ns, uint64_t observed_ns);

/* Fails the whole request (r->code, r->error). Returns -1. */
int otlp__fail(otlp__builder *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The readers: 0, or -1 with b->r->code set. */
int otlp__json_read(otlp__builder *b, const char *body, size_t n);
int otlp__pb_read(otlp__builder *b, const char *body, size_t n);

#endif
