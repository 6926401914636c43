/*
 * deliver_http.c - one attempt of a batch: the signed POST with libcurl, and
 * what its answer means (deliver.h).
 *
 * A worker owns one easy handle (deliver__conn) for its life, so that
 * libcurl keeps the connection to a receiver alive from one batch to the
 * next; CURLOPT_NOSIGNAL because the workers are threads, the timeouts the
 * subscription's timeoutMs, and a progress callback cuts an attempt when the
 * engine stops. The signature's prefix "{webhook-id}.{timestamp}." sits in
 * the batch's buffer before the body (deliver_batch.c): an attempt writes its
 * timestamp there and runs HMAC-SHA256 once over the buffer; the body sent
 * is the same bytes after the prefix. The answer's body is kept up to
 * DELIVER__EXCERPT bytes (a dead letter's excerpt), its Retry-After read from
 * the headers.
 */
#include "deliver_int.h"
#include "codec.h"
#include "evrand.h"
#include "evtime.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RETRY_AFTER_MAX_S 3600

struct deliver__conn {
    deliver *d;
    CURL *h;
    char errbuf[CURL_ERROR_SIZE];
    deliver__batch *b;     /* the attempt's batch: its excerpt */
    char retry_after[128]; /* the answer's Retry-After, "" none */
};

deliver__conn *deliver__conn_new(deliver *d)
{
    deliver__conn *c = calloc(1, sizeof *c);
    if (!c || !(c->h = curl_easy_init())) {
        free(c);
        return NULL;
    }
    c->d = d;
    return c;
}

void deliver__conn_free(deliver__conn *c)
{
    if (!c) return;
    curl_easy_cleanup(c->h);
    free(c);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    deliver__conn *c = ud;
    size_t len = size * n, room = DELIVER__EXCERPT - c->b->excerpt.len;
    if (room) buf_append(&c->b->excerpt, p, len < room ? len : room);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    deliver__conn *c = ud;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(p, "retry-after:", 12)) {
        const char *v = p + 12, *e = p + len;
        while (v < e && (*v == ' ' || *v == '\t')) v++;
        while (e > v && isspace((unsigned char)e[-1])) e--;
        snprintf(c->retry_after, sizeof c->retry_after, "%.*s", (int)(e - v), v);
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t x, curl_off_t y)
{
    (void)a, (void)b, (void)x, (void)y;
    deliver__conn *c = ud;
    return atomic_load(&c->d->stopping);
}

/* The wait Retry-After asks for, in ms (-1: none or not understood), at most an hour. */
static int64_t retry_after_ms(const char *v)
{
    if (!*v) return -1;
    int64_t s;
    if (strspn(v, "0123456789") == strlen(v)) {
        s = strlen(v) > 9 ? RETRY_AFTER_MAX_S : strtoll(v, NULL, 10);
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1) return -1;
        s = (int64_t)t - evtime_now_ms() / 1000;
        if (s < 0) s = 0;
    }
    return (s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s) * 1000;
}

/* The signature headers of b, its timestamp written into its prefix. */
static struct curl_slist *sign(const deliver__conf *conf, deliver__batch *b)
{
    char h[200], ts[16];
    snprintf(ts, sizeof ts, "%010lld", (long long)(evtime_now_ms() / 1000));
    memcpy(b->msg.p + DELIVER__MSG_ID + 1, ts, 10);
    unsigned char mac[32];
    sha256_hmac(conf->key, conf->keylen, b->msg.p, b->msg.len, mac);
    buf sig = BUF_INIT;
    buf_puts(&sig, "webhook-signature: v1,");
    base64_encode(&sig, mac, sizeof mac);
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    l = curl_slist_append(l, "Expect:"); /* no 100-continue round trip */
    snprintf(h, sizeof h, "webhook-id: %s", b->msg_id);
    l = curl_slist_append(l, h);
    snprintf(h, sizeof h, "webhook-timestamp: %s", ts); /* 10 digits until the year 2286 */
    l = curl_slist_append(l, h);
    l = curl_slist_append(l, buf_cstr(&sig) ? sig.p : "webhook-signature: v1,");
    buf_free(&sig);
    return l;
}

static void set_options(deliver__conn *c, const deliver__conf *conf, deliver__batch *b,
                        struct curl_slist *hdrs)
{
    CURL *h = c->h;
    curl_easy_setopt(h, CURLOPT_URL, conf->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, b->msg.p + DELIVER__PREFIX);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(b->msg.len - DELIVER__PREFIX));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "events-webhooks");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)conf->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
}

int deliver__attempt(deliver__conn *c, const deliver__conf *conf, deliver__batch *b,
                     int64_t *retry_ms)
{
    struct curl_slist *hdrs = sign(conf, b);
    c->b = b, c->retry_after[0] = 0, c->errbuf[0] = 0;
    b->excerpt.len = 0, b->status = 0, b->error[0] = 0;
    set_options(c, conf, b, hdrs);
    atomic_fetch_add(&c->d->busy, 1);
    CURLcode rc = curl_easy_perform(c->h);
    atomic_fetch_sub(&c->d->busy, 1);
    curl_slist_free_all(hdrs);
    *retry_ms = -1;
    if (rc != CURLE_OK) {
        snprintf(b->error, sizeof b->error, "%s%s%s", curl_easy_strerror(rc),
                 c->errbuf[0] ? ": " : "", c->errbuf);
        return DELIVER__FAILED;
    }
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &b->status);
    if (b->status >= 200 && b->status < 300) return DELIVER__OK;
    if (b->status == 410) return DELIVER__GONE;
    snprintf(b->error, sizeof b->error, "the receiver answered %ld", b->status);
    *retry_ms = retry_after_ms(c->retry_after);
    return DELIVER__FAILED;
}

int64_t deliver__backoff(const deliver *d, unsigned n)
{
    int64_t base = d->cfg.backoff_base_ms > 0 ? d->cfg.backoff_base_ms : 1000,
            cap = d->cfg.backoff_cap_ms > 0 ? d->cfg.backoff_cap_ms : 300000;
    int64_t top = base;
    for (unsigned i = 1; i < n && top < cap; i++) top *= 2;
    if (top > cap) top = cap;
    return (int64_t)(evrand_u64() % (uint64_t)(top + 1));
}
