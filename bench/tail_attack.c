/*
 * tail_attack.c - what GET /tail subscribers cost ingest: the time of one
 * POST /ingest of EVENTS events with no subscriber, then with SUBSCRIBERS
 * open /tail streams that ask for PATTERN, in the same run against the same
 * server, and the ratio of the two (medians of ROUNDS requests each).
 *
 *   tail_attack URL [--subscribers N] [--events N] [--rounds N] [--pattern P]
 *                   [--type T] [--token TOKEN]
 *
 * Quiet and attacked requests alternate (the subscribers connect before each
 * attacked request and leave after it), so that other load on the machine
 * weighs on both alike. The subscribers are raw HTTP/1.0 connections read by
 * one thread that discards what arrives, so they never fall behind; the
 * server must free a closed stream's slot within 10 s (its --tail-heartbeat
 * does). Each measured request comes 200 ms after the clients came or went. A subscription the
 * server refuses (400, 503) is counted and reported, not retried. Prints one
 * line of key=value figures; exits 1 if an ingest was not answered 200.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUBS 4096
/* a pause before each measured request, after the clients came or went */
#define SETTLE_US 200000

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

typedef struct sub {
    int fd;
    int state; /* 0 waiting for the stream to open, 1 open, 2 refused or closed */
    char head[512];
    size_t headlen;
} sub;

static sub subs[MAX_SUBS];
static int nsubs;
static atomic_int stop_drain;
static atomic_ullong drained_bytes;

static void *drain(void *arg)
{
    (void)arg;
    struct pollfd *pf = calloc((size_t)nsubs + 1, sizeof *pf);
    char b[65536];
    while (!atomic_load(&stop_drain)) {
        int n = 0;
        for (int i = 0; i < nsubs; i++)
            if (subs[i].state < 2) pf[n++] = (struct pollfd){subs[i].fd, POLLIN, 0};
        if (!n) break;
        if (poll(pf, (nfds_t)n, 50) <= 0) continue;
        for (int k = 0, i = 0; i < nsubs; i++) {
            if (subs[i].state == 2) continue;
            struct pollfd *p = &pf[k++];
            if (!(p->revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(subs[i].fd, b, sizeof b);
            if (r <= 0) {
                subs[i].state = 2;
                continue;
            }
            atomic_fetch_add(&drained_bytes, (unsigned long long)r);
            if (subs[i].state == 0) {
                size_t room = sizeof subs[i].head - 1 - subs[i].headlen;
                size_t c = (size_t)r < room ? (size_t)r : room;
                memcpy(subs[i].head + subs[i].headlen, b, c);
                subs[i].headlen += c;
                subs[i].head[subs[i].headlen] = 0;
                if (strstr(subs[i].head, ": tail "))
                    subs[i].state = 1;
                else if (strncmp(subs[i].head, "HTTP/1.", 7) == 0 && strlen(subs[i].head) > 12 &&
                         strncmp(subs[i].head + 9, "200", 3))
                    subs[i].state = 2;
            }
        }
    }
    free(pf);
    return NULL;
}

static void urlencode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-' || c == '*') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = 0;
}

static int subscribe(const char *host, int port, const char *pattern, const char *token)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    static char enc[16384], req[20000];
    urlencode(pattern, enc, sizeof enc);
    int n =
        snprintf(req, sizeof req, "GET /tail?type=%s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", enc, host,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* One request of nev events; returns its time in ms, or -1 if not answered 200. */
static double ingest(CURL *c, const char *url, struct curl_slist *h, const char *type, int nev,
                     int round, const char *tag)
{
    static char *body;
    static size_t cap;
    size_t need = (size_t)nev * (strlen(type) + 96) + 16;
    if (need > cap) {
        free(body);
        body = malloc(need);
        cap = need;
    }
    size_t len = 0;
    body[len++] = '[';
    for (int i = 0; i < nev; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"id\":\"ta-%s-%d-%d-%ld\",\"type\":\"%s\",\"n\":%d}",
                                i ? "," : "", tag, round, i, (long)getpid(), type, i);
    body[len++] = ']';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    double t0 = now_ms();
    CURLcode rc = curl_easy_perform(c);
    double t = now_ms() - t0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return rc == CURLE_OK && status == 200 ? t : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct text {
    char *p;
    size_t len;
} text;

static size_t keep(char *p, size_t size, size_t n, void *ud)
{
    text *t = ud;
    char *np = realloc(t->p, t->len + size * n + 1);
    if (!np) return 0;
    memcpy(np + t->len, p, size * n);
    t->p = np;
    t->len += size * n;
    t->p[t->len] = 0;
    return size * n;
}

/* Waits (10 s at most) until /metrics says want tail clients are connected; 0 if so. */
static int wait_clients(CURL *c, const char *url, long want)
{
    char murl[256];
    snprintf(murl, sizeof murl, "%s/metrics", url);
    for (double t0 = now_ms(); now_ms() - t0 < 10000; usleep(20000)) {
        text t = {NULL, 0};
        curl_easy_setopt(c, CURLOPT_URL, murl);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        CURLcode rc = curl_easy_perform(c);
        const char *v = t.p ? strstr(t.p, "\nevents_tail_clients ") : NULL;
        long n = v ? atol(v + 21) : -1;
        free(t.p);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
        if (rc == CURLE_OK && n == want) return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *pattern = "*", *type = "collection.update", *token = NULL;
    int nsub = 100, nev = 10000, rounds = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--subscribers") && v)
            nsub = atoi(v), i++;
        else if (!strcmp(a, "--events") && v)
            nev = atoi(v), i++;
        else if (!strcmp(a, "--rounds") && v)
            rounds = atoi(v), i++;
        else if (!strcmp(a, "--pattern") && v)
            pattern = v, i++;
        else if (!strcmp(a, "--type") && v)
            type = v, i++;
        else if (!strcmp(a, "--token") && v)
            token = v, i++;
        else if (!url && a[0] != '-')
            url = a;
        else {
            fprintf(stderr, "usage: tail_attack URL [--subscribers N] [--events N] [--rounds N] "
                            "[--pattern P] [--type T] [--token TOKEN]\n");
            return 2;
        }
    }
    if (!url || nsub < 0 || nsub > MAX_SUBS || nev < 1 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "tail_attack: URL, --subscribers 0..%d, --events >= 1, --rounds 1..1000\n",
                MAX_SUBS);
        return 2;
    }
    char host[64] = "127.0.0.1";
    int port = 0;
    if (sscanf(url, "http://%63[0-9.]:%d", host, &port) != 2) {
        fprintf(stderr, "tail_attack: URL must be http://IPV4:PORT\n");
        return 2;
    }
    char ingest_url[256], auth[600];
    snprintf(ingest_url, sizeof ingest_url, "%s/ingest", url);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }

    /* warm up: the first request opens segments and the connection */
    if (ingest(c, ingest_url, h, type, nev, 0, "warm") < 0) {
        fprintf(stderr, "tail_attack: the warm-up ingest was not answered 200\n");
        return 1;
    }
    double *quiet = calloc((size_t)rounds, sizeof *quiet),
           *loud = calloc((size_t)rounds, sizeof *loud);
    int open = 0, refused = 0;
    /* quiet and attacked requests alternate, so that a change in the machine's load
     * (other processes) weighs on both alike */
    for (int r = 0; r < rounds; r++) {
        int gone = wait_clients(c, url, 0);
        usleep(SETTLE_US);
        if (gone || (quiet[r] = ingest(c, ingest_url, h, type, nev, r, "quiet")) < 0) {
            fprintf(stderr, "tail_attack: the tail clients did not go, or an ingest failed\n");
            return 1;
        }
        nsubs = 0;
        atomic_store(&stop_drain, 0);
        for (int i = 0; i < nsub; i++) {
            int fd = subscribe(host, port, pattern, token);
            if (fd < 0) {
                fprintf(stderr, "tail_attack: cannot connect subscriber %d: %s\n", i,
                        strerror(errno));
                return 1;
            }
            subs[nsubs++] = (sub){fd, 0, "", 0};
        }
        pthread_t th;
        pthread_create(&th, NULL, drain, NULL);
        for (double t0 = now_ms(); now_ms() - t0 < 10000;) { /* every stream open or refused */
            open = refused = 0;
            for (int i = 0; i < nsubs; i++)
                open += subs[i].state == 1, refused += subs[i].state == 2;
            if (open + refused == nsubs) break;
            usleep(10000);
        }
        usleep(SETTLE_US);
        loud[r] = ingest(c, ingest_url, h, type, nev, r, "attack");
        atomic_store(&stop_drain, 1);
        pthread_join(th, NULL);
        for (int i = 0; i < nsubs; i++) close(subs[i].fd);
        if (loud[r] < 0) {
            fprintf(stderr, "tail_attack: an ingest was not answered 200\n");
            return 1;
        }
    }

    double q = median(quiet, rounds), l = median(loud, rounds);
    printf("events=%d rounds=%d pattern_bytes=%zu subscribers=%d open=%d refused=%d "
           "quiet_ms=%.1f attack_ms=%.1f ratio=%.2f quiet_min_ms=%.1f attack_min_ms=%.1f\n",
           nev, rounds, strlen(pattern), nsub, open, refused, q, l, l / q, quiet[0], loud[0]);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(quiet);
    free(loud);
    return 0;
}
