/*
 * changeset.c - the pending rows of a tracker as one changeset in the change
 * log (cdc__tracker_record), and the session record format it is written in.
 *
 * Capture works like SQLite's session extension, written here for speed
 * (bench/cdc): the preupdate hook (capture.c) keeps, per touched row (table +
 * primary key), the row's values before its first touch, serialized in the
 * session record format; a record reads each such row again and writes what
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
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc_int.h"
#include "emitter_int.h"
#include "events_int.h"
#include "evtime.h"

#include <stdlib.h>
#include <string.h>

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

size_t cdc__get_varint(const unsigned char *p, const unsigned char *end, uint64_t *v)
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

int cdc__put_value(buf *b, sqlite3_value *v)
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

size_t cdc__field_len(const unsigned char *p, const unsigned char *end)
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
        size_t k = cdc__get_varint(p + 1, end, &n);
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
        size_t k = cdc__get_varint(p + 1, end, &n);
        const void *q = p + 1 + k;
        return *p == SQLITE_TEXT ? sqlite3_bind_text(st, i, q, (int)n, SQLITE_STATIC)
                                 : sqlite3_bind_blob(st, i, q, (int)n, SQLITE_STATIC);
    }
    default: return sqlite3_bind_null(st, i);
    }
}
/* ---- recording ------------------------------------------------------------------ */

/* Field offsets of a record of n fields at p; 0 if malformed. */
static int split_fields(const unsigned char *p, size_t len, int n, size_t *off, size_t *flen)
{
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t k = cdc__field_len(p + o, p + len);
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
        o += cdc__field_len(pk + o, pk + e->pklen);
    }
    int s = sqlite3_step(sel);
    cur->len = 0;
    int exists = s == SQLITE_ROW;
    if (exists)
        for (int i = 0; i < ti->ncol; i++)
            if (cdc__put_value(cur, sqlite3_column_value(sel, i)))
                *err = events__fail(EVENTS_ENOMEM, "out of memory");
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        *err =
            events__fail(EVENTS_EDB, "cannot read table %s: %s", ti->name, sqlite3_errmsg(t->db));
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    if (*err || (!exists && !e->oldlen)) return 0;
    if (exists && !split_fields((unsigned char *)cur->p, cur->len, ti->ncol, coff, clen)) return 0;
    if (e->oldlen && !split_fields(old, e->oldlen, ti->ncol, off, flen)) {
        *err = events__fail(EVENTS_EDB, "a captured row of %s is damaged", ti->name);
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
    *err = events__fail(EVENTS_ENOMEM, "out of memory");
    return 0;
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

/* Appends the change of every pending row to cs; *nchanges: how many were written. */
static int encode_pending(tracker *t, buf *cs, int *nchanges)
{
    buf cur = BUF_INIT;
    int err = 0;
    size_t cap = 0, *off = NULL, *flen = NULL, *coff = NULL, *clen = NULL;
    for (tinfo *ti = t->tables; ti; ti = ti->next)
        if ((size_t)ti->ncol > cap) cap = (size_t)ti->ncol;
    if (!cap) cap = 1;
    off = malloc(cap * sizeof *off), flen = malloc(cap * sizeof *flen);
    coff = malloc(cap * sizeof *coff), clen = malloc(cap * sizeof *clen);
    if (!off || !flen || !coff || !clen) err = events__fail(EVENTS_ENOMEM, "out of memory");
    for (tinfo *ti = t->tables; ti && !err; ti = ti->next) {
        int header = 0;
        for (entry *e = ti->head; e && !err; e = e->tnext)
            *nchanges += write_change(t, e, cs, &header, &cur, off, flen, coff, clen, &err);
    }
    free(off), free(flen), free(coff), free(clen);
    buf_free(&cur);
    return err;
}

/* Writes changeset cs as transaction bm of the change log, with its outbox row. */
static int log_changeset(tracker *t, uint64_t bm, const buf *cs, int64_t restore_of)
{
    char schema[CDC_SCHEMA_HASH_LEN + 1], now[EVTIME_LEN + 1];
    int err = cdc__tracker_schema(t, schema);
    if (err) return err;
    evtime_format(evtime_now_ms(), now);
    sqlite3_bind_int64(t->ins_change, 1, (sqlite3_int64)bm);
    sqlite3_bind_text(t->ins_change, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(t->ins_change, 3, schema, -1, SQLITE_STATIC);
    sqlite3_bind_blob(t->ins_change, 4, cs->p, (int)cs->len, SQLITE_STATIC);
    if (restore_of >= 0)
        sqlite3_bind_int64(t->ins_change, 5, restore_of);
    else
        sqlite3_bind_null(t->ins_change, 5);
    sqlite3_bind_int64(t->set_meta, 1, (sqlite3_int64)bm);
    sqlite3_bind_int64(t->ins_outbox, 1, (sqlite3_int64)bm);
    if (sqlite3_step(t->ins_change) != SQLITE_DONE || sqlite3_step(t->set_meta) != SQLITE_DONE ||
        sqlite3_step(t->ins_outbox) != SQLITE_DONE)
        err = events__fail(EVENTS_EDB, "cannot write the change log: %s", sqlite3_errmsg(t->db));
    sqlite3_reset(t->ins_change);
    sqlite3_reset(t->set_meta);
    sqlite3_reset(t->ins_outbox);
    sqlite3_clear_bindings(t->ins_change);
    return err;
}

int cdc__tracker_record(tracker *t, int64_t restore_of, uint64_t *bookmark)
{
    *bookmark = 0;
    if (t->err[0]) {
        int rc = events__fail(EVENTS_EINVAL, "%s", t->err);
        t->err[0] = 0;
        return rc;
    }
    if (!t->nentry) return EVENTS_OK;
    buf cs = BUF_INIT;
    int nchanges = 0;
    int err = encode_pending(t, &cs, &nchanges);
    /* the next number after what this transaction sees: records of other connections, and of
     * this transaction before a ROLLBACK TO, are counted as they are */
    uint64_t bm = 0;
    if (!err && nchanges && !(err = cdc__tracker_bookmark(t, &bm)))
        err = log_changeset(t, ++bm, &cs, restore_of);
    buf_free(&cs);
    if (err) return err;
    cdc__capture_set_aside(t);
    if (nchanges) {
        *bookmark = bm;
        if (t->em) emitter__note_outbox(t->em, sqlite3_last_insert_rowid(t->db));
    }
    return EVENTS_OK;
}
