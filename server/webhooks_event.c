/*
 * webhooks_event.c - the event of a webhook delivery (webhooks.h).
 *
 * The payload is the body as received: JSON text, checked to be one JSON
 * value, or form fields (Slack's slash commands and interactivity, GitHub's
 * form content type) made into an object of strings, where a `payload` field
 * holding JSON is that JSON. The event's type is the provider's event type
 * mapped into the type grammar (webhooks_map_type), its id the provider's
 * delivery id made an event id (webhooks_dedup_id), so the writer's dedup
 * window stores a retried delivery once. Members are read from the JSON text
 * in place (jscan), without building a tree.
 */
#include "webhooks.h"
#include "webhooks_int.h"
#include "codec.h"
#include "evtime.h"
#include "jscan.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Bytes of a provider's event type or delivery id read at most. */
#define RAW_MAX 512

int webhooks__member(const char *obj, const char *end, const char *name, const char **v,
                     const char **vend)
{
    jscan s = {0};
    const char *p = jscan_ws(&s, obj, end);
    if (p >= end || *p != '{') return 0;
    p = jscan_ws(&s, p + 1, end);
    size_t nl = strlen(name);
    while (p < end && *p == '"') {
        const char *ke = jscan_string(&s, p, end);
        if (!ke) return 0;
        char key[64];
        size_t kl = jscan_unescape(p + 1, ke - 1, key, sizeof key);
        p = jscan_ws(&s, ke, end);
        if (p >= end || *p != ':') return 0;
        p = jscan_ws(&s, p + 1, end);
        enum jtype t;
        const char *ve = p < end ? jscan_value(&s, p, end, &t) : NULL;
        if (!ve) return 0;
        if (kl == nl && !memcmp(key, name, nl)) {
            *v = p, *vend = ve;
            return 1;
        }
        p = jscan_ws(&s, ve, end);
        if (p >= end || *p != ',') return 0;
        p = jscan_ws(&s, p + 1, end);
    }
    return 0;
}

long webhooks__string(const char *obj, const char *end, const char *name, char *out, size_t cap)
{
    const char *v, *ve;
    if (!webhooks__member(obj, end, name, &v, &ve) || *v != '"' || ve - v < 2) return -1;
    size_t n = jscan_unescape(v + 1, ve - 1, out, cap - 1);
    if (n == (size_t)-1 || memchr(out, 0, n)) return -1;
    out[n] = 0;
    return (long)n;
}

/* 1 when [p, p + n) is one JSON value, with whitespace around it at most. */
static int is_json(const char *p, size_t n)
{
    jscan s = {0};
    const char *end = p + n, *q = jscan_ws(&s, p, end);
    enum jtype t;
    if (q >= end || !(q = jscan_value(&s, q, end, &t))) return 0;
    return jscan_ws(&s, q, end) == end;
}

/* Decodes the form-encoded s[0..n) (+ is a space, %XX a byte) into out. -1 on a bad escape. */
static int form_decode(const char *s, size_t n, buf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int a = i + 2 < n ? webhooks__hexval((unsigned char)s[i + 1]) : -1;
            int b = i + 2 < n ? webhooks__hexval((unsigned char)s[i + 2]) : -1;
            if (a < 0 || b < 0) return -1;
            c = (char)(a << 4 | b);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (buf_putc(out, c)) return -1;
    }
    return 0;
}

/* Form fields a=1&b=2 as {"a":"1","b":"2"}; a payload field holding JSON is that JSON. */
static int form_json(const char *body, size_t n, buf *out, char *err, size_t errlen)
{
    buf k = BUF_INIT, v = BUF_INIT;
    int rc = buf_putc(out, '{'), first = 1;
    for (size_t i = 0; !rc && i < n;) {
        size_t e = i;
        while (e < n && body[e] != '&') e++;
        const char *eq = memchr(body + i, '=', e - i);
        size_t kn = eq ? (size_t)(eq - body - i) : e - i;
        k.len = v.len = 0;
        if (form_decode(body + i, kn, &k) || (eq && form_decode(eq + 1, e - i - kn - 1, &v))) {
            snprintf(err, errlen, "the body is not form fields: a bad %%-escape");
            rc = WEBHOOKS_EBODY;
            break;
        }
        if (e > i) {
            rc = (!first && buf_putc(out, ',')) || buf_json_str(out, k.p ? k.p : "", k.len) ||
                 buf_putc(out, ':');
            int raw =
                k.p && k.len == 7 && !memcmp(k.p, "payload", 7) && v.len && is_json(v.p, v.len);
            if (!rc)
                rc = raw ? buf_append(out, v.p, v.len) : buf_json_str(out, v.p ? v.p : "", v.len);
            first = 0;
        }
        i = e + 1;
    }
    if (!rc && buf_putc(out, '}')) rc = -1;
    if (rc == -1) {
        snprintf(err, errlen, "out of memory");
        rc = WEBHOOKS_ENOMEM;
    }
    buf_free(&k);
    buf_free(&v);
    return rc;
}

/* "a" "." "b" into out, or "a" alone when b is empty. */
static void join(char *out, size_t cap, const char *a, const char *b)
{
    snprintf(out, cap, "%s%s%s", a, *b ? "." : "", b);
}

/* Slack's type: an interactive payload's, a slash command, an event's, the body's. */
static void slack_type(const char *p, const char *end, char *out, size_t cap)
{
    const char *v, *ve;
    out[0] = 0;
    if (webhooks__member(p, end, "payload", &v, &ve) && *v == '{') {
        webhooks__string(v, ve, "type", out, cap);
    } else if (webhooks__member(p, end, "command", &v, &ve)) {
        snprintf(out, cap, "slash_command");
    } else if (webhooks__string(p, end, "type", out, cap) > 0 && !strcmp(out, "event_callback") &&
               webhooks__member(p, end, "event", &v, &ve)) {
        if (webhooks__string(v, ve, "type", out, cap) < 0) snprintf(out, cap, "event_callback");
    }
}

/* The provider's own type of the delivery (payload [p, end)), "" when it has none. */
static void raw_type(const webhooks_delivery *d, const char *p, const char *end, char *out,
                     size_t cap)
{
    char a[RAW_MAX] = "", b[RAW_MAX] = "";
    out[0] = 0;
    switch (d->provider) {
    case WEBHOOKS_GITHUB: {
        const char *ev = d->header(d->ud, "X-GitHub-Event");
        snprintf(a, sizeof a, "%s", ev ? ev : "");
        webhooks__string(p, end, "action", b, sizeof b);
        join(out, cap, a, b);
        break;
    }
    case WEBHOOKS_LINEAR:
        webhooks__string(p, end, "type", a, sizeof a);
        webhooks__string(p, end, "action", b, sizeof b);
        join(out, cap, a, b);
        break;
    case WEBHOOKS_SLACK: slack_type(p, end, out, cap); break;
    case WEBHOOKS_WORKOS: webhooks__string(p, end, "event", out, cap); break;
    default: webhooks__string(p, end, "type", out, cap); break;
    }
}

/* A header's value into out; its length or -1. */
static long header_id(const webhooks_delivery *d, const char *name, char *out, size_t cap)
{
    const char *v = d->header(d->ud, name);
    if (!v || !*v || strlen(v) >= cap) return -1;
    snprintf(out, cap, "%s", v);
    return (long)strlen(v);
}

/* Linear without Linear-Delivery: its webhookId, the entity's id and the time made one id. */
static long linear_id(const char *p, const char *end, char *out, size_t cap)
{
    char hook[128], ent[128] = "", at[64] = "";
    const char *v, *ve;
    if (webhooks__string(p, end, "webhookId", hook, sizeof hook) <= 0) return -1;
    if (webhooks__member(p, end, "data", &v, &ve)) webhooks__string(v, ve, "id", ent, sizeof ent);
    webhooks__string(p, end, "createdAt", at, sizeof at);
    return snprintf(out, cap, "%s:%s:%s", hook, ent, at);
}

/* The provider's delivery id into out: its length, or -1 when there is none. */
static long delivery_id(const webhooks_delivery *d, const char *p, const char *end, char *out,
                        size_t cap)
{
    switch (d->provider) {
    case WEBHOOKS_GITHUB: return header_id(d, "X-GitHub-Delivery", out, cap);
    case WEBHOOKS_SLACK: return webhooks__string(p, end, "event_id", out, cap);
    case WEBHOOKS_LINEAR: {
        long n = header_id(d, "Linear-Delivery", out, cap);
        return n > 0 ? n : linear_id(p, end, out, cap);
    }
    case WEBHOOKS_SVIX: {
        long n = header_id(d, "svix-id", out, cap);
        return n > 0 ? n : header_id(d, "webhook-id", out, cap);
    }
    default: return webhooks__string(p, end, "id", out, cap); /* stripe, workos */
    }
}

void webhooks_map_type(int provider, const char *raw, size_t n, char out[EVENT_TYPE_MAX + 1])
{
    size_t base = (size_t)snprintf(out, EVENT_TYPE_MAX + 1, "webhook.%s.", webhooks_name(provider));
    size_t o = base, seg = base;
    for (size_t i = 0; i < n && o < EVENT_TYPE_MAX; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '.') {
            if (o > seg) out[o++] = '.', seg = o;
            continue;
        }
        char m = (char)c;
        if (isupper(c)) {
            m = (char)tolower(c);
            unsigned char prev = i ? (unsigned char)raw[i - 1] : 0;
            if ((islower(prev) || isdigit(prev)) && o > seg) {
                out[o++] = '_';
                if (o >= EVENT_TYPE_MAX) break;
            }
        } else if (!islower(c) && !isdigit(c) && c != '_' && c != '-') {
            m = '_';
        }
        out[o++] = m;
    }
    while (o > base && out[o - 1] == '.') o--;
    out[o] = 0;
    if (o == base || !event_type_valid(out, o))
        snprintf(out, EVENT_TYPE_MAX + 1, "webhook.%s.unknown", webhooks_name(provider));
}

void webhooks_dedup_id(int provider, const char *delivery, size_t n, char out[EVENT_ID_MAX + 1])
{
    size_t base = (size_t)snprintf(out, EVENT_ID_MAX + 1, "wh_%s_", webhooks_name(provider));
    int fits = n > 0 && base + n <= EVENT_ID_MAX;
    for (size_t i = 0; fits && i < n; i++)
        fits = isalnum((unsigned char)delivery[i]) || strchr("_.:-", delivery[i]);
    if (fits) {
        memcpy(out + base, delivery, n);
        out[base + n] = 0;
        return;
    }
    char hex[65];
    sha256_hex_of(delivery, n, hex);
    snprintf(out + base, EVENT_ID_MAX + 1 - base, "%.32s", hex);
}

/* Slack's url_verification: out->json the answer {"challenge":…}; 1 when it is one. */
static int slack_challenge(const char *p, const char *end, webhooks_event *out)
{
    char type[32];
    const char *v, *ve;
    if (webhooks__string(p, end, "type", type, sizeof type) < 0 ||
        strcmp(type, "url_verification") || !webhooks__member(p, end, "challenge", &v, &ve))
        return 0;
    out->challenge = 1;
    return buf_puts(&out->json, "{\"challenge\":") || buf_append(&out->json, v, (size_t)(ve - v)) ||
                   buf_putc(&out->json, '}')
               ? -1
               : 1;
}

/* The event's JSON text into out->json, around the payload [p, p + n). */
static int put_event(const webhooks_delivery *d, int verified, int64_t received_ms, const char *did,
                     long dn, const char *p, size_t n, webhooks_event *out)
{
    char at[EVTIME_LEN + 1];
    evtime_format(received_ms, at);
    buf *b = &out->json;
    int rc = buf_putc(b, '{');
    if (out->id[0]) rc = rc || buf_printf(b, "\"id\":\"%s\",", out->id);
    rc = rc || buf_printf(b, "\"type\":\"%s\",\"webhook\":{\"provider\":\"%s\",\"deliveryId\":",
                          out->type, webhooks_name(d->provider));
    rc = rc || (dn > 0 ? buf_json_str(b, did, (size_t)dn) : buf_puts(b, "null"));
    rc = rc || buf_printf(b, ",\"verified\":%s,\"receivedAt\":\"%s\"},\"payload\":",
                          verified ? "true" : "false", at);
    return rc || buf_append(b, p, n) || buf_putc(b, '}') ? -1 : 0;
}

int webhooks_make_event(const webhooks_delivery *d, int verified, int64_t received_ms,
                        webhooks_event *out, char *err, size_t errlen)
{
    buf form = BUF_INIT;
    const char *p = d->body ? d->body : "";
    size_t n = d->n;
    out->challenge = 0;
    out->id[0] = 0;
    if (d->form) {
        int rc = form_json(p, n, &form, err, errlen);
        if (rc) {
            buf_free(&form);
            return rc;
        }
        p = form.p, n = form.len;
    } else if (!is_json(p, n)) {
        snprintf(err, errlen, "the body is not JSON");
        return WEBHOOKS_EBODY;
    }
    int rc = d->provider == WEBHOOKS_SLACK ? slack_challenge(p, p + n, out) : 0;
    if (!rc) {
        char raw[RAW_MAX] = "", did[RAW_MAX] = "";
        raw_type(d, p, p + n, raw, sizeof raw);
        webhooks_map_type(d->provider, raw, strlen(raw), out->type);
        long dn = delivery_id(d, p, p + n, did, sizeof did);
        if (dn > 0) webhooks_dedup_id(d->provider, did, (size_t)dn, out->id);
        rc = put_event(d, verified, received_ms, did, dn, p, n, out);
    }
    buf_free(&form);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return WEBHOOKS_ENOMEM;
    }
    return 0;
}
