/*
 * webhooks.h - inbound webhook deliveries: verified, then made into one event.
 *
 * Six providers, each verified exactly as it documents its signature
 * (docs/webhooks.md): GitHub, Stripe, Slack, Linear, Svix (and Standard
 * Webhooks) and WorkOS. A provider's secrets (several: rotation) come from a
 * secrets file or the environment; a delivery verifies when any one of them
 * signs it. Signatures are HMAC-SHA256 digests, decoded from the header and
 * compared with sha256_equal, so a comparison takes the same time wherever
 * the digests differ; a timestamp outside the provider's tolerance is refused
 * whether it is old or in the future.
 *
 * A verified delivery becomes one event line's JSON text:
 *   {"id":"wh_<provider>_<delivery id>","type":"webhook.<provider>.<type>",
 *    "webhook":{"provider","deliveryId","verified","receivedAt"},"payload":<body>}
 * whose id is the provider's delivery id, so that the lake writer's dedup
 * window stores a provider's retry once.
 *
 * Pure functions: no HTTP, no clock (the caller passes now), no global state.
 * server_webhooks.c is the HTTP end.
 */
#ifndef EVENTS_WEBHOOKS_H
#define EVENTS_WEBHOOKS_H

#include "buf.h"
#include "event.h"

#include <stddef.h>
#include <stdint.h>

enum webhooks_provider {
    WEBHOOKS_GITHUB,
    WEBHOOKS_STRIPE,
    WEBHOOKS_SLACK,
    WEBHOOKS_LINEAR,
    WEBHOOKS_SVIX,
    WEBHOOKS_WORKOS,
    WEBHOOKS_COUNT
};

/* How verifying or reading a delivery fails (details in err). */
#define WEBHOOKS_EMISSING  (-1) /* a header (or Linear's webhookTimestamp) the signature needs */
#define WEBHOOKS_EBAD      (-2) /* the signature is malformed or no secret signs the delivery */
#define WEBHOOKS_ESTALE    (-3) /* the timestamp is older than the provider's tolerance */
#define WEBHOOKS_EFUTURE   (-4) /* the timestamp is further ahead than the tolerance */
#define WEBHOOKS_ENOSECRET (-5) /* the provider has no secret */
#define WEBHOOKS_EBODY     (-6) /* the body is not JSON (or not form fields) */
#define WEBHOOKS_ENOMEM    (-7)

/* Secrets of one provider at most (old and new during a rotation). */
#define WEBHOOKS_SECRETS_MAX 8

/* The provider named name ("github", …), or -1. */
int webhooks_provider_of(const char *name);
/* "github", …; NULL out of range. */
const char *webhooks_name(int provider);
/* "github, stripe, slack, linear, svix, workos": for error messages. */
const char *webhooks_names(void);
/* Seconds a timestamp may be off (either way), 0 when the provider has none. */
int webhooks_tolerance_s(int provider);

typedef struct webhooks_secrets webhooks_secrets;

webhooks_secrets *webhooks_secrets_new(void);
void webhooks_secrets_free(webhooks_secrets *w);
/*
 * Adds a secret of provider. A Svix secret is whsec_<base64> (or the base64
 * alone): its key is the decoded bytes. Returns 0, or -1: empty, not base64
 * (Svix), more than WEBHOOKS_SECRETS_MAX, out of memory.
 */
int webhooks_secrets_add(webhooks_secrets *w, int provider, const char *secret, char *err,
                         size_t errlen);
/*
 * Adds the secrets of a file of `provider=secret` lines (blank lines and lines
 * starting with # skipped). Returns 0, or -1 naming the file and the line: not
 * a regular file, unreadable, an unknown provider, a line without =, a bad
 * secret, no secret at all. warn is set ("" if none) when every user can read it.
 */
int webhooks_secrets_load(webhooks_secrets *w, const char *path, char *warn, size_t warnlen,
                          char *err, size_t errlen);
/* Adds EVENTS_WEBHOOK_SECRET_<PROVIDER> of each provider that is set. 0 or -1. */
int webhooks_secrets_env(webhooks_secrets *w, char *err, size_t errlen);
/* Allows the providers of "github,slack" unsigned while they have no secret. 0 or -1. */
int webhooks_allow_unsigned(webhooks_secrets *w, const char *list, char *err, size_t errlen);
int webhooks_has_secret(const webhooks_secrets *w, int provider);
int webhooks_unsigned_allowed(const webhooks_secrets *w, int provider);

/* A header's value (case-insensitive name), or NULL. */
typedef const char *(*webhooks_header_fn)(void *ud, const char *name);

/* One delivery as received. */
typedef struct webhooks_delivery {
    int provider;
    webhooks_header_fn header;
    void *ud;
    const char *body; /* the raw bytes, as signed */
    size_t n;
    int form; /* application/x-www-form-urlencoded, else JSON */
} webhooks_delivery;

/* Verifies d's signature at now_ms (Unix ms). 0, or a WEBHOOKS_E* code with err saying why. */
int webhooks_verify(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                    char *err, size_t errlen);

typedef struct webhooks_event {
    buf json;                      /* the event's JSON text, or Slack's challenge answer */
    char type[EVENT_TYPE_MAX + 1]; /* webhook.<provider>.<type> */
    char id[EVENT_ID_MAX + 1];     /* the dedup id; "" when the delivery has none */
    int challenge;                 /* Slack url_verification: json is {"challenge":…} */
} webhooks_event;

/*
 * Makes the event of delivery d (verified or not), received at received_ms.
 * Returns 0, or WEBHOOKS_EBODY / WEBHOOKS_ENOMEM with err set. out->json is
 * appended to; the caller frees it.
 */
int webhooks_make_event(const webhooks_delivery *d, int verified, int64_t received_ms,
                        webhooks_event *out, char *err, size_t errlen);

/*
 * Maps a provider's event type into the type grammar, after "webhook.<provider>.":
 * camelCase boundaries become _, upper case lower, any other character outside
 * [a-z0-9_.-] _, empty segments are dropped, the whole cut to EVENT_TYPE_MAX;
 * nothing left gives "unknown". Writes the full type into out.
 */
void webhooks_map_type(int provider, const char *raw, size_t n, char out[EVENT_TYPE_MAX + 1]);

/* The dedup id of a delivery id: wh_<provider>_<id>, or wh_<provider>_<32 hex of its SHA-256>. */
void webhooks_dedup_id(int provider, const char *delivery, size_t n, char out[EVENT_ID_MAX + 1]);

#endif
