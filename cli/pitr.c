/*
 * pitr.c - `events snapshot` and `events restore`.
 *
 *   events snapshot --db PATH --out FILE
 *   events snapshot --db PATH --server URL [--token T]
 *   events snapshot --server URL --list [--source S]
 *   events restore --db PATH --bookmark B [--dry-run]
 *   events restore --lake DIR --source S (--bookmark B | --time T) --out FILE [--force] [--dry-run]
 *
 * A local restore works on the database in place (events_restore: the change
 * log inside it). A restore from the lake builds a new file from the newest
 * snapshot at or before the bookmark and the sqlite.changeset events after
 * it (lake/pitr.c), without the original database.
 */
#include "cdc.h"
#include "cli.h"
#include "snapshots.h"
#include "evtime.h"
#include "ingest.h"
#include "pitr.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void strip_slash(char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '/') s[--n] = 0;
}

/* ---- events snapshot ---------------------------------------------------------------- */

static int print_snapshots(const char *text, size_t len)
{
    json_t *v = json_loadb(text, len, 0, NULL);
    json_t *list = json_object_get(v, "snapshots");
    size_t i;
    json_t *m;
    if (isatty(1)) {
        printf("%-20s %-16s %-24s %12s  %s\n", "source", "bookmark", "createdAt", "bytes",
               "tables");
        json_array_foreach(list, i, m)
        {
            printf("%-20s %-16s %-24s %12lld ", json_string_value(json_object_get(m, "source")),
                   json_string_value(json_object_get(m, "bookmark")),
                   json_string_value(json_object_get(m, "createdAt")),
                   (long long)json_integer_value(json_object_get(m, "size")));
            size_t k;
            json_t *t;
            json_array_foreach(json_object_get(m, "tables"), k, t)
                printf(" %s(%lld)", json_string_value(json_object_get(t, "name")),
                       (long long)json_integer_value(json_object_get(t, "rows")));
            printf("\n");
        }
    } else {
        json_array_foreach(list, i, m)
        {
            char *line = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
            printf("%s\n", line);
            free(line);
        }
    }
    json_decref(v);
    return 0;
}

static int list_snapshots(const char *server, const char *token, const char *source)
{
    char url[1400];
    snprintf(url, sizeof url, "%s/snapshots%s%s", server, source ? "?source=" : "",
             source ? source : "");
    buf b = BUF_INIT;
    char err[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc = cli_http("GET", url, token, NULL, &b, &status, err);
    int out = 1;
    if (rc != CURLE_OK) {
        fprintf(stderr, "events snapshot: %s: %s\n", url, err[0] ? err : curl_easy_strerror(rc));
    } else if (status != 200) {
        fprintf(stderr, "events snapshot: %s answered %ld: %.*s\n", url, status, (int)b.len,
                b.p ? b.p : "");
    } else {
        out = print_snapshots(b.p, b.len);
    }
    buf_free(&b);
    return out;
}

/*
 * Puts a snapshot file into the lake as the server's PUT /snapshots does. 0, or
 * 1 with a message.
 */
/* A refusal of snapshots_finish or snapshots_list, as the server answers it:
 * {"ok":false,"error":…}. */
static void print_refusal(const char *err)
{
    buf j = BUF_INIT;
    ingest_error_json(&j, err);
    fprintf(stderr, "events snapshot: %.*s\n", (int)j.len, j.p ? j.p : "");
    buf_free(&j);
}

static int snapshot_to_lake(const char *lake, const char *path, const char *source, const char *bm)
{
    store *st;
    lake_cache *cache;
    if (cli_lake_open("snapshot", lake, NULL, 0, CLI_LAKE_CREATE, &st, &cache)) return 1;
    lake_cache_close(cache); /* only puts: no cache needed */
    char err[600], dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int rc = 1;
    snapshots_upload *u = snapshots_begin(dir, source, bm, err, sizeof err);
    FILE *f = u ? fopen(path, "rb") : NULL;
    if (!u) {
        fprintf(stderr, "events snapshot: %s\n", err);
    } else if (!f) {
        fprintf(stderr, "events snapshot: %s: %s\n", path, strerror(errno));
        snapshots_abort(u);
    } else {
        char b[65536];
        size_t n;
        int ok = 1;
        while (ok && (n = fread(b, 1, sizeof b, f)) > 0)
            ok = !snapshots_write(u, b, n, err, sizeof err);
        fclose(f);
        if (!ok) {
            fprintf(stderr, "events snapshot: %s\n", err);
            snapshots_abort(u);
        } else {
            buf answer = BUF_INIT;
            int fin = snapshots_finish(u, st, &answer, err, sizeof err);
            if (fin >= 0) {
                fprintf(stderr, "events snapshot: %s %s/%s in %s\n",
                        fin == 0 ? "stored" : "already had", source, bm, st->url);
                rc = 0;
            } else {
                print_refusal(err);
            }
            buf_free(&answer);
        }
    }
    store_close(st);
    return rc;
}

/* --list with --lake: the snapshots the lake holds, read from it directly. */
static int list_lake_snapshots(const char *lake, const char *source)
{
    store *st;
    lake_cache *cache;
    if (cli_lake_open("snapshot", lake, NULL, 0, CLI_LAKE_READ, &st, &cache)) return 1;
    lake_cache_close(cache);
    buf answer = BUF_INIT;
    char err[600];
    int listed = snapshots_list(st, source, &answer, err, sizeof err);
    int r = listed == 0 ? print_snapshots(answer.p, answer.len) : 1;
    if (listed) print_refusal(err);
    buf_free(&answer);
    store_close(st);
    return r;
}

/* Opens the database at path, read-write, as the snapshot's source. 0, or 2 with a message. */
static int open_source(const char *path, sqlite3 **db)
{
    struct stat sb;
    if (stat(path, &sb)) {
        fprintf(stderr, "events snapshot: %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "events snapshot: %s: %s\n", path, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        return 2;
    }
    sqlite3_busy_timeout(*db, 10000);
    return 0;
}

/*
 * A snapshot of the tracked db into a file of TMPDIR, then to the lake (when
 * lake is given) or uploaded to the server at base. Returns an EVENTS_* code
 * (events_errmsg says why), or 1 when the lake refused it (said already).
 */
static int snapshot_away(sqlite3 *db, const char *base, const char *token, const char *lake,
                         char *bm)
{
    char tmp[4200];
    const char *td = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/events-snapshot-%d.db", td && *td ? td : "/tmp", (int)getpid());
    unlink(tmp);
    uint64_t b;
    int rc = cdc_snapshot_take(db, tmp, &b);
    if (!rc) {
        cdc_bookmark_format(b, bm);
        char auth[600];
        if (token) snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        if (lake) {
            if (snapshot_to_lake(lake, tmp, cdc_source(db), bm)) rc = 1;
        } else {
            rc = cdc_snapshot_upload(tmp, base, token ? auth : NULL, cdc_source(db), bm);
            if (!rc)
                fprintf(stderr, "events snapshot: uploaded %s/%s to %s\n", cdc_source(db), bm,
                        base);
        }
    }
    unlink(tmp);
    return rc;
}

/* The snapshot of db_path: into the file out, or away (snapshot_away). Returns the exit status. */
static int snapshot_db(const char *db_path, const char *out, const char *base, const char *token,
                       const char *lake)
{
    sqlite3 *db;
    if (open_source(db_path, &db)) return 2;
    int rc = events_track(db, NULL);
    char bm[EVENTS_BOOKMARK_LEN + 1] = "";
    if (!rc && out) {
        rc = events_snapshot_file(db, out, bm);
        if (!rc) fprintf(stderr, "events snapshot: wrote %s at bookmark %s\n", out, bm);
    } else if (!rc) {
        rc = snapshot_away(db, base, token, lake, bm);
    }
    if (rc < 0) fprintf(stderr, "events snapshot: %s\n", events_errmsg()); /* 1: said already */
    events_untrack(db);
    sqlite3_close(db);
    return rc ? 1 : 0;
}

int cmd_snapshot(int argc, char **argv)
{
    const char *db_path = NULL, *out = NULL, *server = NULL, *token = NULL, *source = NULL,
               *lake = NULL;
    int list = 0;
    const cli_option opts[] = {
        {"db", NULL, OPT_STR, &db_path, "PATH", "the tracked database to copy"},
        {"out", NULL, OPT_STR, &out, "FILE", "write the snapshot to this file (must not exist)"},
        {"server", "EVENTS_SERVER", OPT_STR, &server, "URL",
         "upload it to this server (PUT /snapshots/...)"},
        {"token", "EVENTS_TOKEN", OPT_STR, &token, "TOKEN",
         "bearer token with the ingest or admin scope"},
        {"lake", NULL, OPT_STR, &lake, "DIR|URL",
         "or put it straight into this lake (a directory or s3://bucket/prefix)"},
        {"list", NULL, OPT_FLAG, &list, NULL, "list the snapshots the server (or --lake) has"},
        {"source", NULL, OPT_STR, &source, "ID", "with --list: only this source"},
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    if (cli_options_take_no_args(
            "snapshot",
            "Usage: events snapshot --db PATH --out FILE\n"
            "       events snapshot --db PATH --server URL [--token T]\n"
            "       events snapshot --db PATH --lake DIR|URL\n"
            "       events snapshot (--server URL | --lake DIR|URL) --list [--source ID]\n\n"
            "Copies a tracked database as of its last recorded transaction (SQLite's online\n"
            "backup), into a file or to the server, which keeps it in the lake for\n"
            "`events restore --lake`.",
            opts, argc, argv, &status))
        return status;
    char base[1200] = "";
    if (server && *server) {
        snprintf(base, sizeof base, "%s", server);
        strip_slash(base);
    }
    if (token && !*token) token = NULL;
    if (lake && !*lake) lake = NULL;
    if (list) {
        if (!base[0] == !lake) {
            fprintf(stderr,
                    "events snapshot: --list needs one of --server URL and --lake DIR|URL\n");
            return 2;
        }
        return base[0] ? list_snapshots(base, token, source) : list_lake_snapshots(lake, source);
    }
    if (!db_path || (!!out + !!base[0] + !!lake) != 1) {
        fprintf(stderr, "events snapshot: give --db PATH and one of --out FILE, --server URL and "
                        "--lake DIR|URL\n");
        return 2;
    }
    return snapshot_db(db_path, out, base, token, lake);
}

/* ---- events restore ------------------------------------------------------------------ */

static void progress(void *ud, uint64_t done, uint64_t total)
{
    int *on = ud;
    if (!*on) return;
    int width = 30, fill = total ? (int)(done * (uint64_t)width / total) : width;
    char bar[64];
    for (int k = 0; k < width; k++) bar[k] = k < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[Kapplying [%s] %llu/%llu transactions", bar, (unsigned long long)done,
            (unsigned long long)total);
    if (done == total) fputs("\r\033[K", stderr);
}

static int restore_local(const char *path, const char *bookmark, int dry_run)
{
    sqlite3 *db;
    struct stat sb;
    if (stat(path, &sb)) {
        fprintf(stderr, "events restore: %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "events restore: %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return 2;
    }
    sqlite3_busy_timeout(db, 10000);
    events_restore_report r;
    char before[EVENTS_BOOKMARK_LEN + 1] = "";
    int rc = events_track(db, NULL);
    if (!rc) events_bookmark(db, before);
    if (!rc) rc = events_restore(db, bookmark, dry_run, &r);
    if (rc) {
        fprintf(stderr, "events restore: %s\n", events_errmsg());
    } else if (dry_run) {
        printf("would restore %s from bookmark %s to %s: undo %llu transactions (%llu rows "
               "inserted, %llu "
               "updated, %llu deleted)\n",
               path, before, bookmark, (unsigned long long)r.transactions,
               (unsigned long long)r.inserted, (unsigned long long)r.updated,
               (unsigned long long)r.deleted);
    } else if (!r.bookmark[0]) {
        printf("%s is at bookmark %s already\n", path, bookmark);
    } else {
        printf("restored %s to bookmark %s: undid %llu transactions (%llu rows inserted, %llu "
               "updated, %llu "
               "deleted); the restore is bookmark %s\n",
               path, bookmark, (unsigned long long)r.transactions, (unsigned long long)r.inserted,
               (unsigned long long)r.updated, (unsigned long long)r.deleted, r.bookmark);
    }
    events_untrack(db);
    sqlite3_close(db);
    return rc ? 1 : 0;
}

/*
 * The bookmark to restore to: B itself (--bookmark), or the source's last
 * transaction at or before T (--time). 0, or the exit status with a message.
 */
static int restore_target(query_conn *qc, const char *source, const char *bookmark, const char *at,
                          uint64_t *target)
{
    if (bookmark) {
        if (!cdc_bookmark_parse(bookmark, target)) return 0;
        fprintf(stderr, "events restore: \"%s\" is not a bookmark (16 lowercase hex digits)\n",
                bookmark);
        return 2;
    }
    int64_t ms;
    char *end, err[1024];
    long long n = strtoll(at, &end, 10);
    if (*at && !*end)
        ms = n;
    else if (evtime_parse(at, strlen(at), &ms)) {
        fprintf(stderr, "events restore: --time \"%s\" is not RFC 3339 or epoch milliseconds\n",
                at);
        return 2;
    }
    if (pitr_bookmark_at(qc, source, ms, target, err, sizeof err)) {
        fprintf(stderr, "events restore: %s\n", err);
        return 1;
    }
    if (!*target) {
        fprintf(stderr, "events restore: the lake has no transaction of %s at or before %s\n",
                source, at);
        return 1;
    }
    return 0;
}

/* The newest snapshot of source at or before target, into *snap. 0, or 1 with a message. */
static int restore_base(store *st, const char *source, uint64_t target, uint64_t *snap)
{
    uint64_t *snaps = NULL;
    size_t nsnaps = 0;
    char err[1024];
    if (pitr_snapshots(st, source, &snaps, &nsnaps, err, sizeof err)) {
        fprintf(stderr, "events restore: %s\n", err);
        free(snaps);
        return 1;
    }
    int found = 0;
    *snap = 0;
    for (size_t k = 0; k < nsnaps; k++)
        if (snaps[k] <= target) *snap = snaps[k], found = 1;
    if (!found) {
        char tb[EVENTS_BOOKMARK_LEN + 1];
        cdc_bookmark_format(target, tb);
        fprintf(stderr, "events restore: the lake has no snapshot of %s at or before %s", source,
                tb);
        if (nsnaps) {
            char f[EVENTS_BOOKMARK_LEN + 1];
            cdc_bookmark_format(snaps[0], f);
            fprintf(stderr, " (the oldest is %s)", f);
        } else {
            fprintf(stderr, " (none at all: take one with events_snapshot or `events snapshot`)");
        }
        fprintf(stderr, "\n");
    }
    free(snaps);
    return found ? 0 : 1;
}

static int restore_lake(const char *lake, const char *cache_dir, uint64_t cache_max,
                        const char *source, const char *bookmark, const char *at, const char *out,
                        int force, int dry_run)
{
    lake_cache *cache = NULL;
    char err[1024];
    store *st = NULL;
    query_engine *qe = NULL;
    query_conn *qc = NULL;
    pitr_changes ch = {0};
    int rc = 1;
    struct stat sb;
    if (!dry_run && !force && !stat(out, &sb)) {
        fprintf(stderr, "events restore: %s exists (--force replaces it)\n", out);
        return 2;
    }
    if (cli_lake_open("restore", lake, cache_dir, cache_max, CLI_LAKE_READ, &st, &cache)) return 2;
    query_config qcfg = {.store = st, .cache = cache};
    if (query_engine_open(&qcfg, &qe, err, sizeof err) ||
        !(qc = query_conn_new(qe, err, sizeof err))) {
        fprintf(stderr, "events restore: %s\n", err);
        goto out;
    }
    uint64_t target, snap;
    if ((rc = restore_target(qc, source, bookmark, at, &target)) ||
        (rc = restore_base(st, source, target, &snap)))
        goto out;
    rc = 1;
    if (target > snap && pitr_load_changes(qc, source, snap, target, &ch, err, sizeof err)) {
        fprintf(stderr, "events restore: %s\n", err);
        goto out;
    }
    pitr_report r;
    int tty = isatty(2);
    if (pitr_apply(st, source, snap, &ch, target, out, force, dry_run, progress, &tty, &r, err,
                   sizeof err)) {
        if (tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "events restore: %s\n", err);
        goto out;
    }
    char sb16[EVENTS_BOOKMARK_LEN + 1], tb[EVENTS_BOOKMARK_LEN + 1];
    cdc_bookmark_format(snap, sb16);
    cdc_bookmark_format(target, tb);
    printf("%s %s: snapshot %s of %s, then %llu transactions (%llu rows inserted, %llu updated, "
           "%llu deleted), "
           "at bookmark %s\n",
           dry_run ? "would write" : "wrote", dry_run ? (out ? out : "nothing") : out, sb16, source,
           (unsigned long long)r.transactions, (unsigned long long)r.inserted,
           (unsigned long long)r.updated, (unsigned long long)r.deleted, tb);
    rc = 0;
out:
    pitr_changes_free(&ch);
    query_conn_free(qc);
    query_engine_close(qe);
    lake_cache_close(cache);
    store_close(st);
    return rc;
}

int cmd_restore(int argc, char **argv)
{
    const char *db = NULL, *lake = NULL, *source = NULL, *bookmark = NULL, *at = NULL, *out = NULL;
    const char *cache_dir = NULL;
    uint64_t cache_max = 0;
    int force = 0, dry_run = 0;
    const cli_option opts[] = {
        {"db", NULL, OPT_STR, &db, "PATH", "restore this tracked database in place"},
        {"lake", "EVENTS_LAKE", OPT_STR, &lake, "DIR|URL",
         "or rebuild from this lake alone (with --source, --out): a directory or "
         "s3://bucket/prefix"},
        {"source", NULL, OPT_STR, &source, "ID", "the database's source name in the lake"},
        {"bookmark", NULL, OPT_STR, &bookmark, "B",
         "the state right after transaction B (16 hex digits)"},
        {"time", NULL, OPT_STR, &at, "T",
         "with --lake: the state as of time T (RFC 3339 or epoch ms)"},
        {"out", NULL, OPT_STR, &out, "FILE", "with --lake: the file to write"},
        {"force", NULL, OPT_FLAG, &force, NULL, "replace --out if it exists"},
        {"dry-run", NULL, OPT_FLAG, &dry_run, NULL, "say what would change, change nothing"},
        CLI_CACHE_OPTIONS(&cache_dir, &cache_max),
        {NULL, NULL, 0, NULL, NULL, NULL},
    };
    int status;
    if (cli_options_take_no_args(
            "restore",
            "Usage: events restore --db PATH --bookmark B [--dry-run]\n"
            "       events restore --lake DIR --source ID (--bookmark B | --time T) --out FILE "
            "[--force] [--dry-run]\n\n"
            "Brings a database back to its state at a bookmark: in place, from the change log\n"
            "it keeps, or as a new file from the lake alone (the newest snapshot at or before\n"
            "the bookmark, then the sqlite.changeset events after it).",
            opts, argc, argv, &status))
        return status;
    if (db) {
        if (!bookmark || at || out || source) {
            fprintf(stderr,
                    "events restore: with --db, give --bookmark B (and --dry-run at most)\n");
            return 2;
        }
        return restore_local(db, bookmark, dry_run);
    }
    if (!lake || !source || (!bookmark == !at) || (!out && !dry_run)) {
        fprintf(
            stderr,
            "events restore: give --db PATH --bookmark B, or --lake DIR --source ID with one of "
            "--bookmark and --time, and --out FILE\n");
        return 2;
    }
    return restore_lake(lake, cache_dir, cache_max, source, bookmark, at, out, force, dry_run);
}
