/*
 * otlp_pb.c - reads an ExportLogsServiceRequest in binary protobuf.
 *
 * protobuf-c decodes the messages (otlp_logs.proto, generated at build
 * time), but not the request whole: decoded, a message is many times its
 * size on the wire (a 2-byte empty attribute is a 40-byte struct and a
 * pointer), and protobuf-c recurses once per nested message with no limit
 * of its own, so a body of nested AnyValues would take the stack. So this
 * file frames the outer levels itself (the request's ResourceLogs, their
 * ScopeLogs, their records: a walk over tags and lengths that copies
 * nothing), and hands protobuf-c one unit at a time: a Resource, an
 * InstrumentationScope, a LogRecord. Before it does, the unit is walked once
 * to check its framing and that its messages nest at most MAX_NEST deep. The
 * unit is decoded into an arena that is emptied for the next one and bounded
 * (ARENA_FACTOR times the unit's bytes), so memory follows the largest record,
 * not the body.
 *
 * A singular message field sent more than once (a resource, a scope) is
 * merged, as protobuf says: its occurrences are decoded as one, concatenated.
 * Whatever does not decode is bad data (400), with the byte where it is.
 */
#include "otlp_int.h"
#include "otlp_logs.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages nested deeper than this in one unit (each AnyValue level is two) are refused. */
#define MAX_NEST 200
/* A unit may take this many times its bytes (and 64 KiB) decoded; beyond, 413. */
#define ARENA_FACTOR 32
#define ARENA_CHUNK  (64 * 1024)

/* ---- the arena ------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(16) char data[];
} chunk;

typedef struct arena {
    chunk *head;  /* the first chunk is kept across resets */
    size_t total; /* bytes handed out since the reset */
    size_t limit;
    int over_limit, nomem; /* why an allocation failed */
} arena;

static void *arena_alloc(void *data, size_t size)
{
    arena *a = data;
    size = (size + 15) & ~(size_t)15;
    if (a->total + size > a->limit) {
        a->over_limit = 1;
        return NULL;
    }
    chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        if (!(c = malloc(sizeof *c + cap))) {
            a->nomem = 1;
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->total += size;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void)data, (void)p; /* everything goes at the next reset */
}

/* Empties the arena for a unit of n bytes, keeping one chunk. */
static void arena_reset(arena *a, size_t n)
{
    chunk *c = a->head;
    while (c && c->next) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = c;
    if (c) c->used = 0;
    a->total = 0;
    a->over_limit = a->nomem = 0;
    a->limit =
        n > (SIZE_MAX - ARENA_CHUNK) / ARENA_FACTOR ? SIZE_MAX : n * ARENA_FACTOR + ARENA_CHUNK;
}

static void arena_free_all(arena *a)
{
    while (a->head) {
        chunk *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- the wire format -------------------------------------------------------- */

typedef struct pr {
    otlp__builder *b;
    const uint8_t *body;
    arena a;
    ProtobufCAllocator alloc;
    buf cat; /* the occurrences of a field sent more than once, concatenated */
} pr;

static int bad(pr *x, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(pr *x, const uint8_t *at, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return otlp__fail(x->b, INGEST_EINVAL, "invalid OTLP logs request at byte %zu: %s",
                      (size_t)(at - x->body), what);
}

typedef struct field {
    const uint8_t *at;     /* its tag */
    uint32_t num;          /* field number */
    int wt;                /* wire type */
    const uint8_t *v, *ve; /* wire type 2: the payload */
} field;

static int varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *pp < end; shift += 7) {
        uint8_t c = *(*pp)++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* The field at *pp, which moves past it: 1, 0 at end, -1 (INGEST_EINVAL set) if it does not frame.
 */
static int next_field(pr *x, const uint8_t **pp, const uint8_t *end, field *f)
{
    if (*pp >= end) return 0;
    f->at = *pp;
    uint64_t tag, len;
    if (varint(pp, end, &tag)) return bad(x, f->at, "a field's tag is cut short");
    f->num = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    if (f->num == 0 || tag >> 3 > 0x1fffffff)
        return bad(x, f->at, "a field has number 0 or one too large");
    switch (f->wt) {
    case 0:
        if (varint(pp, end, &len)) return bad(x, f->at, "field %u: a varint is cut short", f->num);
        return 1;
    case 1:
    case 5: {
        size_t k = f->wt == 1 ? 8 : 4;
        if ((size_t)(end - *pp) < k) return bad(x, f->at, "field %u is cut short", f->num);
        *pp += k;
        return 1;
    }
    case 2:
        if (varint(pp, end, &len) || len > (uint64_t)(end - *pp))
            return bad(x, f->at, "field %u: its length runs past the end of its message", f->num);
        f->v = *pp;
        f->ve = *pp += len;
        return 1;
    default:
        return bad(x, f->at, "field %u has wire type %d, which OTLP does not use", f->num, f->wt);
    }
}

enum msg { M_NONE, M_RESOURCE, M_SCOPE, M_RECORD, M_ANY, M_ARRAY, M_KVLIST, M_KV };

/* The message a length-delimited field of m holds, from otlp_logs.proto; M_NONE for the others. */
static enum msg sub_of(enum msg m, uint32_t num)
{
    switch (m) {
    case M_RESOURCE: return num == 1 ? M_KV : M_NONE;
    case M_SCOPE: return num == 3 ? M_KV : M_NONE;
    case M_RECORD: return num == 5 ? M_ANY : num == 6 ? M_KV : M_NONE;
    case M_ANY: return num == 5 ? M_ARRAY : num == 6 ? M_KVLIST : M_NONE;
    case M_ARRAY: return num == 1 ? M_ANY : M_NONE;
    case M_KVLIST: return num == 1 ? M_KV : M_NONE;
    case M_KV: return num == 2 ? M_ANY : M_NONE;
    default: return M_NONE;
    }
}

/* Walks a unit's bytes: every field frames, and messages nest at most MAX_NEST deep. */
static int check_unit(pr *x, const uint8_t *p, const uint8_t *end, enum msg m, int depth)
{
    if (depth > MAX_NEST) return bad(x, p, "messages nest deeper than %d levels", MAX_NEST);
    field f = {0};
    int r;
    while ((r = next_field(x, &p, end, &f)) > 0) {
        enum msg sub = f.wt == 2 ? sub_of(m, f.num) : M_NONE;
        if (sub != M_NONE && check_unit(x, f.v, f.ve, sub, depth + 1)) return -1;
    }
    return r;
}

/*
 * The payload of field num of the message [p, end), which must be
 * length-delimited: *v, *n (NULL, 0 when absent); several occurrences are
 * concatenated into x->cat. 0, or -1 (INGEST_EINVAL set).
 */
static int singular(pr *x, const uint8_t *p, const uint8_t *end, uint32_t num, const char *name,
                    const uint8_t **v, size_t *n)
{
    field f = {0};
    int r, seen = 0;
    *v = NULL;
    *n = 0;
    x->cat.len = 0;
    while ((r = next_field(x, &p, end, &f)) > 0) {
        if (f.num != num) continue;
        if (f.wt != 2) return bad(x, f.at, "%s (field %u) must be a message", name, num);
        if (seen++ == 1 && buf_append(&x->cat, *v, *n))
            return otlp__fail(x->b, INGEST_ENOMEM, "out of memory parsing the body");
        if (seen > 1 && buf_append(&x->cat, f.v, (size_t)(f.ve - f.v)))
            return otlp__fail(x->b, INGEST_ENOMEM, "out of memory parsing the body");
        *v = f.v;
        *n = (size_t)(f.ve - f.v);
    }
    if (seen > 1) *v = (const uint8_t *)x->cat.p, *n = x->cat.len;
    return r;
}

/* Decodes one unit with protobuf-c into the arena; NULL with INGEST_EINVAL, INGEST_EBIG or
 * INGEST_ENOMEM set. */
static ProtobufCMessage *unpack(pr *x, const ProtobufCMessageDescriptor *d, enum msg m,
                                const uint8_t *p, size_t n, const char *what)
{
    static const uint8_t empty[1];
    if (!p) p = empty;
    if (check_unit(x, p, p + n, m, 1)) return NULL;
    arena_reset(&x->a, n);
    ProtobufCMessage *msg = protobuf_c_message_unpack(d, &x->alloc, n, p);
    if (msg) return msg;
    if (x->a.over_limit)
        otlp__fail(x->b, INGEST_EBIG,
                   "%s of %zu bytes needs more than %zu bytes of memory to decode", what, n,
                   x->a.limit);
    else if (x->a.nomem)
        otlp__fail(x->b, INGEST_ENOMEM, "out of memory parsing the body");
    else
        bad(x, p, "%s does not decode (a field of the wrong type?)", what);
    return NULL;
}

/* ---- from messages to the event's JSON --------------------------------------- */

static void put_any(otlp__builder *b, buf *o, const Events__Otlp__AnyValue *v);

static void put_kvs(otlp__builder *b, buf *o, Events__Otlp__KeyValue *const *kv, size_t n, int note)
{
    otlp__put(b, o, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) otlp__put(b, o, ",", 1);
        otlp__put_str(b, o, (const char *)kv[i]->key.data, kv[i]->key.len);
        otlp__put(b, o, ":", 1);
        size_t off = o->len;
        put_any(b, o, kv[i]->value);
        if (note)
            otlp__note(b, otlp__type_source_of((const char *)kv[i]->key.data, kv[i]->key.len), off);
    }
    otlp__put(b, o, "}", 1);
}

static void put_any(otlp__builder *b, buf *o, const Events__Otlp__AnyValue *v)
{
    switch (v ? v->value_case : EVENTS__OTLP__ANY_VALUE__VALUE__NOT_SET) {
    case EVENTS__OTLP__ANY_VALUE__VALUE_STRING_VALUE:
        otlp__put_str(b, o, (const char *)v->string_value.data, v->string_value.len);
        break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_BOOL_VALUE:
        otlp__puts(b, o, v->bool_value ? "true" : "false");
        break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_INT_VALUE: otlp__put_int(b, o, v->int_value); break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE:
        otlp__put_double(b, o, v->double_value);
        break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_ARRAY_VALUE:
        otlp__put(b, o, "[", 1);
        for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
            if (i) otlp__put(b, o, ",", 1);
            put_any(b, o, v->array_value->values[i]);
        }
        otlp__put(b, o, "]", 1);
        break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_KVLIST_VALUE:
        if (v->kvlist_value)
            put_kvs(b, o, v->kvlist_value->values, v->kvlist_value->n_values, 0);
        else
            otlp__put(b, o, "{}", 2);
        break;
    case EVENTS__OTLP__ANY_VALUE__VALUE_BYTES_VALUE:
        otlp__put_base64(b, o, v->bytes_value.data, v->bytes_value.len);
        break;
    default: otlp__put(b, o, "null", 4);
    }
}

static void put_bytes_member(otlp__builder *b, const char *key, ProtobufCBinaryData s,
                             enum otlp__type_source src)
{
    if (!s.len) return;
    otlp__member(b, key);
    size_t off = b->ev.len;
    otlp__put_str(b, &b->ev, (const char *)s.data, s.len);
    otlp__note(b, src, off);
}

static int read_record(pr *x, const uint8_t *p, size_t n)
{
    otlp__builder *b = x->b;
    Events__Otlp__LogRecord *r = (Events__Otlp__LogRecord *)unpack(
        x, &events__otlp__log_record__descriptor, M_RECORD, p, n, "a log record");
    if (!r) return -1;
    buf *o = &b->ev;
    otlp__record_begin(b);
    if (r->severity_number)
        otlp__member(b, "severityNumber"), otlp__put_int(b, o, r->severity_number);
    put_bytes_member(b, "severityText", r->severity_text, OTLP__SRC_NONE);
    put_bytes_member(b, "eventName", r->event_name, OTLP__SRC_EVENT_NAME);
    if (r->body) otlp__member(b, "body"), put_any(b, o, r->body);
    if (r->n_attributes)
        otlp__member(b, "attributes"), put_kvs(b, o, r->attributes, r->n_attributes, 1);
    if (r->dropped_attributes_count)
        otlp__member(b, "droppedAttributesCount"),
            otlp__put_uint(b, o, r->dropped_attributes_count);
    otlp__put_id(b, "traceId", r->trace_id.data, r->trace_id.len, 16);
    otlp__put_id(b, "spanId", r->span_id.data, r->span_id.len, 8);
    if (r->flags) otlp__member(b, "flags"), otlp__put_uint(b, o, r->flags);
    return otlp__record_end(b, r->time_unix_nano, r->observed_time_unix_nano);
}

/* b->resource: "resource":{attributes} of the records that follow. */
static int read_resource(pr *x, const uint8_t *p, const uint8_t *end)
{
    const uint8_t *v;
    size_t n;
    x->b->resource.len = 0;
    if (singular(x, p, end, 1, "resource", &v, &n)) return -1;
    if (!v) return 0;
    Events__Otlp__Resource *res = (Events__Otlp__Resource *)unpack(
        x, &events__otlp__resource__descriptor, M_RESOURCE, v, n, "a resource");
    if (!res) return -1;
    if (res->n_attributes) {
        otlp__puts(x->b, &x->b->resource, "\"resource\":");
        put_kvs(x->b, &x->b->resource, res->attributes, res->n_attributes, 0);
    }
    return 0;
}

/* b->scope: "scope":{name, version, attributes} of the records that follow. */
static int read_scope(pr *x, const uint8_t *p, const uint8_t *end)
{
    otlp__builder *b = x->b;
    const uint8_t *v;
    size_t n;
    b->scope.len = 0;
    if (singular(x, p, end, 1, "scope", &v, &n)) return -1;
    if (!v) return 0;
    Events__Otlp__InstrumentationScope *s = (Events__Otlp__InstrumentationScope *)unpack(
        x, &events__otlp__instrumentation_scope__descriptor, M_SCOPE, v, n, "a scope");
    if (!s) return -1;
    buf *o = &b->scope;
    int first = 1;
    otlp__puts(b, o, "\"scope\":{");
    if (s->name.len) {
        otlp__key(b, o, &first, "name", 4);
        otlp__put_str(b, o, (const char *)s->name.data, s->name.len);
    }
    if (s->version.len) {
        otlp__key(b, o, &first, "version", 7);
        otlp__put_str(b, o, (const char *)s->version.data, s->version.len);
    }
    if (s->n_attributes) {
        otlp__key(b, o, &first, "attributes", 10);
        put_kvs(b, o, s->attributes, s->n_attributes, 0);
    }
    if (first)
        o->len = 0;
    else
        otlp__put(b, o, "}", 1);
    return 0;
}

/* Each length-delimited field num of [p, end), read by fn. */
static int each(pr *x, const uint8_t *p, const uint8_t *end, uint32_t num, const char *name,
                int (*fn)(pr *, const uint8_t *, const uint8_t *))
{
    field f = {0};
    int r;
    while ((r = next_field(x, &p, end, &f)) > 0) {
        if (f.num != num) continue;
        if (f.wt != 2) return bad(x, f.at, "%s (field %u) must be a message", name, num);
        if (fn(x, f.v, f.ve)) return -1;
    }
    return r;
}

static int read_record_field(pr *x, const uint8_t *p, const uint8_t *end)
{
    return read_record(x, p, (size_t)(end - p));
}

static int read_scope_logs(pr *x, const uint8_t *p, const uint8_t *end)
{
    if (read_scope(x, p, end)) return -1;
    return each(x, p, end, 2, "log_records", read_record_field);
}

static int read_resource_logs(pr *x, const uint8_t *p, const uint8_t *end)
{
    if (read_resource(x, p, end)) return -1;
    return each(x, p, end, 2, "scope_logs", read_scope_logs);
}

int otlp__pb_read(otlp__builder *b, const char *body, size_t n)
{
    pr x = {.b = b, .body = (const uint8_t *)body};
    x.alloc.alloc = arena_alloc;
    x.alloc.free = arena_free;
    x.alloc.allocator_data = &x.a;
    int rc = each(&x, x.body, x.body + n, 1, "resource_logs", read_resource_logs);
    arena_free_all(&x.a);
    buf_free(&x.cat);
    return rc || b->r->code ? -1 : 0;
}
