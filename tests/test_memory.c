/*
 * test_memory.c - the server's memory under queries built to exhaust it.
 *
 * DuckDB keeps the rows a query is producing outside its memory limit: one
 * chunk of 2,048 strings of 10 MB is 20 GB. With --memory-max the server's
 * data memory is capped (RLIMIT_DATA), such queries fail with an
 * out-of-memory error, ingest goes on, and the peak resident memory stays
 * under the cap. Not under AddressSanitizer: its shadow memory counts against
 * RLIMIT_DATA, so a sanitizer build does not set the limit (and the query
 * would take the machine's memory); ctest label nosan.
 */
#include "harness.h"
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* VmHWM of the process, in bytes: its peak resident memory. */
static long long peak_rss(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtoll(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

typedef struct hostile {
    const srv *s;
    const char *format;
    resp r;
} hostile;

static void *hostile_main(void *arg)
{
    hostile *h = arg;
    char url[160];
    snprintf(url, sizeof url, "%s/query?format=%s", h->s->url, h->format);
    const char *body = "{\"sql\":\"SELECT repeat('x', 10000000) AS s FROM range(2048)\"}";
    const char *hd[] = {"Content-Type: application/json", NULL};
    http_do("POST", url, hd, body, strlen(body), 120000, &h->r);
    return NULL;
}

TEST(test_memory_queries_that_would_take_every_byte_fail_and_the_server_goes_on)
{
    char *dir = test_tmpdir("memmax");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--memory-max",
                          "2GiB",
                          "--query-memory",
                          "256MiB",
                          "--compact-memory",
                          "256MiB",
                          "--query-threads",
                          "2",
                          NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    CHECK_INT(2ll << 30, srv_metric(&s, "events_memory_max_bytes"));

    hostile q[2] = {{&s, "json", {0}}, {&s, "ndjson", {0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, hostile_main, &q[i]);
    /* ingest goes on while the queries take what they can: each batch is acknowledged, at
     * worst after a retry of a 503 (an allocation that failed at the limit) */
    int acked = 0, refused = 0;
    for (int k = 0; k < 30; k++) {
        char body[128];
        snprintf(body, sizeof body, "{\"events\":[{\"type\":\"mem.test\",\"id\":\"m-%d\"}]}", k);
        for (int attempt = 0; attempt < 50; attempt++) {
            resp r;
            http_ingest(&s, body, &r);
            long st = r.status;
            resp_free(&r);
            if (st == 200) {
                acked++;
                break;
            }
            CHECK_INT(503, st);
            refused++;
            usleep(100000);
        }
        usleep(100000);
    }
    CHECK_INT(30, acked);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(400, q[i].r.status);
        CHECK_CONTAINS("query exceeded the memory limit: Out of Memory Error", q[i].r.body.p);
        resp_free(&q[i].r);
    }
    CHECK_INT(2, srv_metric(&s, "events_query_out_of_memory_total"));
    long long peak = peak_rss(s.pid);
    fprintf(stderr, "  peak resident memory %.0f MiB under --memory-max 2GiB (%d ingest retries)\n",
            (double)peak / (1 << 20), refused);
    CHECK(peak > 0 && peak <= 2ll << 30);

    /* and it answers as before */
    char url[160];
    snprintf(url, sizeof url, "%s/query", s.url);
    const char *hd[] = {"Content-Type: application/json", NULL};
    const char *count = "{\"sql\":\"SELECT count(*) AS n FROM events WHERE type = 'mem.test'\"}";
    resp r;
    http_do("POST", url, hd, count, strlen(count), 30000, &r);
    CHECK_INT(200, r.status);
    CHECK_CONTAINS("\"rows\":[[30]]", r.body.p);
    resp_free(&r);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/*
 * The largest body of the smallest events: 8 MiB of "{}" lines, 2,796,203 events, is taken
 * (--max-events follows --max-body), within a bound of memory: each tiny event becomes a
 * line of about 118 bytes (id, type, ts, receivedAt) and each refused one a quarantine line
 * of about 230; both are held once, from parsing to the group commit (the writer writes
 * them from the request's buffers).
 */
TEST(test_memory_a_full_body_of_the_tiniest_events_is_taken_within_a_bound)
{
    char *dir = test_tmpdir("memory-tiny");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    const char *args[] = {"--compact-every", "0", "--memory-max", "0", NULL};
    REQUIRE_INT(0, srv_start(&s, lake, args));
    size_t max = 8u << 20;
    buf b = BUF_INIT;
    while (b.len + 3 <= max) buf_puts(&b, "{}\n");
    buf_puts(&b, "{}");
    const char *h[] = {"Content-Type: application/x-ndjson", NULL};
    long long base = peak_rss(s.pid);
    static const struct {
        const char *query, *what;
        long long bound; /* bytes above the server's peak before the first */
    } t[] = {
        {"?type=tiny", "accepted", 600ll << 20},
        {"", "refused", 1000ll << 20},
    };
    for (size_t i = 0; i < 2; i++) {
        char url[160];
        snprintf(url, sizeof url, "%s/ingest%s", s.url, t[i].query);
        resp r;
        http_do("POST", url, h, b.p, b.len, 120000, &r);
        CHECK_INT(200, r.status);
        CHECK_CONTAINS(i == 0 ? "\"accepted\":2796203" : "\"rejectedCount\":2796203", r.body.p);
        CHECK(r.body.len < 3072);
        resp_free(&r);
        long long peak = peak_rss(s.pid);
        fprintf(stderr, "  %zu bytes of {} lines, %s: peak resident memory %lld MiB (+%lld MiB)\n",
                b.len, t[i].what, peak >> 20, (peak - base) >> 20);
        CHECK(peak - base < t[i].bound);
    }
    buf_free(&b);
    CHECK_INT(0, srv_stop(&s, SIGTERM));
    if (test_failed_now()) srv_dump_log(&s);
    unlink(s.log);
    test_rmtree(dir);
    free(dir);
}
