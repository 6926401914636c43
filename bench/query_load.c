/*
 * query_load.c - a load generator for POST /query: several clients at once,
 * each posting queries one after the other over one keep-alive connection.
 *
 * Used by bench/query_memory.sh for two things: many small queries in a row
 * (the server's memory must not grow with their number), and one worst-case
 * query per query worker at once (the server's peak memory). Client k posts
 * --sql number k % (the number of --sql given), then the next ones in turn.
 * Answers are read whole and counted, never kept: only their last bytes are
 * printed, to show how each ended.
 *
 * Output: one logfmt line per client (status counts, bytes, seconds, the
 * answer's last bytes), then a total line. Every loop is bounded: --requests
 * per client, and --timeout per request.
 *
 * Exit: 0 every request got an HTTP answer; 1 some failed at the transport
 * (a cut answer counts as answered: its end is printed); 2 usage; 3 setup.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CLIENTS 256
#define MAX_SQL     16
#define TAIL        160

typedef struct options {
    const char *url, *token, *format;
    const char *sql[MAX_SQL];
    int nsql;
    long clients, requests, timeout_s;
} options;

typedef struct client {
    const options *o;
    int id;
    long status[6]; /* 2xx, 3xx, 4xx, 5xx, other, transport errors */
    long cut;       /* answers that ended with a transfer error after a 200 */
    uint64_t bytes;
    double seconds;
    char tail[TAIL + 1];
    size_t tail_n;
} client;

static void usage(FILE *f)
{
    fputs("Usage: query_load --url http://HOST:PORT/query --sql SQL [--sql SQL ...]\n"
          "                  [--clients N] [--requests N] [--format json|csv|ndjson]\n"
          "                  [--token T] [--timeout SECONDS]\n"
          "\n"
          "N clients at once (default 1) each post N queries (default 1) over one keep-alive\n"
          "connection, client k starting at the k-th --sql and cycling through them; answers\n"
          "are read and dropped. Prints a logfmt line per client and a total.\n",
          f);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    client *c = ud;
    size_t len = size * n;
    c->bytes += len;
    if (len >= TAIL) {
        memcpy(c->tail, p + len - TAIL, TAIL);
        c->tail_n = TAIL;
    } else {
        size_t keep = c->tail_n + len > TAIL ? TAIL - len : c->tail_n;
        memmove(c->tail, c->tail + c->tail_n - keep, keep);
        memcpy(c->tail + keep, p, len);
        c->tail_n = keep + len;
    }
    return len;
}

/* A JSON string of s (the SQL in the request body). */
static char *body_of(const char *sql)
{
    size_t n = strlen(sql);
    char *b = malloc(n * 6 + 32), *w = b;
    if (!b) return NULL;
    w += sprintf(w, "{\"sql\":\"");
    for (const char *p = sql; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            *w++ = '\\', *w++ = (char)ch;
        else if (ch < 0x20)
            w += sprintf(w, "\\u%04x", ch);
        else
            *w++ = (char)ch;
    }
    strcpy(w, "\"}");
    return b;
}

static void *run_client(void *arg)
{
    client *c = arg;
    const options *o = c->o;
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    char url[2048], auth[600];
    snprintf(url, sizeof url, "%s%s%s", o->url, o->format ? "?format=" : "",
             o->format ? o->format : "");
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    hd = curl_slist_append(hd, "Expect:");
    if (o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hd = curl_slist_append(hd, auth);
    }
    char *bodies[MAX_SQL];
    for (int i = 0; i < o->nsql; i++) bodies[i] = body_of(o->sql[i]);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, o->timeout_s);
    double t0 = now_s();
    for (long k = 0; k < o->requests; k++) {
        const char *body = bodies[(c->id + k) % o->nsql];
        if (!body) break;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        c->tail_n = 0;
        CURLcode cc = curl_easy_perform(h);
        long st = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        if (cc != CURLE_OK && st == 200)
            c->cut++;
        else if (cc != CURLE_OK)
            c->status[5]++;
        if (st) c->status[st >= 200 && st < 600 ? st / 100 - 2 : 4]++;
    }
    c->seconds = now_s() - t0;
    for (int i = 0; i < o->nsql; i++) free(bodies[i]);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return NULL;
}

static void print_tail(const client *c)
{
    putchar('"');
    for (size_t i = 0; i < c->tail_n; i++) {
        unsigned char ch = (unsigned char)c->tail[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    options o = {.clients = 1, .requests = 1, .timeout_s = 120};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "query_load: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--url"))
            o.url = v;
        else if (!strcmp(a, "--token"))
            o.token = v;
        else if (!strcmp(a, "--format"))
            o.format = v;
        else if (!strcmp(a, "--sql") && o.nsql < MAX_SQL)
            o.sql[o.nsql++] = v;
        else if (!strcmp(a, "--clients"))
            o.clients = strtol(v, NULL, 10);
        else if (!strcmp(a, "--requests"))
            o.requests = strtol(v, NULL, 10);
        else if (!strcmp(a, "--timeout"))
            o.timeout_s = strtol(v, NULL, 10);
        else {
            fprintf(stderr, "query_load: unknown option %s (or more than %d --sql)\n", a, MAX_SQL);
            usage(stderr);
            return 2;
        }
    }
    if (!o.url || !o.nsql || o.clients < 1 || o.clients > MAX_CLIENTS || o.requests < 1 ||
        o.timeout_s < 1) {
        fprintf(stderr,
                "query_load: --url and --sql are needed; 1 <= --clients <= %d; "
                "--requests and --timeout >= 1\n",
                MAX_CLIENTS);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) return 3;
    client *c = calloc((size_t)o.clients, sizeof *c);
    pthread_t *th = calloc((size_t)o.clients, sizeof *th);
    if (!c || !th) return 3;
    double t0 = now_s();
    for (long i = 0; i < o.clients; i++) {
        c[i].o = &o;
        c[i].id = (int)i;
        if (pthread_create(&th[i], NULL, run_client, &c[i])) return 3;
    }
    long total[6] = {0}, cut = 0;
    uint64_t bytes = 0;
    for (long i = 0; i < o.clients; i++) {
        pthread_join(th[i], NULL);
        printf("client=%ld s2xx=%ld s4xx=%ld s5xx=%ld cut=%ld failed=%ld bytes=%llu seconds=%.3f "
               "last=",
               i, c[i].status[0], c[i].status[2], c[i].status[3], c[i].cut, c[i].status[5],
               (unsigned long long)c[i].bytes, c[i].seconds);
        print_tail(&c[i]);
        putchar('\n');
        for (int k = 0; k < 6; k++) total[k] += c[i].status[k];
        cut += c[i].cut;
        bytes += c[i].bytes;
    }
    printf("total requests=%ld s2xx=%ld s4xx=%ld s5xx=%ld cut=%ld failed=%ld bytes=%llu "
           "seconds=%.3f\n",
           o.clients * o.requests, total[0], total[2], total[3], cut, total[5],
           (unsigned long long)bytes, now_s() - t0);
    free(c);
    free(th);
    curl_global_cleanup();
    return total[5] ? 1 : 0;
}
