/*
 * emit_bench.c - what one events_emit costs, and how fast events reach a server.
 *
 *   emit_bench --dir DIR [--events N] [--threads T]      the cost of emitting
 *   emit_bench --dir DIR --endpoint URL [--events N] [--batch B]   end to end
 *
 * Cost: every scenario runs here, next to a baseline doing the least the same
 * job could take, in the same process on the same data:
 *
 *   memory       memory-only emitter        vs  building the fields and keeping a malloc'd copy of
 * the event durable      one transaction per emit   vs  a plain autocommit INSERT of the same text
 * (WAL, synchronous=NORMAL) durable_tx   every emit in one events_begin/events_commit  vs  plain
 * INSERTs in one transaction
 *
 * on one thread and on T (default 4). The emitter's endpoint is a loopback
 * port nobody listens on, with a backoff of an hour: its sender stays out of
 * the way and the emits are measured alone.
 *
 * End to end (--endpoint): three runs of N events through a server,
 *
 *   direct  the baseline: the same events, ready-made, posted in the same
 *           batches over one keep-alive connection (gzip as the library does
 *           it); no outbox: the pace the server keeps with one sender
 *   e2e     emitted into a durable outbox in transactions of 1,000 while the
 *           sender delivers them; the clock stops at the last acknowledgement
 *   drain   the outbox filled while the server was away, then delivered
 *
 * One logfmt line per scenario on stdout.
 */
#include "events.h"

#include <curl/curl.h>
#include <zlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fields(char *out, size_t cap, long i)
{
    return snprintf(out, cap, "{\"method\":\"send\",\"room\":\"lobby\",\"n\":%ld,\"ok\":true}", i);
}

static void die(const char *what)
{
    fprintf(stderr, "emit_bench: %s: %s\n", what, events_errmsg());
    exit(1);
}

static char dead_endpoint[64];

static void find_dead_endpoint(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        perror("emit_bench: bind");
        exit(1);
    }
    close(fd);
    snprintf(dead_endpoint, sizeof dead_endpoint, "http://127.0.0.1:%d", ntohs(sa.sin_port));
}

/* ---- the scenarios ----------------------------------------------------------------- */

enum kind { MEMORY, DURABLE, DURABLE_TX };

typedef struct job {
    enum kind kind;
    int baseline;
    long from, n;
    events_emitter *em;
    sqlite3 *db;           /* baseline: its own connection */
    pthread_mutex_t *dbmu; /* baseline, threaded durable runs: one connection, serialized */
    char **keep;           /* baseline MEMORY: where the copies go */
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    char f[256], ev[512];
    sqlite3_stmt *ins = NULL;
    if (j->baseline && j->kind != MEMORY)
        sqlite3_prepare_v2(j->db, "INSERT INTO plain(event) VALUES (?)", -1, &ins, NULL);
    for (long i = j->from; i < j->from + j->n; i++) {
        fields(f, sizeof f, i);
        if (!j->baseline) {
            if (events_emit(j->em, "bench.emit", f)) die("events_emit");
            continue;
        }
        /* the event as the emitter would write it, give or take the id and time */
        int len = snprintf(ev, sizeof ev,
                           "{\"id\":\"01JDX3K8Q2ZP4W6V7N9B1C2D3E\",\"type\":\"bench.emit\",\"ts\":"
                           "\"2026-11-25T10:00:"
                           "00.123Z\",%s",
                           f + 1);
        if (j->kind == MEMORY) {
            char *copy = malloc((size_t)len + 1);
            memcpy(copy, ev, (size_t)len + 1);
            j->keep[i] = copy;
        } else {
            if (j->dbmu) pthread_mutex_lock(j->dbmu);
            sqlite3_bind_text(ins, 1, ev, len, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fprintf(stderr, "emit_bench: insert: %s\n", sqlite3_errmsg(j->db));
                exit(1);
            }
            sqlite3_reset(ins);
            if (j->dbmu) pthread_mutex_unlock(j->dbmu);
        }
    }
    sqlite3_finalize(ins);
    return NULL;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        fprintf(stderr, "emit_bench: %s: %s\n", sql, e);
        exit(1);
    }
}

/* Runs one scenario (or its baseline) with n events on t threads; returns seconds. */
static double run(const char *dir, enum kind kind, int baseline, long n, int t)
{
    static int seq;
    char path[1100];
    snprintf(path, sizeof path, "%s/emit-%d.db", dir, seq++);
    events_emitter *em = NULL;
    sqlite3 *db = NULL;
    char **keep = NULL;
    pthread_mutex_t dbmu = PTHREAD_MUTEX_INITIALIZER;
    if (!baseline) {
        events_config c;
        memset(&c, 0, sizeof c);
        c.endpoint = dead_endpoint;
        c.backoff_min_ms = c.backoff_max_ms = 3600000;
        c.capacity = (size_t)n + 1;
        c.identity.id = "bench";
        if (kind == MEMORY)
            c.memory_only = 1;
        else
            c.db_path = path;
        if (events_emitter_open(&c, &em)) die("events_emitter_open");
    } else if (kind == MEMORY) {
        keep = calloc((size_t)n, sizeof *keep);
    } else {
        if (sqlite3_open(path, &db) != SQLITE_OK) {
            fprintf(stderr, "emit_bench: %s: cannot open\n", path);
            exit(1);
        }
        exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                 "CREATE TABLE plain(seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)");
    }
    job jobs[64];
    pthread_t th[64];
    double t0 = now_s();
    if (kind == DURABLE_TX) {
        if (baseline)
            exec(db, "BEGIN");
        else if (events_begin(em))
            die("events_begin");
    }
    for (int k = 0; k < t; k++) {
        jobs[k] = (job){kind,
                        baseline,
                        n / t * k,
                        k == t - 1 ? n - n / t * k : n / t,
                        em,
                        db,
                        t > 1 ? &dbmu : NULL,
                        keep};
        pthread_create(&th[k], NULL, run_job, &jobs[k]);
    }
    for (int k = 0; k < t; k++) pthread_join(th[k], NULL);
    if (kind == DURABLE_TX) {
        if (baseline)
            exec(db, "COMMIT");
        else if (events_commit(em))
            die("events_commit");
    }
    double secs = now_s() - t0;
    if (em) {
        events_stats st;
        events_emitter_stats(em, &st);
        if (st.queued != (uint64_t)n) {
            fprintf(stderr, "emit_bench: %llu queued, not %ld\n", (unsigned long long)st.queued, n);
            exit(1);
        }
        events_emitter_close(em, 0);
    }
    if (db) sqlite3_close(db);
    if (keep) {
        for (long i = 0; i < n; i++) free(keep[i]);
        free(keep);
    }
    if (kind != MEMORY) {
        char p2[1200];
        unlink(path);
        snprintf(p2, sizeof p2, "%s-wal", path);
        unlink(p2);
        snprintf(p2, sizeof p2, "%s-shm", path);
        unlink(p2);
    }
    return secs;
}

static const char *only; /* --only NAME: one scenario, for profiling */

static void report(const char *dir, const char *name, enum kind kind, long n, int t)
{
    if (only && strcmp(only, name)) return;
    double base = run(dir, kind, 1, n, t);
    double lib = run(dir, kind, 0, n, t);
    printf("scenario=%s threads=%d events=%ld ns_per_event=%.0f events_per_s=%.0f "
           "baseline_ns_per_event=%.0f "
           "ratio=%.2f\n",
           name, t, n, lib * 1e9 / (double)n, (double)n / lib, base * 1e9 / (double)n, lib / base);
    fflush(stdout);
}

/* ---- end to end ---------------------------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

/*
 * The baseline: the same events, ready-made, posted in the same batches over
 * one keep-alive connection, gzip-compressed at the same level above the same
 * size; no outbox, no checking. As fast as one sender can be: the server's pace.
 */
static int post_direct(const char *endpoint, long n, size_t batch, size_t gzip_above)
{
    char url[256], ev[512], f[256];
    snprintf(url, sizeof url, "%s/ingest", endpoint);
    CURL *c = curl_easy_init();
    struct curl_slist *plain = curl_slist_append(NULL, "Content-Type: application/json");
    plain = curl_slist_append(plain, "Expect:");
    struct curl_slist *gz = curl_slist_append(NULL, "Content-Type: application/json");
    gz = curl_slist_append(gz, "Expect:");
    gz = curl_slist_append(gz, "Content-Encoding: gzip");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    size_t cap = batch * 512 + 64;
    char *body = malloc(cap), *zbody = malloc(cap + 1024);
    int failed = 0;
    char now[32]; /* events of the current hour, as the emitter's */
    time_t secs_now = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&secs_now));
    double t0 = now_s();
    for (long i = 0; i < n && !failed;) {
        size_t len = (size_t)snprintf(body, cap, "{\"events\":[");
        for (size_t k = 0; k < batch && i < n; k++, i++) {
            fields(f, sizeof f, i);
            int m = snprintf(ev, sizeof ev,
                             "%s{\"id\":\"base-%d-%010ld\",\"type\":\"bench.base\",\"ts\":\"%s\","
                             "\"do\":{\"id\":\"bench\"},%s",
                             k ? "," : "", (int)getpid(), i, now, f + 1);
            memcpy(body + len, ev, (size_t)m);
            len += (size_t)m;
        }
        memcpy(body + len, "]}", 2);
        len += 2;
        const char *send = body;
        size_t send_len = len;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, plain);
        if (len > gzip_above) {
            z_stream z;
            memset(&z, 0, sizeof z);
            deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
            z.next_in = (Bytef *)body;
            z.avail_in = (uInt)len;
            z.next_out = (Bytef *)zbody;
            z.avail_out = (uInt)(cap + 1024);
            deflate(&z, Z_FINISH);
            send = zbody;
            send_len = cap + 1024 - z.avail_out;
            deflateEnd(&z);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, gz);
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, send);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send_len);
        long status = 0;
        if (curl_easy_perform(c) != CURLE_OK ||
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) || status != 200)
            failed = 1;
    }
    double secs = now_s() - t0;
    printf("scenario=direct batch=%zu events=%ld total_s=%.3f events_per_s=%.0f failed=%d\n", batch,
           n, secs, (double)n / secs, failed);
    fflush(stdout);
    free(body);
    free(zbody);
    curl_slist_free_all(plain);
    curl_slist_free_all(gz);
    curl_easy_cleanup(c);
    return failed;
}

static size_t gzip_above = 4096; /* the library's default */

static int end_to_end(const char *dir, const char *endpoint, long n, size_t batch, int drain)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/e2e-%zu-%d.db", dir, batch, drain);
    events_config c;
    memset(&c, 0, sizeof c);
    c.endpoint =
        drain ? dead_endpoint : endpoint; /* drain: the outbox fills while the server is away */
    c.db_path = path;
    c.batch_size = batch;
    c.batch_bytes = 8u << 20;
    c.backoff_min_ms = 100;
    c.gzip_above = gzip_above;
    c.identity.id = "bench";
    events_emitter *em;
    if (events_emitter_open(&c, &em)) die("events_emitter_open");
    char f[256];
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        if (i % 1000 == 0 && events_begin(em)) die("events_begin");
        fields(f, sizeof f, i);
        if (events_emit(em, "bench.e2e", f)) die("events_emit");
        if (i % 1000 == 999 || i == n - 1) {
            if (events_commit(em)) die("events_commit");
        }
    }
    double emitted = now_s() - t0;
    if (drain) { /* the server is back: a new emitter finds the outbox full */
        events_emitter_close(em, 0);
        c.endpoint = endpoint;
        if (events_emitter_open(&c, &em)) die("events_emitter_open");
        t0 = now_s();
    }
    int rc = events_flush(em, 600000);
    double secs = now_s() - t0;
    events_stats st;
    events_emitter_stats(em, &st);
    printf("scenario=%s batch=%zu events=%ld emit_s=%.3f total_s=%.3f delivered=%llu "
           "events_per_s=%.0f "
           "retried=%llu dead=%llu\n",
           drain ? "drain" : "e2e", batch, n, emitted, secs, (unsigned long long)st.delivered,
           (double)st.delivered / secs, (unsigned long long)st.retried,
           (unsigned long long)st.dead);
    events_emitter_close(em, 1000);
    return rc || st.delivered != (uint64_t)n;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *endpoint = NULL;
    long n = 0;
    int threads = 4;
    size_t batch = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--endpoint"))
            endpoint = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "--gzip-above"))
            gzip_above = (size_t)atoll(argv[i + 1]);
        else
            dir = NULL, i = argc;
    }
    if (!dir || threads < 1 || threads > 64 || (argc - 1) % 2) {
        fprintf(stderr, "Usage: emit_bench --dir DIR [--events N] [--threads T] [--only "
                        "memory|durable|durable_tx]\n"
                        "       emit_bench --dir DIR --endpoint URL [--events N] [--batch B] "
                        "[--gzip-above BYTES]\n");
        return 2;
    }
    find_dead_endpoint();
    if (endpoint)
        return post_direct(endpoint, n ? n : 200000, batch, gzip_above) |
               end_to_end(dir, endpoint, n ? n : 200000, batch, 0) |
               end_to_end(dir, endpoint, n ? n : 200000, batch, 1);
    long mem = n ? n : 1000000, dur = n ? n / 10 : 20000, tx = n ? n : 200000;
    report(dir, "memory", MEMORY, mem, 1);
    report(dir, "memory", MEMORY, mem, threads);
    report(dir, "durable", DURABLE, dur, 1);
    report(dir, "durable", DURABLE, dur, threads);
    report(dir, "durable_tx", DURABLE_TX, tx, 1);
    report(dir, "durable_tx", DURABLE_TX, tx, threads);
    return 0;
}
