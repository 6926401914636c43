/*
 * fuzz_ingest.c - libFuzzer target for the ingest body parser, held to
 * jansson as the reference.
 *
 * The first input byte picks the mode: bit 0 NDJSON instead of JSON, bit 1
 * a gzip body. The rest is the body. Beyond "never crashes, never reads out
 * of bounds" (the sanitizers' part), every input is checked against jansson:
 *
 *   - where jansson (strict: duplicate keys refused) parses an event, a
 *     reference validator on jansson's tree must agree with ours on accept or
 *     reject, and an accepted event's line must be the same JSON value as the
 *     input event, apart from the envelope fields the server sets;
 *   - every line we write must parse with jansson, and so must every
 *     quarantine line, which keeps a refused record's bytes exactly;
 *   - a JSON body we accept whole must parse with jansson.
 *
 * Where jansson departs from RFC 8259 it is not a reference: numbers it
 * cannot hold (1e400) are valid JSON it refuses, and it accepts some raw NUL
 * bytes after a literal ("null\0}"), which we refuse. Those inputs skip the
 * checks that need jansson's verdict.
 *
 * Built with -fsanitize=fuzzer by clang (the sanitizer build), and as a plain
 * program that replays files or directories (every build, with
 * fuzz_replay.c), so the corpus runs in `make test` either way.
 */
#include "event.h"
#include "evtime.h"
#include "ingest.h"
#include "codec.h"
#include "jscan.h"
#include "layout.h"
#include "quarantine.h"
#include "ulid.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_FUZZ(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_ingest: %s:%d: ", __FILE__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int ref_depth(const json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            int x = ref_depth(c);
            if (x > d) d = x;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            int x = ref_depth(c);
            if (x > d) d = x;
        }
        return d + 1;
    }
    return 0;
}

/*
 * The epoch rule of a JSON number (docs/http.md), on jansson's value: -1 refused, else the
 * milliseconds (of a real, within a millisecond: a double cannot say which side of one it
 * is); -2 when a real lies too close to a unit's edge or to the range's ends for a double to
 * tell whether it is taken (the reference then has no verdict).
 */
static int64_t ref_epoch_ms(const json_t *ts)
{
    if (json_is_integer(ts)) {
        json_int_t v = json_integer_value(ts);
        if (v < 0) return -1;
        int64_t ms = v < INT64_C(100000000000)         ? v * 1000
                     : v < INT64_C(100000000000000)    ? v
                     : v < INT64_C(100000000000000000) ? v / 1000
                                                       : v / 1000000;
        return ms > EVTIME_MAX_MS ? -1 : ms;
    }
    long double v = json_real_value(ts);
    if (v == 0) return 0;
    if (v < 0) return -1;
    for (long double edge = 1e11L; edge <= 1e17L; edge *= 1000)
        if (v > edge * (1 - 1e-12L) && v < edge * (1 + 1e-12L)) return -2;
    long double unit = v < 1e11L ? 1e3L : v < 1e14L ? 1 : v < 1e17L ? 1e-3L : 1e-6L;
    long double ms = v * unit;
    if (ms > (long double)EVTIME_MAX_MS + 2) return -1;
    if (ms > (long double)EVTIME_MAX_MS - 2) return -2;
    return (int64_t)ms;
}

/* The envelope rules, applied to jansson's tree. 1: acceptable, 0 not, -1 no verdict. */
static int ref_valid(const json_t *ev)
{
    if (!json_is_object(ev)) return 0;
    if (ref_depth(ev) > EVENT_MAX_DEPTH_DEFAULT) return 0;
    const json_t *t = json_object_get(ev, "type");
    if (!json_is_string(t) || !event_type_valid(json_string_value(t), json_string_length(t)))
        return 0;
    const json_t *id = json_object_get(ev, "id");
    if (id && !json_is_null(id) &&
        (!json_is_string(id) || !event_id_valid(json_string_value(id), json_string_length(id))))
        return 0;
    const json_t *ts = json_object_get(ev, "ts");
    if (ts && !json_is_null(ts)) {
        int64_t ms;
        if (json_is_string(ts)) {
            if (json_string_length(ts) > 64 ||
                evtime_parse_iso8601(json_string_value(ts), json_string_length(ts), &ms))
                return 0;
        } else if (json_is_number(ts)) {
            int64_t v = ref_epoch_ms(ts);
            if (v == -2) return -1;
            if (v < 0) return 0;
        } else {
            return 0;
        }
    }
    const json_t *d = json_object_get(ev, "do");
    if (d && !json_is_object(d) && !json_is_null(d)) return 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)ev, k, v) /* the server's members are not a sender's */
        if (!strncmp(k, EVENT_RESERVED_PREFIX, strlen(EVENT_RESERVED_PREFIX))) return 0;
    return 1;
}

static int overflow_error(const json_error_t *e)
{
    return strstr(e->text, "overflow") || strstr(e->text, "too big");
}

/* Compares our line for an accepted event with the input event. */
static void check_line(const json_t *in, const char *line, size_t n)
{
    json_error_t e;
    json_t *out = json_loadb(line, n, JSON_REJECT_DUPLICATES, &e);
    if (!out && overflow_error(&e)) return;
    CHECK_FUZZ(out, "our line does not parse: %s: %.*s", e.text, (int)n, line);
    CHECK_FUZZ(line[n] == '\n' && !memchr(line, '\n', n), "a line must end with its only newline");
    const char *id = json_string_value(json_object_get(out, "id"));
    const char *ts = json_string_value(json_object_get(out, "ts"));
    const char *rt = json_string_value(json_object_get(out, "receivedAt"));
    CHECK_FUZZ(id && ts && rt, "envelope missing: %.*s", (int)n, line);
    int64_t ts_ms, rt_ms;
    CHECK_FUZZ(strlen(ts) == EVTIME_LEN && !evtime_parse(ts, EVTIME_LEN, &ts_ms), "ts %s", ts);
    CHECK_FUZZ(strlen(rt) == EVTIME_LEN && !evtime_parse(rt, EVTIME_LEN, &rt_ms), "receivedAt %s",
               rt);
    const json_t *iid = json_object_get(in, "id"), *its = json_object_get(in, "ts");
    if (json_is_string(iid))
        CHECK_FUZZ(!strcmp(id, json_string_value(iid)), "id changed: %s", id);
    else
        CHECK_FUZZ(ulid_valid(id, strlen(id)), "server id is not a ULID: %s", id);
    if (json_is_string(its)) {
        int64_t want;
        evtime_parse_iso8601(json_string_value(its), json_string_length(its), &want);
        CHECK_FUZZ(want == ts_ms, "ts moved: %s", ts);
    } else if (json_is_number(its)) {
        int64_t want = ref_epoch_ms(its), d = want - ts_ms;
        CHECK_FUZZ(want == -2 || d == 0 || (json_is_real(its) && (d == 1 || d == -1)),
                   "ts moved: %s", ts);
    } else {
        CHECK_FUZZ(ts_ms == rt_ms, "a missing ts must be the receive time");
    }
    json_t *want = json_deep_copy(in);
    json_object_set(want, "id", json_object_get(out, "id"));
    json_object_set(want, "ts", json_object_get(out, "ts"));
    json_object_set(want, "receivedAt", json_object_get(out, "receivedAt"));
    const char *pos = json_string_value(json_object_get(out, "_events_pos"));
    CHECK_FUZZ(pos && !strcmp(pos, "00000000.0000000000000000") && n > LAKE_POS_TAIL &&
                   !memcmp(line + n - LAKE_POS_TAIL, LAKE_POS_PLACEHOLDER, LAKE_POS_TAIL),
               "the line does not end with the position placeholder: %.*s", (int)n, line);
    json_object_set(want, "_events_pos", json_object_get(out, "_events_pos"));
    CHECK_FUZZ(json_equal(want, out), "line differs from the input event: %.*s", (int)n, line);
    json_decref(want);
    json_decref(out);
}

/*
 * Indices rejected, from the quarantine lines (index -> the record's bytes as a JSON string),
 * each checked; and the answer's list, which holds the first of them.
 */
static json_t *rejected_indices(const ingest_result *r)
{
    json_t *set = json_object();
    CHECK_FUZZ(r->qn == r->rejected, "%zu quarantine lines for %zu rejected", r->qn, r->rejected);
    for (size_t i = 0; i < r->qn; i++) {
        const char *line = r->qlines.p + r->qev[i].off;
        size_t n = r->qev[i].len;
        CHECK_FUZZ(n && line[n - 1] == '\n' && !memchr(line, '\n', n - 1),
                   "a quarantine line must end with its only newline");
        json_error_t e;
        json_t *q = json_loadb(line, n - 1, JSON_REJECT_DUPLICATES, &e);
        CHECK_FUZZ(q, "quarantine line %zu does not parse: %s", i, e.text);
        const char *id = json_string_value(json_object_get(q, "id"));
        CHECK_FUZZ(id && ulid_valid(id, strlen(id)) && !memcmp(line, "{\"id\":\"", 7),
                   "a quarantine line begins with its id");
        CHECK_FUZZ(json_is_string(json_object_get(q, "reason")) &&
                       json_is_string(json_object_get(q, "class")) &&
                       json_is_integer(json_object_get(q, "index")),
                   "a quarantine line without its reason, class or index");
        json_t *raw = json_object_get(q, "raw");
        buf bytes = BUF_INIT;
        if (json_is_string(raw)) {
            buf_append(&bytes, json_string_value(raw), json_string_length(raw));
            CHECK_FUZZ(lake_quarantine_raw_is_text(bytes.p ? bytes.p : "", bytes.len),
                       "raw holds what should be rawBase64");
        } else {
            const char *b64 = json_string_value(json_object_get(q, "rawBase64"));
            CHECK_FUZZ(json_is_null(raw) && b64 && !base64_decode(&bytes, b64, strlen(b64)),
                       "a quarantine line without its record");
            CHECK_FUZZ(!lake_quarantine_raw_is_text(bytes.p ? bytes.p : "", bytes.len),
                       "rawBase64 holds text");
        }
        char k[32];
        snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(q, "index")));
        json_object_set_new(set, k, json_stringn_nocheck(bytes.p ? bytes.p : "", bytes.len));
        buf_free(&bytes);
        json_decref(q);
    }
    buf b = BUF_INIT;
    buf_putc(&b, '[');
    if (r->rejects.len) buf_append(&b, r->rejects.p, r->rejects.len);
    buf_putc(&b, ']');
    json_error_t e;
    json_t *v = json_loadb(b.p, b.len, 0, &e);
    CHECK_FUZZ(v, "the rejected list is not JSON: %s", e.text);
    CHECK_FUZZ(json_array_size(v) ==
                   (r->rejected < INGEST_REJECTED_LISTED ? r->rejected : INGEST_REJECTED_LISTED),
               "the answer lists %zu of %zu rejected", json_array_size(v), r->rejected);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        char k[32];
        snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(x, "index")));
        CHECK_FUZZ(json_is_string(json_object_get(x, "error")), "a rejection without a reason");
        CHECK_FUZZ(json_object_get(set, k), "the answer lists %s, which is not in the quarantine",
                   k);
    }
    json_decref(v);
    buf_free(&b);
    return set;
}

/* Walks the input events in order alongside our results. */
static void compare_event(const json_t *in, size_t index, const json_t *rejected,
                          const ingest_result *r, size_t *next_ok)
{
    char k[32];
    snprintf(k, sizeof k, "%zu", index);
    json_t *raw = json_object_get(rejected, k);
    int ours = raw == NULL;
    if (raw && in && !json_is_null(in)) { /* the quarantine kept the record, byte for byte */
        json_error_t e;
        json_t *back = json_loadb(json_string_value(raw), json_string_length(raw),
                                  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
        CHECK_FUZZ(!back || json_equal(back, in), "event %zu: the quarantine's raw differs", index);
        json_decref(back);
    }
    if (!in) { /* jansson could not parse it alone: just keep the walk in step */
        if (ours) (*next_ok)++;
        return;
    }
    int ref = ref_valid(in);
    CHECK_FUZZ(ref < 0 || ours == ref, "event %zu: we %s it, the reference %s it", index,
               ours ? "accepted" : "rejected", ref ? "accepts" : "rejects");
    if (ours) {
        CHECK_FUZZ(*next_ok < r->n, "more accepted events than lines");
        const lake_event *e = &r->ev[*next_ok];
        check_line(in, r->lines.p + e->off, e->len - 1);
        (*next_ok)++;
    }
}

static void check_json_body(const char *body, size_t n, const ingest_result *r)
{
    if (memchr(body, 0, n)) return;
    json_error_t e;
    json_t *strict = json_loadb(body, n, JSON_REJECT_DUPLICATES, &e);
    if (!strict) {
        json_t *loose = json_loadb(body, n, 0, &e);
        if (r->code == 0 && r->rejected == 0 && !overflow_error(&e))
            CHECK_FUZZ(loose, "we accepted a body jansson refuses: %s at %d", e.text, e.position);
        json_decref(loose);
        return;
    }
    const json_t *events = json_is_array(strict) ? strict : json_object_get(strict, "events");
    if (!json_is_array(events)) {
        CHECK_FUZZ(r->code == INGEST_EINVAL, "a body without an events array got code %d", r->code);
        json_decref(strict);
        return;
    }
    if (json_array_size(events) > ingest_max_events_for(INGEST_MAX_BODY_DEFAULT)) {
        CHECK_FUZZ(r->code == INGEST_EBIG, "too many events but code %d", r->code);
        json_decref(strict);
        return;
    }
    CHECK_FUZZ(r->code == 0, "a valid body got code %d: %s", r->code, r->error);
    CHECK_FUZZ(r->received == json_array_size(events), "received %zu of %zu", r->received,
               json_array_size(events));
    json_t *rej = rejected_indices(r);
    size_t next_ok = 0, i;
    json_t *ev;
    json_array_foreach(events, i, ev) compare_event(ev, i, rej, r, &next_ok);
    CHECK_FUZZ(next_ok == r->n, "%zu lines for %zu accepted events", r->n, next_ok);
    json_decref(rej);
    json_decref(strict);
}

static int blank(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') return 0;
    return 1;
}

static void check_ndjson_body(const char *body, size_t n, const ingest_result *r)
{
    if (r->code) return; /* empty, or no line was JSON: nothing per line to compare */
    json_t *rej = rejected_indices(r);
    size_t index = 0, next_ok = 0;
    const char *p = body, *end = body + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (!blank(p, le)) {
            json_error_t e;
            json_t *v =
                memchr(p, 0, (size_t)(le - p))
                    ? NULL
                    : json_loadb(p, (size_t)(le - p), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
            compare_event(v, index, rej, r, &next_ok);
            json_decref(v);
            index++;
        }
        p = nl ? nl + 1 : end;
    }
    CHECK_FUZZ(index == r->received, "%zu lines but %zu received", index, r->received);
    CHECK_FUZZ(next_ok == r->n, "%zu lines for %zu accepted events", r->n, next_ok);
    json_decref(rej);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1) return 0;
    int ndjson = data[0] & 1, gz = data[0] & 2;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    buf inflated = BUF_INIT;
    if (gz) {
        char err[256];
        if (ingest_gunzip(body, n, 1 << 16, &inflated, err, sizeof err)) {
            buf_free(&inflated);
            return 0;
        }
        body = inflated.p ? inflated.p : "";
        n = inflated.len;
    }
    if (n >= 3 && !memcmp(body, "\xef\xbb\xbf", 3))
        body += 3, n -= 3; /* we skip a BOM; jansson does not */

    static event_ctx ctx;
    static int init;
    if (!init) {
        event_ctx_init(&ctx);
        json_object_seed(1);
        init = 1;
    }
    event_ctx_set_now(&ctx, INT64_C(1795600800123));
    ingest_limits lim = {INGEST_MAX_BODY_DEFAULT, ingest_max_events_for(INGEST_MAX_BODY_DEFAULT)};
    ingest_result r;
    memset(&r, 0, sizeof r);
    ingest_parse(&ctx, body, n, ndjson ? INGEST_NDJSON : INGEST_JSON, &lim, NULL, &r);

    /* every line we made parses, whatever the input */
    for (size_t i = 0; i < r.n; i++) {
        json_error_t e;
        json_t *v = json_loadb(r.lines.p + r.ev[i].off, r.ev[i].len - 1, 0, &e);
        CHECK_FUZZ(v || overflow_error(&e), "line %zu does not parse: %s", i, e.text);
        json_decref(v);
    }
    if (ndjson)
        check_ndjson_body(body, n, &r);
    else
        check_json_body(body, n, &r);
    ingest_result_free(&r);
    buf_free(&inflated);
    return 0;
}
