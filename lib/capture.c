/*
 * capture.c - the SQLite hooks of a tracker and the rows they note.
 *
 * The preupdate hook notes, per row of a tracked table that a write touches
 * (table + primary key), the row as it was before its first touch, in the
 * session record format (changeset.c), in a hash of pending rows and in its
 * table's list in touch order. A record (cdc__tracker_record) sets those rows
 * aside; the commit hook frees them, the rollback hook puts them back to
 * pending, so that a write the service committed by itself earlier is not
 * lost from history when a later transaction rolls back.
 *
 * The hooks run under the connection's mutex, as every other use of the
 * tracker does. They cannot fail a write: what they cannot capture is kept
 * in t->err and refused by the next record.
 */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc_int.h"
#include "events_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tracked tables ---------------------------------------------------------- */

static int is_internal(const char *name)
{
    return !strncmp(name, "_events_", 8) || !strncmp(name, "sqlite_", 7);
}

static char *quote_ident(const char *s)
{
    size_t n = strlen(s), q = 0;
    for (size_t i = 0; i < n; i++) q += s[i] == '"';
    char *o = malloc(n + q + 3), *p = o;
    if (!o) return NULL;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *p++ = '"';
        *p++ = s[i];
    }
    *p++ = '"';
    *p = 0;
    return o;
}

static void tinfo_free(tinfo *ti)
{
    sqlite3_finalize(ti->sel);
    free(ti->name);
    free(ti->pk);
    free(ti->pkcol);
    free(ti);
}

/* Reads a table's columns and key; NULL if it has none that SQLite knows. */
static tinfo *tinfo_load(sqlite3 *db, const char *name)
{
    char *q = quote_ident(name);
    char sql[600];
    sqlite3_stmt *st = NULL;
    tinfo *ti = calloc(1, sizeof *ti);
    if (!q || !ti) goto fail;
    snprintf(sql, sizeof sql, "PRAGMA main.table_info(%s)", q);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) goto fail;
    buf cols = BUF_INIT, pk = BUF_INIT;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char *c = quote_ident((const char *)sqlite3_column_text(st, 1));
        int k = sqlite3_column_int(st, 5);
        if (!c) break;
        if (buf_append(&cols, &c, sizeof c)) {
            free(c);
            break;
        }
        /* c is cols' now (the analyzer does not follow it into the buffer) */
        if (buf_putc(&pk, (char)k)) break; // NOLINT(clang-analyzer-unix.Malloc)
        if (k > ti->npk) ti->npk = k;
        ti->ncol++;
    }
    sqlite3_finalize(st);
    st = NULL;
    ti->name = strdup(name);
    ti->pk = (unsigned char *)pk.p;
    ti->nopk = ti->npk == 0;
    int ok = ti->name && ti->ncol > 0 && (size_t)ti->ncol * sizeof(char *) == cols.len;
    if (ok && !ti->nopk) {
        ti->pkcol = calloc((size_t)ti->npk, sizeof *ti->pkcol);
        buf s = BUF_INIT;
        buf_printf(&s, "SELECT * FROM main.%s WHERE ", q);
        for (int i = 0; ti->pkcol && i < ti->ncol; i++)
            if (ti->pk[i]) ti->pkcol[ti->pk[i] - 1] = i;
        for (int k = 0; ti->pkcol && k < ti->npk; k++)
            buf_printf(&s, "%s%s = ?%d", k ? " AND " : "", ((char **)cols.p)[ti->pkcol[k]], k + 1);
        ok =
            ti->pkcol && buf_cstr(&s) &&
            sqlite3_prepare_v3(db, s.p, -1, SQLITE_PREPARE_PERSISTENT, &ti->sel, NULL) == SQLITE_OK;
        buf_free(&s);
    }
    for (size_t i = 0; i < cols.len / sizeof(char *); i++) free(((char **)cols.p)[i]);
    buf_free(&cols);
    free(q);
    q = NULL;
    if (ok) return ti;
    ti->pk = NULL;
    buf_free(&pk);
fail:
    sqlite3_finalize(st);
    if (ti) tinfo_free(ti);
    free(q);
    return NULL;
}

static tinfo *table_get(tracker *t, const char *name, int ncol)
{
    tinfo *ti = t->last_t;
    if (ti && !strcmp(ti->name, name) && ti->ncol == ncol) return ti;
    for (ti = t->tables; ti; ti = ti->next)
        if (!strcmp(ti->name, name)) break;
    if (ti && ti->ncol != ncol) { /* ALTER TABLE ADD COLUMN: read it again */
        if (ti->head) {
            snprintf(t->err, sizeof t->err,
                     "table %s changed shape while changes to it were pending: change schemas in a "
                     "transaction of their own",
                     name);
            return NULL;
        }
        tinfo **pp = &t->tables;
        while (*pp != ti) pp = &(*pp)->next;
        *pp = ti->next;
        tinfo_free(ti);
        ti = NULL;
    }
    if (!ti) {
        if (!(ti = tinfo_load(t->db, name))) {
            snprintf(t->err, sizeof t->err, "cannot read the columns of table %s", name);
            return NULL;
        }
        ti->next = t->tables;
        t->tables = ti;
    }
    t->last_t = ti;
    return ti;
}

/* ---- pending rows -------------------------------------------------------------- */

static uint64_t hash_key(const tinfo *ti, const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)ti;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static entry *find(tracker *t, const tinfo *ti, uint64_t h, const unsigned char *pk, size_t n)
{
    if (!t->nbucket) return NULL;
    for (entry *e = t->hash[h & (t->nbucket - 1)]; e; e = e->hnext)
        if (e->hash == h && e->t == ti && e->pklen == n && !memcmp(e->data, pk, n)) return e;
    return NULL;
}

static int grow(tracker *t)
{
    size_t nb = t->nbucket ? t->nbucket * 2 : 1024;
    entry **h = calloc(nb, sizeof *h);
    if (!h) return -1;
    for (size_t i = 0; i < t->nbucket; i++)
        for (entry *e = t->hash[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = h[e->hash & (nb - 1)];
            h[e->hash & (nb - 1)] = e;
        }
    free(t->hash);
    t->hash = h;
    t->nbucket = nb;
    return 0;
}

static void link_entry(tracker *t, entry *e)
{
    size_t i = e->hash & (t->nbucket - 1);
    e->hnext = t->hash[i];
    t->hash[i] = e;
    e->tnext = NULL;
    if (e->t->tail)
        e->t->tail->tnext = e;
    else
        e->t->head = e;
    e->t->tail = e;
    t->nentry++;
}

static void unlink_hash(tracker *t, entry *e)
{
    entry **pp = &t->hash[e->hash & (t->nbucket - 1)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    t->nentry--;
}

typedef int (*value_fn)(sqlite3 *, int, sqlite3_value **);

/*
 * Notes the row whose key is in the old (side 0) or new (side 1) values, as
 * it was: the old values when present, else "did not exist".
 */
static void touch(tracker *t, tinfo *ti, value_fn side, int with_old, buf *key)
{
    key->len = 0;
    for (int k = 0; k < ti->npk; k++) {
        sqlite3_value *v;
        if (side(t->db, ti->pkcol[k], &v) != SQLITE_OK) goto oom;
        if (sqlite3_value_type(v) == SQLITE_NULL) {
            if (t->strict || t->own_tx)
                snprintf(t->err, sizeof t->err,
                         "a row of table %s has NULL in its PRIMARY KEY: it cannot be recorded",
                         ti->name);
            return;
        }
        if (cdc__put_value(key, v)) goto oom;
    }
    uint64_t h = hash_key(ti, (unsigned char *)key->p, key->len);
    int indirect = sqlite3_preupdate_depth(t->db) > 0;
    entry *seen = find(t, ti, h, (unsigned char *)key->p, key->len);
    if (seen) {
        if (!indirect) seen->indirect = 0;
        return;
    }
    size_t pklen = key->len;
    if (with_old)
        for (int i = 0; i < ti->ncol; i++) {
            sqlite3_value *v;
            if (sqlite3_preupdate_old(t->db, i, &v) != SQLITE_OK || cdc__put_value(key, v))
                goto oom;
        }
    entry *e = malloc(sizeof *e + key->len);
    if (!e || ((t->nentry + 1) * 2 > t->nbucket && grow(t))) {
        free(e);
        goto oom;
    }
    e->t = ti;
    e->hash = h;
    e->indirect = indirect;
    e->pklen = pklen;
    e->oldlen = key->len - pklen;
    if (key->len) memcpy(e->data, key->p, key->len);
    link_entry(t, e);
    return;
oom:
    snprintf(t->err, sizeof t->err, "out of memory while recording a change to %s", ti->name);
}

static void on_preupdate(void *ud, sqlite3 *db, int op, const char *zdb, const char *ztab,
                         sqlite3_int64 k1, sqlite3_int64 k2)
{
    (void)k1, (void)k2;
    tracker *t = ud;
    if (strcmp(zdb, "main") || is_internal(ztab)) return;
    tinfo *ti = table_get(t, ztab, sqlite3_preupdate_count(db));
    if (!ti) return;
    if (ti->nopk) {
        if ((t->strict || t->own_tx) && !t->err[0])
            snprintf(
                t->err, sizeof t->err,
                "table %s has no PRIMARY KEY: libevents records changes only of tables with one",
                ztab);
        return;
    }
    buf key = BUF_INIT;
    if (op == SQLITE_INSERT) {
        touch(t, ti, sqlite3_preupdate_new, 0, &key);
    } else if (op == SQLITE_DELETE) {
        touch(t, ti, sqlite3_preupdate_old, 1, &key);
    } else {
        touch(t, ti, sqlite3_preupdate_old, 1, &key);
        /* a new key: that row did not exist before (or its DELETE was seen first) */
        touch(t, ti, sqlite3_preupdate_new, 0, &key);
    }
    buf_free(&key);
}

/* Puts entries recorded in a transaction that rolled back back to pending (they are older). */
static void on_rollback(void *ud)
{
    tracker *t = ud;
    for (entry *e = t->recorded, *next; e; e = next) {
        next = e->tnext;
        entry *cur = find(t, e->t, e->hash, e->data, e->pklen);
        if (cur) { /* touched again after the record: the older one holds */
            unlink_hash(t, cur);
            tinfo *ti = cur->t;
            entry **pp = &ti->head, *prev = NULL;
            while (*pp != cur) prev = *pp, pp = &(*pp)->tnext;
            *pp = cur->tnext;
            if (ti->tail == cur) ti->tail = prev;
            free(cur);
        }
        link_entry(t, e);
    }
    t->recorded = NULL;
    t->own_tx = 0;
    t->err[0] = 0; /* what went wrong went away with the transaction */
}

static int on_commit(void *ud)
{
    tracker *t = ud;
    for (entry *e = t->recorded, *next; e; e = next) {
        next = e->tnext;
        free(e);
    }
    t->recorded = NULL;
    t->own_tx = 0;
    return 0;
}

/* ---- the tracker's capture ------------------------------------------------------- */

int cdc__capture_start(tracker *t)
{
    sqlite3 *db = t->db;
    void *prev_c = sqlite3_commit_hook(db, on_commit, t);
    void *prev_r = sqlite3_rollback_hook(db, on_rollback, t);
    void *prev_p = sqlite3_preupdate_hook(db, on_preupdate, t);
    if (prev_c || prev_r || prev_p) {
        sqlite3_commit_hook(db, NULL, prev_c);
        sqlite3_rollback_hook(db, NULL, prev_r);
        sqlite3_preupdate_hook(db, NULL, prev_p);
        return events__fail(
            EVENTS_ESTATE,
            "events_track: the connection has a commit, rollback or preupdate hook of "
            "its own; libevents needs them");
    }
    return EVENTS_OK;
}

void cdc__capture_stop(tracker *t)
{
    sqlite3_commit_hook(t->db, NULL, NULL);
    sqlite3_rollback_hook(t->db, NULL, NULL);
    sqlite3_preupdate_hook(t->db, NULL, NULL);
}

void cdc__capture_set_aside(tracker *t)
{
    for (tinfo *ti = t->tables; ti; ti = ti->next) {
        for (entry *e = ti->head, *next; e; e = next) {
            next = e->tnext;
            unlink_hash(t, e);
            e->tnext = t->recorded;
            t->recorded = e;
        }
        ti->head = ti->tail = NULL;
    }
}

void cdc__capture_free(tracker *t)
{
    for (tinfo *ti = t->tables, *next; ti; ti = next) {
        next = ti->next;
        for (entry *e = ti->head, *en; e; e = en) en = e->tnext, free(e);
        tinfo_free(ti);
    }
    for (entry *e = t->recorded, *next; e; e = next) next = e->tnext, free(e);
    free(t->hash);
}
