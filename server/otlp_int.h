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
 * and leaves the buffer as it was; otlp_record_end reports it.
 */
#ifndef EVENTS_OTLP_INT_H
#define EVENTS_OTLP_INT_H

#include "otlp.h"

#include <stdint.h>

/* Attribute keys that name an event's type (docs/http.md). */
enum otlp_type_source {
    OTLP_SRC_NONE,
    OTLP_SRC_EVENTS_TYPE,
    OTLP_SRC_EVENT_NAME_ATTR,
    OTLP_SRC_EVENT_NAME,
    OTLP_SRC_COUNT
};

typedef struct otlp_builder {
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
    size_t src_off[OTLP_SRC_COUNT], src_len[OTLP_SRC_COUNT]; /* type sources, inside ev */
    int nomem;
} otlp_builder;

void otlp_builder_init(otlp_builder *b, event_ctx *ctx, const char *default_type,
                       const ingest_limits *lim, ingest_result *r);
void otlp_builder_free(otlp_builder *b);

/* Appends to o, setting b->nomem when memory runs out. */
void otlp_put(otlp_builder *b, buf *o, const char *p, size_t n);
void otlp_puts(otlp_builder *b, buf *o, const char *s);
void otlp_put_str(otlp_builder *b, buf *o, const char *s, size_t n); /* a JSON string */
void otlp_put_int(otlp_builder *b, buf *o, int64_t v);
void otlp_put_uint(otlp_builder *b, buf *o, uint64_t v);
/* A JSON number; NaN and the infinities, which JSON has not, as "NaN", "Infinity", "-Infinity". */
void otlp_put_double(otlp_builder *b, buf *o, double v);
void otlp_put_base64(otlp_builder *b, buf *o, const void *p, size_t n);
/*
 * A trace or span id, as the member key of ev, in lowercase hex; nothing
 * (returns 0) when it is not n_want bytes long or is all zeros: no id, says
 * the OTLP specification.
 */
int otlp_put_id(otlp_builder *b, const char *key, const uint8_t *p, size_t n, size_t n_want);
/* Writes ,"key": (no comma when *first, which it clears) into o. */
void otlp_key(otlp_builder *b, buf *o, int *first, const char *key, size_t n);

/* Starts a record: ev is emptied and opened. */
void otlp_record_begin(otlp_builder *b);
/* Writes ,"key": to ev, to be followed by the member's value. */
void otlp_member(otlp_builder *b, const char *key);
/* The type source an attribute key is, or OTLP_SRC_NONE. */
enum otlp_type_source otlp_type_source_of(const char *key, size_t n);
/* The value written to ev since off is that of type source src. */
void otlp_note(otlp_builder *b, enum otlp_type_source src, size_t off);

/*
 * Ends the record: writes its times, resource, scope, type, ts and id, and
 * hands the event to ingest_add. Returns 0, or -1 with b->r->status set.
 */
int otlp_record_end(otlp_builder *b, uint64_t time_ns, uint64_t observed_ns);

/* Fails the whole request (r->status, r->error). Returns -1. */
int otlp_fail(otlp_builder *b, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The readers: 0, or -1 with b->r->status set. */
int otlp_json_read(otlp_builder *b, const char *body, size_t n);
int otlp_pb_read(otlp_builder *b, const char *body, size_t n);

#endif
