/*
 * webhooks.c - webhook providers, their secrets, and their signatures.
 *
 * Each provider's check follows its documentation (docs/webhooks.md):
 *   github  X-Hub-Signature-256: sha256=<hex HMAC(secret, body)>; no timestamp
 *   stripe  Stripe-Signature: t=<s>,v1=<hex HMAC(secret, t "." body)>[,v1=…]; v0 ignored; 300 s
 *   slack   X-Slack-Signature: v0=<hex HMAC(secret, "v0:" ts ":" body)>, the time in
 *           X-Slack-Request-Timestamp (s); 300 s
 *   linear  Linear-Signature: <hex HMAC(secret, body)>; the body's webhookTimestamp (ms); 60 s
 *   svix    svix-id, svix-timestamp (s), svix-signature: v1,<base64 HMAC(key, id "." ts "."
 *           body)> space-separated (also under Standard Webhooks' webhook-* names); the key is
 *           the base64 after whsec_; 300 s
 *   workos  WorkOS-Signature: t=<ms>, v1=<hex HMAC(secret, t "." body)>; 180 s
 * A signature is decoded into its 32 bytes and compared with each secret's
 * digest by sha256_equal, which takes the same time wherever they differ; the
 * signature is checked before the timestamp, so that only a delivery signed
 * with a secret learns about its time.
 */
#include "webhooks.h"
#include "webhooks_int.h"
#include "auth.h"
#include "codec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const names[WEBHOOKS_COUNT] = {"github", "stripe", "slack",
                                                  "linear", "svix",   "workos"};
static const int tolerance_s[WEBHOOKS_COUNT] = {0, 300, 300, 60, 300, 180};

/* Signatures read from one header at most (Stripe and Svix send several). */
#define SIGS_MAX 16

typedef struct key {
    unsigned char *p;
    size_t n;
} key;

struct webhooks_secrets {
    key k[WEBHOOKS_COUNT][WEBHOOKS_SECRETS_MAX];
    size_t n[WEBHOOKS_COUNT];
    unsigned unsigned_ok; /* bit per provider: --webhook-allow-unsigned */
};

int webhooks_provider_of(const char *name)
{
    for (int i = 0; name && i < WEBHOOKS_COUNT; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

const char *webhooks_name(int provider)
{
    return provider >= 0 && provider < WEBHOOKS_COUNT ? names[provider] : NULL;
}

const char *webhooks_names(void)
{
    return "github, stripe, slack, linear, svix, workos";
}

int webhooks_tolerance_s(int provider)
{
    return provider >= 0 && provider < WEBHOOKS_COUNT ? tolerance_s[provider] : 0;
}

/* ---- secrets ------------------------------------------------------------ */

webhooks_secrets *webhooks_secrets_new(void)
{
    return calloc(1, sizeof(webhooks_secrets));
}

void webhooks_secrets_free(webhooks_secrets *w)
{
    if (!w) return;
    for (int p = 0; p < WEBHOOKS_COUNT; p++)
        for (size_t i = 0; i < w->n[p]; i++) free(w->k[p][i].p);
    free(w);
}

int webhooks_secrets_add(webhooks_secrets *w, int provider, const char *secret, char *err,
                         size_t errlen)
{
    buf b = BUF_INIT;
    size_t n = strlen(secret);
    if (!n) {
        snprintf(err, errlen, "the %s secret is empty", names[provider]);
        return -1;
    }
    if (w->n[provider] == WEBHOOKS_SECRETS_MAX) {
        snprintf(err, errlen, "more than %d secrets for %s", WEBHOOKS_SECRETS_MAX, names[provider]);
        return -1;
    }
    int rc;
    if (provider == WEBHOOKS_SVIX) {
        if (!strncmp(secret, "whsec_", 6)) secret += 6, n -= 6;
        rc = base64_decode(&b, secret, n);
        if (!rc && !b.len) rc = -1;
    } else {
        rc = buf_append(&b, secret, n);
    }
    if (rc) {
        buf_free(&b);
        snprintf(err, errlen, "the %s secret is not whsec_ followed by base64", names[provider]);
        return -1;
    }
    w->k[provider][w->n[provider]++] = (key){(unsigned char *)b.p, b.len};
    return 0;
}

/* One line of a secrets file, its comment or blank taken away by the caller. */
static int secrets_line(webhooks_secrets *w, char *line, char *err, size_t errlen)
{
    char *eq = strchr(line, '=');
    if (!eq) {
        snprintf(err, errlen, "expected provider=secret");
        return -1;
    }
    char *name = line, *e = eq;
    while (e > name && isspace((unsigned char)e[-1])) e--;
    *e = 0;
    char *secret = eq + 1;
    while (isspace((unsigned char)*secret)) secret++;
    int p = webhooks_provider_of(name);
    if (p < 0) {
        snprintf(err, errlen, "unknown provider \"%.40s\" (known: %s)", name, webhooks_names());
        return -1;
    }
    return webhooks_secrets_add(w, p, secret, err, errlen);
}

int webhooks_secrets_load(webhooks_secrets *w, const char *path, char *warn, size_t warnlen,
                          char *err, size_t errlen)
{
    FILE *f = auth_open_secret_file("webhook secrets file", path, warn, warnlen, err, errlen);
    if (!f) return -1;
    char line[2048], e2[256];
    int lineno = 0, rc = 0, added = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        while (n && isspace((unsigned char)line[n - 1])) line[--n] = 0;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        if (secrets_line(w, p, e2, sizeof e2)) {
            snprintf(err, errlen, "webhook secrets file %s:%d: %s", path, lineno, e2);
            rc = -1;
        }
        added++;
    }
    if (!rc && ferror(f)) {
        snprintf(err, errlen, "webhook secrets file %s: cannot read it: %s", path, strerror(errno));
        rc = -1;
    }
    if (!rc && !added) {
        snprintf(err, errlen,
                 "webhook secrets file %s has no secrets (lines of provider=secret): refusing to "
                 "start without them",
                 path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

int webhooks_secrets_env(webhooks_secrets *w, char *err, size_t errlen)
{
    for (int p = 0; p < WEBHOOKS_COUNT; p++) {
        char var[64], e2[200];
        int n = snprintf(var, sizeof var, "EVENTS_WEBHOOK_SECRET_%s", names[p]);
        for (int i = n - (int)strlen(names[p]); i < n; i++)
            var[i] = (char)toupper((unsigned char)var[i]);
        const char *v = getenv(var);
        if (!v || !*v) continue;
        if (webhooks_secrets_add(w, p, v, e2, sizeof e2)) {
            snprintf(err, errlen, "%s: %s", var, e2);
            return -1;
        }
    }
    return 0;
}

int webhooks_allow_unsigned(webhooks_secrets *w, const char *list, char *err, size_t errlen)
{
    while (list && *list) {
        size_t n = strcspn(list, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), list);
        int p = webhooks_provider_of(name);
        if (p < 0 || n > 31) {
            snprintf(err, errlen, "--webhook-allow-unsigned: unknown provider \"%.*s\" (known: %s)",
                     (int)(n < 40 ? n : 40), list, webhooks_names());
            return -1;
        }
        w->unsigned_ok |= 1u << p;
        list += n;
        if (*list == ',') list++;
    }
    return 0;
}

int webhooks_has_secret(const webhooks_secrets *w, int provider)
{
    return w && w->n[provider] > 0;
}

int webhooks_unsigned_allowed(const webhooks_secrets *w, int provider)
{
    return w && (w->unsigned_ok >> provider) & 1;
}

/* ---- signatures ---------------------------------------------------------- */

int webhooks__hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The 32 bytes of 64 hex digits s[0..n); -1 when it is not that. */
static int unhex32(const char *s, size_t n, unsigned char out[32])
{
    if (n != 64) return -1;
    for (size_t i = 0; i < 32; i++) {
        int hi = webhooks__hexval((unsigned char)s[2 * i]),
            lo = webhooks__hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* A decimal timestamp s[0..n) (at most 15 digits); -1 when it is not one. */
static int parse_ts(const char *s, size_t n, int64_t *out)
{
    if (!n || n > 15) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * 1 when a secret of provider p signs pre[0..pn) followed by body with one of
 * sig[0..nsig), 0 when none does, -1 out of memory. Every secret is tried
 * against every signature.
 */
static int signed_by_any(const webhooks_secrets *w, int p, const char *pre, size_t pn,
                         const webhooks_delivery *d, unsigned char (*sig)[32], size_t nsig)
{
    buf m = BUF_INIT;
    const void *msg = d->body;
    size_t mn = d->n;
    if (pn) {
        if (buf_append(&m, pre, pn) || buf_append(&m, d->body, d->n)) {
            buf_free(&m);
            return -1;
        }
        msg = m.p, mn = m.len;
    }
    int ok = 0;
    for (size_t i = 0; i < w->n[p]; i++) {
        unsigned char dg[32];
        sha256_hmac(w->k[p][i].p, w->k[p][i].n, msg ? msg : "", mn, dg);
        for (size_t j = 0; j < nsig; j++) ok |= sha256_equal(dg, sig[j], 32);
    }
    buf_free(&m);
    return ok;
}

/* The header name of d, or NULL with err naming it. */
static const char *need(const webhooks_delivery *d, const char *name, char *err, size_t errlen)
{
    const char *v = d->header(d->ud, name);
    if (!v || !*v) snprintf(err, errlen, "missing header %s", name);
    return v && *v ? v : NULL;
}

/* Whether ts_ms is within the provider's tolerance of now_ms. */
static int check_time(int p, int64_t ts_ms, int64_t now_ms, const char *what, char *err,
                      size_t errlen)
{
    int64_t tol = (int64_t)tolerance_s[p] * 1000, d = now_ms - ts_ms;
    if (d > tol) {
        snprintf(err, errlen, "%s is %lld s old, past the %d s tolerance", what,
                 (long long)(d / 1000), tolerance_s[p]);
        return WEBHOOKS_ESTALE;
    }
    if (-d > tol) {
        snprintf(err, errlen, "%s is %lld s in the future, past the %d s tolerance", what,
                 (long long)(-d / 1000), tolerance_s[p]);
        return WEBHOOKS_EFUTURE;
    }
    return 0;
}

/* The outcome of signed_by_any as a code, err naming the header. */
static int match_code(int m, const char *header, char *err, size_t errlen)
{
    if (m < 0) {
        snprintf(err, errlen, "out of memory");
        return WEBHOOKS_ENOMEM;
    }
    if (!m) {
        snprintf(err, errlen, "%s does not match the body under any %s", header,
                 "configured secret");
        return WEBHOOKS_EBAD;
    }
    return 0;
}

/* GitHub and Linear: one hex HMAC of the body, after prefix. */
static int verify_body_hmac(const webhooks_delivery *d, const webhooks_secrets *w,
                            const char *header, const char *prefix, char *err, size_t errlen)
{
    const char *v = need(d, header, err, errlen);
    if (!v) return WEBHOOKS_EMISSING;
    size_t pl = strlen(prefix);
    unsigned char sig[1][32];
    if (strncmp(v, prefix, pl) || unhex32(v + pl, strlen(v + pl), sig[0])) {
        snprintf(err, errlen, "%s is not %s<64 hex digits>", header, prefix);
        return WEBHOOKS_EBAD;
    }
    return match_code(signed_by_any(w, d->provider, "", 0, d, sig, 1), header, err, errlen);
}

/*
 * Stripe's and WorkOS's "t=<time>,v1=<hex>[,v1=<hex>…]" (spaces after commas
 * allowed, other schemes ignored): the time and the v1 signatures.
 */
static int parse_tv(const char *v, const char *header, int64_t *t, unsigned char (*sig)[32],
                    size_t *nsig, char *err, size_t errlen)
{
    int has_t = 0;
    *nsig = 0;
    while (*v) {
        while (*v == ' ' || *v == ',') v++;
        size_t n = strcspn(v, ",");
        size_t m = n;
        while (m && v[m - 1] == ' ') m--;
        if (m > 2 && !strncmp(v, "t=", 2))
            has_t = !parse_ts(v + 2, m - 2, t);
        else if (m > 3 && !strncmp(v, "v1=", 3) && *nsig < SIGS_MAX &&
                 !unhex32(v + 3, m - 3, sig[*nsig]))
            ++*nsig;
        v += n;
    }
    if (!has_t) snprintf(err, errlen, "%s has no timestamp t=<digits>", header);
    if (has_t && !*nsig) snprintf(err, errlen, "%s has no v1=<64 hex digits> signature", header);
    return has_t && *nsig ? 0 : WEBHOOKS_EBAD;
}

/* Stripe (t in seconds) and WorkOS (t in milliseconds): HMAC of t "." body. */
static int verify_tv(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                     char *err, size_t errlen)
{
    const char *header = d->provider == WEBHOOKS_STRIPE ? "Stripe-Signature" : "WorkOS-Signature";
    const char *v = need(d, header, err, errlen);
    if (!v) return WEBHOOKS_EMISSING;
    unsigned char sig[SIGS_MAX][32];
    size_t nsig;
    int64_t t = 0;
    int rc = parse_tv(v, header, &t, sig, &nsig, err, errlen);
    if (rc) return rc;
    char pre[32];
    int pn = snprintf(pre, sizeof pre, "%lld.", (long long)t);
    rc = match_code(signed_by_any(w, d->provider, pre, (size_t)pn, d, sig, nsig), header, err,
                    errlen);
    int64_t t_ms = d->provider == WEBHOOKS_STRIPE ? t * 1000 : t;
    return rc ? rc : check_time(d->provider, t_ms, now_ms, "the timestamp t", err, errlen);
}

static int verify_slack(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                        char *err, size_t errlen)
{
    const char *ts = need(d, "X-Slack-Request-Timestamp", err, errlen), *v = NULL;
    if (!ts || !(v = need(d, "X-Slack-Signature", err, errlen))) return WEBHOOKS_EMISSING;
    int64_t t;
    unsigned char sig[1][32];
    if (parse_ts(ts, strlen(ts), &t)) {
        snprintf(err, errlen, "X-Slack-Request-Timestamp is not a number of seconds");
        return WEBHOOKS_EBAD;
    }
    if (strncmp(v, "v0=", 3) || unhex32(v + 3, strlen(v + 3), sig[0])) {
        snprintf(err, errlen, "X-Slack-Signature is not v0=<64 hex digits>");
        return WEBHOOKS_EBAD;
    }
    char pre[32];
    int pn = snprintf(pre, sizeof pre, "v0:%lld:", (long long)t);
    int rc = match_code(signed_by_any(w, d->provider, pre, (size_t)pn, d, sig, 1),
                        "X-Slack-Signature", err, errlen);
    return rc ? rc
              : check_time(d->provider, t * 1000, now_ms, "X-Slack-Request-Timestamp", err, errlen);
}

/* Linear: the signature, then the body's webhookTimestamp (ms). */
static int verify_linear(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                         char *err, size_t errlen)
{
    int rc = verify_body_hmac(d, w, "Linear-Signature", "", err, errlen);
    if (rc) return rc;
    const char *v, *ve;
    int64_t t;
    if (!webhooks__member(d->body, d->body + d->n, "webhookTimestamp", &v, &ve) ||
        parse_ts(v, (size_t)(ve - v), &t)) {
        snprintf(err, errlen, "the body has no webhookTimestamp (Unix milliseconds)");
        return WEBHOOKS_EMISSING;
    }
    return check_time(d->provider, t, now_ms, "webhookTimestamp", err, errlen);
}

/* Svix's header, or Standard Webhooks' webhook-* one without it. */
static const char *svix_header(const webhooks_delivery *d, const char *what, char *err,
                               size_t errlen)
{
    char a[40], b[40];
    snprintf(a, sizeof a, "svix-%s", what);
    snprintf(b, sizeof b, "webhook-%s", what);
    const char *v = d->header(d->ud, a);
    if (!v || !*v) v = d->header(d->ud, b);
    if (!v || !*v) snprintf(err, errlen, "missing header %s (or %s)", a, b);
    return v && *v ? v : NULL;
}

/* Svix's "v1,<base64> v1,<base64>": the signatures of 32 bytes (others skipped). */
static size_t svix_sigs(const char *v, unsigned char (*sig)[32])
{
    size_t nsig = 0;
    while (*v && nsig < SIGS_MAX) {
        while (*v == ' ') v++;
        size_t n = strcspn(v, " ");
        buf b = BUF_INIT;
        if (n > 3 && !strncmp(v, "v1,", 3) && !base64_decode(&b, v + 3, n - 3) && b.len == 32)
            memcpy(sig[nsig++], b.p, 32);
        buf_free(&b);
        v += n;
    }
    return nsig;
}

static int verify_svix(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                       char *err, size_t errlen)
{
    const char *id = svix_header(d, "id", err, errlen), *ts = NULL, *v = NULL;
    if (!id || !(ts = svix_header(d, "timestamp", err, errlen)) ||
        !(v = svix_header(d, "signature", err, errlen)))
        return WEBHOOKS_EMISSING;
    int64_t t;
    if (parse_ts(ts, strlen(ts), &t)) {
        snprintf(err, errlen, "the timestamp header is not a number of seconds");
        return WEBHOOKS_EBAD;
    }
    unsigned char sig[SIGS_MAX][32];
    size_t nsig = svix_sigs(v, sig);
    if (!nsig) {
        snprintf(err, errlen, "the signature header has no v1,<base64 of 32 bytes>");
        return WEBHOOKS_EBAD;
    }
    buf pre = BUF_INIT;
    if (buf_printf(&pre, "%s.%lld.", id, (long long)t)) return WEBHOOKS_ENOMEM;
    int m = signed_by_any(w, d->provider, pre.p, pre.len, d, sig, nsig);
    buf_free(&pre);
    int rc = match_code(m, "the signature header", err, errlen);
    return rc ? rc : check_time(d->provider, t * 1000, now_ms, "the timestamp", err, errlen);
}

int webhooks_verify(const webhooks_delivery *d, const webhooks_secrets *w, int64_t now_ms,
                    char *err, size_t errlen)
{
    if (!webhooks_has_secret(w, d->provider)) {
        snprintf(err, errlen, "no secret for %s", webhooks_name(d->provider));
        return WEBHOOKS_ENOSECRET;
    }
    switch (d->provider) {
    case WEBHOOKS_GITHUB:
        return verify_body_hmac(d, w, "X-Hub-Signature-256", "sha256=", err, errlen);
    case WEBHOOKS_STRIPE:
    case WEBHOOKS_WORKOS: return verify_tv(d, w, now_ms, err, errlen);
    case WEBHOOKS_SLACK: return verify_slack(d, w, now_ms, err, errlen);
    case WEBHOOKS_LINEAR: return verify_linear(d, w, now_ms, err, errlen);
    default: return verify_svix(d, w, now_ms, err, errlen);
    }
}
