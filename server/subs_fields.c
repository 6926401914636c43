/*
 * subs_fields.c - a webhook subscription's fields as a client gives them:
 * checked one by one, with a message naming the field and its rule, and the
 * defaults of the design (docs/subscriptions.md) filled in.
 *
 * One table of checkers, one per field a client may write; create walks the
 * body through it (an unknown field is refused, so a misspelt "batchsize" is
 * not silently the default), then fills what is absent; a PATCH walks it the
 * same way, without defaults, and refuses the fields that only the server
 * writes. The numbers share one row each in NUMBERS: name, range, default.
 */
#include "subs_fields.h"
#include "buf.h"
#include "codec.h"
#include "evtime.h"
#include "pattern.h"
#include "stream.h"
#include "subs.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

static const struct {
    const char *name;
    long long min, max, def;
} NUMBERS[] = {
    {"batchSize", 1, 10000, 100}, {"maxWaitMs", 0, 60000, 1000}, {"timeoutMs", 100, 120000, 10000},
    {"maxAttempts", 1, 100, 8},   {"concurrency", 1, 16, 1},
};
#define N_NUMBERS (sizeof NUMBERS / sizeof *NUMBERS)

static const char *const FILTERS[] = {"do.class", "do.id", "collection"};

/* A checker: 0 if v is a right value of field name (*set: what to store, a new reference). */
typedef int (*check_fn)(const char *name, json_t *v, json_t **set, char *err, size_t errlen);

static int fail(char *err, size_t errlen, const char *name, const char *rule)
{
    snprintf(err, errlen, "%s: %s", name, rule);
    return -1;
}

static int check_pattern(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    char why[300];
    if (!json_is_string(v)) return fail(err, errlen, name, "must be a string of type patterns");
    if (pattern_check(json_string_value(v), why, sizeof why)) return fail(err, errlen, name, why);
    *set = json_incref(v);
    return 0;
}

static int check_url(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    const char *u = json_string_value(v);
    size_t n = u ? json_string_length(v) : 0, scheme = 0;
    if (u && !strncasecmp(u, "http://", 7)) scheme = 7;
    if (u && !strncasecmp(u, "https://", 8)) scheme = 8;
    int clean = u && strlen(u) == n;
    for (size_t i = 0; clean && i < n; i++)
        clean = (unsigned char)u[i] > 0x20 && (unsigned char)u[i] != 0x7f;
    if (!scheme || n > SUBS_FIELDS_URL_MAX || !clean || n == scheme || u[scheme] == '/')
        return fail(err, errlen, name,
                    "must be an http:// or https:// URL with a host, without spaces or control "
                    "characters, of at most 2048 bytes");
    *set = json_incref(v);
    return 0;
}

static int check_secret(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    buf key = BUF_INIT;
    int ok = s && !strncmp(s, "whsec_", 6) && !base64_decode(&key, s + 6, strlen(s + 6)) &&
             key.len >= SUBS_FIELDS_KEY_MIN && key.len <= SUBS_FIELDS_KEY_MAX;
    buf_free(&key);
    if (!ok)
        return fail(err, errlen, name,
                    "must be \"whsec_\" followed by the base64 of a key of 16 to 64 bytes");
    *set = json_incref(v);
    return 0;
}

static int check_filters(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    if (!json_is_object(v))
        return fail(err, errlen, name,
                    "must be an object of \"do.class\", \"do.id\" and \"collection\" strings");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
            known |= !strcmp(k, FILTERS[i]);
        if (!known) {
            snprintf(err, errlen,
                     "%s: unknown filter \"%.64s\": the filters are \"do.class\", "
                     "\"do.id\" and \"collection\"",
                     name, k);
            return -1;
        }
        size_t n = json_string_length(x);
        if (!json_is_string(x) || !n || n > SUBS_FIELDS_FILTER_MAX ||
            strlen(json_string_value(x)) != n) {
            snprintf(err, errlen, "%s: \"%s\" must be a string of 1 to %d bytes", name, k,
                     SUBS_FIELDS_FILTER_MAX);
            return -1;
        }
    }
    *set = json_deep_copy(v);
    return *set ? 0 : fail(err, errlen, name, "out of memory");
}

static int check_number(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_NUMBERS; i++) {
        if (strcmp(name, NUMBERS[i].name)) continue;
        long long x = json_integer_value(v);
        if (!json_is_integer(v) || x < NUMBERS[i].min || x > NUMBERS[i].max) {
            snprintf(err, errlen, "%s: must be an integer from %lld to %lld", name, NUMBERS[i].min,
                     NUMBERS[i].max);
            return -1;
        }
    }
    *set = json_incref(v);
    return 0;
}

static int check_id(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    if (!json_is_string(v) || !lake_sub_id_valid(json_string_value(v)))
        return fail(err, errlen, name, "must be 1 to 64 of A-Z, a-z, 0-9, _ and -");
    *set = json_incref(v);
    return 0;
}

static int check_state(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (!s || (strcmp(s, "active") && strcmp(s, "paused")))
        return fail(err, errlen, name, "must be \"active\" or \"paused\"");
    *set = json_incref(v);
    return 0;
}

/*
 * start: "now", "oldest", an RFC 3339 time, milliseconds, or a cursor (GET /events' next).
 * Stored as the record's start (ms or "oldest"); a cursor goes to the record's cursor,
 * as a member "cursor" of *set (an object {"start":…,"cursor":…} either way).
 */
static int check_start(const char *name, json_t *v, json_t **set, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    int64_t ms = 0;
    json_t *start = NULL, *cursor = json_string("");
    lake_cursor c = {0};
    char why[200];
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        start = json_incref(v);
    else if (s && !strcmp(s, "oldest"))
        start = json_incref(v);
    else if (s && !strcmp(s, "now"))
        start = json_null(); /* filled with the creation time */
    else if (s && !evtime_parse(s, strlen(s), &ms))
        start = json_integer(ms);
    else if (s && *s && !lake_cursor_parse(s, strlen(s), &c, why, sizeof why)) {
        start = json_string("oldest");
        json_decref(cursor);
        cursor = json_incref(v);
    }
    lake_cursor_free(&c);
    if (!start) {
        json_decref(cursor);
        return fail(err, errlen, name,
                    "must be \"now\", \"oldest\", an RFC 3339 time, milliseconds since the "
                    "epoch, or a cursor (GET /events' next)");
    }
    *set = json_pack("{soso}", "start", start, "cursor", cursor);
    return 0;
}

static const struct {
    const char *name;
    check_fn check;
    int patch; /* a PATCH may change it */
} FIELDS[] = {
    {"id", check_id, 0},
    {"pattern", check_pattern, 1},
    {"filters", check_filters, 1},
    {"url", check_url, 1},
    {"secret", check_secret, 1},
    {"batchSize", check_number, 1},
    {"maxWaitMs", check_number, 1},
    {"timeoutMs", check_number, 1},
    {"maxAttempts", check_number, 1},
    {"concurrency", check_number, 1},
    {"start", check_start, 0},
    {"state", check_state, 1},
};
#define N_FIELDS (sizeof FIELDS / sizeof *FIELDS)

/* The fields the server writes: named in a PATCH's refusal as such, not as unknown. */
static const char *const SERVER_FIELDS[] = {
    "reason",     "cursor",     "replay",      "retryRequested", "retryDone", "retryName",
    "owner",      "leaseUntil", "delivered",   "deadLettered",   "failed",    "lagEvents",
    "lagSeconds", "lastError",  "lastErrorAt", "createdAt",      "updatedAt", "deadLetters",
};

/*
 * Checks every member of body against FIELDS (create: patch 0, which takes every field but
 * state; patch: patch 1), into *out: {name: value to store}. 0, or -1 with err.
 */
static int check_body(const json_t *body, int patch, json_t **out, char *err, size_t errlen)
{
    if (!json_is_object(body)) return fail(err, errlen, "body", "must be a JSON object");
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
    {
        size_t i = 0;
        while (i < N_FIELDS && strcmp(k, FIELDS[i].name)) i++;
        int allowed = i < N_FIELDS && (patch ? FIELDS[i].patch : strcmp(k, "state") != 0);
        json_t *set = NULL;
        if (!allowed) {
            int server = i < N_FIELDS;
            for (size_t j = 0; j < sizeof SERVER_FIELDS / sizeof *SERVER_FIELDS; j++)
                server |= !strcmp(k, SERVER_FIELDS[j]);
            snprintf(err, errlen, server ? "%.64s: cannot be %s" : "%.64s: unknown field%s", k,
                     server ? (patch ? "changed" : "given (the server writes it)") : "");
        } else if (!FIELDS[i].check(k, v, &set, err, errlen)) {
            json_object_set_new(o, k, set);
            continue;
        }
        json_decref(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* n random characters of [0-9a-z] (getrandom: ids must not repeat across servers). */
static void random_id(char *out, size_t n)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char r[32];
    if (n > sizeof r || getrandom(r, n, 0) != (ssize_t)n) memset(r, 0, sizeof r);
    for (size_t i = 0; i < n; i++) out[i] = digits[r[i] % 36];
    out[n] = 0;
}

/* A new secret: whsec_ and the base64 of SUBS_FIELDS_KEY_NEW random bytes. NULL on failure. */
static json_t *new_secret(void)
{
    unsigned char key[SUBS_FIELDS_KEY_NEW];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) return NULL;
    buf b = BUF_INIT;
    json_t *s = NULL;
    if (!buf_puts(&b, "whsec_") && !base64_encode(&b, key, sizeof key))
        s = json_stringn(b.p, b.len);
    buf_free(&b);
    return s;
}

/* The value of f in the checked fields, or dflt (a new reference either way). */
static json_t *given(json_t *f, const char *name, json_t *dflt)
{
    json_t *v = json_object_get(f, name);
    if (!v) return dflt;
    json_decref(dflt);
    return json_incref(v);
}

/* The record of the checked fields f, defaults filled: the design's layout, in its order. */
static json_t *new_record(json_t *f, int64_t now_ms)
{
    char id[21] = "sub_";
    random_id(id + 4, 16);
    json_t *st = json_object_get(f, "start");
    json_t *start = st ? json_incref(json_object_get(st, "start")) : json_null();
    if (json_is_null(start)) start = json_integer(now_ms);
    json_t *rec = json_object();
    json_object_set_new(rec, "id", given(f, "id", json_string(id)));
    json_object_set_new(rec, "pattern", given(f, "pattern", json_null()));
    json_object_set_new(rec, "filters", given(f, "filters", json_object()));
    json_object_set_new(rec, "url", given(f, "url", json_null()));
    json_object_set_new(rec, "secret", given(f, "secret", new_secret()));
    for (size_t i = 0; i < N_NUMBERS; i++)
        json_object_set_new(rec, NUMBERS[i].name,
                            given(f, NUMBERS[i].name, json_integer(NUMBERS[i].def)));
    json_t *cursor = st ? json_incref(json_object_get(st, "cursor")) : json_string("");
    json_t *rest = json_pack(
        "{sssnsoso snsIsIsn snsI sIsIsIsIsIsnsn}", "state", "active", "reason", "start", start,
        "cursor", cursor, "replay", "retryRequested", (json_int_t)0, "retryDone", (json_int_t)0,
        "retryName", "owner", "leaseUntil", (json_int_t)0, "delivered", (json_int_t)0,
        "deadLettered", (json_int_t)0, "failed", (json_int_t)0, "lagEvents", (json_int_t)0,
        "lagSeconds", (json_int_t)0, "lastError", "lastErrorAt");
    json_object_update(rec, rest);
    json_decref(rest);
    return rec;
}

int subs_fields_create(const json_t *body, int64_t now_ms, json_t **out, char *err, size_t errlen)
{
    json_t *f = NULL;
    if (check_body(body, 0, &f, err, errlen)) return -1;
    const char *missing = !json_object_get(f, "pattern") ? "pattern"
                          : !json_object_get(f, "url")   ? "url"
                                                         : NULL;
    if (missing) {
        json_decref(f);
        return fail(err, errlen, missing, "is required");
    }
    json_t *rec = new_record(f, now_ms);
    json_decref(f);
    if (!json_is_string(json_object_get(rec, "secret"))) {
        json_decref(rec);
        return fail(err, errlen, "secret", "cannot be made: no random bytes");
    }
    *out = rec;
    return 0;
}

int subs_fields_patch(const json_t *body, json_t **out, char *err, size_t errlen)
{
    if (check_body(body, 1, out, err, errlen)) return -1;
    if (json_object_size(*out)) return 0;
    json_decref(*out);
    *out = NULL;
    return fail(err, errlen, "body", "names no field to change");
}

void subs_fields_redact(json_t *rec)
{
    const char *s = json_string_value(json_object_get(rec, "secret"));
    if (!s) return;
    char red[32];
    snprintf(red, sizeof red, "whsec_%.4s\xe2\x80\xa6", strncmp(s, "whsec_", 6) ? "" : s + 6);
    json_object_set_new(rec, "secret", json_string(red));
}

int subs_fields_time(const json_t *v, int64_t *ms)
{
    const char *s = json_string_value(v);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *ms = json_integer_value(v);
        return 0;
    }
    return s ? evtime_parse(s, strlen(s), ms) : -1;
}
