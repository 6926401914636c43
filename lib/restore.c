/*
 * restore.c - point-in-time restore of a tracked database, snapshots, and
 * pruning the change log.
 *
 * A restore to bookmark B inverts every recorded transaction after B with
 * the session extension, combines the inverses newest first into one
 * changeset (sqlite3changegroup: a row changed a thousand times is written
 * once) and applies it in one transaction. Any conflict means a row is not
 * what the history says it should be (a write on another connection, which
 * the tracker cannot see), and the restore is refused rather than forced.
 * The restore's own writes are recorded like any others, with restore_of =
 * B, so that history stays one line and a restore can be undone.
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc_int.h"
#include "emitter_int.h"
#include "events_int.h"
#include "evrand.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int noop(void *ud)
{
    (void)ud;
    return EVENTS_OK;
}

/* Records writes made with plain SQLite calls since the last record, so that they have a bookmark
 * too. */
static int record_pending(tracker *t)
{
    return cdc__tracker_write(t, noop, NULL);
}

static int64_t scalar(sqlite3 *db, const char *sql, int64_t arg)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_int64(st, 1, arg);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int cdc_on_conflict(void *ud, int kind, sqlite3_changeset_iter *it)
{
    cdc_conflict *c = ud;
    const char *tab = "?";
    int ncol, op, ind;
    sqlite3changeset_op(it, &tab, &ncol, &op, &ind);
    if (!c->what[0])
        snprintf(c->what, sizeof c->what, "in table %s, %s", tab,
                 kind == SQLITE_CHANGESET_DATA          ? "a row has other values"
                 : kind == SQLITE_CHANGESET_NOTFOUND    ? "a row is missing"
                 : kind == SQLITE_CHANGESET_CONFLICT    ? "a row exists that should not"
                 : kind == SQLITE_CHANGESET_FOREIGN_KEY ? "a foreign key breaks"
                                                        : "a constraint fails");
    return SQLITE_CHANGESET_ABORT;
}

/*
 * The combined inverse of every transaction after `after`, newest first.
 * *p is sqlite3_malloc'ed.
 */
static int inverse_after(sqlite3 *db, uint64_t after, int *n, void **p, uint64_t *count)
{
    sqlite3_changegroup *g;
    sqlite3_stmt *st;
    *n = 0;
    *p = NULL;
    *count = 0;
    if (sqlite3changegroup_new(&g) != SQLITE_OK)
        return events__fail(EVENTS_ENOMEM, "out of memory");
    int rc = EVENTS_OK;
    if (sqlite3_prepare_v2(db,
                           "SELECT bookmark, changeset FROM _events_changes WHERE bookmark > ? "
                           "ORDER BY bookmark DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3changegroup_delete(g);
        return events__fail(EVENTS_EDB, "cannot read the change log: %s", sqlite3_errmsg(db));
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        int in = sqlite3_column_bytes(st, 1), inv_n;
        void *inv;
        if (sqlite3changeset_invert(in, (void *)sqlite3_column_blob(st, 1), &inv_n, &inv) !=
            SQLITE_OK) {
            rc = events__fail(EVENTS_EDB, "the changeset of transaction %016llx is damaged",
                              (unsigned long long)sqlite3_column_int64(st, 0));
            break;
        }
        if (sqlite3changegroup_add(g, inv_n, inv) != SQLITE_OK)
            rc = events__fail(EVENTS_EDB, "cannot combine the changeset of transaction %016llx",
                              (unsigned long long)sqlite3_column_int64(st, 0));
        sqlite3_free(inv);
        (*count)++;
    }
    sqlite3_finalize(st);
    if (!rc && sqlite3changegroup_output(g, n, p) != SQLITE_OK)
        rc = events__fail(EVENTS_ENOMEM, "out of memory");
    sqlite3changegroup_delete(g);
    return rc;
}

/* Checks that the change log can go back to b; *now: the last bookmark. */
static int check_restorable(tracker *t, uint64_t b, uint64_t *now)
{
    sqlite3 *db = cdc__tracker_db(t);
    char want[CDC_SCHEMA_HASH_LEN + 1], bs[EVENTS_BOOKMARK_LEN + 1], last[EVENTS_BOOKMARK_LEN + 1];
    int rc = cdc__tracker_bookmark(t, now);
    if (rc) return rc;
    cdc_bookmark_format(b, bs);
    cdc_bookmark_format(*now, last);
    if (b > *now)
        return events__fail(EVENTS_EINVAL, "bookmark %s is after the last one, %s", bs, last);
    int64_t oldest = scalar(db, "SELECT min(bookmark) FROM _events_changes WHERE ?1 = ?1", 0);
    int64_t have =
        scalar(db, "SELECT count(*) FROM _events_changes WHERE bookmark > ?", (int64_t)b);
    if (oldest < 0 || have < 0)
        return events__fail(EVENTS_EDB, "cannot read the change log: %s", sqlite3_errmsg(db));
    if ((uint64_t)have != *now - b) {
        char o[EVENTS_BOOKMARK_LEN + 1];
        cdc_bookmark_format(oldest > 0 ? (uint64_t)oldest - 1 : 0, o);
        return events__fail(
            EVENTS_ESTATE,
            "bookmark %s has been pruned: the change log goes back to %s; restore an "
            "older state from a "
            "snapshot (events restore --lake)",
            bs, o);
    }
    if (cdc__tracker_schema(t, want)) return EVENTS_EDB;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT bookmark FROM _events_changes WHERE bookmark >= ? AND schema <> "
                           "? ORDER BY bookmark DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return events__fail(EVENTS_EDB, "cannot read the change log: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)b);
    sqlite3_bind_text(st, 2, want, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        char at[EVENTS_BOOKMARK_LEN + 1];
        cdc_bookmark_format((uint64_t)sqlite3_column_int64(st, 0), at);
        rc = events__fail(
            EVENTS_ESTATE,
            "the schema of the tracked tables changed after bookmark %s: a restore to %s "
            "would cross it "
            "(restore from a snapshot taken after the change)",
            at, bs);
    }
    sqlite3_finalize(st);
    return rc;
}

static int apply_inverse(tracker *t, uint64_t b, int dry_run, events_restore_report *rp);

int events_restore(sqlite3 *db, const char *bookmark, int dry_run, events_restore_report *report)
{
    events_restore_report r;
    memset(&r, 0, sizeof r);
    if (report) *report = r;
    uint64_t b;
    if (!db) return events__fail(EVENTS_EINVAL, "events_restore: no database");
    if (cdc_bookmark_parse(bookmark, &b))
        return events__fail(EVENTS_EINVAL, "\"%s\" is not a bookmark (16 lowercase hex digits)",
                            bookmark ? bookmark : "");
    tracker *t = cdc__tracker_lock(db);
    int own = !t, rc = EVENTS_OK;
    if (own) { /* tracked for the call: that count keeps t */
        if ((rc = events_track(db, NULL))) return rc;
        if (!(t = cdc__tracker_lock(db)))
            return events__fail(EVENTS_ESTATE, "events_restore: untracked on another thread");
    }
    if (!sqlite3_get_autocommit(db)) {
        rc = events__fail(EVENTS_ESTATE,
                          "events_restore: call it outside a transaction (it is one)");
        goto out;
    }
    uint64_t now;
    if ((rc = record_pending(t)) || (rc = check_restorable(t, b, &now))) goto out;
    if (b == now) goto out; /* already there */
    /*
     * The changesets hold every row the history changed, those that triggers
     * and foreign-key actions changed included: while they are applied,
     * neither may act again (foreign_keys can only change outside a transaction).
     */
    int fk = (int)scalar(db, "SELECT foreign_keys FROM pragma_foreign_keys WHERE ?1 = ?1", 0),
        trig = 1;
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &trig);
    if (fk == 1) cdc__exec(db, "PRAGMA foreign_keys = OFF");
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    rc = apply_inverse(t, b, dry_run, &r);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, trig, NULL);
    if (fk == 1) cdc__exec(db, "PRAGMA foreign_keys = ON");
out:
    cdc__tracker_leave(t);
    if (own) events_untrack(db);
    if (report) *report = r;
    return rc;
}

/* Inside events_restore: the inverse of everything after b, applied and recorded in one
 * transaction. */
static int apply_inverse(tracker *t, uint64_t b, int dry_run, events_restore_report *rp)
{
    sqlite3 *db = cdc__tracker_db(t);
    events_restore_report r = *rp;
    int rc;
    if ((rc = cdc__exec(db, "BEGIN IMMEDIATE"))) return rc;
    int n;
    void *p;
    if ((rc = inverse_after(db, b, &n, &p, &r.transactions))) {
        cdc__exec(db, "ROLLBACK");
        return rc;
    }
    cdc_changeset_count(p, n, &r.inserted, &r.updated, &r.deleted);
    if (dry_run) {
        cdc__exec(db, "ROLLBACK");
        sqlite3_free(p);
        *rp = r;
        return EVENTS_OK;
    }
    cdc_conflict c = {""};
    int arc = sqlite3changeset_apply_v2(db, n, p, NULL, cdc_on_conflict, &c, NULL, NULL,
                                        SQLITE_CHANGESETAPPLY_NOSAVEPOINT);
    sqlite3_free(p);
    uint64_t rb = 0;
    if (arc != SQLITE_OK) {
        char bs[EVENTS_BOOKMARK_LEN + 1];
        cdc_bookmark_format(b, bs);
        rc =
            c.what[0]
                ? events__fail(
                      EVENTS_ESTATE,
                      "restore to %s refused: %s, not what the change log says (written on another "
                      "connection?); nothing was changed",
                      bs, c.what)
                : events__fail(EVENTS_EDB, "restore to %s: %s", bs, sqlite3_errmsg(db));
    } else if (!(rc = cdc__tracker_record(t, (int64_t)b, &rb))) {
        rc = cdc__exec(db, "COMMIT");
    }
    if (rc)
        cdc__exec(db, "ROLLBACK");
    else if (rb)
        cdc_bookmark_format(rb, r.bookmark);
    *rp = r;
    return rc;
}

int events_changes_prune(sqlite3 *db, const char *bookmark)
{
    uint64_t b;
    if (!db) return events__fail(EVENTS_EINVAL, "events_changes_prune: no database");
    if (cdc_bookmark_parse(bookmark, &b))
        return events__fail(EVENTS_EINVAL, "\"%s\" is not a bookmark (16 lowercase hex digits)",
                            bookmark ? bookmark : "");
    sqlite3_stmt *st;
    int rc = EVENTS_OK;
    /* what the outbox still has to send stays: the sender builds its events from it */
    if (sqlite3_prepare_v2(
            db,
            "DELETE FROM _events_changes WHERE bookmark <= ?1 AND bookmark < coalesce((SELECT "
            "min(changes) FROM _events_outbox WHERE changes IS NOT NULL), ?1 + 1)",
            -1, &st, NULL) != SQLITE_OK)
        return events__fail(EVENTS_EDB, "cannot prune the change log: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)b);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = events__fail(EVENTS_EDB, "cannot prune the change log: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* ---- snapshots ----------------------------------------------------------------------- */

/* Copies db (as of one read transaction) to path, leaving out what is not the service's data. */
static int snapshot_copy(sqlite3 *db, const char *path, uint64_t *bookmark)
{
    const char *file = sqlite3_db_filename(db, "main");
    if (!file || !*file) return events__fail(EVENTS_EINVAL, "a snapshot needs a database file");
    sqlite3 *src = NULL, *dst = NULL;
    int rc = EVENTS_OK;
    if (sqlite3_open_v2(file, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = events__fail(EVENTS_EDB, "snapshot: cannot open %s: %s", file, sqlite3_errmsg(src));
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    if ((rc = cdc__exec(src, "BEGIN"))) goto out;
    int64_t bm = scalar(
        src,
        "SELECT coalesce((SELECT value FROM _events_meta WHERE key = 'bookmark' AND ?1 = ?1), 0)",
        0);
    if (bm < 0) bm = 0; /* never tracked: no _events_meta */
    *bookmark = (uint64_t)bm;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = events__fail(EVENTS_EDB, "snapshot: cannot create %s: %s", path, sqlite3_errmsg(dst));
        goto out;
    }
    sqlite3_backup *bk = sqlite3_backup_init(dst, "main", src, "main");
    if (!bk) {
        rc = events__fail(EVENTS_EDB, "snapshot: %s", sqlite3_errmsg(dst));
        goto out;
    }
    int s = sqlite3_backup_step(bk, -1);
    sqlite3_backup_finish(bk);
    cdc__exec(src, "COMMIT");
    if (s != SQLITE_DONE) {
        rc = events__fail(EVENTS_EDB, "snapshot: the copy failed: %s", sqlite3_errstr(s));
        goto out;
    }
    /* the copy is one file with the service's tables, the registry and the bookmark it is at */
    rc = cdc__exec(
        dst, "PRAGMA journal_mode = DELETE;"
             "DELETE FROM _events_outbox; DELETE FROM _events_dead; DELETE FROM _events_changes;"
             "DELETE FROM sqlite_sequence WHERE name = '_events_outbox'; VACUUM;");
    if (rc == EVENTS_EDB && strstr(events_errmsg(), "no such table"))
        rc = EVENTS_OK; /* an untracked database */
out:
    sqlite3_close(src);
    if (dst && sqlite3_close(dst) != SQLITE_OK && !rc)
        rc = events__fail(EVENTS_EDB, "snapshot: cannot close %s", path);
    return rc;
}

static int prune_to(sqlite3 *db, uint64_t bm)
{
    tracker *t = cdc__tracker_lock(db);
    int prune = t && cdc__tracker_prune_on_snapshot(t);
    if (t) cdc__tracker_leave(t);
    if (!prune) return EVENTS_OK;
    char b[EVENTS_BOOKMARK_LEN + 1];
    cdc_bookmark_format(bm, b);
    return events_changes_prune(db, b);
}

static int snapshot_to(sqlite3 *db, const char *path, uint64_t *bm)
{
    tracker *t = cdc__tracker_lock(db);
    int rc = EVENTS_OK;
    if (t) { /* writes not yet recorded would be in the copy without a bookmark */
        rc = sqlite3_get_autocommit(db) ? record_pending(t) : EVENTS_OK;
        cdc__tracker_leave(t);
        if (rc) return rc;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%08llx", path,
             (unsigned long long)(evrand_u64() & 0xffffffffu));
    if ((rc = snapshot_copy(db, tmp, bm))) {
        unlink(tmp);
        return rc;
    }
    if (link(tmp, path)) { /* never over an existing file */
        rc = events__fail(errno == EEXIST ? EVENTS_EINVAL : EVENTS_EDB, "snapshot: %s: %s", path,
                          errno == EEXIST ? "the file exists" : strerror(errno));
    }
    unlink(tmp);
    return rc;
}

int events_snapshot_file(sqlite3 *db, const char *path, char bookmark[EVENTS_BOOKMARK_LEN + 1])
{
    if (!db || !path)
        return events__fail(EVENTS_EINVAL, "events_snapshot_file: database and path are required");
    if (strlen(path) > 4000) return events__fail(EVENTS_EINVAL, "snapshot: the path is too long");
    struct stat sb;
    if (!stat(path, &sb)) return events__fail(EVENTS_EINVAL, "snapshot: %s: the file exists", path);
    uint64_t bm = 0;
    int rc = snapshot_to(db, path, &bm);
    if (!rc) rc = prune_to(db, bm);
    if (!rc && bookmark) cdc_bookmark_format(bm, bookmark);
    return rc;
}

static size_t keep_some(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    buf_append(b, p, size * n < 512 ? size * n : 512);
    return size * n;
}

int cdc_snapshot_upload(const char *file, const char *base_url, const char *auth_header,
                        const char *source, const char *bookmark)
{
    char url[1200];
    snprintf(url, sizeof url, "%s/snapshots/%s/%s", base_url, source, bookmark);
    FILE *f = fopen(file, "rb");
    struct stat sb;
    CURL *c = curl_easy_init();
    buf answer = BUF_INIT;
    int rc = EVENTS_OK;
    if (!f || fstat(fileno(f), &sb) || !c) {
        rc = events__fail(EVENTS_EHTTP, "snapshot: cannot upload %s", file);
    } else {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/vnd.sqlite3");
        h = curl_slist_append(h, "Expect:");
        if (auth_header) h = curl_slist_append(h, auth_header);
        char err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READDATA, f);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)sb.st_size);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_some);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        CURLcode cr = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cr != CURLE_OK)
            rc = events__fail(EVENTS_EHTTP, "snapshot: %s: %s", url,
                              err[0] ? err : curl_easy_strerror(cr));
        else if (status != 200 && status != 201)
            rc = events__fail(EVENTS_EHTTP, "snapshot: %s answered %ld: %.*s", url, status,
                              (int)answer.len, answer.p ? answer.p : "");
        curl_slist_free_all(h);
    }
    if (c) curl_easy_cleanup(c);
    if (f) fclose(f);
    buf_free(&answer);
    return rc;
}

int cdc_snapshot_take(sqlite3 *db, const char *path, uint64_t *bookmark)
{
    return snapshot_to(db, path, bookmark);
}

int events_snapshot(events_emitter *em, char bookmark[EVENTS_BOOKMARK_LEN + 1])
{
    if (!em) return events__fail(EVENTS_EINVAL, "events_snapshot: no emitter");
    sqlite3 *db = outbox__edb(em->ob);
    tracker *t = db ? cdc__tracker_lock(db) : NULL;
    if (!t)
        return events__fail(EVENTS_ESTATE,
                            "events_snapshot: the emitter's database is not tracked");
    char source[64];
    snprintf(source, sizeof source, "%s", cdc__tracker_source(t));
    cdc__tracker_leave(t);
    const char *tmpdir = getenv("TMPDIR");
    char path[4200];
    snprintf(path, sizeof path, "%s/events-snapshot-%016llx.db",
             tmpdir && *tmpdir ? tmpdir : "/tmp", (unsigned long long)evrand_u64());
    uint64_t bm = 0;
    int rc = snapshot_to(db, path, &bm);
    if (rc) return rc;
    char bs[EVENTS_BOOKMARK_LEN + 1], base[1200];
    cdc_bookmark_format(bm, bs);
    /* the server's base URL: the endpoint without its /ingest or /e */
    size_t n = strlen(em->endpoint);
    if (n >= 7 && !strcmp(em->endpoint + n - 7, "/ingest"))
        n -= 7;
    else if (n >= 2 && !strcmp(em->endpoint + n - 2, "/e"))
        n -= 2;
    snprintf(base, sizeof base, "%.*s", (int)n, em->endpoint);
    rc = cdc_snapshot_upload(path, base, em->auth_header, source, bs);
    unlink(path);
    if (!rc) rc = prune_to(db, bm);
    if (!rc && bookmark) memcpy(bookmark, bs, sizeof bs);
    return rc;
}
