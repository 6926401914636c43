/*
 * expand.c - the events of one recorded transaction.
 *
 * The change log keeps one changeset per transaction; the outbox keeps one
 * row pointing at it. When the sender reaches that row it asks for the
 * events, built here from the changeset:
 *
 *   sqlite.changeset    the changeset, base64, cut into parts of at most
 *                       CHANGESET_PART bytes so that every event stays far
 *                       below the server's 256 KiB; `events restore --lake`
 *                       joins the parts again
 *   collection.insert   one per document changed in a collection, with
 *   collection.update   the document, the previous one and the bookmark
 *   collection.delete
 *
 * Event ids are SOURCE:BOOKMARK:cs<part> and SOURCE:BOOKMARK:<n>, the same
 * every time the row is expanded, so a batch sent again after a crash is
 * answered as duplicates.
 */
#define SQLITE_ENABLE_SESSION        1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "cdc_int.h"
#include "codec.h"
#include "events_int.h"
#include "jscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANGESET_PART (96 * 1024)

typedef struct coll {
    char *name;
    int prev;
} coll;

static int add_event(expansion *x, size_t start)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        size_t *o = realloc(x->off, cap * sizeof *o), *l;
        if (!o) return -1;
        x->off = o;
        if (!(l = realloc(x->len, cap * sizeof *l))) return -1;
        x->len = l;
        x->cap = cap;
    }
    x->off[x->n] = start;
    x->len[x->n] = x->text.len - start;
    x->n++;
    return 0;
}

void cdc__expansion_free(expansion *x)
{
    buf_free(&x->text);
    free(x->off);
    free(x->len);
    memset(x, 0, sizeof *x);
}

/* The envelope of an event: {"id":"SRC:BM:suffix","type":"T","ts":"TS"[,do] */
static int envelope(buf *b, const char *src, const char *bm, const char *suffix, const char *type,
                    const char *ts, const char *do_member, size_t do_len)
{
    if (buf_printf(b, "{\"id\":\"%s:%s:%s\",\"type\":\"%s\",\"ts\":\"%s\"", src, bm, suffix, type,
                   ts))
        return -1;
    if (do_len && (buf_putc(b, ',') || buf_append(b, do_member, do_len))) return -1;
    return 0;
}

/*
 * A document as JSON: the text if it is a JSON object (what puts store), else
 * a string holding it.
 */
static int put_doc(buf *b, sqlite3_value *v)
{
    if (!v || sqlite3_value_type(v) == SQLITE_NULL) return buf_puts(b, "null");
    const char *p = (const char *)sqlite3_value_text(v);
    size_t n = (size_t)sqlite3_value_bytes(v);
    if (!p) return -1;
    jscan s = {0};
    enum jtype t;
    const char *end = n ? jscan_value(&s, p, p + n, &t) : NULL;
    if (end == p + n && t == J_OBJ && !s.defects && !s.ws) return buf_append(b, p, n);
    return buf_json_str(b, p, n); /* written by plain SQL, not a document: kept as text */
}

/* A recorded transaction as the change log keeps it. */
typedef struct recorded {
    char bm[EVENTS_BOOKMARK_LEN + 1], src[64], ts[40], schema[40];
    char rbm[EVENTS_BOOKMARK_LEN + 1]; /* restore_of's bookmark, when it has one */
    int64_t restore_of;                /* -1: not a restore */
    buf cs;                            /* the changeset */
} recorded;

/* Reads transaction bookmark and the database's source into r. */
static int read_transaction(sqlite3 *db, uint64_t bookmark, recorded *r)
{
    sqlite3_stmt *st = NULL;
    int rc = EVENTS_OK, found = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM _events_meta WHERE key = 'source'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(r->src, sizeof r->src, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(
            db, "SELECT ts, schema, changeset, restore_of FROM _events_changes WHERE bookmark = ?",
            -1, &st, NULL) != SQLITE_OK)
        return events__fail(EVENTS_EDB, "cannot read the change log: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)bookmark);
    if (sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        snprintf(r->ts, sizeof r->ts, "%s", sqlite3_column_text(st, 0));
        snprintf(r->schema, sizeof r->schema, "%s", sqlite3_column_text(st, 1));
        if (buf_append(&r->cs, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2)))
            rc = EVENTS_ENOMEM;
        if (sqlite3_column_type(st, 3) != SQLITE_NULL) r->restore_of = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc) return events__fail(rc, "out of memory");
    if (!found)
        return events__fail(EVENTS_ENOTFOUND, "the change log has no transaction %s (pruned?)",
                            r->bm);
    if (r->restore_of >= 0) cdc_bookmark_format((uint64_t)r->restore_of, r->rbm);
    return EVENTS_OK;
}

/* The collections of db (_events_collections); a collection that cannot be read is left out. */
static void read_collections(sqlite3 *db, coll **colls, size_t *ncolls)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name, prev FROM _events_collections", -1, &st, NULL) ==
        SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            coll *c = realloc(*colls, (*ncolls + 1) * sizeof *c);
            if (!c) break;
            *colls = c;
            c[*ncolls].name = strdup((const char *)sqlite3_column_text(st, 0));
            c[*ncolls].prev = sqlite3_column_int(st, 1);
            if (c[*ncolls].name) (*ncolls)++;
        }
    sqlite3_finalize(st);
}

static void put_counts(buf *summary, const uint64_t cnt[3])
{
    buf_printf(summary, ":{\"insert\":%llu,\"update\":%llu,\"delete\":%llu}",
               (unsigned long long)cnt[0], (unsigned long long)cnt[1], (unsigned long long)cnt[2]);
}

/*
 * What the changeset changes, per table ({"t":{"insert":…,"update":…,"delete":…},…}), into
 * summary, and how many rows in all.
 */
static int summarise(const recorded *r, buf *summary, uint64_t *nchanges)
{
    sqlite3_changeset_iter *it = NULL;
    if (sqlite3changeset_start(&it, (int)r->cs.len, r->cs.p) != SQLITE_OK)
        return events__fail(EVENTS_EDB, "transaction %s: a damaged changeset", r->bm);
    /*
     * The name sqlite3changeset_op gives points into the iterator's buffer, which the
     * next table's header overwrites (in place when it has as many columns): the
     * current table's name is kept as a copy.
     */
    buf cur = BUF_INIT;
    uint64_t cnt[3] = {0, 0, 0};
    int any = 0, rc = EVENTS_OK;
    buf_putc(summary, '{');
    while (!rc && sqlite3changeset_next(it) == SQLITE_ROW) {
        const char *tab;
        int ncol, op, ind;
        sqlite3changeset_op(it, &tab, &ncol, &op, &ind);
        size_t tlen = strlen(tab);
        if (!any || cur.len != tlen || (tlen && memcmp(cur.p, tab, tlen))) {
            if (any) put_counts(summary, cnt), buf_putc(summary, ',');
            memset(cnt, 0, sizeof cnt);
            cur.len = 0;
            if (buf_append(&cur, tab, tlen) || buf_json_str(summary, tab, tlen))
                rc = events__fail(EVENTS_ENOMEM, "out of memory");
            any = 1;
        }
        cnt[op == SQLITE_INSERT ? 0 : op == SQLITE_UPDATE ? 1 : 2]++;
        ++*nchanges;
    }
    buf_free(&cur);
    if (any) put_counts(summary, cnt);
    buf_putc(summary, '}');
    if (sqlite3changeset_finalize(it) != SQLITE_OK && !rc)
        rc = events__fail(EVENTS_EDB, "transaction %s: a damaged changeset", r->bm);
    return rc;
}

/* The sqlite.changeset events: the changeset in parts, the first with the summary. */
static int add_changeset_events(expansion *x, const recorded *r, const buf *summary,
                                uint64_t nchanges, const char *do_member, size_t do_len)
{
    const buf *cs = &r->cs;
    size_t parts = cs->len ? (cs->len + CHANGESET_PART - 1) / CHANGESET_PART : 1;
    for (size_t i = 0; i < parts; i++) {
        size_t start = x->text.len, from = i * CHANGESET_PART;
        size_t len = cs->len - from < CHANGESET_PART ? cs->len - from : CHANGESET_PART;
        char suffix[32];
        snprintf(suffix, sizeof suffix, "cs%zu", i);
        if (envelope(&x->text, r->src, r->bm, suffix, "sqlite.changeset", r->ts, do_member,
                     do_len) ||
            buf_printf(&x->text,
                       ",\"source\":\"%s\",\"bookmark\":\"%s\",\"schema\":\"%s\",\"part\":%zu,"
                       "\"parts\":%zu",
                       r->src, r->bm, r->schema, i, parts) ||
            (i == 0 &&
             (buf_printf(&x->text, ",\"changes\":%llu,\"tables\":", (unsigned long long)nchanges) ||
              buf_append(&x->text, summary->p, summary->len))) ||
            (r->restore_of >= 0 && buf_printf(&x->text, ",\"restoreOf\":\"%s\"", r->rbm)) ||
            buf_puts(&x->text, ",\"changeset\":\"") || base64_encode(&x->text, cs->p + from, len) ||
            buf_puts(&x->text, "\"}") || add_event(x, start))
            return events__fail(EVENTS_ENOMEM, "out of memory");
    }
    return EVENTS_OK;
}

/* The collection.* event of the change at it (a row of collection c), the n-th document. */
static int add_document_event(expansion *x, const recorded *r, sqlite3_changeset_iter *it,
                              const char *tab, int op, const coll *c, size_t n,
                              const char *do_member, size_t do_len)
{
    sqlite3_value *id = NULL, *doc = NULL, *prev = NULL;
    if (op == SQLITE_INSERT) {
        sqlite3changeset_new(it, 0, &id);
        sqlite3changeset_new(it, 1, &doc);
    } else {
        sqlite3changeset_old(it, 0, &id);
        sqlite3changeset_old(it, 1, &prev);
        if (op == SQLITE_UPDATE) sqlite3changeset_new(it, 1, &doc);
    }
    const char *type = op == SQLITE_INSERT   ? "collection.insert"
                       : op == SQLITE_UPDATE ? "collection.update"
                                             : "collection.delete";
    size_t start = x->text.len;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "%zu", n);
    const char *idp = id ? (const char *)sqlite3_value_text(id) : "";
    size_t idn = id ? (size_t)sqlite3_value_bytes(id) : 0;
    if (envelope(&x->text, r->src, r->bm, suffix, type, r->ts, do_member, do_len) ||
        buf_puts(&x->text, ",\"collection\":") || buf_json_str(&x->text, tab, strlen(tab)) ||
        buf_puts(&x->text, ",\"docId\":") ||
        buf_json_str(&x->text, idp ? idp : "", idp ? idn : 0) || buf_puts(&x->text, ",\"doc\":") ||
        put_doc(&x->text, op == SQLITE_DELETE ? NULL : doc) ||
        (c->prev && (buf_puts(&x->text, ",\"prev\":") ||
                     put_doc(&x->text, op == SQLITE_INSERT ? NULL : prev))) ||
        buf_printf(&x->text, ",\"bookmark\":\"%s\"}", r->bm) || add_event(x, start))
        return events__fail(EVENTS_ENOMEM, "out of memory");
    return EVENTS_OK;
}

/* The collection.* events: one per changed row of a collection's table. */
static int add_document_events(expansion *x, const recorded *r, const coll *colls, size_t ncolls,
                               const char *do_member, size_t do_len)
{
    sqlite3_changeset_iter *it = NULL;
    size_t n = 0;
    int rc = EVENTS_OK;
    if (!ncolls || sqlite3changeset_start(&it, (int)r->cs.len, r->cs.p) != SQLITE_OK)
        return EVENTS_OK;
    while (!rc && sqlite3changeset_next(it) == SQLITE_ROW) {
        const char *tab;
        int ncol, op, ind;
        sqlite3changeset_op(it, &tab, &ncol, &op, &ind);
        const coll *c = NULL;
        for (size_t k = 0; k < ncolls && !c; k++)
            if (!strcmp(colls[k].name, tab)) c = &colls[k];
        if (!c || ncol != 2) continue;
        rc = add_document_event(x, r, it, tab, op, c, n++, do_member, do_len);
    }
    sqlite3changeset_finalize(it);
    return rc;
}

int cdc__expand(sqlite3 *db, uint64_t bookmark, const char *do_member, size_t do_len, expansion *x)
{
    x->text.len = 0;
    x->n = 0;
    recorded r = {.src = "unknown", .restore_of = -1, .cs = BUF_INIT};
    cdc_bookmark_format(bookmark, r.bm);
    int rc = read_transaction(db, bookmark, &r);
    if (rc) {
        buf_free(&r.cs);
        return rc;
    }
    coll *colls = NULL;
    size_t ncolls = 0;
    read_collections(db, &colls, &ncolls);

    buf summary = BUF_INIT;
    uint64_t nchanges = 0;
    rc = summarise(&r, &summary, &nchanges);
    if (!rc) rc = add_changeset_events(x, &r, &summary, nchanges, do_member, do_len);
    buf_free(&summary);
    if (!rc) rc = add_document_events(x, &r, colls, ncolls, do_member, do_len);

    for (size_t k = 0; k < ncolls; k++) free(colls[k].name);
    free(colls);
    buf_free(&r.cs);
    return rc;
}
