/*
 * cdc.c - tracking a connection: capture, changesets, bookmarks, recorded
 * transactions (events_track, events_exec, events_tx_*, events_bookmark).
 *
 * Capture works like SQLite's session extension, written here for speed
 * (bench/cdc): the preupdate hook keeps, per touched row (table + primary
 * key), the row's values before its first touch, serialized in the session
 * record format; tracker_record reads each such row again and writes what
 * differs as an INSERT, UPDATE or DELETE change. The changeset format (see
 * the session extension's source, "CHANGESET FORMAT"):
 *
 *   per table:  'T', varint column count, one byte per column (its position in
 *               the primary key, 0 if none), the table name, NUL
 *   per change: op (0x12 INSERT, 0x17 UPDATE, 0x09 DELETE), 0 (not indirect),
 *               old record (DELETE, UPDATE), new record (INSERT, UPDATE)
 *   record:     per column a type byte (0 undefined, 1 integer + 8 bytes
 *               big-endian, 2 real + 8 bytes, 3 text / 4 blob + varint length
 *               + bytes, 5 NULL); in an UPDATE the old record holds the key
 *               and the changed columns, the new one the changed columns
 *
 * The changesets are applied, inverted and combined with the session
 * extension itself (restore.c); tests/test_cdc.c holds the bytes to what the
 * extension writes for the same transactions.
 *
 * Transactions that roll back: their changes rows roll back with them, and
 * the entries they recorded go back to pending (the rollback hook), so that
 * a write the service committed by itself earlier is not lost from history.
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc.h"
#include "codec.h"
#include "emitter_int.h"
#include "evrand.h"
#include "evtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char CDC_SCHEMA_SQL[] =
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

void bookmark_format(uint64_t b, char out[EVENTS_BOOKMARK_LEN + 1])
{
    snprintf(out, EVENTS_BOOKMARK_LEN + 1, "%016llx", (unsigned long long)b);
}

int bookmark_parse(const char *s, uint64_t *out)
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

/* ---- the record format ------------------------------------------------------- */

static int put_varint(buf *b, uint64_t v)
{
    unsigned char tmp[10];
    int n = 0;
    if (v & ((uint64_t)0xff000000 << 32)) {
        unsigned char p[9];
        p[8] = (unsigned char)v;
        v >>= 8;
        for (int i = 7; i >= 0; i--) p[i] = (unsigned char)((v & 0x7f) | 0x80), v >>= 7;
        return buf_append(b, p, 9);
    }
    do tmp[n++] = (unsigned char)((v & 0x7f) | 0x80), v >>= 7;
    while (v);
    tmp[0] &= 0x7f;
    unsigned char p[10];
    for (int i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return buf_append(b, p, (size_t)n);
}

static size_t get_varint(const unsigned char *p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 9 && p + i < end; i++) {
        if (i == 8) {
            *v = x << 8 | p[i];
            return 9;
        }
        x = x << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* Appends one field: type byte and payload. */
static int put_value(buf *b, sqlite3_value *v)
{
    int t = sqlite3_value_type(v);
    unsigned char be[9];
    be[0] = (unsigned char)t;
    switch (t) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT: {
        uint64_t u;
        if (t == SQLITE_INTEGER) {
            u = (uint64_t)sqlite3_value_int64(v);
        } else {
            double d = sqlite3_value_double(v);
            memcpy(&u, &d, 8);
        }
        for (int i = 0; i < 8; i++) be[1 + i] = (unsigned char)(u >> (56 - 8 * i));
        return buf_append(b, be, 9);
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        const void *p =
            t == SQLITE_TEXT ? (const void *)sqlite3_value_text(v) : sqlite3_value_blob(v);
        size_t n = (size_t)sqlite3_value_bytes(v);
        return buf_putc(b, (char)t) || put_varint(b, n) || buf_append(b, p, n);
    }
    default: return buf_putc(b, SQLITE_NULL);
    }
}

/* The length of the field at p (type byte included), or 0 if malformed. */
static size_t field_len(const unsigned char *p, const unsigned char *end)
{
    if (p >= end) return 0;
    switch (*p) {
    case 0:
    case SQLITE_NULL: return 1;
    case SQLITE_INTEGER:
    case SQLITE_FLOAT: return end - p >= 9 ? 9 : 0;
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        uint64_t n;
        size_t k = get_varint(p + 1, end, &n);
        if (!k || n > (uint64_t)(end - p - 1 - (ptrdiff_t)k)) return 0;
        return 1 + k + (size_t)n;
    }
    default: return 0;
    }
}

/* Binds the field at p to parameter i. */
static int bind_field(sqlite3_stmt *st, int i, const unsigned char *p, const unsigned char *end)
{
    uint64_t u = 0, n = 0;
    switch (*p) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        for (int k = 0; k < 8; k++) u = u << 8 | p[1 + k];
        if (*p == SQLITE_INTEGER) return sqlite3_bind_int64(st, i, (sqlite3_int64)u);
        double d;
        memcpy(&d, &u, 8);
        return sqlite3_bind_double(st, i, d);
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        size_t k = get_varint(p + 1, end, &n);
        const void *q = p + 1 + k;
        return *p == SQLITE_TEXT ? sqlite3_bind_text(st, i, q, (int)n, SQLITE_STATIC)
                                 : sqlite3_bind_blob(st, i, q, (int)n, SQLITE_STATIC);
    }
    default: return sqlite3_bind_null(st, i);
    }
}

/* ---- tracked tables ---------------------------------------------------------- */

typedef struct entry entry;
struct entry {
    entry *hnext; /* hash chain */
    entry *tnext; /* the table's list, in touch order */
    struct tinfo *t;
    uint64_t hash;
    size_t pklen, oldlen; /* oldlen 0: the row did not exist */
    int indirect; /* every write to the row came from a trigger (the session extension's flag) */
    unsigned char data[]; /* pk fields (key columns in key order), then old fields (all columns) */
};

typedef struct tinfo {
    struct tinfo *next;
    char *name;
    int ncol, npk;
    int nopk;           /* no PRIMARY KEY: not tracked */
    unsigned char *pk;  /* per column: its position in the key (1-based), 0 if none */
    int *pkcol;         /* the key's columns, in key order */
    sqlite3_stmt *sel;  /* the row by key, all columns */
    entry *head, *tail; /* pending entries */
} tinfo;

struct tracker {
    sqlite3 *db;
    int refs;
    tinfo *tables;
    tinfo *last_t; /* the hook's one-entry cache */
    entry **hash;
    size_t nbucket, nentry;
    entry *recorded; /* recorded in the open transaction: back to pending if it rolls back */
    int strict;      /* inside a libevents call: writes to tables without a key fail */
    int own_tx;      /* events_tx_begin is open (and so, libevents' as well); the hooks clear it */
    char err[300];   /* what the hook could not capture ("" if all well) */
    char source[64];
    int prune_on_snapshot;
    int schema_cookie; /* schema_version the cached hash and table info belong to */
    char schema[17];
    sqlite3_stmt *ins_change, *set_meta, *ins_outbox;
    sqlite3_stmt *get_meta; /* the bookmark in _events_meta (tracker_bookmark) */
    /*
     * The emitter whose outbox the records feed (told of each row), or NULL. It holds one
     * of refs while attached, so that the connection stays tracked while it is open; its
     * close detaches it under the connection's mutex, which every use of em holds.
     */
    events_emitter *em;
    int owns_db; /* an emitter's own connection, left to the collections when it closed */
    tracker *next;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static tracker *registry;

tracker *tracker_of(sqlite3 *db)
{
    pthread_mutex_lock(&reg_mu);
    tracker *t = registry;
    while (t && t->db != db) t = t->next;
    pthread_mutex_unlock(&reg_mu);
    return t;
}

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
        if (put_value(key, v)) goto oom;
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
            if (sqlite3_preupdate_old(t->db, i, &v) != SQLITE_OK || put_value(key, v)) goto oom;
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

/* ---- schema ---------------------------------------------------------------------- */

int cdc_schema_hash(sqlite3 *db, char out[17])
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
    memcpy(out, hex, 16);
    out[16] = 0;
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

int tracker_schema(tracker *t, char out[17])
{
    int c = schema_cookie(t->db);
    if (c < 0)
        return ev_fail(EVENTS_EDB, "cannot read the schema version: %s", sqlite3_errmsg(t->db));
    if (c != t->schema_cookie || !t->schema[0]) {
        if (cdc_schema_hash(t->db, t->schema))
            return ev_fail(EVENTS_EDB, "cannot read the schema: %s", sqlite3_errmsg(t->db));
        t->schema_cookie = c;
    }
    memcpy(out, t->schema, 17);
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

/* ---- recording ------------------------------------------------------------------ */

/* Field offsets of a record of n fields at p; 0 if malformed. */
static int split_fields(const unsigned char *p, size_t len, int n, size_t *off, size_t *flen)
{
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t k = field_len(p + o, p + len);
        if (!k) return 0;
        off[i] = o;
        flen[i] = k;
        o += k;
    }
    return o == len;
}

/* Appends the change of one pending row to cs (the table header first, once). Returns 1 if a change
 * was written. */
static int write_change(tracker *t, entry *e, buf *cs, int *header, buf *cur, size_t *off,
                        size_t *flen, size_t *coff, size_t *clen, int *err)
{
    tinfo *ti = e->t;
    const unsigned char *pk = e->data, *old = e->data + e->pklen;
    sqlite3_stmt *sel = ti->sel;
    size_t o = 0;
    for (int k = 0; k < ti->npk; k++) {
        bind_field(sel, k + 1, pk + o, pk + e->pklen);
        o += field_len(pk + o, pk + e->pklen);
    }
    int s = sqlite3_step(sel);
    cur->len = 0;
    int exists = s == SQLITE_ROW;
    if (exists)
        for (int i = 0; i < ti->ncol; i++)
            if (put_value(cur, sqlite3_column_value(sel, i)))
                *err = ev_fail(EVENTS_ENOMEM, "out of memory");
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        *err = ev_fail(EVENTS_EDB, "cannot read table %s: %s", ti->name, sqlite3_errmsg(t->db));
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    if (*err || (!exists && !e->oldlen)) return 0;
    if (exists && !split_fields((unsigned char *)cur->p, cur->len, ti->ncol, coff, clen)) return 0;
    if (e->oldlen && !split_fields(old, e->oldlen, ti->ncol, off, flen)) {
        *err = ev_fail(EVENTS_EDB, "a captured row of %s is damaged", ti->name);
        return 0;
    }
    int op;
    if (!e->oldlen) {
        op = SQLITE_INSERT;
    } else if (!exists) {
        op = SQLITE_DELETE;
    } else {
        int changed = 0;
        for (int i = 0; i < ti->ncol && !changed; i++)
            changed = flen[i] != clen[i] || memcmp(old + off[i], cur->p + coff[i], flen[i]);
        if (!changed) return 0;
        op = SQLITE_UPDATE;
    }
    if (!*header) {
        if (buf_putc(cs, 'T') || put_varint(cs, (uint64_t)ti->ncol) ||
            buf_append(cs, ti->pk, (size_t)ti->ncol) ||
            buf_append(cs, ti->name, strlen(ti->name) + 1))
            goto oom;
        *header = 1;
    }
    if (buf_putc(cs, (char)op) || buf_putc(cs, (char)e->indirect)) goto oom;
    if (op == SQLITE_INSERT) {
        if (buf_append(cs, cur->p, cur->len)) goto oom;
    } else if (op == SQLITE_DELETE) {
        if (buf_append(cs, old, e->oldlen)) goto oom;
    } else {
        for (int i = 0; i < ti->ncol; i++) { /* old: key and changed columns */
            int changed = flen[i] != clen[i] || memcmp(old + off[i], cur->p + coff[i], flen[i]);
            if (ti->pk[i] || changed ? buf_append(cs, old + off[i], flen[i]) : buf_putc(cs, 0))
                goto oom;
        }
        for (int i = 0; i < ti->ncol; i++) { /* new: changed columns */
            int changed = !ti->pk[i] &&
                          (flen[i] != clen[i] || memcmp(old + off[i], cur->p + coff[i], flen[i]));
            if (changed ? buf_append(cs, cur->p + coff[i], clen[i]) : buf_putc(cs, 0)) goto oom;
        }
    }
    return 1;
oom:
    *err = ev_fail(EVENTS_ENOMEM, "out of memory");
    return 0;
}

int cdc_exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        int rc = ev_fail(EVENTS_EDB, "%s: %s", sql, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
        return rc;
    }
    return EVENTS_OK;
}

void cdc_changeset_count(const void *p, int n, uint64_t *inserted, uint64_t *updated,
                         uint64_t *deleted)
{
    sqlite3_changeset_iter *it;
    if (sqlite3changeset_start(&it, n, (void *)p) != SQLITE_OK) return;
    while (sqlite3changeset_next(it) == SQLITE_ROW) {
        const char *tab;
        int ncol, op, ind;
        sqlite3changeset_op(it, &tab, &ncol, &op, &ind);
        if (op == SQLITE_INSERT)
            ++*inserted;
        else if (op == SQLITE_UPDATE)
            ++*updated;
        else
            ++*deleted;
    }
    sqlite3changeset_finalize(it);
}

int tracker_record(tracker *t, int64_t restore_of, uint64_t *bookmark)
{
    *bookmark = 0;
    if (t->err[0]) {
        int rc = ev_fail(EVENTS_EINVAL, "%s", t->err);
        t->err[0] = 0;
        return rc;
    }
    if (!t->nentry) return EVENTS_OK;
    buf cs = BUF_INIT, cur = BUF_INIT;
    int err = 0, nchanges = 0;
    size_t cap = 0, *off = NULL, *flen = NULL, *coff = NULL, *clen = NULL;
    for (tinfo *ti = t->tables; ti; ti = ti->next)
        if ((size_t)ti->ncol > cap) cap = (size_t)ti->ncol;
    if (!cap) cap = 1;
    off = malloc(cap * sizeof *off), flen = malloc(cap * sizeof *flen);
    coff = malloc(cap * sizeof *coff), clen = malloc(cap * sizeof *clen);
    if (!off || !flen || !coff || !clen) err = ev_fail(EVENTS_ENOMEM, "out of memory");
    for (tinfo *ti = t->tables; ti && !err; ti = ti->next) {
        int header = 0;
        for (entry *e = ti->head; e && !err; e = e->tnext)
            nchanges += write_change(t, e, &cs, &header, &cur, off, flen, coff, clen, &err);
    }
    free(off), free(flen), free(coff), free(clen);
    buf_free(&cur);
    /* the next number after what this transaction sees: records of other connections, and of
     * this transaction before a ROLLBACK TO, are counted as they are */
    uint64_t bm = 0;
    if (!err && nchanges && !(err = tracker_bookmark(t, &bm))) {
        char schema[17], now[EVTIME_LEN + 1], bmv[32];
        bm++;
        evtime_format(evtime_now_ms(), now);
        if (!(err = tracker_schema(t, schema))) {
            sqlite3_bind_int64(t->ins_change, 1, (sqlite3_int64)bm);
            sqlite3_bind_text(t->ins_change, 2, now, -1, SQLITE_STATIC);
            sqlite3_bind_text(t->ins_change, 3, schema, -1, SQLITE_STATIC);
            sqlite3_bind_blob(t->ins_change, 4, cs.p, (int)cs.len, SQLITE_STATIC);
            if (restore_of >= 0)
                sqlite3_bind_int64(t->ins_change, 5, restore_of);
            else
                sqlite3_bind_null(t->ins_change, 5);
            snprintf(bmv, sizeof bmv, "%llu", (unsigned long long)bm);
            sqlite3_bind_int64(t->set_meta, 1, (sqlite3_int64)bm);
            sqlite3_bind_int64(t->ins_outbox, 1, (sqlite3_int64)bm);
            if (sqlite3_step(t->ins_change) != SQLITE_DONE ||
                sqlite3_step(t->set_meta) != SQLITE_DONE ||
                sqlite3_step(t->ins_outbox) != SQLITE_DONE)
                err = ev_fail(EVENTS_EDB, "cannot write the change log: %s", sqlite3_errmsg(t->db));
            sqlite3_reset(t->ins_change);
            sqlite3_reset(t->set_meta);
            sqlite3_reset(t->ins_outbox);
            sqlite3_clear_bindings(t->ins_change);
        }
    }
    buf_free(&cs);
    if (err) return err;
    /* the entries are done: kept aside until the transaction ends */
    for (tinfo *ti = t->tables; ti; ti = ti->next) {
        for (entry *e = ti->head, *next; e; e = next) {
            next = e->tnext;
            unlink_hash(t, e);
            e->tnext = t->recorded;
            t->recorded = e;
        }
        ti->head = ti->tail = NULL;
    }
    if (nchanges) {
        *bookmark = bm;
        if (t->em) emitter_note_outbox(t->em, sqlite3_last_insert_rowid(t->db));
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
    for (tinfo *ti = t->tables, *next; ti; ti = next) {
        next = ti->next;
        for (entry *e = ti->head, *en; e; e = en) en = e->tnext, free(e);
        tinfo_free(ti);
    }
    for (entry *e = t->recorded, *next; e; e = next) next = e->tnext, free(e);
    free(t->hash);
    sqlite3_finalize(t->ins_change);
    sqlite3_finalize(t->set_meta);
    sqlite3_finalize(t->ins_outbox);
    sqlite3_finalize(t->get_meta);
    free(t);
}

int events_track(sqlite3 *db, const events_track_config *cfg)
{
    if (!db) return ev_fail(EVENTS_EINVAL, "events_track: no database");
    if (cfg && cfg->source && !source_valid(cfg->source))
        return ev_fail(EVENTS_EINVAL, "source \"%s\" must be 1-32 characters of [0-9A-Za-z_.-]",
                       cfg->source);
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
    int rc = EVENTS_OK;
    if (t) {
        t->refs++;
        if (cfg && cfg->prune_on_snapshot) t->prune_on_snapshot = 1;
        goto out;
    }
    if (!sqlite3_get_autocommit(db)) {
        rc = ev_fail(EVENTS_ESTATE, "events_track: start tracking outside a transaction");
        goto out;
    }
    const char *f = sqlite3_db_filename(db, "main");
    if (!f || !*f) {
        rc = ev_fail(EVENTS_EINVAL,
                     "events_track: the database must be a file (the sender reads it on a "
                     "connection of its own)");
        goto out;
    }
    if ((rc = cdc_exec(db, "PRAGMA journal_mode = WAL")) || (rc = cdc_exec(db, CDC_SCHEMA_SQL)))
        goto out;
    t = calloc(1, sizeof *t);
    if (!t) {
        rc = ev_fail(EVENTS_ENOMEM, "out of memory");
        goto out;
    }
    t->db = db;
    t->refs = 1;
    t->prune_on_snapshot = cfg && cfg->prune_on_snapshot;
    char src[64] = "";
    if (meta_get(db, "source", NULL, src, sizeof src) < 0) {
        rc = ev_fail(EVENTS_EDB, "cannot read _events_meta: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (cfg && cfg->source) {
        snprintf(t->source, sizeof t->source, "%s", cfg->source);
    } else if (src[0]) {
        snprintf(t->source, sizeof t->source, "%s", src);
    } else {
        snprintf(t->source, sizeof t->source, "db-%012llx",
                 (unsigned long long)(evrand_u64() & 0xffffffffffffull));
    }
    if (strcmp(src, t->source)) {
        sqlite3_stmt *st;
        int ok = sqlite3_prepare_v2(
                     db, "INSERT OR REPLACE INTO _events_meta(key, value) VALUES ('source', ?)", -1,
                     &st, NULL) == SQLITE_OK;
        if (ok)
            sqlite3_bind_text(st, 1, t->source, -1, SQLITE_STATIC),
                ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_finalize(st);
        if (!ok) {
            rc = ev_fail(EVENTS_EDB, "cannot write _events_meta: %s", sqlite3_errmsg(db));
            goto fail;
        }
    }
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
                           SQLITE_PREPARE_PERSISTENT, &t->get_meta, NULL) != SQLITE_OK) {
        rc = ev_fail(EVENTS_EDB, "cannot prepare the change log's statements: %s",
                     sqlite3_errmsg(db));
        goto fail;
    }
    void *prev_c = sqlite3_commit_hook(db, on_commit, t);
    void *prev_r = sqlite3_rollback_hook(db, on_rollback, t);
    void *prev_p = sqlite3_preupdate_hook(db, on_preupdate, t);
    if (prev_c || prev_r || prev_p) {
        sqlite3_commit_hook(db, NULL, prev_c);
        sqlite3_rollback_hook(db, NULL, prev_r);
        sqlite3_preupdate_hook(db, NULL, prev_p);
        rc = ev_fail(EVENTS_ESTATE,
                     "events_track: the connection has a commit, rollback or preupdate hook of its "
                     "own; libevents needs them");
        goto fail;
    }
    pthread_mutex_lock(&reg_mu);
    t->next = registry;
    registry = t;
    pthread_mutex_unlock(&reg_mu);
    goto out;
fail:
    tracker_free(t);
out:
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
            if (sqlite3_get_autocommit(db) && !cdc_exec(db, "BEGIN IMMEDIATE")) {
                t->strict = 1;
                if (tracker_record(t, -1, &bm) || cdc_exec(db, "COMMIT")) {
                    rc = ev_fail(EVENTS_EDB,
                                 "events_untrack: writes made since the last record are lost from "
                                 "the change log: %s",
                                 events_errmsg());
                    cdc_exec(db, "ROLLBACK");
                }
            }
        }
        sqlite3_commit_hook(db, NULL, NULL);
        sqlite3_rollback_hook(db, NULL, NULL);
        sqlite3_preupdate_hook(db, NULL, NULL);
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
    if (!db) return ev_fail(EVENTS_EINVAL, "events_untrack: no database");
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
    sqlite3 *close_db = NULL;
    int rc = t ? tracker_release(t, &close_db)
               : ev_fail(EVENTS_ESTATE, "events_untrack: the connection is not tracked");
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    /* _v2: a statement the closed emitter's outbox has not finalized yet does not keep it open */
    if (close_db) sqlite3_close_v2(close_db);
    return rc;
}

tracker *tracker_lock(sqlite3 *db)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
    if (t)
        t->strict++;
    else
        sqlite3_mutex_leave(sqlite3_db_mutex(db));
    return t;
}

int tracker_in_own_tx_of(sqlite3 *db)
{
    tracker *t = tracker_lock(db);
    int in = t && tracker_in_own_tx(t);
    if (t) tracker_leave(t);
    return in;
}

void tracker_enter(tracker *t)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(t->db));
    t->strict++;
}

void tracker_leave(tracker *t)
{
    t->strict--;
    sqlite3_mutex_leave(sqlite3_db_mutex(t->db));
}

sqlite3 *tracker_db(tracker *t)
{
    return t->db;
}

int tracker_bookmark(tracker *t, uint64_t *out)
{
    int s = sqlite3_step(t->get_meta);
    *out = s == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(t->get_meta, 0) : 0;
    int rc = s == SQLITE_ROW || s == SQLITE_DONE
                 ? EVENTS_OK
                 : ev_fail(EVENTS_EDB, "cannot read the bookmark: %s", sqlite3_errmsg(t->db));
    sqlite3_reset(t->get_meta);
    return rc;
}

const char *tracker_source(tracker *t)
{
    return t->source;
}
int tracker_prune_on_snapshot(tracker *t)
{
    return t->prune_on_snapshot;
}
int tracker_in_own_tx(tracker *t)
{
    return t->own_tx && !sqlite3_get_autocommit(t->db);
}

void tracker_attach_emitter(sqlite3 *db, events_emitter *em)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
    if (t && t->em != em) {
        if (!t->em) t->refs++; /* the emitter's count (a second emitter takes over the first's) */
        t->em = em;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
}

int tracker_detach_emitter(sqlite3 *db, events_emitter *em, int own_db, int *took_db)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
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

int tracker_write(tracker *t, int (*fn)(void *ud), void *ud)
{
    uint64_t bm;
    int rc;
    if (sqlite3_get_autocommit(t->db)) {
        if ((rc = cdc_exec(t->db, "BEGIN IMMEDIATE"))) return rc;
        rc = fn(ud);
        if (!rc) rc = tracker_record(t, -1, &bm);
        if (!rc) rc = cdc_exec(t->db, "COMMIT");
        if (rc)
            cdc_exec(t->db, "ROLLBACK");
        else if (bm && t->em)
            emitter_note_outbox(t->em, -1);
        return rc;
    }
    if ((rc = fn(ud))) return rc;
    /* the service's own transaction: its COMMIT is not ours to see, so record now */
    return tracker_in_own_tx(t) ? EVENTS_OK : tracker_record(t, -1, &bm);
}

/* ---- the API ------------------------------------------------------------------------- */

/* tracker_lock(db), or NULL and an error naming the call. */
static tracker *tracked(sqlite3 *db, const char *what)
{
    tracker *t = db ? tracker_lock(db) : NULL;
    if (!t) ev_fail(EVENTS_ESTATE, "%s: the connection is not tracked (events_track)", what);
    return t;
}

typedef struct exec_arg {
    sqlite3 *db;
    const char *sql;
} exec_arg;

static int run_exec(void *ud)
{
    exec_arg *a = ud;
    return cdc_exec(a->db, a->sql);
}

int events_exec(sqlite3 *db, const char *sql)
{
    tracker *t = tracked(db, "events_exec");
    if (!t) return EVENTS_ESTATE;
    exec_arg a = {db, sql};
    int rc = sql ? tracker_write(t, run_exec, &a) : ev_fail(EVENTS_EINVAL, "events_exec: no SQL");
    tracker_leave(t);
    return rc;
}

int events_tx_begin(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_begin");
    if (!t) return EVENTS_ESTATE;
    int rc = !sqlite3_get_autocommit(db)
                 ? ev_fail(EVENTS_ESTATE, "events_tx_begin: a transaction is already open")
                 : cdc_exec(db, "BEGIN IMMEDIATE");
    if (!rc) t->own_tx = 1; /* writes until the commit are libevents' */
    tracker_leave(t);
    return rc;
}

int events_tx_commit(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_commit");
    if (!t) return EVENTS_ESTATE;
    int rc;
    uint64_t bm;
    if (!tracker_in_own_tx(t)) {
        rc = ev_fail(EVENTS_ESTATE, "events_tx_commit without events_tx_begin");
    } else if (!(rc = tracker_record(t, -1, &bm))) {
        rc = cdc_exec(db, "COMMIT"); /* the commit hook ends own_tx */
    }
    if (!rc && t->em) emitter_note_outbox(t->em, -1); /* under the lock: em may be closing */
    tracker_leave(t);
    return rc; /* on failure the transaction stays open: roll it back */
}

int events_tx_rollback(sqlite3 *db)
{
    tracker *t = tracked(db, "events_tx_rollback");
    if (!t) return EVENTS_ESTATE;
    int rc = EVENTS_OK;
    if (!tracker_in_own_tx(t)) {
        rc = ev_fail(EVENTS_ESTATE, "events_tx_rollback without events_tx_begin");
    } else {
        rc = cdc_exec(db, "ROLLBACK"); /* the rollback hook ends own_tx */
    }
    tracker_leave(t);
    return rc;
}

int events_bookmark(sqlite3 *db, char out[EVENTS_BOOKMARK_LEN + 1])
{
    if (!db || !out) return ev_fail(EVENTS_EINVAL, "events_bookmark: no database");
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    tracker *t = tracker_of(db);
    if (t) {
        uint64_t b;
        int rc = tracker_bookmark(t, &b);
        sqlite3_mutex_leave(sqlite3_db_mutex(db));
        if (rc) {
            out[0] = 0;
            return rc;
        }
        bookmark_format(b, out);
        return EVENTS_OK;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    sqlite3_int64 v = 0;
    if (meta_get(db, "bookmark", &v, NULL, 0) < 0) v = 0; /* never tracked */
    bookmark_format((uint64_t)v, out);
    return EVENTS_OK;
}
