/*
 * test_cdc.c - the change log: changesets against SQLite's session extension,
 * bookmarks, restore, rollbacks, collections, snapshots. Real SQLite files,
 * no server (test_pitr.c does the lake).
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc_int.h"
#include "cdc_util.h"
#include "codec.h"
#include "events.h"
#include "test.h"

#include <jansson.h>
#include <pthread.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- changesets byte for byte ------------------------------------------------------- */

/* A changeset as table headers, each with its change records sorted (the order inside a table is
 * free). */
typedef struct cs_table {
    buf header;
    buf *changes;
    size_t n;
} cs_table;

static int cmp_buf(const void *a, const void *b)
{
    const buf *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->p, y->p, x->len);
}

static int cmp_table(const void *a, const void *b)
{
    return cmp_buf(&((const cs_table *)a)->header, &((const cs_table *)b)->header);
}

/* Splits a changeset; returns the number of tables, -1 if malformed. */
static int cs_split(const void *data, size_t len, cs_table **out)
{
    const unsigned char *p = data, *end = p + len;
    cs_table *t = NULL;
    int nt = 0, ncol = 0;
    while (p < end) {
        if (*p == 'T') {
            const unsigned char *h = p;
            uint64_t nc;
            p += 1 + cdc__get_varint(p + 1, end, &nc);
            ncol = (int)nc;
            p += ncol;
            p += strlen((const char *)p) + 1;
            t = realloc(t, (size_t)(nt + 1) * sizeof *t);
            memset(&t[nt], 0, sizeof t[nt]);
            buf_append(&t[nt].header, h, (size_t)(p - h));
            nt++;
            continue;
        }
        if (!nt) return -1;
        const unsigned char *c = p;
        int op = *p;
        p += 2;
        int records = op == 0x17 ? 2 : 1;
        for (int r = 0; r < records; r++)
            for (int i = 0; i < ncol; i++) p += cdc__field_len(p, end);
        cs_table *cur = &t[nt - 1];
        cur->changes = realloc(cur->changes, (cur->n + 1) * sizeof *cur->changes);
        memset(&cur->changes[cur->n], 0, sizeof(buf));
        buf_append(&cur->changes[cur->n++], c, (size_t)(p - c));
    }
    for (int i = 0; i < nt; i++) qsort(t[i].changes, t[i].n, sizeof(buf), cmp_buf);
    qsort(t, (size_t)nt, sizeof *t, cmp_table);
    *out = t;
    return nt;
}

static void cs_free(cs_table *t, int n)
{
    for (int i = 0; i < n; i++) {
        buf_free(&t[i].header);
        for (size_t k = 0; k < t[i].n; k++) buf_free(&t[i].changes[k]);
        free(t[i].changes);
    }
    free(t);
}

static int cs_equal(const void *a, size_t an, const void *b, size_t bn)
{
    cs_table *x, *y;
    int nx = cs_split(a, an, &x), ny = cs_split(b, bn, &y), eq = nx == ny && nx >= 0;
    for (int i = 0; eq && i < nx; i++) {
        eq = !cmp_buf(&x[i].header, &y[i].header) && x[i].n == y[i].n;
        for (size_t k = 0; eq && k < x[i].n; k++) eq = !cmp_buf(&x[i].changes[k], &y[i].changes[k]);
    }
    if (nx > 0) cs_free(x, nx);
    if (ny > 0) cs_free(y, ny);
    return eq;
}

static int table_filter(void *ud, const char *tab)
{
    (void)ud;
    return strncmp(tab, "_events_", 8) != 0;
}

static const char *const SCHEMA =
    "CREATE TABLE ints(id INTEGER PRIMARY KEY, a, b TEXT);"
    "CREATE TABLE words(w TEXT PRIMARY KEY, n INTEGER, r REAL, x BLOB) WITHOUT ROWID;"
    "CREATE TABLE pairs(a TEXT, b INTEGER, v, PRIMARY KEY (b, a));"
    "CREATE TABLE uniq(id INTEGER PRIMARY KEY, k TEXT UNIQUE);"
    "CREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT);"
    "CREATE TRIGGER ints_log AFTER UPDATE ON ints BEGIN INSERT INTO log(what) VALUES ('ints ' || "
    "new.id); END;";

/* Transactions, each run on a tracked database and on one with a session. */
static const char *const TXS[] = {
    "INSERT INTO ints VALUES (1, 10, 'one'), (2, 2.5, NULL), (3, x'00ff', 'three')",
    "UPDATE ints SET a = 11 WHERE id = 1",
    "UPDATE ints SET a = 11 WHERE id = 1", /* no change at all */
    "UPDATE ints SET b = 'x' WHERE id = 2; UPDATE ints SET b = 'y' WHERE id = 2",
    "DELETE FROM ints WHERE id = 3",
    "INSERT INTO ints VALUES (4, 4, 'four'); DELETE FROM ints WHERE id = 4", /* nothing */
    ("INSERT INTO words VALUES ('alpha', 1, 1.5, x'01'), ('beta', NULL, -0.0, NULL), ('gamma', "
     "9223372036854775807, "
     "1e300, x'')"),
    "UPDATE words SET w = 'delta' WHERE w = 'alpha'", /* a new key: DELETE + INSERT */
    "INSERT INTO pairs VALUES ('a', 1, 'v1'), ('b', 1, 'v2'), ('a', 2, NULL)",
    "UPDATE pairs SET v = 'v3' WHERE a = 'a' AND b = 1; DELETE FROM pairs WHERE b = 2",
    "INSERT INTO uniq VALUES (1, 'k1'), (2, 'k2')",
    "INSERT OR REPLACE INTO uniq VALUES (3, 'k1')", /* REPLACE deletes row 1 */
    "SAVEPOINT s; INSERT INTO ints VALUES (5, 5, 'five'); ROLLBACK TO s; RELEASE s; INSERT INTO "
    "ints VALUES (6, 6, 'six')",
    "INSERT INTO ints VALUES (7, 7, 'seven'); UPDATE ints SET a = a + 1 WHERE id = 7",
    "DELETE FROM words",
    "UPDATE ints SET a = 100 WHERE id = 1", /* the trigger writes log */
};

TEST(changesets_match_the_session_extension)
{
    char *dir = test_tmpdir("cdc-bytes");
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/a.db", dir);
    snprintf(pb, sizeof pb, "%s/b.db", dir);
    sqlite3 *a, *b;
    REQUIRE(sqlite3_open(pa, &a) == SQLITE_OK && sqlite3_open(pb, &b) == SQLITE_OK);
    REQUIRE(sqlite3_exec(a, SCHEMA, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(b, SCHEMA, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_exec(b, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    REQUIRE_INT(0, events_track(a, NULL));
    for (size_t i = 0; i < sizeof TXS / sizeof *TXS; i++) {
        char before[17], after[17];
        events_bookmark(a, before);
        CHECK_INT(0, events_tx_begin(a));
        int ea = sqlite3_exec(a, TXS[i], NULL, NULL, NULL);
        CHECK_INT(0, events_tx_commit(a));
        events_bookmark(a, after);

        sqlite3_session *s;
        REQUIRE(sqlite3session_create(b, "main", &s) == SQLITE_OK);
        sqlite3session_table_filter(s, table_filter, NULL);
        sqlite3session_attach(s, NULL);
        sqlite3_exec(b, "BEGIN", NULL, NULL, NULL);
        int eb = sqlite3_exec(b, TXS[i], NULL, NULL, NULL);
        sqlite3_exec(b, "COMMIT", NULL, NULL, NULL);
        int n = 0;
        void *p = NULL;
        sqlite3session_changeset(s, &n, &p);
        sqlite3session_delete(s);
        CHECK_INT(eb, ea);

        /* ours: the last row of the change log, if the transaction changed anything */
        sqlite3_stmt *st;
        sqlite3_prepare_v2(a, "SELECT changeset FROM _events_changes WHERE bookmark = ?", -1, &st,
                           NULL);
        uint64_t bm = strtoull(after, NULL, 16);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)bm);
        int have = strcmp(before, after) != 0 && sqlite3_step(st) == SQLITE_ROW;
        if (!have && n)
            test_fail(__FILE__, __LINE__, "tx %zu: the extension recorded %d bytes, we nothing", i,
                      n);
        if (have && !n)
            test_fail(__FILE__, __LINE__, "tx %zu: we recorded, the extension nothing", i);
        if (have && n &&
            !cs_equal(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), p,
                      (size_t)n))
            test_fail(__FILE__, __LINE__, "tx %zu (%s): the changesets differ", i, TXS[i]);
        sqlite3_finalize(st);
        sqlite3_free(p);
    }
    CHECK_STR(db_hash(b), db_hash(a));
    CHECK_INT(0, events_untrack(a));
    sqlite3_close(a);
    sqlite3_close(b);
    test_rmtree(dir);
    free(dir);
}

/* ---- bookmarks and restore ---------------------------------------------------------------- */

/* A tracked database with the history of TXS: each bookmark with the database's hash there. */
typedef struct history {
    char path[1200];
    sqlite3 *db;
    char bms[32][17], hashes[32][65];
    int n;
} history;

/* The transactions of TXS, each bookmark recorded: consecutive, sorting as they were made. */
static void record_history(history *h)
{
    sqlite3 *db = h->db;
    int n = 0;
    events_bookmark(db, h->bms[n]);
    CHECK_STR("0000000000000000", h->bms[n]);
    strcpy(h->hashes[n++], db_hash(db));
    for (size_t i = 0; i < sizeof TXS / sizeof *TXS; i++) {
        CHECK_INT(0, events_tx_begin(db));
        sqlite3_exec(db, TXS[i], NULL, NULL, NULL);
        CHECK_INT(0, events_tx_commit(db));
        events_bookmark(db, h->bms[n]);
        if (strcmp(h->bms[n], h->bms[n - 1])) strcpy(h->hashes[n], db_hash(db)), n++;
    }
    h->n = n;
    CHECK(n >= 12);
    for (int i = 1; i < n; i++) CHECK(strcmp(h->bms[i - 1], h->bms[i]) < 0);
}

/* Restores to every third bookmark, from the last back to the first, give the database there;
 * the restores are history too: the last one is undone by restoring to the bookmark before it. */
static void restores_back_and_undone(history *h)
{
    for (int k = h->n - 1; k >= 0; k -= 3) {
        events_restore_report r;
        CHECK_INT(0, events_restore(h->db, h->bms[k], 0, &r));
        CHECK_STR(h->hashes[k], db_hash(h->db));
    }
    char now[17];
    events_bookmark(h->db, now);
    char before_last[17];
    snprintf(before_last, sizeof before_last, "%016llx",
             (unsigned long long)strtoull(now, NULL, 16) - 1);
    CHECK_INT(0, events_restore(h->db, before_last, 0, NULL));
    CHECK_STR(
        h->hashes[3],
        db_hash(h->db)); /* the state before restoring to bms[0]: after the restore to bms[3] */
}

/* A dry run changes nothing and says what it would do. */
static void restore_dry_run_changes_nothing(history *h)
{
    events_restore_report r;
    char was[65];
    strcpy(was, db_hash(h->db));
    CHECK_INT(0, events_restore(h->db, h->bms[1], 1, &r));
    CHECK_STR(was, db_hash(h->db));
    CHECK(r.inserted + r.updated + r.deleted > 0);
    CHECK_STR("", r.bookmark);
}

/* Not a bookmark, after the last one, inside a transaction: refused, saying which. */
static void restore_refuses_bad_bookmarks_and_transactions(history *h)
{
    sqlite3 *db = h->db;
    CHECK_INT(EVENTS_EINVAL, events_restore(db, "xyz", 0, NULL));
    CHECK_CONTAINS("not a bookmark", events_errmsg());
    CHECK_INT(EVENTS_EINVAL, events_restore(db, "00000000000fffff", 0, NULL));
    CHECK_CONTAINS("after the last one", events_errmsg());
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    CHECK_INT(EVENTS_ESTATE, events_restore(db, h->bms[1], 0, NULL));
    CHECK_CONTAINS("outside a transaction", events_errmsg());
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* A row changed on another connection: refused, nothing changed (then the row is put back). */
static void restore_refuses_a_row_changed_elsewhere(history *h)
{
    sqlite3 *other;
    sqlite3_open(h->path, &other);
    sqlite3_busy_timeout(other, 5000);
    /* (a changeset checks the columns it changes: a row gone is always seen) */
    sqlite3_exec(other, "DELETE FROM ints WHERE id = 1", NULL, NULL, NULL);
    sqlite3_close(other);
    char was[65];
    strcpy(was, db_hash(h->db));
    CHECK_INT(EVENTS_ESTATE, events_restore(h->db, h->bms[1], 0, NULL));
    CHECK_CONTAINS("not what the change log says", events_errmsg());
    CHECK_STR(was, db_hash(h->db));

    sqlite3_exec(h->db, "INSERT INTO ints(id, a, b) VALUES (1, 100, 'one')", NULL, NULL,
                 NULL); /* put it back */
}

/* Pruned: only what the outbox has delivered goes (here: as if everything had been); a restore
 * to a pruned bookmark is refused. */
static void restore_refuses_pruned_changes(history *h)
{
    sqlite3 *db = h->db;
    CHECK_INT(0, events_changes_prune(db, h->bms[4]));
    CHECK(sql_int(db, "SELECT count(*) FROM _events_changes WHERE bookmark <= 4") >
          0); /* not delivered: kept */
    sqlite3_exec(db, "DELETE FROM _events_outbox", NULL, NULL, NULL);
    CHECK_INT(0, events_changes_prune(db, h->bms[4]));
    CHECK_INT(EVENTS_ESTATE, events_restore(db, h->bms[2], 0, NULL));
    CHECK_CONTAINS("pruned", events_errmsg());
}

/* A schema change is a wall: no restore to before it. */
static void restore_stops_at_a_schema_change(history *h)
{
    char now[17];
    events_bookmark(h->db, now);
    CHECK_INT(0, events_exec(h->db, "CREATE TABLE later(id INTEGER PRIMARY KEY, v)"));
    CHECK_INT(0, events_exec(h->db, "INSERT INTO later VALUES (1, 'x')"));
    CHECK_INT(EVENTS_ESTATE, events_restore(h->db, now, 0, NULL));
    CHECK_CONTAINS("schema", events_errmsg());
}

TEST(restore_to_every_bookmark_and_back)
{
    char *dir = test_tmpdir("cdc-restore");
    history h;
    memset(&h, 0, sizeof h);
    snprintf(h.path, sizeof h.path, "%s/r.db", dir);
    REQUIRE(sqlite3_open(h.path, &h.db) == SQLITE_OK);
    sqlite3_exec(h.db, SCHEMA, NULL, NULL, NULL);
    REQUIRE_INT(0, events_track(h.db, NULL));
    record_history(&h);
    restores_back_and_undone(&h);
    restore_dry_run_changes_nothing(&h);
    restore_refuses_bad_bookmarks_and_transactions(&h);
    restore_refuses_a_row_changed_elsewhere(&h);
    restore_refuses_pruned_changes(&h);
    restore_stops_at_a_schema_change(&h);
    CHECK_INT(0, events_untrack(h.db));
    sqlite3_close(h.db);
    test_rmtree(dir);
    free(dir);
}

/* Rolled back: no change record, no outbox row, no bookmark. */
static void rollback_leaves_no_trace(sqlite3 *db)
{
    CHECK_INT(0, events_tx_begin(db));
    sqlite3_exec(db, "INSERT INTO ints VALUES (1, 1, 'a')", NULL, NULL, NULL);
    CHECK_INT(0, events_tx_rollback(db));
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM _events_outbox"));
    char bm[17];
    events_bookmark(db, bm);
    CHECK_STR("0000000000000000", bm);
}

/* A plain write, committed by itself, is recorded with the next libevents transaction (not with
 * one rolled back): restoring to before that record removes it. */
static void plain_write_kept_with_the_next_record(sqlite3 *db)
{
    sqlite3_exec(db, "INSERT INTO ints VALUES (2, 2, 'plain')", NULL, NULL, NULL);
    /* then a service transaction with a libevents write inside, rolled back */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (3, 3, 'inside')"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (4, 4, 'after')"));
    CHECK_INT(1, sql_int(db, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(0, events_restore(db, "0000000000000000", 0, NULL));
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM ints"));
}

/* A table without a key, written through libevents: refused with its name; written plainly:
 * not tracked, not an error. */
static void table_without_a_key(sqlite3 *db)
{
    sqlite3_exec(db, "CREATE TABLE nokey(a, b)", NULL, NULL, NULL);
    CHECK_INT(EVENTS_EINVAL, events_exec(db, "INSERT INTO nokey VALUES (1, 2)"));
    CHECK_CONTAINS("table nokey has no PRIMARY KEY", events_errmsg());
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM nokey"));
    CHECK(sqlite3_exec(db, "INSERT INTO nokey VALUES (1, 2)", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (5, 5, 'fine')"));
}

/* events_exec's errors, a commit or rollback with no transaction, and calls after untrack. */
static void exec_transaction_and_untrack_errors(sqlite3 *db)
{
    CHECK_INT(EVENTS_EDB, events_exec(db, "INSERT INTO nosuchtable VALUES (1)"));
    CHECK_CONTAINS("no such table", events_errmsg());
    CHECK_INT(EVENTS_ESTATE, events_tx_commit(db));
    CHECK_INT(EVENTS_ESTATE, events_tx_rollback(db));
    CHECK_INT(0, events_untrack(db));
    CHECK_INT(EVENTS_ESTATE, events_untrack(db));
    CHECK_INT(EVENTS_ESTATE, events_exec(db, "SELECT 1"));
}

TEST(rollbacks_leave_no_trace_and_plain_writes_are_kept)
{
    char *dir = test_tmpdir("cdc-rollback");
    char path[1200];
    snprintf(path, sizeof path, "%s/r.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
    REQUIRE_INT(0, events_track(db, NULL));
    rollback_leaves_no_trace(db);
    plain_write_kept_with_the_next_record(db);
    table_without_a_key(db);
    exec_transaction_and_untrack_errors(db);
    sqlite3_close(db);
    test_rmtree(dir);
    free(dir);
}

/*
 * Inside a transaction the service opened itself, each libevents call records at once: its
 * bookmark is there to read at once, and a rollback (whole, or to a savepoint before the
 * record) takes it back, so that the next record gets the number again and none is skipped.
 */
TEST(bookmark_inside_a_service_transaction_is_its_last_record)
{
    char *dir = test_tmpdir("cdc-bm-tx");
    char path[1200];
    snprintf(path, sizeof path, "%s/b.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
    events_collection *c;
    REQUIRE_INT(0, events_collection_open_db(db, "docs", NULL, &c));
    char bm[17];

    REQUIRE(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (1, 1, 'a')"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000001", bm);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (2, 2, 'b')"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000002", bm);
    CHECK_INT(0, events_collection_put(c, "d1", "{\"v\":1}"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000003", bm);
    sqlite3_exec(db, "INSERT INTO ints VALUES (3, 3, 'plain')", NULL, NULL, NULL);
    CHECK_INT(0, events_bookmark(db, bm)); /* a plain write is not recorded yet */
    CHECK_STR("0000000000000003", bm);
    REQUIRE(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000003", bm);

    /* ROLLBACK: the records are gone, the bookmark is the one before, its number comes again */
    REQUIRE(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (4, 4, 'gone')"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000004", bm);
    REQUIRE(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000003", bm);
    CHECK_INT(0,
              events_exec(db, "INSERT INTO ints VALUES (5, 5, 'kept')")); /* with the plain write */
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000004", bm);

    /* ROLLBACK TO a savepoint before a record: the same */
    REQUIRE(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (6, 6, 'six')"));
    REQUIRE(sqlite3_exec(db, "SAVEPOINT s", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_collection_put(c, "d2", "{\"v\":2}"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000006", bm);
    REQUIRE(sqlite3_exec(db, "ROLLBACK TO s", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000005", bm);
    CHECK_INT(0, events_exec(db, "INSERT INTO ints VALUES (7, 7, 'seven')"));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000006", bm);
    REQUIRE(sqlite3_exec(db, "RELEASE s; COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000006", bm);

    /* events_tx_begin's transaction is recorded at its commit */
    CHECK_INT(0, events_tx_begin(db));
    sqlite3_exec(db, "INSERT INTO ints VALUES (8, 8, 'eight')", NULL, NULL, NULL);
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000006", bm);
    CHECK_INT(0, events_tx_commit(db));
    CHECK_INT(0, events_bookmark(db, bm));
    CHECK_STR("0000000000000007", bm);

    /* the change log agrees: 1..7, none skipped, and the last one in _events_meta */
    CHECK_INT(7, sql_int(db, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(7, sql_int(db, "SELECT max(bookmark) FROM _events_changes"));
    CHECK_INT(7, sql_int(db, "SELECT value FROM _events_meta WHERE key = 'bookmark'"));
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM docs WHERE id = 'd2'"));
    /* and so does restore: 6 is a bookmark, 8 is not yet */
    CHECK_INT(0, events_restore(db, "0000000000000006", 0, NULL));
    CHECK_INT(0, sql_int(db, "SELECT count(*) FROM ints WHERE id = 8"));
    CHECK_INT(EVENTS_EINVAL, events_restore(db, "0000000000000009", 0, NULL));
    CHECK_CONTAINS("after the last one, 0000000000000008", events_errmsg());
    events_collection_close(c);
    CHECK(tracked_by_nobody(db));
    sqlite3_close(db);
    test_rmtree(dir);
    free(dir);
}

/* ---- the events of a recorded transaction -------------------------------------------------- */

/* The "tables" and "changes" of transaction bm's sqlite.changeset event, as the sender builds it.
 */
static json_t *summary_of(sqlite3 *db, uint64_t bm, long long *changes)
{
    expansion x = {0};
    json_t *ev = NULL, *tables = NULL;
    *changes = -1;
    if (cdc__expand(db, bm, NULL, 0, &x) == 0 && x.n > 0) {
        json_error_t err;
        ev = json_loadb(x.text.p + x.off[0], x.len[0], JSON_REJECT_DUPLICATES, &err);
        if (!ev)
            test_fail(__FILE__, __LINE__, "transaction %llu: %s", (unsigned long long)bm, err.text);
    }
    if (ev) {
        tables = json_incref(json_object_get(ev, "tables"));
        *changes = json_integer_value(json_object_get(ev, "changes"));
    }
    json_decref(ev);
    cdc__expansion_free(&x);
    return tables;
}

/* The same, counted on a fresh iteration of the changeset in the change log. */
static json_t *summary_expected(sqlite3 *db, uint64_t bm, long long *changes)
{
    json_t *want = json_object();
    *changes = 0;
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT changeset FROM _events_changes WHERE bookmark = ?", -1, &st,
                       NULL);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)bm);
    sqlite3_changeset_iter *it;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3changeset_start(&it, sqlite3_column_bytes(st, 0),
                               (void *)sqlite3_column_blob(st, 0)) == SQLITE_OK) {
        while (sqlite3changeset_next(it) == SQLITE_ROW) {
            const char *tab;
            int ncol, op, ind;
            sqlite3changeset_op(it, &tab, &ncol, &op, &ind);
            json_t *t = json_object_get(want, tab);
            if (!t) {
                t = json_pack("{s:i,s:i,s:i}", "insert", 0, "update", 0, "delete", 0);
                json_object_set_new(want, tab, t);
            }
            const char *k = op == SQLITE_INSERT   ? "insert"
                            : op == SQLITE_UPDATE ? "update"
                                                  : "delete";
            json_object_set_new(t, k, json_integer(json_integer_value(json_object_get(t, k)) + 1));
            ++*changes;
        }
        sqlite3changeset_finalize(it);
    }
    sqlite3_finalize(st);
    return want;
}

static char *json_text(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(none)");
}

/* Checks transaction bm's summary against its changeset; sql: what the transaction ran. */
static void check_summary(sqlite3 *db, uint64_t bm, const char *sql)
{
    long long have_n, want_n;
    json_t *have = summary_of(db, bm, &have_n), *want = summary_expected(db, bm, &want_n);
    int ok = have && json_equal(have, want) && have_n == want_n;
    if (!ok) {
        char *h = json_text(have), *w = json_text(want);
        test_fail(__FILE__, __LINE__,
                  "transaction %llu (%s):\n  expected: %s, %lld changes\n  actual:   %s, %lld "
                  "changes",
                  (unsigned long long)bm, sql, w, want_n, h, have_n);
        free(h);
        free(w);
    }
    json_decref(have);
    json_decref(want);
}

static uint64_t bookmark_now(sqlite3 *db)
{
    char bm[17];
    events_bookmark(db, bm);
    return strtoull(bm, NULL, 16);
}

/* Two tables of two columns in one transaction: each has its own counts (they were summed under
 * the second table's name). */
TEST(summary_counts_each_table_of_a_transaction)
{
    char *dir = test_tmpdir("cdc-summary");
    char path[1200];
    snprintf(path, sizeof path, "%s/s.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE_INT(0, events_track(db, NULL));
    CHECK_INT(0, events_exec(db, "CREATE TABLE a(id INTEGER PRIMARY KEY, v);"
                                 "CREATE TABLE b(id INTEGER PRIMARY KEY, v)"));
    CHECK_INT(0, events_exec(db, "INSERT INTO a VALUES (1, 'x');"
                                 "INSERT INTO b VALUES (1, 'y'), (2, 'z')"));
    long long n;
    json_t *have = summary_of(db, bookmark_now(db), &n);
    char *h = json_text(have);
    CHECK_STR("{\"a\":{\"delete\":0,\"insert\":1,\"update\":0},"
              "\"b\":{\"delete\":0,\"insert\":2,\"update\":0}}",
              h);
    CHECK_INT(3, n);
    free(h);
    json_decref(have);
    CHECK_INT(0, events_untrack(db));
    sqlite3_close(db);
    test_rmtree(dir);
    free(dir);
}

#define SUMMARY_TXS 300

static uint64_t xorshift(uint64_t *r)
{
    *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
    return *r;
}

/*
 * Random transactions over tables of two, three and five columns (three of two, so that tables
 * of the same shape follow each other), inserts, updates and deletes interleaved: the summary
 * of each is what a fresh iteration of its changeset counts.
 */
TEST(property_summary_matches_the_changeset)
{
    static const char *const tables[] = {"t2a", "t2b", "t2c", "t3", "t5"};
    char *dir = test_tmpdir("cdc-summary-prop");
    char path[1200];
    snprintf(path, sizeof path, "%s/p.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TABLE t2a(id INTEGER PRIMARY KEY, v);"
                         "CREATE TABLE t2b(id INTEGER PRIMARY KEY, v);"
                         "CREATE TABLE t2c(id TEXT PRIMARY KEY, v) WITHOUT ROWID;"
                         "CREATE TABLE t3(id INTEGER PRIMARY KEY, v, w);"
                         "CREATE TABLE t5(k INTEGER, id INTEGER, v, w, x, PRIMARY KEY (id, k));",
                         NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE_INT(0, events_track(db, NULL));
    uint64_t seed = (uint64_t)time(NULL) | 1;
    if (getenv("CDC_SEED")) seed = strtoull(getenv("CDC_SEED"), NULL, 10);
    fprintf(stderr, "  seed %llu (CDC_SEED=%llu to repeat)\n", (unsigned long long)seed,
            (unsigned long long)seed);
    uint64_t r = seed;
#define RND(n) (int)(xorshift(&r) % (n))
    int checked = 0, multi = 0;
    for (int tx = 0; tx < SUMMARY_TXS && !test_failed_now(); tx++) {
        uint64_t before = bookmark_now(db);
        buf sql = BUF_INIT;
        int nops = 1 + RND(12);
        for (int i = 0; i < nops; i++) {
            int k = RND(5), v = RND(1000);
            char id[16];
            snprintf(id, sizeof id, k == 2 ? "'k%d'" : "%d", RND(8));
            switch (RND(3)) {
            case 0:
                buf_printf(&sql, "INSERT OR REPLACE INTO %s VALUES (%s%s, %d%s);", tables[k],
                           k == 4 ? "1, " : "", id, v,
                           k == 3   ? ", 'w'"
                           : k == 4 ? ", 'w', 2.5"
                                    : "");
                break;
            case 1:
                buf_printf(&sql, "UPDATE %s SET v = %d WHERE id = %s;", tables[k], v, id);
                break;
            default: buf_printf(&sql, "DELETE FROM %s WHERE id = %s;", tables[k], id); break;
            }
        }
        if (events_exec(db, buf_cstr(&sql)))
            test_fail(__FILE__, __LINE__, "%s: %s", buf_cstr(&sql), events_errmsg());
        uint64_t after = bookmark_now(db);
        if (after != before) { /* something changed */
            CHECK_INT(before + 1, after);
            long long n;
            json_t *want = summary_expected(db, after, &n);
            if (json_object_size(want) > 1) multi++;
            json_decref(want);
            check_summary(db, after, buf_cstr(&sql));
            checked++;
        }
        buf_free(&sql);
    }
#undef RND
    fprintf(stderr, "  %d transactions checked, %d of several tables\n", checked, multi);
    if (!test_failed_now()) { /* the generator gives what the property needs */
        CHECK(checked > SUMMARY_TXS / 2);
        CHECK(multi > SUMMARY_TXS / 4);
    }
    CHECK_INT(0, events_untrack(db));
    sqlite3_close(db);
    test_rmtree(dir);
    free(dir);
}

/* ---- collections ---------------------------------------------------------------------- */

static int collect(void *ud, const char *id, const char *json)
{
    buf *b = ud;
    buf_printf(b, "%s=%s;", id, json);
    return 0;
}

/* A database in a fresh directory with the collection "users" open on it. */
typedef struct coll_fixture {
    char *dir;
    sqlite3 *db;
    events_collection *c;
} coll_fixture;

/* Opens the fixture; on failure the test has failed (test_failed_now) and nothing is to close. */
static void coll_open(coll_fixture *f, const char *tag)
{
    char path[1200];
    memset(f, 0, sizeof *f);
    f->dir = test_tmpdir(tag);
    snprintf(path, sizeof path, "%s/c.db", f->dir);
    REQUIRE(sqlite3_open(path, &f->db) == SQLITE_OK);
    REQUIRE_INT(0, events_collection_open_db(f->db, "users", NULL, &f->c));
}

/* Closes the collection, checks that it leaves the connection tracked by nobody, cleans up. */
static void coll_close(coll_fixture *f)
{
    events_collection_close(f->c);
    CHECK(tracked_by_nobody(f->db));
    sqlite3_close(f->db);
    test_rmtree(f->dir);
    free(f->dir);
}

/* A document put comes back normalised; get, has and count answer for what is there. */
static void put_get_has_count(events_collection *c)
{
    CHECK_INT(0, events_collection_put(c, "u1", " { \"name\" : \"Ada\", \"n\": [1, 2] } "));
    CHECK_INT(0, events_collection_put(c, "u2", "{\"name\":\"Grace\"}"));
    char *doc;
    CHECK_INT(0, events_collection_get(c, "u1", &doc));
    CHECK_STR("{\"name\":\"Ada\",\"n\":[1,2]}", doc);
    events_free(doc);
    CHECK_INT(EVENTS_ENOTFOUND, events_collection_get(c, "nobody", &doc));
    CHECK(doc == NULL);
    CHECK_INT(1, events_collection_has(c, "u2"));
    CHECK_INT(0, events_collection_has(c, "u3"));
    uint64_t n;
    CHECK_INT(0, events_collection_count(c, &n));
    CHECK_INT(2, n);
}

/* An identical put records nothing; put_many of three documents is one transaction. */
static void identical_put_records_nothing_put_many_one_transaction(sqlite3 *db,
                                                                   events_collection *c)
{
    char b1[17], b2[17];
    events_bookmark(db, b1);
    CHECK_INT(0, events_collection_put(c, "u2", "{ \"name\": \"Grace\" }"));
    events_bookmark(db, b2);
    CHECK_STR(b1, b2);
    const char *ids[] = {"u3", "u4", "u5"};
    const char *docs[] = {"{\"n\":3}", "{\"n\":4}", "{\"n\":5}"};
    CHECK_INT(0, events_collection_put_many(c, 3, ids, docs));
    events_bookmark(db, b2);
    CHECK_INT(strtoull(b1, NULL, 16) + 1, strtoull(b2, NULL, 16)); /* one transaction */
}

/* list pages in id order: from the start with a limit, and after an id without one. */
static void list_pages_in_id_order(events_collection *c)
{
    buf l = BUF_INIT;
    CHECK_INT(0, events_collection_list(c, NULL, 2, collect, &l));
    CHECK_STR("u1={\"name\":\"Ada\",\"n\":[1,2]};u2={\"name\":\"Grace\"};", buf_cstr(&l));
    l.len = 0;
    CHECK_INT(0, events_collection_list(c, "u2", 0, collect, &l));
    CHECK_STR("u3={\"n\":3};u4={\"n\":4};u5={\"n\":5};", buf_cstr(&l));
    buf_free(&l);
}

/* put_many is all or none (one bad document, nothing written); delete says what was not there. */
static void put_many_all_or_none_and_deletes(events_collection *c)
{
    const char *bad_docs[] = {"{\"n\":6}", "[1]"};
    const char *more[] = {"u6", "u7"};
    CHECK_INT(EVENTS_EINVAL, events_collection_put_many(c, 2, more, bad_docs));
    CHECK_INT(0, events_collection_has(c, "u6"));
    CHECK_INT(0, events_collection_delete(c, "u5"));
    CHECK_INT(EVENTS_ENOTFOUND, events_collection_delete(c, "u5"));
    const char *ids[] = {"u3", "u4"};
    CHECK_INT(0, events_collection_delete_many(c, 2, ids));
    uint64_t n;
    CHECK_INT(0, events_collection_count(c, &n));
    CHECK_INT(2, n);
}

/* A name not a collection's is refused; a second handle on the same collection works. */
static void names_and_a_second_handle(sqlite3 *db)
{
    events_collection *d;
    CHECK_INT(EVENTS_EINVAL, events_collection_open_db(db, "Users", NULL, &d));
    CHECK_INT(EVENTS_EINVAL, events_collection_open_db(db, "_events_x", NULL, &d));
    sqlite3_exec(db, "CREATE TABLE other(id INTEGER PRIMARY KEY, v)", NULL, NULL, NULL);
    CHECK_INT(EVENTS_EINVAL, events_collection_open_db(db, "other", NULL, &d));
    CHECK_CONTAINS("not a collection", events_errmsg());
    REQUIRE_INT(0, events_collection_open_db(db, "users", NULL, &d));
    CHECK_INT(1, events_collection_has(d, "u1"));
    events_collection_close(d);
}

TEST(collections_api)
{
    coll_fixture f;
    coll_open(&f, "cdc-coll");
    if (test_failed_now()) return;
    put_get_has_count(f.c);
    identical_put_records_nothing_put_many_one_transaction(f.db, f.c);
    list_pages_in_id_order(f.c);
    put_many_all_or_none_and_deletes(f.c);
    names_and_a_second_handle(f.db);
    CHECK_INT(0, events_collection_clear(f.c)); /* clear empties the collection */
    uint64_t n;
    CHECK_INT(0, events_collection_count(f.c, &n));
    CHECK_INT(0, n);
    coll_close(&f);
}

TEST(collections_refuse_bad_ids_and_documents)
{
    coll_fixture f;
    coll_open(&f, "cdc-coll-bad");
    if (test_failed_now()) return;
    events_collection *c = f.c;
    struct {
        const char *id, *json, *msg;
        int rc;
    } bad[] = {
        {"x", "[1,2]", "must be a JSON object", EVENTS_EINVAL},
        {"x", "{\"a\":", "is not JSON", EVENTS_EINVAL},
        {"x", "{} extra", "text after the object", EVENTS_EINVAL},
        {"x", "{\"a\":1,\"a\":2}", "the key \"a\" twice", EVENTS_EINVAL},
        {"x", "{\"s\":\"\xff\"}", "UTF-8", EVENTS_EINVAL},
        {"x", NULL, "no JSON", EVENTS_EINVAL},
        {"", "{}", "1-255 bytes", EVENTS_EINVAL},
        {"bad\xc3", "{}", "not valid UTF-8", EVENTS_EINVAL},
        {NULL, "{}", "id is required", EVENTS_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = events_collection_put(c, bad[i].id, bad[i].json);
        if (rc != bad[i].rc)
            test_fail(__FILE__, __LINE__, "bad %zu: got %d (%s)", i, rc, events_errmsg());
        CHECK_CONTAINS(bad[i].msg, events_errmsg());
    }
    buf deep = BUF_INIT;
    for (int i = 0; i < 70; i++) buf_puts(&deep, "{\"a\":");
    buf_puts(&deep, "1");
    for (int i = 0; i < 70; i++) buf_putc(&deep, '}');
    CHECK_INT(EVENTS_EINVAL, events_collection_put(c, "deep", buf_cstr(&deep)));
    CHECK_CONTAINS("levels deep", events_errmsg());
    buf_free(&deep);
    buf big = BUF_INIT;
    buf_puts(&big, "{\"s\":\"");
    for (int i = 0; i < 130000; i++) buf_putc(&big, 'x');
    buf_puts(&big, "\"}");
    CHECK_INT(EVENTS_ETOOBIG, events_collection_put(c, "big", buf_cstr(&big)));
    buf_free(&big);
    char longid[300];
    memset(longid, 'i', 299);
    longid[299] = 0;
    CHECK_INT(EVENTS_EINVAL, events_collection_put(c, longid, "{}"));
    coll_close(&f);
}

/* ---- threads -------------------------------------------------------------------------------- */

typedef struct churn {
    sqlite3 *db;
    int rounds, failed;
    atomic_int done;
} churn;

/* Opens and closes a collection: the connection is tracked and untracked each round. */
static void *open_close_collection(void *ud)
{
    churn *ch = ud;
    for (int i = 0; i < ch->rounds; i++) {
        events_collection *c;
        if (events_collection_open_db(ch->db, "docs", NULL, &c)) {
            ch->failed++;
            continue;
        }
        events_collection_close(c);
    }
    atomic_store(&ch->done, 1);
    return NULL;
}

/*
 * Calls on a connection that another thread tracks and untracks work or say that it is not
 * tracked. (They looked the tracker up, then locked the connection: an untrack in between
 * freed what they locked.)
 */
TEST(calls_while_another_thread_untracks)
{
    char *dir = test_tmpdir("cdc-churn");
    char path[1200];
    snprintf(path, sizeof path, "%s/c.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", NULL, NULL, NULL);
    events_collection *c; /* its table made now: a schema change would stop the restores */
    REQUIRE_INT(0, events_collection_open_db(db, "docs", NULL, &c));
    events_collection_close(c);
    churn ch = {db, 1000, 0, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, open_close_collection, &ch) == 0);
    int recorded = 0, untracked = 0, other = 0;
    while (!atomic_load(&ch.done)) {
        int rc = events_exec(db, "INSERT OR REPLACE INTO t VALUES (1, random())");
        if (rc == EVENTS_OK)
            recorded++;
        else if (rc == EVENTS_ESTATE)
            untracked++;
        else
            other++;
        char bm[17];
        CHECK_INT(0, events_bookmark(db, bm));
        if (events_restore(db, bm, 1, NULL)) /* a dry run to where it is */
            test_fail(__FILE__, __LINE__, "events_restore to %s: %s", bm, events_errmsg());
        if (test_failed_now()) break;
    }
    pthread_join(th, NULL);
    fprintf(stderr, "  %d recorded, %d not tracked at the time\n", recorded, untracked);
    CHECK_INT(0, other);
    CHECK_INT(0, ch.failed);
    CHECK(tracked_by_nobody(db));
    CHECK_INT(SQLITE_OK, sqlite3_close(db));
    test_rmtree(dir);
    free(dir);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

TEST(snapshot_file_is_the_data_at_its_bookmark)
{
    char *dir = test_tmpdir("cdc-snap");
    char path[1200], snap[1200];
    snprintf(path, sizeof path, "%s/s.db", dir);
    snprintf(snap, sizeof snap, "%s/snap.db", dir);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
    events_collection *c;
    REQUIRE_INT(0, events_collection_open_db(db, "docs", NULL, &c));
    for (int i = 0; i < 50; i++) {
        char id[16], doc[64];
        snprintf(id, sizeof id, "d%02d", i);
        snprintf(doc, sizeof doc, "{\"i\":%d}", i);
        CHECK_INT(0, events_collection_put(c, id, doc));
    }
    sqlite3_exec(db, "INSERT INTO ints VALUES (1, 1, 'plain')", NULL, NULL,
                 NULL); /* not yet recorded */
    char bm[17];
    CHECK_INT(0, events_snapshot_file(db, snap, bm));
    CHECK_STR("0000000000000033", bm); /* 50 puts and the plain write */
    CHECK_INT(EVENTS_EINVAL, events_snapshot_file(db, snap, bm));
    CHECK_CONTAINS("exists", events_errmsg());
    sqlite3 *s;
    REQUIRE(sqlite3_open(snap, &s) == SQLITE_OK);
    CHECK_STR(db_hash(db), db_hash(s));
    CHECK_INT(0, sql_int(s, "SELECT count(*) FROM _events_changes"));
    CHECK_INT(0, sql_int(s, "SELECT count(*) FROM _events_outbox"));
    CHECK_INT(51, sql_int(s, "SELECT value FROM _events_meta WHERE key = 'bookmark'"));
    CHECK_INT(1, sql_int(s, "SELECT count(*) FROM _events_collections WHERE name = 'docs'"));
    sqlite3_close(s);
    events_collection_close(c);
    sqlite3_close(db);
    test_rmtree(dir);
    free(dir);
}

/* ---- a crash between the write and its commit --------------------------------------------- */

TEST(sigkill_between_write_and_commit)
{
    char *dir = test_tmpdir("cdc-kill");
    char path[1200];
    snprintf(path, sizeof path, "%s/k.db", dir);
    for (int round = 0; round < 3; round++) {
        int to_child[2], to_parent[2];
        REQUIRE(pipe(to_child) == 0 && pipe(to_parent) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            sqlite3 *db;
            if (sqlite3_open(path, &db) != SQLITE_OK) _exit(3);
            events_collection *c;
            if (events_collection_open_db(db, "docs", NULL, &c)) _exit(4);
            for (int i = 0;; i++) {
                char id[32], doc[64], go;
                snprintf(id, sizeof id, "r%d-%d", round, i);
                snprintf(doc, sizeof doc, "{\"round\":%d,\"i\":%d}", round, i);
                if (events_tx_begin(db) || events_collection_put(c, id, doc)) _exit(5);
                if (write(to_parent[1], "w", 1) != 1 || read(to_child[0], &go, 1) != 1) _exit(6);
                if (events_tx_commit(db)) _exit(7);
                if (write(to_parent[1], "c", 1) != 1 || read(to_child[0], &go, 1) != 1) _exit(6);
            }
        }
        close(to_child[0]);
        close(to_parent[1]);
        char m;
        int committed = 0;
        for (int i = 0; i < 5 + round; i++) { /* let some commit */
            CHECK(read(to_parent[0], &m, 1) == 1 && m == 'w');
            CHECK(write(to_child[1], "g", 1) == 1);
            CHECK(read(to_parent[0], &m, 1) == 1 && m == 'c');
            committed++;
            if (i + 1 < 5 + round) CHECK(write(to_child[1], "g", 1) == 1);
        }
        CHECK(write(to_child[1], "g", 1) == 1);
        CHECK(read(to_parent[0], &m, 1) == 1 && m == 'w'); /* written, not committed */
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st));
        close(to_child[1]);
        close(to_parent[0]);
        sqlite3 *db;
        REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
        char q[200];
        snprintf(q, sizeof q, "SELECT count(*) FROM docs WHERE id LIKE 'r%d-%%'", round);
        CHECK_INT(committed, sql_int(db, q));
        /* every committed document has its change record and its outbox row; the killed one has
         * neither */
        CHECK_INT(sql_int(db, "SELECT count(*) FROM docs"),
                  sql_int(db, "SELECT count(*) FROM _events_changes"));
        CHECK_INT(sql_int(db, "SELECT count(*) FROM _events_changes"),
                  sql_int(db, "SELECT count(*) FROM _events_outbox WHERE changes IS NOT NULL"));
        CHECK_INT(sql_int(db, "SELECT max(bookmark) FROM _events_changes"),
                  sql_int(db, "SELECT value FROM _events_meta WHERE key = 'bookmark'"));
        sqlite3_close(db);
    }
    test_rmtree(dir);
    free(dir);
}
