/*
 * collection.c - document collections over a tracked database.
 *
 * A collection is the table NAME(id TEXT PRIMARY KEY, doc TEXT NOT NULL)
 * WITHOUT ROWID, listed in _events_collections. Its writes go through
 * cdc__tracker_write, so each one is recorded with the transaction it belongs to,
 * and the sender turns the recorded changes into collection.* events
 * (expand.c): nothing here writes an event.
 *
 * A collection holds one count of its connection's tracker (so c->t stays
 * valid until events_collection_close) and knows no emitter: the tracker
 * tells whichever emitter is attached, if any, so closing the emitter first
 * leaves every call here working.
 */
#include "cdc_int.h"
#include "emitter_int.h"
#include "events_int.h"
#include "jscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX    255
#define DOC_MAX   (120 * 1024)
#define DOC_DEPTH 63

struct events_collection {
    tracker *t;
    sqlite3 *db;
    char *name;
    size_t max_doc;
    sqlite3_stmt *put, *get, *del, *has, *count, *list, *clear;
};

/* ---- checking input ------------------------------------------------------------- */

static int name_valid(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 64 || !strncmp(s, "_events_", 8) || !strncmp(s, "sqlite_", 7)) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static int utf8_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) ||
            (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static int check_id(const char *id)
{
    if (!id) return events__fail(EVENTS_EINVAL, "a document id is required");
    size_t n = strlen(id);
    if (!n || n > ID_MAX)
        return events__fail(EVENTS_EINVAL, "a document id is 1-%d bytes, not %zu", ID_MAX, n);
    if (!utf8_valid((const unsigned char *)id, n))
        return events__fail(EVENTS_EINVAL, "document id is not valid UTF-8");
    return EVENTS_OK;
}

typedef struct key {
    const char *p;
    size_t n;
} key;

static int key_cmp(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}

/* A document: a JSON object with unique keys at the top; out gets it without whitespace. */
static int check_doc(const events_collection *c, const char *id, const char *json, buf *out)
{
    if (!json) return events__fail(EVENTS_EINVAL, "document %s: no JSON", id);
    size_t n = strlen(json);
    if (n > c->max_doc * 4 + 1024)
        return events__fail(EVENTS_ETOOBIG, "document %s is %zu bytes, over the limit of %zu", id,
                            n, c->max_doc);
    jscan s = {0};
    enum jtype t;
    const char *p = jscan_ws(&s, json, json + n), *end = json + n;
    const char *v = p, *e = jscan_value(&s, p, end, &t);
    if (!e)
        return events__fail(EVENTS_EINVAL, "document %s is not JSON: %s at byte %zu", id, s.err,
                            (size_t)(s.err_at - json));
    if (jscan_ws(&s, e, end) != end)
        return events__fail(EVENTS_EINVAL, "document %s has text after the object, at byte %zu", id,
                            (size_t)(e - json));
    if (t != J_OBJ) return events__fail(EVENTS_EINVAL, "document %s must be a JSON object", id);
    if (s.bad)
        return events__fail(EVENTS_EINVAL, "document %s: %s at byte %zu", id, s.bad,
                            (size_t)(s.bad_at - json));
    if (s.depth > DOC_DEPTH)
        return events__fail(EVENTS_EINVAL, "document %s nests %u levels deep, over the limit of %d",
                            id, s.depth, DOC_DEPTH);
    out->len = 0;
    if (buf_reserve(out, (size_t)(e - v) + 1)) return events__fail(EVENTS_ENOMEM, "out of memory");
    out->len =
        s.ws ? jscan_minify(v, e, out->p) : (memcpy(out->p, v, (size_t)(e - v)), (size_t)(e - v));
    if (out->len > c->max_doc)
        return events__fail(EVENTS_ETOOBIG, "document %s is %zu bytes, over the limit of %zu", id,
                            out->len, c->max_doc);
    /* unique keys at the top: walk the minified object */
    key *keys = NULL;
    size_t nk = 0, cap = 0;
    int rc = EVENTS_OK;
    const char *q = out->p + 1, *qe = out->p + out->len - 1;
    jscan s2 = {0};
    while (q < qe) {
        const char *k = q, *ke = jscan_string(&s2, q, qe + 1);
        if (nk == cap) {
            key *nkeys = realloc(keys, (cap = cap ? cap * 2 : 16) * sizeof *nkeys);
            if (!nkeys) {
                rc = events__fail(EVENTS_ENOMEM, "out of memory");
                break;
            }
            keys = nkeys;
        }
        keys[nk++] = (key){
            k, (size_t)(ke - k)}; /* escaped forms compare as written: good enough to refuse dups */
        q = jscan_value(&s2, ke + 1, qe + 1, &t);
        if (q && q < qe) q++; /* the comma */
        if (!q) break;
    }
    if (!rc && nk > 1) {
        qsort(keys, nk, sizeof *keys, key_cmp);
        for (size_t i = 1; i < nk && !rc; i++)
            if (!key_cmp(&keys[i - 1], &keys[i]))
                rc = events__fail(EVENTS_EINVAL, "document %s has the key %.*s twice", id,
                                  (int)keys[i].n, keys[i].p);
    }
    free(keys);
    return rc;
}

/* ---- opening ------------------------------------------------------------------------ */

static char *quote(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(n + 3);
    if (q) snprintf(q, n + 3, "\"%s\"", s); /* names are [a-z0-9_]: no quote inside */
    return q;
}

/* 1 if the table exists with the collection's shape, 0 if it does not exist, -1 if it is something
 * else. */
static int table_shape(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int ncol = 0, ok = 1;
    if (sqlite3_prepare_v2(db, "SELECT name, pk, upper(type) FROM pragma_table_info(?)", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(st, 0),
                   *ty = (const char *)sqlite3_column_text(st, 2);
        int pk = sqlite3_column_int(st, 1);
        if (ncol == 0) ok &= !strcmp(c, "id") && pk == 1 && !strcmp(ty, "TEXT");
        if (ncol == 1) ok &= !strcmp(c, "doc") && pk == 0;
        ncol++;
    }
    sqlite3_finalize(st);
    return ncol == 0 ? 0 : ok && ncol == 2 ? 1 : -1;
}

static int prepare(events_collection *c, sqlite3_stmt **st, const char *fmt)
{
    char *q = quote(c->name), sql[400];
    if (!q) return -1;
    /* fmt names the table once or twice */
    // cppcheck-suppress wrongPrintfScanfArgNum
    snprintf(sql, sizeof sql, fmt, q, q);
    free(q);
    return sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK
               ? 0
               : -1;
}

void events_collection_close(events_collection *c)
{
    if (!c) return;
    sqlite3_finalize(c->put);
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->del);
    sqlite3_finalize(c->has);
    sqlite3_finalize(c->count);
    sqlite3_finalize(c->list);
    sqlite3_finalize(c->clear);
    if (c->t) events_untrack(c->db);
    free(c->name);
    free(c);
}

int events_collection_open_db(sqlite3 *db, const char *name, const events_collection_config *cfg,
                              events_collection **out)
{
    if (out) *out = NULL;
    if (!db || !name || !out)
        return events__fail(EVENTS_EINVAL,
                            "events_collection_open: database, name and out are required");
    if (!name_valid(name))
        return events__fail(EVENTS_EINVAL,
                            "collection name \"%s\" must be 1-64 of [a-z0-9_], not starting with "
                            "_events_ or sqlite_",
                            name);
    int rc = events_track(db, NULL); /* counted: the collection's close untracks */
    if (rc) return rc;
    events_collection *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) {
        free(c);
        events_untrack(db);
        return events__fail(EVENTS_ENOMEM, "out of memory");
    }
    c->db = db;
    c->t = cdc__tracker_of(db);
    c->max_doc = cfg && cfg->max_doc_bytes ? cfg->max_doc_bytes : DOC_MAX;
    cdc__tracker_enter(c->t);
    int shape = table_shape(db, name);
    char *q = quote(name), sql[400];
    if (shape < 0) {
        rc = events__fail(EVENTS_EINVAL,
                          "table %s exists and is not a collection (id TEXT PRIMARY KEY, doc)",
                          name);
    } else if (!q) {
        rc = events__fail(EVENTS_ENOMEM, "out of memory");
    } else {
        char *e = NULL;
        snprintf(sql, sizeof sql,
                 "CREATE TABLE IF NOT EXISTS %s (id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL) "
                 "WITHOUT ROWID;"
                 "INSERT INTO _events_collections(name, prev) VALUES ('%s', %d) "
                 "ON CONFLICT(name) DO UPDATE SET prev = excluded.prev",
                 q, name, !(cfg && cfg->no_prev));
        if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
            rc = events__fail(EVENTS_EDB, "collection %s: %s", name, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
    }
    free(q);
    if (!rc && (prepare(c, &c->put,
                        "INSERT INTO %s(id, doc) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET doc "
                        "= excluded.doc "
                        "WHERE doc IS NOT excluded.doc") ||
                prepare(c, &c->get, "SELECT doc FROM %s WHERE id = ?1") ||
                prepare(c, &c->del, "DELETE FROM %s WHERE id = ?1") ||
                prepare(c, &c->has, "SELECT 1 FROM %s WHERE id = ?1") ||
                prepare(c, &c->count, "SELECT count(*) FROM %s") ||
                prepare(c, &c->list, "SELECT id, doc FROM %s WHERE id > ?1 ORDER BY id LIMIT ?2") ||
                prepare(c, &c->clear, "DELETE FROM %s")))
        rc = events__fail(EVENTS_EDB, "collection %s: %s", name, sqlite3_errmsg(db));
    cdc__tracker_leave(c->t);
    if (rc) {
        events_collection_close(c);
        return rc;
    }
    *out = c;
    return EVENTS_OK;
}

int events_collection_open(events_emitter *em, const char *name,
                           const events_collection_config *cfg, events_collection **out)
{
    if (out) *out = NULL;
    if (!em) return events__fail(EVENTS_EINVAL, "events_collection_open: no emitter");
    sqlite3 *db = outbox__edb(em->ob);
    if (!db)
        return events__fail(EVENTS_ESTATE,
                            "collections need a database: this emitter is memory-only");
    int rc = events_collection_open_db(db, name, cfg, out);
    if (!rc) cdc__tracker_attach_emitter(db, em);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------ */

typedef struct put_arg {
    events_collection *c;
    size_t n;
    const char *const *ids;
    buf *docs; /* n checked documents */
    int deleting;
    int found;
} put_arg;

static int step_done(events_collection *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? EVENTS_OK
                 : events__fail(EVENTS_EDB, "collection %s: %s", c->name, sqlite3_errmsg(c->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int do_writes(void *ud)
{
    put_arg *a = ud;
    events_collection *c = a->c;
    int rc = EVENTS_OK;
    for (size_t i = 0; i < a->n && !rc; i++) {
        if (a->deleting) {
            sqlite3_bind_text(c->del, 1, a->ids[i], -1, SQLITE_STATIC);
            rc = step_done(c, c->del);
            a->found += sqlite3_changes(c->db);
        } else {
            sqlite3_bind_text(c->put, 1, a->ids[i], -1, SQLITE_STATIC);
            sqlite3_bind_text(c->put, 2, a->docs[i].p, (int)a->docs[i].len, SQLITE_STATIC);
            rc = step_done(c, c->put);
        }
    }
    return rc;
}

static int write_many(events_collection *c, size_t n, const char *const *ids,
                      const char *const *jsons, int deleting, int *found)
{
    if (!c) return events__fail(EVENTS_EINVAL, "no collection");
    if (n && !ids) return events__fail(EVENTS_EINVAL, "no ids");
    buf one = BUF_INIT, *docs = NULL;
    int rc = EVENTS_OK;
    if (!deleting) {
        docs = n == 1 ? &one : calloc(n ? n : 1, sizeof *docs);
        if (!docs) return events__fail(EVENTS_ENOMEM, "out of memory");
        if (!jsons) rc = events__fail(EVENTS_EINVAL, "no documents");
    }
    for (size_t i = 0; i < n && !rc; i++) /* checked before anything is written: all or none */
        if (!(rc = check_id(ids[i])) && !deleting) rc = check_doc(c, ids[i], jsons[i], &docs[i]);
    put_arg a = {c, n, ids, docs, deleting, 0};
    if (!rc) {
        cdc__tracker_enter(c->t);
        rc = cdc__tracker_write(c->t, do_writes, &a);
        cdc__tracker_leave(c->t);
    }
    if (found) *found = a.found;
    if (docs) {
        for (size_t i = 0; i < n; i++) buf_free(&docs[i]);
        if (docs != &one) free(docs);
    }
    return rc;
}

int events_collection_put(events_collection *c, const char *id, const char *json)
{
    return write_many(c, 1, &id, &json, 0, NULL);
}

int events_collection_put_many(events_collection *c, size_t n, const char *const *ids,
                               const char *const *jsons)
{
    return write_many(c, n, ids, jsons, 0, NULL);
}

int events_collection_delete(events_collection *c, const char *id)
{
    int found = 0;
    int rc = write_many(c, 1, &id, NULL, 1, &found);
    if (!rc && !found)
        rc = events__fail(EVENTS_ENOTFOUND, "collection %s has no document %s", c->name, id);
    return rc;
}

int events_collection_delete_many(events_collection *c, size_t n, const char *const *ids)
{
    return write_many(c, n, ids, NULL, 1, NULL);
}

static int do_clear(void *ud)
{
    events_collection *c = ud;
    return step_done(c, c->clear);
}

int events_collection_clear(events_collection *c)
{
    if (!c) return events__fail(EVENTS_EINVAL, "no collection");
    cdc__tracker_enter(c->t);
    int rc = cdc__tracker_write(c->t, do_clear, c);
    cdc__tracker_leave(c->t);
    return rc;
}

/* ---- reads ---------------------------------------------------------------------------- */

int events_collection_get(events_collection *c, const char *id, char **json)
{
    if (json) *json = NULL;
    if (!c || !json)
        return events__fail(EVENTS_EINVAL,
                            "events_collection_get: collection and out are required");
    int rc = check_id(id);
    if (rc) return rc;
    cdc__tracker_enter(c->t);
    sqlite3_bind_text(c->get, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(c->get);
    if (s == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(c->get, 0);
        if ((*json = malloc(n + 1))) {
            memcpy(*json, sqlite3_column_text(c->get, 0), n);
            (*json)[n] = 0;
        } else {
            rc = events__fail(EVENTS_ENOMEM, "out of memory");
        }
    } else {
        rc = s == SQLITE_DONE
                 ? events__fail(EVENTS_ENOTFOUND, "collection %s has no document %s", c->name, id)
                 : events__fail(EVENTS_EDB, "collection %s: %s", c->name, sqlite3_errmsg(c->db));
    }
    sqlite3_reset(c->get);
    sqlite3_clear_bindings(c->get);
    cdc__tracker_leave(c->t);
    return rc;
}

int events_collection_has(events_collection *c, const char *id)
{
    if (!c) return events__fail(EVENTS_EINVAL, "no collection");
    int rc = check_id(id);
    if (rc) return rc;
    cdc__tracker_enter(c->t);
    sqlite3_bind_text(c->has, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(c->has);
    rc = s == SQLITE_ROW ? 1
         : s == SQLITE_DONE
             ? 0
             : events__fail(EVENTS_EDB, "collection %s: %s", c->name, sqlite3_errmsg(c->db));
    sqlite3_reset(c->has);
    sqlite3_clear_bindings(c->has);
    cdc__tracker_leave(c->t);
    return rc;
}

int events_collection_count(events_collection *c, uint64_t *count)
{
    if (!c || !count)
        return events__fail(EVENTS_EINVAL,
                            "events_collection_count: collection and out are required");
    cdc__tracker_enter(c->t);
    int rc = EVENTS_OK;
    if (sqlite3_step(c->count) == SQLITE_ROW)
        *count = (uint64_t)sqlite3_column_int64(c->count, 0);
    else
        rc = events__fail(EVENTS_EDB, "collection %s: %s", c->name, sqlite3_errmsg(c->db));
    sqlite3_reset(c->count);
    cdc__tracker_leave(c->t);
    return rc;
}

int events_collection_list(events_collection *c, const char *after, size_t limit, events_doc_fn fn,
                           void *ud)
{
    if (!c || !fn)
        return events__fail(EVENTS_EINVAL,
                            "events_collection_list: collection and callback are required");
    cdc__tracker_enter(c->t);
    sqlite3_bind_text(c->list, 1, after ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->list, 2, limit ? (sqlite3_int64)limit : -1);
    int s, rc = EVENTS_OK;
    while ((s = sqlite3_step(c->list)) == SQLITE_ROW)
        if (fn(ud, (const char *)sqlite3_column_text(c->list, 0),
               (const char *)sqlite3_column_text(c->list, 1)))
            break;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = events__fail(EVENTS_EDB, "collection %s: %s", c->name, sqlite3_errmsg(c->db));
    sqlite3_reset(c->list);
    sqlite3_clear_bindings(c->list);
    cdc__tracker_leave(c->t);
    return rc;
}

void events_free(void *p)
{
    free(p);
}
