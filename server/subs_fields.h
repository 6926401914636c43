/*
 * subs_fields.h - what a client may write into a webhook subscription
 * (POST /subscriptions, PATCH /subscriptions/ID), checked field by field, and
 * what a GET shows of the record (its secret redacted).
 *
 * The record's layout is lake/subs.h's and docs/subscriptions.md's; this
 * module is the API's side of it: the fields a client gives, their rules,
 * their defaults, and the fields only the server writes (state, cursor,
 * lease, stats), which a client may not give. No I/O: the HTTP handlers
 * (server/server_subs.c) read and write the records through lake/subs.h.
 */
#ifndef EVENTS_SUBS_FIELDS_H
#define EVENTS_SUBS_FIELDS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SUBS_FIELDS_URL_MAX    2048 /* bytes of a target URL */
#define SUBS_FIELDS_FILTER_MAX 256  /* bytes of one filter's value */
#define SUBS_FIELDS_KEY_MIN    16   /* bytes of a secret's key (after whsec_, decoded) */
#define SUBS_FIELDS_KEY_MAX    64
#define SUBS_FIELDS_KEY_NEW    24 /* bytes of a key the server makes */

/*
 * A new subscription's record from body (a client's JSON object): every field
 * checked, defaults filled (an id "sub_" + 16 of [0-9a-z] and a secret when
 * absent; start "now" is now_ms). *out is the new record (the caller's, to
 * json_decref). 0, or -1 with the field and its rule in err.
 */
int subs_fields_create(const json_t *body, int64_t now_ms, json_t **out, char *err, size_t errlen);

/*
 * The changes of a PATCH: body's fields checked (pattern, url, secret,
 * filters, the numbers, state "active" or "paused"), as an object of the
 * members to set (*out, the caller's). 0, or -1 with the field and its rule.
 */
int subs_fields_patch(const json_t *body, json_t **out, char *err, size_t errlen);

/* Replaces rec's secret with "whsec_" + the first 4 characters of its key + "…". */
void subs_fields_redact(json_t *rec);

/*
 * A time a client gives (replay's from and to): an RFC 3339 string or
 * milliseconds since the epoch (an integer >= 0). 0 and *ms, or -1.
 */
int subs_fields_time(const json_t *v, int64_t *ms);

#endif
