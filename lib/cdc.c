/*
 * cdc.c - the trackers: which connections are tracked, a tracker's life and
 * locking, and the calls that write through one (events_track,
 * events_untrack, events_exec, events_tx_*, events_bookmark), with bookmarks
 * and the schema hash.
 *
 * A tracker is created by the first events_track of a connection and counted
 * by every further one, by each collection opened on it and by an attached
 * emitter; the last count records what is pending, takes its hooks off and
 * frees it. What it captures is capture.c's, how it records is changeset.c's.
 * Every function that takes a tracker runs under the connection's mutex
 * (cdc__tracker_enter, cdc__tracker_lock), which also orders it with the
 * hooks; the registry has a mutex of its own (reg_mu).
 */
#include "cdc_int.h"
#include "codec.h"
#include "emitter_int.h"
#include "events_int.h"
#include "evrand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char CDC__SCHEMA_SQL[] =
    "CREATE TABLE IF NOT EXISTS _events_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT "
    "NOT NULL, "
    "changes INTEGER);"
    "CREATE TABLE IF NOT EXISTS _events_dead (seq INTEGER NOT NULL, part INTEGER NOT NULL DEFAULT "
    "0, "
    "event TEXT NOT NULL, reason TEXT NOT NULL, failed_at TEXT NOT NULL, PRIMARY KEY (seq, part));"
    "CREATE TABLE IF NOT EXISTS _events_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _events_changes (bookmark INTEGER PRIMARY KEY, ts TEXT NOT NULL, "
    "schema TEXT NOT NULL, changeset BLOB NOT NULL, restore_of INTEGER);"
    "CREATE TABLE IF NOT EXISTS _events_collections (name TEXT PRIMARY KEY, prev INTEGER NOT NULL "
    "DEFAULT 1) "
    "WITHOUT ROWID;";

/* ---- bookmarks ----------------------------------------------------------------- */

void cdc_bookmark_format(uint64_t b, char out[EVENTS_BOOKMARK_LEN + 1])
{
    snprintf(out, EVENTS_BOOKMARK_LEN + 1, "%016llx", (unsigned long long)b);
}

int cdc_bookmark_parse(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != EVENTS_BOOKMARK_LEN) return -1;
    uint64_t v = 0;
    for (int i = 0; i < EVENTS_BOOKMARK_LEN; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* ---- the registry ---------------------------------------------------------------- */

/*
 * The trackers of all connections, a list through tracker.next. events_track adds one and the
 * last count's release (tracker_release) takes it out, each with the connection's mutex held
 * and then reg_mu; cdc__tracker_of reads the list under reg_mu only. Entries change only at
 * those two points, so a tracker found here stays valid while its caller holds a count of it
 * or the connection's mutex.
 */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static tracker *registry;

tracker *cdc__tracker_of(sqlite3 *db)
{
    pthread_mutex_lock(&reg_mu);
    tracker *t = registry;
    while (t && t->db != db) t = t->next;
    pthread_mutex_unlock(&reg_mu);
    return t;
}

const char *cdc_source(sqlite3 *db)
{
    tracker *t = cdc__tracker_of(db);
    return t ? t->source : NULL;
}

/* ---- schema ---------------------------------------------------------------------- */

int cdc_schema_hash(sqlite3 *db, char out[CDC_SCHEMA_HASH_LEN + 1])
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "SELECT type, name, coalesce(sql, '') FROM main.sqlite_schema WHERE type IN ('table', "
            "'index') AND name NOT LIKE '\\_events\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\' ORDER BY type, name",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    sha256 h;
    sha256_init(&h);
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int i = 0; i < 3; i++)
            sha256_update(&h, sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i) + 1);
    int rc = sqlite3_finalize(st) == SQLITE_OK ? 0 : -1;
    unsigned char d[32];
    char hex[65];
    sha256_final(&h, d);
    sha256_hex(d, hex);
    memcpy(out, hex, CDC_SCHEMA_HASH_LEN);
    out[CDC_SCHEMA_HASH_LEN] = 0;
    return rc;
}

static int schema_cookie(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA main.schema_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int cdc__tracker_schema(tracker *t, char out[CDC_SCHEMA_HASH_LEN + 1])
{
    int c = schema_cookie(t->db);
    if (c < 0)
        return events__fail(EVENTS_EDB, "cannot read the schema version: %s",
                            sqlite3_errmsg(t->db));
    if (c != t->schema_cookie || !t->schema[0]) {
        if (cdc_schema_hash(t->db, t->schema))
            return events__fail(EVENTS_EDB, "cannot read the schema: %s", sqlite3_errmsg(t->db));
        t->schema_cookie = c;
    }
    memcpy(out, t->schema, sizeof t->schema);
    return EVENTS_OK;
}

int cdc_tables(sqlite3 *db, char ***names, int *n)
{
    sqlite3_stmt *st;
    *names = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(
            db,
            "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE "
            "'\\_events\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char **v = realloc(*names, (size_t)(*n + 1) * sizeof *v);
        if (!v || !(v[*n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
            if (v) *names = v;
            rc = -1;
            break;
        }
        *names = v;
        (*n)++;
    }
    sqlite3_finalize(st);
    return rc;
}

int cdc__exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        int rc = events__fail(EVENTS_EDB, "%s: %s", sql, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
        return rc;
    }
    return EVENTS_OK;
}

/* ---- the tracker's life ----------------------------------------------------------- */

static int meta_get(sqlite3 *db, const char *key, sqlite3_int64 *iv, char *sv, size_t svlen)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM _events_meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        if (iv) *iv = sqlite3_column_int64(st, 0);
        if (sv)
            snprintf(sv, svlen, "%s",
                     sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    }
    sqlite3_finalize(st);
    return found;
}

static int source_valid(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

static void tracker_free(tracker *t)
{
    if (!t) return;
    cdc__capture_free(t);
    sqlite3_finalize(t->ins_change);
    sqlite3_finalize(t->set_meta);
    sqlite3_finalize(t->ins_outbox);
    sqlite3_finalize(t->get_meta);
    free(t);
}

/* Checks that db can be tracked and creates the change log's tables in it. */
static int prepare_database(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        return events__fail(EVENTS_ESTATE, "events_track: start tracking outside a transaction");
    const char *f = sqlite3_db_filename(db, "main");
    if (!f || !*f)
        return events__fail(EVENTS_EINVAL,
                            "events_track: the database must be a file (the sender reads it on a "
                            "connection of its own)");
    int rc;
    if ((rc = cdc__exec(db, "PRAGMA journal_mode = WAL")) || (rc = cdc__exec(db, CDC__SCHEMA_SQL)))
        return rc;
    return EVENTS_OK;
}

/*
 * The tracker's source: the configured one, else the one the database keeps, else a new one;
 * written to _events_meta when it is not the one kept there.
 */
static int choose_source(tracker *t, const events_track_config *cfg)
{
    sqlite3 *db = t->db;
    char src[64] = "";
    if (meta_get(db, "source", NULL, src, sizeof src) < 0)
        return events__fail(EVENTS_EDB, "cannot read _events_meta: %s", sqlite3_errmsg(db));
    if (cfg && cfg->source) {
        snprintf(t->source, sizeof t->source, "%s", cfg->source);
    } else if (src[0]) {
        snprintf(t->source, sizeof t->source, "%s", src);
    } else {
        snprintf(t->source, sizeof t->source, "db-%012llx",
                 (unsigned long long)(evrand_u64() & 0xffffffffffffull));
    }
    if (!strcmp(src, t->source)) return EVENTS_OK;
    sqlite3_stmt *st;
    int ok = sqlite3_prepare_v2(
                 db, "INSERT OR REPLACE INTO _events_meta(key, value) VALUES ('source', ?)", -1,
                 &st, NULL) == SQLITE_OK;
    if (ok)
        sqlite3_bind_text(st, 1, t->source, -1, SQLITE_STATIC),
            ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) return events__fail(EVENTS_EDB, "cannot write _events_meta: %s", sqlite3_errmsg(db));
    return EVENTS_OK;
}

/* The statements a record runs (changeset.c), prepared once for the tracker's life. */
static int prepare_statements(tracker *t)
{
    sqlite3 *db = t->db;
    if (sqlite3_prepare_v3(db,
                           "INSERT INTO _events_changes(bookmark, ts, schema, changeset, "
                           "restore_of) VALUES (?, ?, "
                           "?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &t->ins_change, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db,
                           "INSERT OR REPLACE INTO _events_meta(key, value) VALUES ('bookmark', ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &t->set_meta, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db, "INSERT INTO _events_outbox(event, changes) VALUES ('', ?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &t->ins_outbox, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db, "SELECT value FROM _events_meta WHERE key = 'bookmark'", -1,
                           SQLITE_PREPARE_PERSISTENT, &t->get_meta, NULL) != SQLITE_OK)
        return events__fail(EVENTS_EDB, "cannot prepare the change log's statements: %s",
                            sqlite3_errmsg(db));
    return EVENTS_OK;
}

/* A new tracker of db, capturing and in the registry, with one count. */
static int tracker_start(sqlite3 *db, const events_track_config *cfg)
{
    tracker *t = calloc(1, sizeof *t);
    if (!t) return events__fail(EVENTS_ENOMEM, "out of memory");
    t->db = db;
    t->refs = 1;
    t->prune_on_snapshot = cfg && cfg->prune_on_snapshot;
    int rc;
    if ((rc = choose_source(t, cfg)) || (rc = prepare_statements(t)) ||
        (rc = cdc__capture_start(t))) {
        tracker_free(t);
        return rc;
    }
    pthread_mutex_lock(&reg_mu);
    t->next = registry;
    registry = t;
    pthread_mutex_unlock(&reg_mu);
    return EVENTS_OK;
}

int events_track(sqlite3 *db, const events_track_config *cfg)
{
    if (!db) return events__fail(EVENTS_EINVAL, "events_track: no database");
    if (cfg && cfg->source && !source_valid(cfg->source))
        return events__fail(EVENTS_EINVAL,
                            "source \"%s\" must be 1-32 characters of [0-9A-Za-z_.-]", cfg->source);
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    int rc = EVENTS_OK;
    if (t) {
        t->refs++;
        if (cfg && cfg->prune_on_snapshot) t->prune_on_snapshot = 1;
    } else if (!(rc = prepare_database(db))) {
        rc = tracker_start(db, cfg);
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    return rc;
}

/*
 * Drops one count of t, with the connection's mutex held. The last one records what is
 * pending, takes the hooks off and frees t; *close_db is then the connection if the tracker
 * had taken it from an emitter (to be closed once its mutex is released), else NULL.
 */
static int tracker_release(tracker *t, sqlite3 **close_db)
{
    sqlite3 *db = t->db;
    int rc = EVENTS_OK;
    *close_db = NULL;
    if (--t->refs == 0) {
        if (t->nentry) { /* writes not yet recorded: record them while we can */
            uint64_t bm;
            if (sqlite3_get_autocommit(db) && !cdc__exec(db, "BEGIN IMMEDIATE")) {
                t->strict = 1;
                if (cdc__tracker_record(t, -1, &bm) || cdc__exec(db, "COMMIT")) {
                    rc = events__fail(
                        EVENTS_EDB,
                        "events_untrack: writes made since the last record are lost from "
                        "the change log: %s",
                        events_errmsg());
                    cdc__exec(db, "ROLLBACK");
                }
            }
        }
        cdc__capture_stop(t);
        pthread_mutex_lock(&reg_mu);
        tracker **pp = &registry;
        while (*pp != t) pp = &(*pp)->next;
        *pp = t->next;
        pthread_mutex_unlock(&reg_mu);
        if (t->owns_db) *close_db = db;
        tracker_free(t);
    }
    return rc;
}

int events_untrack(sqlite3 *db)
{
    if (!db) return events__fail(EVENTS_EINVAL, "events_untrack: no database");
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    sqlite3 *close_db = NULL;
    int rc = t ? tracker_release(t, &close_db)
               : events__fail(EVENTS_ESTATE, "events_untrack: the connection is not tracked");
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    /* _v2: a statement the closed emitter's outbox has not finalized yet does not keep it open */
    if (close_db) sqlite3_close_v2(close_db);
    return rc;
}

tracker *cdc__tracker_lock(sqlite3 *db)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    if (t)
        t->strict++;
    else
        sqlite3_mutex_leave(sqlite3_db_mutex(db));
    return t;
}

int cdc__tracker_in_own_tx_of(sqlite3 *db)
{
    tracker *t = cdc__tracker_lock(db);
    int in = t && cdc__tracker_in_own_tx(t);
    if (t) cdc__tracker_leave(t);
    return in;
}

void cdc__tracker_enter(tracker *t)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(t->db));
    t->strict++;
}

void cdc__tracker_leave(tracker *t)
{
    t->strict--;
    sqlite3_mutex_leave(sqlite3_db_mutex(t->db));
}

sqlite3 *cdc__tracker_db(tracker *t)
{
    return t->db;
}

int cdc__tracker_bookmark(tracker *t, uint64_t *out)
{
    int s = sqlite3_step(t->get_meta);
    *out = s == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(t->get_meta, 0) : 0;
    int rc = s == SQLITE_ROW || s == SQLITE_DONE
                 ? EVENTS_OK
                 : events__fail(EVENTS_EDB, "cannot read the bookmark: %s", sqlite3_errmsg(t->db));
    sqlite3_reset(t->get_meta);
    return rc;
}

const char *cdc__tracker_source(tracker *t)
{
    return t->source;
}
int cdc__tracker_prune_on_snapshot(tracker *t)
{
    return t->prune_on_snapshot;
}
int cdc__tracker_in_own_tx(tracker *t)
{
    return t->own_tx && !sqlite3_get_autocommit(t->db);
}

void cdc__tracker_attach_emitter(sqlite3 *db, events_emitter *em)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    if (t && t->em != em) {
        if (!t->em) t->refs++; /* the emitter's count (a second emitter takes over the first's) */
        t->em = em;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
}

int cdc__tracker_detach_emitter(sqlite3 *db, events_emitter *em, int own_db, int *took_db)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    sqlite3 *close_db = NULL; /* stays NULL: the tracker takes the connection only if it stays */
    int rc = EVENTS_OK;
    *took_db = 0;
    if (t && t->em == em) {
        t->em = NULL;
        if (own_db && t->refs > 1) t->owns_db = *took_db = 1;
        rc = tracker_release(t, &close_db);
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    return rc;
}

int cdc__tracker_write(tracker *t, int (*fn)(void *ud), void *ud)
{
    uint64_t bm;
    int rc;
    if (sqlite3_get_autocommit(t->db)) {
        if ((rc = cdc__exec(t->db, "BEGIN IMMEDIATE"))) return rc;
        rc = fn(ud);
        if (!rc) rc = cdc__tracker_record(t, -1, &bm);
        if (!rc) rc = cdc__exec(t->db, "COMMIT");
        if (rc)
            cdc__exec(t->db, "ROLLBACK");
        else if (bm && t->em)
            emitter__note_outbox(t->em, -1);
        return rc;
    }
    if ((rc = fn(ud))) return rc;
    /* the service's own transaction: its COMMIT is not ours to see, so record now */
    return cdc__tracker_in_own_tx(t) ? EVENTS_OK : cdc__tracker_record(t, -1, &bm);
}

/* ---- the API ------------------------------------------------------------------------- */

/* cdc__tracker_lock(db), or NULL and an error naming the call. */
static tracker *tracked(sqlite3 *db, const char *what)
{
    tracker *t = db ? cdc__tracker_lock(db) : NULL;
    if (!t) events__fail(EVENTS_ESTATE, "%s: the connection is not tracked (events_track)", what);
    return t;
}

typedef struct exec_arg {
    sqlite3 *db;
    const char *sql;
} exec_arg;

static int run_exec(void *ud)
{
    exec_arg *a = ud;
    return cdc__exec(a->db, a->sql);
}

int events_exec(sqlite3 *db, const char *sql)
{
    tracker *t = tracked(db, "events_exec");
    if (!t) return EVENTS_ESTATE;
    exec_arg a = {db, sql};
    int rc = sql ? cdc__tracker_write(t, run_exec, &a)
                 : events__fail(EVENTS_EINVAL, "events_exec: no SQL");
    cdc__tracker_leave(t);
    return rc;
}

int events_tx_begin(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_begin");
    if (!t) return EVENTS_ESTATE;
    int rc = !sqlite3_get_autocommit(db)
                 ? events__fail(EVENTS_ESTATE, "events_tx_begin: a transaction is already open")
                 : cdc__exec(db, "BEGIN IMMEDIATE");
    if (!rc) t->own_tx = 1; /* writes until the commit are libevents' */
    cdc__tracker_leave(t);
    return rc;
}

int events_tx_commit(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_commit");
    if (!t) return EVENTS_ESTATE;
    int rc;
    uint64_t bm;
    if (!cdc__tracker_in_own_tx(t)) {
        rc = events__fail(EVENTS_ESTATE, "events_tx_commit without events_tx_begin");
    } else if (!(rc = cdc__tracker_record(t, -1, &bm))) {
        rc = cdc__exec(db, "COMMIT"); /* the commit hook ends own_tx */
    }
    if (!rc && t->em) emitter__note_outbox(t->em, -1); /* under the lock: em may be closing */
    cdc__tracker_leave(t);
    return rc; /* on failure the transaction stays open: roll it back */
}

int events_tx_rollback(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_rollback");
    if (!t) return EVENTS_ESTATE;
    int rc = EVENTS_OK;
    if (!cdc__tracker_in_own_tx(t)) {
        rc = events__fail(EVENTS_ESTATE, "events_tx_rollback without events_tx_begin");
    } else {
        rc = cdc__exec(db, "ROLLBACK"); /* the rollback hook ends own_tx */
    }
    cdc__tracker_leave(t);
    return rc;
}

int events_bookmark(sqlite3 *db, char out[EVENTS_BOOKMARK_LEN + 1])
{
    if (!db || !out) return events__fail(EVENTS_EINVAL, "events_bookmark: no database");
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = cdc__tracker_of(db);
    if (t) {
        uint64_t b;
        int rc = cdc__tracker_bookmark(t, &b);
        sqlite3_mutex_leave(sqlite3_db_mutex(db));
        if (rc) {
            out[0] = 0;
            return rc;
        }
        cdc_bookmark_format(b, out);
        return EVENTS_OK;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    sqlite3_int64 v = 0;
    if (meta_get(db, "bookmark", &v, NULL, 0) < 0) v = 0; /* never tracked */
    cdc_bookmark_format((uint64_t)v, out);
    return EVENTS_OK;
}
