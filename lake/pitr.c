/*
 * pitr.c - see pitr.h.
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "pitr.h"
#include "cdc.h"
#include "codec.h"
#include "evrand.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void pitr_changes_free(pitr_changes *c)
{
    for (size_t i = 0; i < c->n; i++) buf_free(&c->changeset[i]);
    free(c->bookmark);
    free(c->schema);
    free(c->changeset);
    free(c->ts_ms);
    memset(c, 0, sizeof *c);
}

static int run(query_conn *qc, const char *sql, json_t *params, buf *answer, char *err,
               size_t errlen)
{
    /* all of it: a restore needs every changeset (the row and byte limits are for clients) */
    query_request rq = {.sql = sql,
                        .params = params,
                        .format = QUERY_NDJSON,
                        .max_rows = UINT64_C(1) << 40,
                        .timeout_ms = 3600 * 1000,
                        .max_bytes = UINT64_MAX};
    query_outcome o;
    answer->len = 0;
    query_run_to_buf(qc, &rq, answer, &o);
    if (o.code != QUERY_OK || o.truncated) {
        snprintf(err, errlen, "reading the lake: %s",
                 o.code != QUERY_OK ? o.error : "the answer was cut short");
        return -1;
    }
    buf_cstr(answer);
    return 0;
}

/* The sqlite.changeset events of source $1 with a bookmark in ($2, $3], in change order. */
static const char CHANGESETS_SQL[] =
    "SELECT DISTINCT _events_json->>'bookmark' AS bookmark, "
    "CAST(_events_json->>'part' AS BIGINT) AS part, "
    "CAST(_events_json->>'parts' AS BIGINT) AS parts, _events_json->>'schema' AS schema, "
    "epoch_ms(ts) AS ts_ms, _events_json->>'changeset' AS changeset FROM events "
    "WHERE type = 'sqlite.changeset' AND (_events_json->>'source') = $1 "
    "AND (_events_json->>'bookmark') > $2 AND (_events_json->>'bookmark') <= $3 "
    "ORDER BY bookmark, part";

int pitr_load_changes(query_conn *qc, const char *source, uint64_t after, uint64_t upto,
                      pitr_changes *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char a[EVENTS_BOOKMARK_LEN + 1], b[EVENTS_BOOKMARK_LEN + 1];
    cdc_bookmark_format(after, a);
    cdc_bookmark_format(upto == UINT64_MAX ? UINT64_MAX : upto, b);
    json_t *params = json_pack("[sss]", source, a, b);
    buf ans = BUF_INIT;
    int rc = run(qc, CHANGESETS_SQL, params, &ans, err, errlen);
    json_decref(params);
    if (rc) {
        buf_free(&ans);
        return -1;
    }
    size_t cap = 0;
    uint64_t expect = after + 1;
    long long part = 0, parts = 0;
    for (char *p = ans.p, *end = ans.p + ans.len; p && p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        json_t *row = json_loadb(p, (size_t)(nl - p), 0, NULL);
        p = nl + 1;
        if (!row) continue;
        const char *bm = json_string_value(json_object_get(row, "bookmark"));
        const char *cs = json_string_value(json_object_get(row, "changeset"));
        const char *schema = json_string_value(json_object_get(row, "schema"));
        long long pt = json_integer_value(json_object_get(row, "part"));
        long long pts = json_integer_value(json_object_get(row, "parts"));
        uint64_t v;
        if (!bm || !cs || !schema || cdc_bookmark_parse(bm, &v) || pts < 1 || pt < 0 || pt >= pts) {
            snprintf(err, errlen, "a sqlite.changeset event of %s is malformed", source);
            rc = -1;
        } else if (pt == 0) { /* a new transaction: the previous one must be whole */
            if (out->n && part != parts) {
                snprintf(err, errlen, "the lake has %lld of the %lld parts of transaction %016llx",
                         part, parts, (unsigned long long)out->bookmark[out->n - 1]);
                rc = -1;
            } else if (v != expect) {
                snprintf(err, errlen,
                         "the lake has no changes for transactions %016llx..%016llx of %s (not "
                         "delivered yet?)",
                         (unsigned long long)expect, (unsigned long long)v - 1, source);
                rc = -1;
            } else {
                if (out->n == cap) {
                    cap = cap ? cap * 2 : 64;
                    out->bookmark = realloc(out->bookmark, cap * sizeof *out->bookmark);
                    out->schema = realloc(out->schema, cap * sizeof *out->schema);
                    out->changeset = realloc(out->changeset, cap * sizeof *out->changeset);
                    out->ts_ms = realloc(out->ts_ms, cap * sizeof *out->ts_ms);
                }
                size_t i = out->n++;
                out->bookmark[i] = v;
                snprintf(out->schema[i], sizeof out->schema[i], "%s", schema);
                memset(&out->changeset[i], 0, sizeof(buf));
                out->ts_ms[i] = json_integer_value(json_object_get(row, "ts_ms"));
                part = 0;
                parts = pts;
                expect = v + 1;
            }
        } else if (!out->n || out->bookmark[out->n - 1] != v || pt != part) {
            snprintf(err, errlen, "transaction %016llx of %s lacks part %lld in the lake",
                     (unsigned long long)v, source, part);
            rc = -1;
        }
        if (!rc) {
            if (base64_decode(&out->changeset[out->n - 1], cs, strlen(cs))) {
                snprintf(err, errlen, "transaction %016llx: the changeset is not base64",
                         (unsigned long long)v);
                rc = -1;
            }
            part++;
        }
        json_decref(row);
    }
    if (!rc && out->n && part != parts) {
        snprintf(err, errlen, "the lake has %lld of the %lld parts of transaction %016llx", part,
                 parts, (unsigned long long)out->bookmark[out->n - 1]);
        rc = -1;
    }
    if (!rc && upto != UINT64_MAX && expect != upto + 1) {
        snprintf(
            err, errlen,
            "the lake has no changes for transactions %016llx..%016llx of %s (not delivered yet?)",
            (unsigned long long)expect, (unsigned long long)upto, source);
        rc = -1;
    }
    buf_free(&ans);
    if (rc) pitr_changes_free(out);
    return rc;
}

int pitr_bookmark_at(query_conn *qc, const char *source, int64_t at_ms, uint64_t *bookmark,
                     char *err, size_t errlen)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)at_ms);
    json_t *params = json_pack("[ss]", source, t);
    buf ans = BUF_INIT;
    int rc = run(qc,
                 "SELECT max(_events_json->>'bookmark') AS bookmark FROM events WHERE type = "
                 "'sqlite.changeset' AND "
                 "(_events_json->>'source') = $1 AND epoch_ms(ts) <= CAST($2 AS BIGINT)",
                 params, &ans, err, errlen);
    json_decref(params);
    *bookmark = 0;
    if (!rc) {
        json_t *row = json_loadb(ans.p, ans.len, JSON_DISABLE_EOF_CHECK, NULL);
        const char *bm = json_string_value(json_object_get(row, "bookmark"));
        if (bm && cdc_bookmark_parse(bm, bookmark)) {
            snprintf(err, errlen, "a malformed bookmark in the lake: %s", bm);
            rc = -1;
        }
        json_decref(row);
    }
    buf_free(&ans);
    return rc;
}

typedef struct snaps {
    const char *source;
    uint64_t *v;
    size_t n, cap;
} snaps;

static int one_snapshot(const store_entry *e, void *ud)
{
    snaps *s = ud;
    char source[64], bm[EVENTS_BOOKMARK_LEN + 1];
    const char *ext;
    uint64_t v;
    if (lake_parse_snapshot_key(e->key, source, bm, &ext) || strcmp(ext, "db") ||
        strcmp(source, s->source) || cdc_bookmark_parse(bm, &v))
        return 0;
    if (s->n == s->cap) {
        uint64_t *nv = realloc(s->v, (s->cap = s->cap ? s->cap * 2 : 16) * sizeof *nv);
        if (!nv) return 1;
        s->v = nv;
    }
    s->v[s->n++] = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int pitr_snapshots(store *st, const char *source, uint64_t **bookmarks, size_t *n, char *err,
                   size_t errlen)
{
    char prefix[LAKE_KEY_MAX];
    snprintf(prefix, sizeof prefix, LAKE_SNAPSHOTS_PREFIX "%s/", source);
    snaps s = {source, NULL, 0, 0};
    char why[512];
    int rc = store_list(st, prefix, one_snapshot, &s, why, sizeof why);
    if (rc && rc != STORE_ENOENT) {
        snprintf(err, errlen, "cannot list the snapshots: %s", why);
        free(s.v);
        return -1;
    }
    if (s.n) qsort(s.v, s.n, sizeof *s.v, cmp_u64);
    *bookmarks = s.v;
    *n = s.n;
    return 0;
}

/* Copies a snapshot out of the store into a new file, 8 MiB at a time. */
static int fetch_snapshot(store *st, const char *source, uint64_t snap, const char *path, char *err,
                          size_t errlen)
{
    char key[LAKE_KEY_MAX], bm[EVENTS_BOOKMARK_LEN + 1];
    cdc_bookmark_format(snap, bm);
    lake_snapshot_key(source, bm, "db", key);
    store_entry e;
    char why[512] = "short read";
    if (store_head(st, key, &e, why, sizeof why)) {
        snprintf(err, errlen, "cannot read snapshot %s/%s: %s", source, bm, why);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    buf b = BUF_INIT;
    int rc = 0;
    for (uint64_t off = 0; off < e.size && !rc;) {
        uint64_t len = e.size - off < (8u << 20) ? e.size - off : (8u << 20);
        b.len = 0;
        if (store_get(st, key, off, len, &b, why, sizeof why) || b.len != len) {
            snprintf(err, errlen, "cannot read snapshot %s/%s: %s", source, bm, why);
            rc = -1;
        } else if (write(fd, b.p, b.len) != (ssize_t)b.len) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            rc = -1;
        }
        off += len;
    }
    buf_free(&b);
    if (close(fd) && !rc) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", sql, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
        return -1;
    }
    return 0;
}

int pitr_apply(store *st, const char *source, uint64_t snap, const pitr_changes *changes,
               uint64_t upto, const char *path, int force, int dry_run,
               void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud,
               pitr_report *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    rep->snapshot = snap;
    rep->bookmark = snap;
    size_t k = 0, first = 0;
    while (first < changes->n && changes->bookmark[first] <= snap) first++;
    for (k = first; k < changes->n && changes->bookmark[k] <= upto; k++)
        cdc_changeset_count(changes->changeset[k].p, (int)changes->changeset[k].len, &rep->inserted,
                            &rep->updated, &rep->deleted);
    if (k > first) rep->bookmark = changes->bookmark[k - 1];
    rep->transactions = k - first;
    if (upto != snap && rep->bookmark != upto) {
        snprintf(err, errlen, "the lake has no changes up to %016llx of %s",
                 (unsigned long long)upto, source);
        return -1;
    }
    if (dry_run) return 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%08llx", path,
             (unsigned long long)(evrand_u64() & 0xffffffffu));
    if (fetch_snapshot(st, source, snap, tmp, err, errlen)) {
        unlink(tmp);
        return -1;
    }
    sqlite3 *db = NULL;
    int rc = 0;
    if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open the snapshot: %s", sqlite3_errmsg(db));
        rc = -1;
        goto out;
    }
    char schema[CDC_SCHEMA_HASH_LEN + 1];
    if (cdc_schema_hash(db, schema)) {
        snprintf(err, errlen, "cannot read the snapshot's schema: %s", sqlite3_errmsg(db));
        rc = -1;
        goto out;
    }
    for (size_t i = first; i < k && !rc; i++)
        if (strcmp(changes->schema[i], schema)) {
            snprintf(err, errlen,
                     "transaction %016llx was recorded under another schema than snapshot "
                     "%016llx's: restore "
                     "from a snapshot taken after the schema changed",
                     (unsigned long long)changes->bookmark[i], (unsigned long long)snap);
            rc = -1;
        }
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    if (rc || exec(db, "PRAGMA foreign_keys = OFF; BEGIN IMMEDIATE", err, errlen)) {
        rc = -1;
        goto out;
    }
    for (size_t i = first; i < k && !rc; i++) {
        cdc_conflict c = {""};
        int a = sqlite3changeset_apply_v2(db, (int)changes->changeset[i].len,
                                          changes->changeset[i].p, NULL, cdc_on_conflict, &c, NULL,
                                          NULL, SQLITE_CHANGESETAPPLY_NOSAVEPOINT);
        if (a != SQLITE_OK) {
            snprintf(err, errlen, "transaction %016llx does not fit: %s",
                     (unsigned long long)changes->bookmark[i],
                     c.what[0] ? c.what : sqlite3_errmsg(db));
            rc = -1;
        } else if (progress) {
            progress(ud, i - first + 1, k - first);
        }
    }
    if (!rc) {
        char sql[200];
        snprintf(
            sql, sizeof sql,
            "INSERT OR REPLACE INTO _events_meta(key, value) VALUES ('bookmark', %llu); COMMIT",
            (unsigned long long)rep->bookmark);
        rc = exec(db, sql, err, errlen);
    }
    if (rc) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
    if (db && sqlite3_close(db) != SQLITE_OK && !rc) {
        snprintf(err, errlen, "cannot close %s", tmp);
        rc = -1;
    }
    if (!rc &&
        (force ? rename(tmp, path) : link(tmp, path))) { /* link: never over an existing file */
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (--force replaces it)" : "");
        rc = -1;
    }
    unlink(tmp);
    return rc;
}
