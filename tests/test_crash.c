/*
 * test_crash.c - SIGKILL the server mid-ingest, again and again.
 *
 * Clients post numbered batches and retry every batch that got no answer,
 * with the same ids, until it is answered, while the server is killed with
 * SIGKILL and restarted several times. Afterwards every event of every batch
 * must be in the lake exactly once and every line must parse: a batch made
 * durable just before a kill is answered as duplicates after the restart,
 * because the dedup window is rebuilt from the recovered spool and the
 * recently sealed segments.
 *
 * The quarantine is held to the same: with some records of each batch refused,
 * every refused record of every answered batch is under rejected/ after the
 * kills (at least once: a batch retried after its answer was lost is
 * quarantined again), and every quarantine line parses. And the stream log
 * holds every stored event once, in seq order, without a gap.
 *
 * Single-event requests from many clients at once are killed in mid-stream
 * too, right after answers went out: the server answers a writer group's
 * requests in a chain on each HTTP thread (server_ingest.c), and every event
 * answered before the kill must be in the lake after the restart.
 */
#include "harness.h"
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS   3
#define PER_BATCH 40
#define KILLS     6

typedef struct client {
    srv *s;
    int id;
    int refuse;  /* every refuse-th record of a batch has no type (0: none) */
    int batches; /* batches fully answered */
    int retries;
    int answered_dup; /* events answered as duplicates */
    atomic_int stop;
    int failed;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/ingest", c->s->url);
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int k = 0; k < 100000 && !atomic_load(&c->stop); k++) {
        buf b = BUF_INIT;
        buf_putc(&b, '[');
        for (int i = 0; i < PER_BATCH; i++)
            if (c->refuse && i % c->refuse == 0)
                buf_printf(&b, "%s{\"id\":\"q%d-%d-%d\",\"n\":%d}", i ? "," : "", c->id, k, i, i);
            else
                buf_printf(&b, "%s{\"type\":\"crash.test\",\"id\":\"c%d-%d-%d\",\"n\":%d}",
                           i ? "," : "", c->id, k, i, i);
        buf_putc(&b, ']');
        int done = 0;
        /* retry this batch until answered: at most 30 s */
        for (int attempt = 0; attempt < 1500 && !done; attempt++) {
            resp r;
            http_do("POST", url, h, b.p, b.len, 2000, &r);
            if (r.status == 200) {
                json_t *v = json_loads(r.body.p, 0, NULL);
                long acc = (long)json_integer_value(json_object_get(v, "accepted"));
                long dup = (long)json_integer_value(json_object_get(v, "duplicates"));
                long rej = (long)json_integer_value(json_object_get(v, "rejectedCount"));
                long want_rej = c->refuse ? (PER_BATCH + c->refuse - 1) / c->refuse : 0;
                if (acc + dup != PER_BATCH - want_rej || rej != want_rej) {
                    test_fail(__FILE__, __LINE__,
                              "batch c%d-%d: accepted %ld + duplicates %ld, rejected %ld", c->id, k,
                              acc, dup, rej);
                    c->failed = 1;
                }
                c->answered_dup += (int)dup;
                json_decref(v);
                done = 1;
            } else {
                c->retries++;
                usleep(20000);
            }
            resp_free(&r);
        }
        buf_free(&b);
        if (!done) {
            test_fail(__FILE__, __LINE__, "batch c%d-%d never answered", c->id, k);
            c->failed = 1;
            break;
        }
        c->batches = k + 1;
    }
    return NULL;
}

static int rand_between(unsigned *seed, int lo, int hi)
{
    return lo + (int)(rand_r(seed) % (unsigned)(hi - lo + 1));
}

static const char *const SEAL_FAST[] = {"--seal-age", "200ms", NULL};

/*
 * Starts the server s on lake; CLIENTS clients post batches into it (every refuse-th record
 * refused; 0: none) while it is killed with SIGKILL and restarted KILLS times at random moments
 * (the seed, printed, is the time xor seed_xor); then the clients stop and the server is stopped
 * with SIGTERM. It restarts every time and stops cleanly. -1 (the test failed) when the server
 * does not start at all.
 */
static int post_through_kills(srv *s, const char *lake, client *cl, int refuse, unsigned seed_xor)
{
    CHECK_INT(0, srv_start(s, lake, SEAL_FAST));
    if (test_failed_now()) return -1;
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].s = s;
        cl[i].id = i;
        cl[i].refuse = refuse;
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    unsigned seed = (unsigned)time(NULL) ^ seed_xor;
    fprintf(stderr, "  seed %u\n", seed);
    int restarts_ok = 1;
    for (int k = 0; k < KILLS && restarts_ok; k++) {
        usleep((useconds_t)rand_between(&seed, 150, 600) * 1000);
        srv_stop(s, SIGKILL);
        usleep((useconds_t)rand_between(&seed, 0, 200) * 1000);
        if (srv_start(s, lake, SEAL_FAST)) restarts_ok = 0;
    }
    CHECK(restarts_ok);
    usleep(300000);
    for (int i = 0; i < CLIENTS; i++) atomic_store(&cl[i].stop, 1);
    for (int i = 0; i < CLIENTS; i++) pthread_join(th[i], NULL);
    CHECK_INT(0, srv_stop(s, SIGTERM));
    return 0;
}

TEST(test_crash_sigkill_loses_nothing_and_duplicates_nothing)
{
    char *dir = test_tmpdir("crash");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    client cl[CLIENTS];
    if (post_through_kills(&s, lake, cl, 0, 0)) return;

    int expected = 0, retries = 0, dups = 0;
    for (int i = 0; i < CLIENTS; i++) {
        expected += cl[i].batches * PER_BATCH;
        retries += cl[i].retries;
        dups += cl[i].answered_dup;
        CHECK(!cl[i].failed);
    }
    fprintf(stderr,
            "  %d events in batches of %d, %d retried posts, %d events answered as duplicates\n",
            expected, PER_BATCH, retries, dups);
    CHECK(expected > 0);

    /* every line parses; every id appears exactly once; ids are exactly the batches sent */
    buf all = BUF_INIT;
    int files;
    lake_read_all(lake, &all, &files);
    int total = 0, bad = 0;
    unsigned char *seen = calloc((size_t)CLIENTS * 100000 * PER_BATCH / 8 + 1, 1);
    int twice = 0, unknown = 0;
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            bad++;
            break;
        }
        json_t *v = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, NULL);
        int c, k, i;
        const char *id = v ? json_string_value(json_object_get(v, "id")) : NULL;
        if (!id) {
            bad++;
        } else if (sscanf(id, "c%d-%d-%d", &c, &k, &i) != 3 || c < 0 || c >= CLIENTS || k < 0 ||
                   k >= cl[c].batches || i < 0 || i >= PER_BATCH) {
            unknown++;
        } else {
            size_t bit = ((size_t)c * 100000 + (size_t)k) * PER_BATCH + (size_t)i;
            if (seen[bit / 8] & (1u << (bit % 8))) twice++;
            seen[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
        json_decref(v);
        total++;
        p = nl + 1;
    }
    CHECK_INT(0, bad);
    CHECK_INT(0, twice);
    CHECK_INT(0, unknown);
    CHECK_INT(expected, total);
    if (test_failed_now()) srv_dump_log(&s);
    free(seen);
    buf_free(&all);
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/* The content of every file under dir/rejected (sorted by path). */
static int quarantine_read_all(const char *lake, buf *out)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "find %s/rejected -name '*.jsonl' -type f | sort | xargs -r cat",
             lake);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(out, tmp, n);
    return pclose(f) ? -1 : 0;
}

TEST(test_crash_sigkill_loses_no_refused_record)
{
    char *dir = test_tmpdir("crash-quarantine");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    client cl[CLIENTS];
    if (post_through_kills(&s, lake, cl, 4, 0x5a5a)) return; /* a quarter of each batch refused */

    int refused = 0;
    for (int i = 0; i < CLIENTS; i++) {
        refused += cl[i].batches * ((PER_BATCH + 3) / 4);
        CHECK(!cl[i].failed);
    }
    CHECK(refused > 0);
    buf all = BUF_INIT;
    CHECK_INT(0, quarantine_read_all(lake, &all));
    unsigned char *seen = calloc((size_t)CLIENTS * 100000 * PER_BATCH / 8 + 1, 1);
    int lines = 0, bad = 0, unknown = 0, distinct = 0;
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            bad++;
            break;
        }
        json_t *v = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, NULL);
        const char *raw = v ? json_string_value(json_object_get(v, "raw")) : NULL;
        json_t *rec = raw ? json_loads(raw, 0, NULL) : NULL;
        const char *id = rec ? json_string_value(json_object_get(rec, "id")) : NULL;
        int c, k, i;
        if (!id || strcmp(json_string_value(json_object_get(v, "class")), "type")) {
            bad++;
        } else if (sscanf(id, "q%d-%d-%d", &c, &k, &i) != 3 || c < 0 || c >= CLIENTS || k < 0 ||
                   k > cl[c].batches || i < 0 || i >= PER_BATCH || i % 4) {
            unknown++; /* k == batches: the batch in flight at the end, possibly stored */
        } else {
            size_t bit = ((size_t)c * 100000 + (size_t)k) * PER_BATCH + (size_t)i;
            if (k < cl[c].batches && !(seen[bit / 8] & (1u << (bit % 8)))) distinct++;
            seen[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
        json_decref(rec);
        json_decref(v);
        lines++;
        p = nl + 1;
    }
    fprintf(stderr, "  %d refused records in answered batches, %d quarantine lines\n", refused,
            lines);
    CHECK_INT(0, bad);
    CHECK_INT(0, unknown);
    CHECK_INT(refused, distinct); /* every one of them, at least once */
    if (test_failed_now()) srv_dump_log(&s);
    free(seen);
    buf_free(&all);
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}

/* The stream log after the kills: every stored event once, in seq order, with no gap (a kill
 * between a group's answer and the stream's sync is rebuilt from the spool's hour segments). */
TEST(test_crash_sigkill_leaves_the_stream_log_complete_and_contiguous)
{
    char *dir = test_tmpdir("crash-stream");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    client cl[CLIENTS];
    if (post_through_kills(&s, lake, cl, 0, 0x5eed)) return;
    char why[1024] = "";
    CHECK_INT(0, lake_stream_check(lake, why, sizeof why));
    if (why[0]) fprintf(stderr, "  %s\n", why);
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    free(dir);
}

#define SINGLE_CLIENTS 16
#define SINGLE_ANSWERS 3000

typedef struct single_client {
    srv *s;
    int id;
    atomic_int *answered; /* all clients' events answered, for the kill */
    atomic_int stop;
    int acked; /* events s<id>-0 .. s<id>-(acked-1) were answered accepted */
    int failed;
} single_client;

/* Posts one event per request, each id new, until stopped or the server is gone. */
static void *single_main(void *arg)
{
    single_client *c = arg;
    char url[128], body[160];
    snprintf(url, sizeof url, "%s/ingest", c->s->url);
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int k = 0; k < 1000000 && !atomic_load(&c->stop); k++) {
        snprintf(body, sizeof body, "{\"events\":[{\"type\":\"crash.single\",\"id\":\"s%d-%d\"}]}",
                 c->id, k);
        resp r;
        http_do("POST", url, h, body, strlen(body), 5000, &r);
        int ok = r.status == 200 && strstr(r.body.p, "\"accepted\":1,");
        if (r.status && r.status != 200) {
            test_fail(__FILE__, __LINE__, "s%d-%d answered %ld: %s", c->id, k, r.status, r.body.p);
            c->failed = 1;
        }
        resp_free(&r);
        if (!ok) break; /* the server is gone: this request's event may or may not be stored */
        c->acked = k + 1;
        atomic_fetch_add(c->answered, 1);
    }
    return NULL;
}

/* Counts the lake's single-event ids per client and event into seen; unknown ids in *unknown. */
static void single_count(const char *lake, const single_client *cl, unsigned char **seen,
                         int *unknown)
{
    buf all = BUF_INIT;
    int files;
    lake_read_all(lake, &all, &files);
    const char *p = all.p, *end = all.p + all.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, NULL);
        const char *id = v ? json_string_value(json_object_get(v, "id")) : NULL;
        int c, k;
        if (!id || sscanf(id, "s%d-%d", &c, &k) != 2 || c < 0 || c >= SINGLE_CLIENTS || k < 0 ||
            k > cl[c].acked) /* acked: the one in flight at the kill */
            (*unknown)++;
        else if (seen[c][k] < 255)
            seen[c][k]++;
        json_decref(v);
        p = nl + 1;
    }
    buf_free(&all);
}

/* SIGKILL right after answers to concurrent single events: every answered event survives. */
TEST(test_crash_sigkill_keeps_every_answered_single_event)
{
    char *dir = test_tmpdir("crash-single");
    char lake[1200];
    snprintf(lake, sizeof lake, "%s/lake", dir);
    srv s = {0};
    REQUIRE_INT(0, srv_start(&s, lake, SEAL_FAST));
    atomic_int answered = 0;
    single_client cl[SINGLE_CLIENTS];
    pthread_t th[SINGLE_CLIENTS];
    for (int i = 0; i < SINGLE_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].s = &s;
        cl[i].id = i;
        cl[i].answered = &answered;
        pthread_create(&th[i], NULL, single_main, &cl[i]);
    }
    /* at most 30 s for the answers, then the kill while they still flow */
    for (int t = 0; t < 30000 && atomic_load(&answered) < SINGLE_ANSWERS; t++) usleep(1000);
    srv_stop(&s, SIGKILL);
    for (int i = 0; i < SINGLE_CLIENTS; i++) atomic_store(&cl[i].stop, 1);
    for (int i = 0; i < SINGLE_CLIENTS; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&answered) >= SINGLE_ANSWERS);
    CHECK_INT(0, srv_start(&s, lake, SEAL_FAST)); /* recovers the spool */
    CHECK_INT(0, srv_stop(&s, SIGTERM));          /* and seals it into the lake */

    unsigned char *seen[SINGLE_CLIENTS];
    for (int i = 0; i < SINGLE_CLIENTS; i++) seen[i] = calloc((size_t)cl[i].acked + 1, 1);
    int unknown = 0, missing = 0, twice = 0;
    single_count(lake, cl, seen, &unknown);
    for (int i = 0; i < SINGLE_CLIENTS; i++) {
        CHECK(!cl[i].failed);
        for (int k = 0; k <= cl[i].acked; k++) {
            missing += k < cl[i].acked && seen[i][k] == 0;
            twice += seen[i][k] > 1;
        }
        free(seen[i]);
    }
    fprintf(stderr, "  %d single events answered before the kill\n", atomic_load(&answered));
    CHECK_INT(0, missing);
    CHECK_INT(0, twice);
    CHECK_INT(0, unknown);
    if (test_failed_now()) srv_dump_log(&s);
    test_rmtree(dir);
    unlink(s.log);
    free(dir);
}
