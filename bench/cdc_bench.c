/*
 * cdc_bench.c - what change capture costs, and how long a restore takes.
 *
 *   cdc_bench --dir DIR [--puts N] [--keys K] [--tx T] [--endpoint URL]
 *
 * 1. Puts: N upserts of a ~70-byte JSON document over K keys, in transactions
 *    of T (defaults 200,000, 50,000, 1,000), twice each, interleaved:
 *      plain   INSERT ... ON CONFLICT DO UPDATE into the same table a
 *              collection uses (id TEXT PRIMARY KEY, doc) WITHOUT ROWID, WAL,
 *              synchronous=NORMAL: the baseline
 *      cdc     events_collection_put between events_tx_begin and
 *              events_tx_commit: the document, its capture, the changeset and
 *              the outbox row, on the same kind of file
 *    The ratio is cdc / plain, best run against best run.
 * 2. Restore: on the cdc database, events_restore to the bookmark N/2 puts
 *    back (100,000 changes with the defaults), timed, then checked against
 *    the content recorded at that bookmark.
 * 3. With --endpoint: the cdc run happens on an emitter's database, with a
 *    snapshot uploaded first, and waits until every event is delivered, so
 *    that bench/cdc.sh can time `events restore --lake` to that bookmark.
 *
 * One logfmt line per measurement on stdout.
 */
#include "events.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "cdc_bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : events_errmsg());
    exit(1);
}

static long puts_n = 200000, keys = 50000, tx = 1000;

static int doc_of(char *doc, size_t cap, char *id, size_t idcap, long i, unsigned *seed)
{
    long k = (long)(rand_r(seed) % (unsigned)keys);
    snprintf(id, idcap, "user-%06ld", k);
    return snprintf(doc, cap, "{\"name\":\"user %ld\",\"email\":\"u%ld@example.com\",\"n\":%ld}", k,
                    k, i);
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db;
    unlink(path);
    char p2[1200];
    snprintf(p2, sizeof p2, "%s-wal", path);
    unlink(p2);
    snprintf(p2, sizeof p2, "%s-shm", path);
    unlink(p2);
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open", db);
    sqlite3_busy_timeout(db, 10000); /* the sender writes the outbox too */
    if (sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK)
        die("pragma", db);
    return db;
}

static double run_plain(const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/plain.db", dir);
    sqlite3 *db = open_db(path);
    if (sqlite3_exec(
            db, "CREATE TABLE docs (id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID",
            NULL, NULL, NULL) != SQLITE_OK)
        die("create", db);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO docs(id, doc) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET doc = "
            "excluded.doc WHERE doc IS NOT excluded.doc",
            -1, &st, NULL) != SQLITE_OK)
        die("prepare", db);
    unsigned seed = 1;
    char id[32], doc[128];
    double t0 = now_s();
    for (long i = 0; i < puts_n; i++) {
        if (i % tx == 0) sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        int n = doc_of(doc, sizeof doc, id, sizeof id, i, &seed);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, doc, n, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) die("upsert", db);
        sqlite3_reset(st);
        if (i % tx == tx - 1 || i == puts_n - 1) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    double s = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return s;
}

/* The cdc run; with an emitter when endpoint is set. Returns seconds; *mid gets the bookmark
 * halfway. */
static double run_cdc(const char *dir, const char *endpoint, char mid[17], sqlite3 **keep,
                      events_emitter **em_out)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/cdc.db", dir);
    sqlite3 *db = open_db(path);
    events_emitter *em = NULL;
    events_collection *c;
    events_track_config tc = {.source = "bench-db"};
    if (events_track(db, &tc)) die("track", NULL);
    if (endpoint) {
        events_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.endpoint = endpoint;
        cfg.db = db;
        cfg.batch_size = 1000;
        cfg.batch_bytes = 4u << 20;
        if (events_emitter_open(&cfg, &em)) die("emitter", NULL);
        if (events_collection_open(em, "docs", NULL, &c)) die("collection", NULL);
        char b[17];
        if (events_snapshot(em, b)) die("snapshot", NULL);
    } else if (events_collection_open_db(db, "docs", NULL, &c)) {
        die("collection", NULL);
    }
    unsigned seed = 1;
    char id[32], doc[128];
    double t0 = now_s();
    for (long i = 0; i < puts_n; i++) {
        if (i % tx == 0 && events_tx_begin(db)) die("begin", NULL);
        doc_of(doc, sizeof doc, id, sizeof id, i, &seed);
        if (events_collection_put(c, id, doc)) die("put", NULL);
        if (i % tx == tx - 1 || i == puts_n - 1) {
            if (events_tx_commit(db)) die("commit", NULL);
        }
        if (i == puts_n / 2 - 1) events_bookmark(db, mid);
    }
    double s = now_s() - t0;
    events_collection_close(c);
    *keep = db;
    *em_out = em;
    return s;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *endpoint = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--puts"))
            puts_n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--keys"))
            keys = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--tx"))
            tx = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--endpoint"))
            endpoint = argv[i + 1];
        else
            dir = NULL, i = argc;
    }
    if (!dir || puts_n < 2 || keys < 1 || tx < 1 || (argc - 1) % 2) {
        fprintf(stderr,
                "Usage: cdc_bench --dir DIR [--puts N] [--keys K] [--tx T] [--endpoint URL]\n");
        return 2;
    }
    /* puts: plain, cdc, plain, cdc; the best of each */
    char mid[17];
    double plain = 1e9, cdc = 1e9;
    sqlite3 *db = NULL;
    events_emitter *em = NULL;
    for (int round = 0; round < 2; round++) {
        double p = run_plain(dir);
        if (p < plain) plain = p;
        if (db) {
            if (em) events_emitter_close(em, 0);
            events_untrack(db);
            sqlite3_close(db);
        }
        double c = run_cdc(dir, round == 1 ? endpoint : NULL, mid, &db, &em);
        if (c < cdc) cdc = c;
    }
    printf("scenario=puts puts=%ld keys=%ld tx=%ld plain_ns_per_put=%.0f cdc_ns_per_put=%.0f "
           "ratio=%.2f\n",
           puts_n, keys, tx, plain * 1e9 / (double)puts_n, cdc * 1e9 / (double)puts_n, cdc / plain);
    fflush(stdout);
    if (em) {
        double t0 = now_s();
        if (events_flush(em, 600000)) die("flush", NULL);
        printf("scenario=deliver events_per_s=%.0f seconds=%.2f\n",
               (double)puts_n / (now_s() - t0 + cdc), now_s() - t0);
        fflush(stdout);
    }
    /* restore to the middle: the changes of the second half undone */
    char last[17];
    events_bookmark(db, last);
    events_restore_report r;
    double t0 = now_s();
    if (events_restore(db, mid, 1, &r)) die("dry run", NULL);
    double dry = now_s() - t0;
    t0 = now_s();
    if (events_restore(db, mid, 0, &r)) die("restore", NULL);
    double secs = now_s() - t0;
    printf("scenario=restore from=%s to=%s transactions=%llu changes_undone=%ld rows_written=%llu "
           "dry_run_s=%.3f "
           "restore_s=%.3f\n",
           last, mid, (unsigned long long)r.transactions, puts_n - puts_n / 2,
           (unsigned long long)(r.inserted + r.updated + r.deleted), dry, secs);
    printf("mid=%s\n", mid);
    if (em) {
        events_flush(em, 600000);
        events_emitter_close(em, 0);
    }
    events_untrack(db);
    sqlite3_close(db);
    return 0;
}
