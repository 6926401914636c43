/*
 * deliver_recv.c - a fast webhook receiver for bench/deliver.sh: it takes the
 * subscription deliveries of `events serve` (docs/subscriptions.md) on a
 * loopback port, verifies each signature the way Standard Webhooks says
 * (HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" with the key the
 * secret after "whsec_" decodes to), answers 200, and keeps what the
 * benchmark reports: requests, events, bad signatures, and for each event the
 * time from its receivedAt (the server's receive time, which comes before the
 * ingest acknowledgement) to the answer, in milliseconds.
 *
 *   deliver_recv --port N --secret whsec_…
 *
 * GET /stats answers {"requests","events","bad","p50_ms","p99_ms","max_ms"}
 * over what came since the last GET /stats?reset=1 (or the start). libmicrohttpd
 * with a thread per connection: the deliverer keeps few connections, each
 * answered as soon as its body is read; the latencies are kept whole (a
 * growing array behind a mutex) so the percentiles are exact; the events are
 * found by a scan, not a JSON parser (count).
 */
#include "buf.h"
#include "codec.h"
#include "evtime.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BODY (64u << 20)

static buf key; /* set once in main before the daemon starts */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* guards everything below */
static uint64_t n_requests, n_events, n_bad;           /* counts since the last reset */
static int64_t *lat;                                   /* latencies in ms, n_lat of them */
static size_t n_lat, cap_lat;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* 1 if one of the space-separated "v1,<base64>" entries of sig is the HMAC of id.ts.body. */
static int verified(const char *id, const char *ts, const char *sig, const buf *body)
{
    if (!id || !ts || !sig) return 0;
    buf msg = BUF_INIT, b64 = BUF_INIT;
    int ok = 0;
    unsigned char mac[32];
    if (buf_printf(&msg, "%s.%s.", id, ts) == 0 && buf_append(&msg, body->p, body->len) == 0) {
        sha256_hmac(key.p, key.len, msg.p, msg.len, mac);
        if (base64_encode(&b64, mac, sizeof mac) == 0) {
            for (const char *p = sig; *p && !ok;) {
                size_t n = strcspn(p, " ");
                ok = n == b64.len + 3 && !strncmp(p, "v1,", 3) &&
                     sha256_equal(p + 3, b64.p, b64.len);
                p += n;
                p += strspn(p, " ");
            }
        }
    }
    buf_free(&msg);
    buf_free(&b64);
    return ok;
}

/*
 * Counts one verified delivery: its events and their latencies from receivedAt to now. The
 * events are the server's stored lines, each with one top-level "receivedAt" (the first member
 * after ts) and the benchmark's events have no other member of that name, so a scan finds
 * them without a JSON parser: the receiver spends its time on what every receiver must do
 * (read the body, verify the signature), and the figure is the deliverer's.
 */
static void count(const buf *body)
{
    static const char name[] = "\"receivedAt\":\"";
    const size_t nl = sizeof name - 1;
    int64_t now = evtime_now_ms(), got[16384];
    size_t n = 0, events = 0;
    const char *p = body->p, *end = body->p + body->len;
    while (p && (p = memmem(p, (size_t)(end - p), name, nl))) {
        p += nl;
        const char *q = memchr(p, '"', (size_t)(end - p));
        int64_t t;
        events++;
        if (q && n < sizeof got / sizeof *got && !evtime_parse(p, (size_t)(q - p), &t))
            got[n++] = now - t;
        p = q;
    }
    pthread_mutex_lock(&mu);
    n_requests++;
    n_events += events;
    if (n_lat + n > cap_lat) {
        size_t nc = cap_lat ? cap_lat : 1 << 16;
        while (nc < n_lat + n) nc *= 2;
        int64_t *grown = realloc(lat, nc * sizeof *grown);
        if (grown) lat = grown, cap_lat = nc;
    }
    if (n_lat + n <= cap_lat) {
        memcpy(lat + n_lat, got, n * sizeof *got);
        n_lat += n;
    }
    pthread_mutex_unlock(&mu);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result stats(struct MHD_Connection *c)
{
    char out[512];
    /* the percentiles sort every latency so far: only when asked (?latency=1), not on the
     * polls that count events, which would hold deliveries up behind the lock */
    int want = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "latency") != NULL;
    pthread_mutex_lock(&mu);
    if (want) qsort(lat, n_lat, sizeof *lat, cmp_i64);
    int64_t p50 = want && n_lat ? lat[n_lat / 2] : -1,
            p99 = want && n_lat ? lat[n_lat * 99 / 100] : -1;
    int64_t max = want && n_lat ? lat[n_lat - 1] : -1;
    snprintf(out, sizeof out,
             "{\"requests\":%llu,\"events\":%llu,\"bad\":%llu,\"p50_ms\":%lld,\"p99_ms\":%lld,"
             "\"max_ms\":%lld}\n",
             (unsigned long long)n_requests, (unsigned long long)n_events,
             (unsigned long long)n_bad, (long long)p50, (long long)p99, (long long)max);
    if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "reset"))
        n_requests = n_events = n_bad = n_lat = 0;
    pthread_mutex_unlock(&mu);
    return reply(c, 200, out);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
    (void)cls, (void)version;
    if (!strcmp(method, "GET")) return strcmp(url, "/stats") ? reply(c, 404, "") : stats(c);
    buf *body = *con_cls;
    if (!body) {
        body = calloc(1, sizeof *body);
        *con_cls = body;
        return body ? MHD_YES : MHD_NO;
    }
    if (*size) {
        if (body->len + *size > MAX_BODY || buf_append(body, data, *size)) return MHD_NO;
        *size = 0;
        return MHD_YES;
    }
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
    if (!verified(id, ts, sig, body)) {
        pthread_mutex_lock(&mu);
        n_bad++;
        pthread_mutex_unlock(&mu);
        return reply(c, 401, "bad signature");
    }
    count(body);
    return reply(c, 200, "ok");
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls,
                 enum MHD_RequestTerminationCode t)
{
    (void)cls, (void)c, (void)t;
    buf *body = *con_cls;
    if (body) buf_free(body);
    free(body);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *secret = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--secret"))
            secret = argv[i + 1];
    }
    if (port <= 0 || port > 65535 || !secret || strncmp(secret, "whsec_", 6) ||
        base64_decode(&key, secret + 6, strlen(secret + 6))) {
        fputs("usage: deliver_recv --port N --secret whsec_<base64>\n", stderr);
        return 2;
    }
    sigset_t set; /* blocked before the daemon's threads start, so that they inherit it */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, (uint16_t)port, NULL, NULL,
        handle, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "deliver_recv: cannot listen on 127.0.0.1:%ld\n", port);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    free(lat);
    buf_free(&key);
    return 0;
}
