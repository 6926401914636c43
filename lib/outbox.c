/*
 * outbox.c - where emitted events wait: a SQLite table, or a ring in memory.
 *
 * The SQLite outbox is the table _events_outbox(seq, event), seq from
 * AUTOINCREMENT so that it is never reused: it orders events and lets
 * events_flush wait for "everything up to seq". Inserts go through the emit
 * connection (the service's own handle, so that an insert joins the
 * transaction open on it, or a connection of the emitter's); the sender reads
 * and deletes through a connection of its own, so that its work never lands
 * in a service's transaction. SQLite serializes writers, so seq order is
 * commit order, and the sender always deletes from the head: the events
 * waiting are exactly seq head..last.
 *
 * Delivered rows are deleted in bulk, a thousand or so at a time and
 * whenever the sender catches up; rejected events are copied to
 * _events_dead(seq, part, event, reason, failed_at) and the batch deleted in
 * one transaction. Rows delivered but not yet deleted when the process dies,
 * or whose delete fails, are sent again after a restart and the server
 * answers them as duplicates: nothing is lost or doubled in the lake.
 */
#include "cdc_int.h"
#include "events_int.h"
#include "outbox_int.h"
#include "evtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outbox {
    int memory;
    size_t capacity;
    _Atomic uint64_t head; /* lowest seq waiting */
    _Atomic uint64_t last; /* highest seq inserted (committed or not) */
    _Atomic uint64_t dropped;
    _Atomic uint64_t lost; /* rows whose transaction the change log no longer had: dead letters */

    /* SQLite */
    sqlite3 *edb, *sdb;
    sqlite3 *qdb; /* a third connection for "what is committed" from any thread: on sdb, such a
                   * read could land inside the sender's open read and see an old snapshot */
    pthread_mutex_t qmu;
    sqlite3_stmt *qlast;
    int own_edb;
    sqlite3_stmt *ins, *peek, *del, *dead;
    char *path;
    uint64_t acked, deleted; /* sender side: rows up to acked are delivered, up to deleted gone */
    uint32_t head_part; /* sender side: the next event of the head row, when it expands to many */
    uint64_t xseq;      /* the row expanded in x (0: none) */
    expansion x;
    char *identity; /* the "do" member for expanded events */
    size_t identity_len;
    uint64_t trim_every;

    /* memory */
    pthread_mutex_t mmu;
    char **ring;
    size_t *lens;
};

static int db_fail(sqlite3 *db, const char *what, const char *path)
{
    return events__fail(EVENTS_EDB, "outbox %s: %s: %s", path ? path : "", what,
                        db ? sqlite3_errmsg(db) : "cannot open");
}

static int exec(sqlite3 *db, const char *sql, const char *path)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        int rc =
            events__fail(EVENTS_EDB, "outbox %s: %s: %s", path, sql, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
        return rc;
    }
    return EVENTS_OK;
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/*
 * Outboxes written before the change log existed: _events_outbox had no
 * changes column and _events_dead no part. Adds the one; moves the other's
 * rows to the new shape.
 */
static int upgrade(outbox *o)
{
    int has_changes = 0, has_part = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            o->edb, "SELECT name FROM pragma_table_info('_events_outbox') WHERE name = 'changes'",
            -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        has_changes = 1;
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(o->edb,
                           "SELECT name FROM pragma_table_info('_events_dead') WHERE name = 'part'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        has_part = 1;
    sqlite3_finalize(st);
    int rc = EVENTS_OK;
    if (!has_changes)
        rc = exec(o->edb, "ALTER TABLE _events_outbox ADD COLUMN changes INTEGER", o->path);
    if (!rc && !has_part)
        rc = exec(o->edb,
                  "BEGIN; ALTER TABLE _events_dead RENAME TO _events_dead_old;"
                  "CREATE TABLE _events_dead (seq INTEGER NOT NULL, part INTEGER NOT NULL DEFAULT "
                  "0, event TEXT NOT "
                  "NULL, reason TEXT NOT NULL, failed_at TEXT NOT NULL, PRIMARY KEY (seq, part));"
                  "INSERT INTO _events_dead(seq, event, reason, failed_at) SELECT seq, event, "
                  "reason, failed_at "
                  "FROM _events_dead_old; DROP TABLE _events_dead_old; COMMIT",
                  o->path);
    return rc;
}

static const char LAST_SEQ[] =
    "SELECT coalesce((SELECT max(seq) FROM _events_outbox), "
    "(SELECT seq FROM sqlite_sequence WHERE name = '_events_outbox'), 0)";

int outbox__open_db(sqlite3 *db, const char *path, size_t capacity, outbox **out)
{
    outbox *o = calloc(1, sizeof *o);
    if (!o) return events__fail(EVENTS_ENOMEM, "out of memory");
    o->capacity = capacity;
    pthread_mutex_init(&o->qmu, NULL);
    int rc;
    if (db) {
        const char *f = sqlite3_db_filename(db, "main");
        if (!f || !*f) {
            free(o);
            return events__fail(
                EVENTS_EINVAL,
                "a durable outbox needs a database file, not an in-memory or temporary "
                "database (use memory_only for events that may be lost)");
        }
        if (!sqlite3_get_autocommit(db)) {
            free(o);
            return events__fail(EVENTS_ESTATE, "outbox %s: open the emitter outside a transaction",
                                f);
        }
        o->edb = db;
        o->path = strdup(f);
    } else {
        o->path = strdup(path);
        o->own_edb = 1; /* closed on failure too: a failed open still allocates the handle */
        if (sqlite3_open_v2(path, &o->edb,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                            NULL) != SQLITE_OK) {
            rc = db_fail(o->edb, "cannot open", path);
            goto fail;
        }
        sqlite3_busy_timeout(o->edb, 10000);
        /* WAL with NORMAL: a commit survives the process dying; after a power cut the last
         * commits may be gone, as for any WAL database at that setting */
        if ((rc = exec(o->edb, "PRAGMA synchronous = NORMAL", o->path))) goto fail;
    }
    if (!o->path) {
        rc = events__fail(EVENTS_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = exec(o->edb, "PRAGMA journal_mode = WAL", o->path)) ||
        (rc = exec(o->edb, CDC__SCHEMA_SQL, o->path)) || (rc = upgrade(o)))
        goto fail;
    if (sqlite3_prepare_v3(o->edb, "INSERT INTO _events_outbox(event) VALUES (?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &o->ins, NULL) != SQLITE_OK) {
        rc = db_fail(o->edb, "cannot prepare the insert", o->path);
        goto fail;
    }
    if (sqlite3_open_v2(o->path, &o->sdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        rc = db_fail(o->sdb, "cannot open a second connection", o->path);
        goto fail;
    }
    sqlite3_busy_timeout(o->sdb, 10000);
    /* secure_delete (Debian's SQLite has it on) zeroes every freed page: for rows
     * deleted in bulk, most of the sender's I/O; FAST zeroes what costs no write */
    if ((rc = exec(o->sdb, "PRAGMA synchronous = NORMAL; PRAGMA secure_delete = FAST", o->path)))
        goto fail;
    if (sqlite3_prepare_v3(
            o->sdb,
            "SELECT seq, event, changes FROM _events_outbox WHERE seq >= ? ORDER BY seq LIMIT ?",
            -1, SQLITE_PREPARE_PERSISTENT, &o->peek, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(o->sdb, "DELETE FROM _events_outbox WHERE seq <= ?", -1,
                           SQLITE_PREPARE_PERSISTENT, &o->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(
            o->sdb,
            "INSERT OR REPLACE INTO _events_dead(seq, part, event, reason, failed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            -1, SQLITE_PREPARE_PERSISTENT, &o->dead, NULL) != SQLITE_OK) {
        rc = db_fail(o->sdb, "cannot prepare the sender's statements", o->path);
        goto fail;
    }
    if (sqlite3_open_v2(o->path, &o->qdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(o->qdb, LAST_SEQ, -1, SQLITE_PREPARE_PERSISTENT, &o->qlast, NULL) !=
            SQLITE_OK) {
        rc = db_fail(o->qdb, "cannot open a third connection", o->path);
        goto fail;
    }
    sqlite3_busy_timeout(o->qdb, 10000);
    int64_t last = scalar(o->sdb, LAST_SEQ);
    int64_t head = scalar(o->sdb, "SELECT min(seq) FROM _events_outbox");
    if (last < 0 || head < 0) {
        rc = db_fail(o->sdb, "cannot read the outbox", o->path);
        goto fail;
    }
    atomic_store(&o->last, (uint64_t)last);
    atomic_store(&o->head, head ? (uint64_t)head : (uint64_t)last + 1);
    o->acked = o->deleted = atomic_load(&o->head) - 1;
    o->trim_every = 1000;
    *out = o;
    return EVENTS_OK;
fail:
    outbox__close(o);
    return rc;
}

int outbox__open_memory(size_t capacity, outbox **out)
{
    outbox *o = calloc(1, sizeof *o);
    if (!o) return events__fail(EVENTS_ENOMEM, "out of memory");
    o->memory = 1;
    o->capacity = capacity;
    o->ring = calloc(capacity, sizeof *o->ring);
    o->lens = calloc(capacity, sizeof *o->lens);
    if (!o->ring || !o->lens) {
        free(o->ring);
        free(o->lens);
        free(o);
        return events__fail(EVENTS_ENOMEM, "out of memory for %zu events", capacity);
    }
    pthread_mutex_init(&o->mmu, NULL);
    atomic_store(&o->head, 1);
    *out = o;
    return EVENTS_OK;
}

void outbox__close(outbox *o)
{
    if (!o) return;
    if (o->memory) {
        outbox__drop_all(o);
        pthread_mutex_destroy(&o->mmu);
        free(o->ring);
        free(o->lens);
    } else {
        sqlite3_finalize(o->ins);
        sqlite3_finalize(o->peek);
        sqlite3_finalize(o->del);
        sqlite3_finalize(o->dead);
        sqlite3_finalize(o->qlast);
        cdc__expansion_free(&o->x);
        sqlite3_close(o->qdb);
        pthread_mutex_destroy(&o->qmu);
        sqlite3_close(o->sdb);
        if (o->own_edb) sqlite3_close(o->edb);
        free(o->path);
    }
    free(o->identity);
    free(o);
}

sqlite3 *outbox__edb(outbox *o)
{
    return o->memory ? NULL : o->edb;
}

int outbox__owns_edb(const outbox *o)
{
    return !o->memory && o->own_edb;
}

void outbox__leave_edb(outbox *o)
{
    o->own_edb = 0;
}

int outbox__is_memory(const outbox *o)
{
    return o->memory;
}

uint64_t outbox__pending(outbox *o)
{
    uint64_t head = atomic_load(&o->head), last = atomic_load(&o->last);
    return last >= head ? last - head + 1 : 0;
}

uint64_t outbox__head(outbox *o)
{
    return atomic_load(&o->head);
}

uint64_t outbox__lost(outbox *o)
{
    return atomic_load(&o->lost);
}

uint64_t outbox__dropped(outbox *o)
{
    return atomic_load(&o->dropped);
}

uint64_t outbox__last_committed(outbox *o)
{
    if (o->memory) return atomic_load(&o->last);
    int64_t v = 0;
    pthread_mutex_lock(&o->qmu);
    if (sqlite3_step(o->qlast) == SQLITE_ROW) v = sqlite3_column_int64(o->qlast, 0);
    sqlite3_reset(o->qlast);
    pthread_mutex_unlock(&o->qmu);
    return v > 0 ? (uint64_t)v : 0;
}

void outbox__note(outbox *o, uint64_t seq)
{
    uint64_t cur = atomic_load(&o->last);
    while (seq > cur && !atomic_compare_exchange_weak(&o->last, &cur, seq)) {
    }
}

void outbox__resync(outbox *o)
{
    if (o->memory) return;
    uint64_t seen = atomic_load(&o->last), committed = outbox__last_committed(o);
    /* an emit since the read wins: the CAS fails and the count stays */
    if (committed < seen) atomic_compare_exchange_strong(&o->last, &seen, committed);
}

/* ---- the emit side -------------------------------------------------------- */

int outbox__put(outbox *o, const char *event, size_t len, int *committed)
{
    if (o->memory) { /* any thread: the ring's own mutex is enough */
        char *copy = malloc(len);
        if (!copy) return events__fail(EVENTS_ENOMEM, "out of memory");
        memcpy(copy, event, len);
        pthread_mutex_lock(&o->mmu);
        if (outbox__pending(o) >= o->capacity) {
            pthread_mutex_unlock(&o->mmu);
            free(copy);
            atomic_fetch_add(&o->dropped, 1);
            return events__fail(EVENTS_EFULL, "the outbox holds %zu events, its capacity",
                                o->capacity);
        }
        uint64_t seq = atomic_load(&o->last) + 1;
        o->ring[seq % o->capacity] = copy;
        o->lens[seq % o->capacity] = len;
        atomic_store(&o->last, seq);
        pthread_mutex_unlock(&o->mmu);
        *committed = 1;
        return EVENTS_OK;
    }
    if (outbox__pending(o) >= o->capacity)
        return events__fail(EVENTS_EFULL, "the outbox holds %zu events, its capacity", o->capacity);
    int rc = EVENTS_OK;
    /*
     * The connection's mutex, held from the insert to reading its rowid, so that
     * no other thread's insert on a shared handle comes between (RETURNING would
     * do it too, at twice the cost of the insert: it builds a temporary table).
     */
    sqlite3_mutex *m = sqlite3_db_mutex(o->edb);
    sqlite3_mutex_enter(m);
    sqlite3_bind_text(o->ins, 1, event, (int)len, SQLITE_STATIC);
    if (sqlite3_step(o->ins) == SQLITE_DONE) {
        uint64_t seq = (uint64_t)sqlite3_last_insert_rowid(o->edb);
        uint64_t cur = atomic_load(&o->last);
        while (seq > cur && !atomic_compare_exchange_weak(&o->last, &cur, seq)) {
        }
    } else {
        rc = db_fail(o->edb, "cannot insert an event", o->path);
    }
    sqlite3_reset(o->ins); /* an autocommit insert commits here */
    *committed = sqlite3_get_autocommit(o->edb);
    sqlite3_mutex_leave(m);
    return rc;
}

int outbox__begin(outbox *o)
{
    return exec(o->edb, "BEGIN", o->path);
}

int outbox__commit(outbox *o)
{
    return exec(o->edb, "COMMIT", o->path);
}

int outbox__rollback(outbox *o)
{
    int rc = exec(o->edb, "ROLLBACK", o->path);
    /* the rolled-back inserts took their seqs back */
    int64_t last = scalar(o->edb, LAST_SEQ);
    if (last >= 0) atomic_store(&o->last, (uint64_t)last);
    return rc;
}

/* ---- the sender side -------------------------------------------------------- */

static int batch_add(outbox__batch *b, uint64_t seq, uint32_t part, int last, const char *event,
                     size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 128;
        outbox__item *v = realloc(b->items, cap * sizeof *v);
        if (!v) return -1;
        b->items = v;
        b->cap = cap;
    }
    /* items keep offsets until the text stops moving: fixed in outbox__peek */
    b->items[b->n++] = (outbox__item){seq, part, last, (const char *)(uintptr_t)b->text.len, len};
    return buf_append(&b->text, event, len);
}

void outbox__set_identity(outbox *o, const char *do_member, size_t len)
{
    free(o->identity);
    o->identity = len ? malloc(len) : NULL;
    if (o->identity) memcpy(o->identity, do_member, len);
    o->identity_len = o->identity ? len : 0;
}

/* The events of the row seq that points at recorded transaction bookmark, in o->x (kept while the
 * sender works through them). */
static int expanded(outbox *o, uint64_t seq, uint64_t bookmark)
{
    if (o->xseq == seq) return EVENTS_OK;
    o->xseq = 0;
    int rc = cdc__expand(o->sdb, bookmark, o->identity, o->identity_len, &o->x);
    if (!rc) o->xseq = seq;
    return rc;
}

/*
 * A row whose transaction the change log no longer has: a dead letter saying
 * so, and the row goes.
 */
static void dead_row(outbox *o, uint64_t seq, uint64_t bookmark, const char *why)
{
    char now[EVTIME_LEN + 1], ev[80];
    evtime_format(evtime_now_ms(), now);
    snprintf(ev, sizeof ev, "{\"changes\":%llu}", (unsigned long long)bookmark);
    sqlite3_bind_int64(o->dead, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(o->dead, 2, 0);
    sqlite3_bind_text(o->dead, 3, ev, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(o->dead, 4, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(o->dead, 5, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(o->dead) == SQLITE_DONE) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(o->sdb, "DELETE FROM _events_outbox WHERE seq = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        atomic_fetch_add(&o->lost, 1);
    }
    sqlite3_reset(o->dead);
}

int outbox__peek(outbox *o, uint64_t from, uint32_t from_part, size_t n, size_t bytes,
                 outbox__batch *b)
{
    b->n = 0;
    b->text.len = 0;
    uint64_t head = from ? from : atomic_load(&o->head);
    uint32_t part = from ? from_part : o->head_part;
    size_t total = 0;
    int rc = EVENTS_OK;
    if (o->memory) {
        pthread_mutex_lock(&o->mmu);
        uint64_t last = atomic_load(&o->last);
        for (uint64_t s = head; s <= last && b->n < n; s++) {
            size_t len = o->lens[s % o->capacity];
            if (b->n && total + len > bytes) break;
            if (batch_add(b, s, 0, 1, o->ring[s % o->capacity], len)) {
                rc = events__fail(EVENTS_ENOMEM, "out of memory");
                break;
            }
            total += len;
        }
        pthread_mutex_unlock(&o->mmu);
    } else {
        sqlite3_bind_int64(o->peek, 1, (sqlite3_int64)head);
        sqlite3_bind_int64(o->peek, 2, (sqlite3_int64)n);
        int s = SQLITE_DONE, full = 0;
        uint64_t missing[16][2];
        size_t nmissing = 0;
        while (!full && (s = sqlite3_step(o->peek)) == SQLITE_ROW) {
            uint64_t seq = (uint64_t)sqlite3_column_int64(o->peek, 0);
            uint32_t p0 = seq == head ? part : 0;
            if (sqlite3_column_type(o->peek, 2) == SQLITE_NULL) {
                size_t len = (size_t)sqlite3_column_bytes(o->peek, 1);
                if (b->n && total + len > bytes) break;
                if (batch_add(b, seq, 0, 1, (const char *)sqlite3_column_text(o->peek, 1), len)) {
                    rc = events__fail(EVENTS_ENOMEM, "out of memory");
                    break;
                }
                total += len;
                continue;
            }
            uint64_t bm = (uint64_t)sqlite3_column_int64(o->peek, 2);
            if ((rc = expanded(o, seq, bm))) {
                if (rc != EVENTS_ENOTFOUND) break;
                if (nmissing < sizeof missing / sizeof *missing)
                    missing[nmissing][0] = seq, missing[nmissing++][1] = bm;
                rc = EVENTS_OK;
                continue;
            }
            for (uint32_t k = p0; k < o->x.n; k++) {
                size_t len = o->x.len[k];
                if (b->n >= n || (b->n && total + len > bytes)) {
                    full = 1;
                    break;
                }
                if (batch_add(b, seq, k, k + 1 == o->x.n, o->x.text.p + o->x.off[k], len)) {
                    rc = events__fail(EVENTS_ENOMEM, "out of memory");
                    full = 1;
                    break;
                }
                total += len;
            }
        }
        if (!rc && !full && s != SQLITE_ROW && s != SQLITE_DONE)
            rc = db_fail(o->sdb, "cannot read the outbox", o->path);
        sqlite3_reset(o->peek);
        for (size_t i = 0; i < nmissing; i++) {
            char why[120];
            snprintf(why, sizeof why, "the change log no longer has transaction %016llx (pruned?)",
                     (unsigned long long)missing[i][1]);
            dead_row(o, missing[i][0], missing[i][1], why);
        }
    }
    for (size_t i = 0; i < b->n; i++) b->items[i].event = b->text.p + (uintptr_t)b->items[i].event;
    return rc;
}

void outbox__after(const outbox__batch *b, uint64_t *seq, uint32_t *part)
{
    const outbox__item *it = &b->items[b->n - 1];
    *seq = it->last ? it->seq + 1 : it->seq;
    *part = it->last ? 0 : it->part + 1;
}

void outbox__batch_free(outbox__batch *b)
{
    free(b->items);
    buf_free(&b->text);
    memset(b, 0, sizeof *b);
}

/* Moves the head past the item it (memory: frees the slots). */
static void advance(outbox *o, const outbox__item *it)
{
    uint64_t upto = it->last ? it->seq : it->seq - 1; /* the last row done whole */
    if (o->memory) {
        pthread_mutex_lock(&o->mmu);
        for (uint64_t s = atomic_load(&o->head); s <= upto; s++) {
            free(o->ring[s % o->capacity]);
            o->ring[s % o->capacity] = NULL;
        }
        pthread_mutex_unlock(&o->mmu);
    }
    o->head_part = it->last ? 0 : it->part + 1;
    atomic_store(&o->head, upto + 1);
    if (it->last && o->xseq == it->seq) o->xseq = 0; /* done with that expansion */
}

/* Deletes the acknowledged rows up to `upto` (the sender's connection, its own transaction or the
 * caller's). */
static int delete_upto(outbox *o, uint64_t upto)
{
    sqlite3_bind_int64(o->del, 1, (sqlite3_int64)upto);
    int rc = sqlite3_step(o->del) == SQLITE_DONE
                 ? EVENTS_OK
                 : db_fail(o->sdb, "cannot delete sent events", o->path);
    sqlite3_reset(o->del);
    if (!rc) o->deleted = upto;
    return rc;
}

int outbox__trim(outbox *o, int wait)
{
    if (o->memory || o->acked <= o->deleted) return EVENTS_OK;
    if (wait) return delete_upto(o, o->acked);
    if (o->acked - o->deleted < o->trim_every) return EVENTS_OK;
    /* a service writing (emits in a long transaction) holds the write lock: try again later */
    sqlite3_busy_timeout(o->sdb, 0);
    sqlite3_bind_int64(o->del, 1, (sqlite3_int64)o->acked);
    if (sqlite3_step(o->del) == SQLITE_DONE) o->deleted = o->acked;
    sqlite3_reset(o->del);
    sqlite3_busy_timeout(o->sdb, 10000);
    return EVENTS_OK;
}

int outbox__done(outbox *o, const outbox__batch *b, size_t done, const size_t *rejected,
                 char *const *reason, size_t nrejected)
{
    if (!done) return EVENTS_OK;
    const outbox__item *lastit = &b->items[done - 1];
    uint64_t upto = lastit->last ? lastit->seq : lastit->seq - 1; /* rows done whole */
    if (o->memory) {
        advance(o, lastit);
        return EVENTS_OK;
    }
    if (!nrejected) {
        /*
         * Delivered: the head moves now, the rows go later, many batches in one
         * DELETE (see outbox__trim). A crash in between sends them again, and the
         * server answers them as duplicates.
         */
        advance(o, lastit);
        o->acked = upto;
        return EVENTS_OK;
    }
    char now[EVTIME_LEN + 1];
    evtime_format(evtime_now_ms(), now);
    int rc = exec(o->sdb, "BEGIN IMMEDIATE", o->path);
    for (size_t i = 0; !rc && i < nrejected; i++) {
        const outbox__item *it = &b->items[rejected[i]];
        sqlite3_bind_int64(o->dead, 1, (sqlite3_int64)it->seq);
        sqlite3_bind_int64(o->dead, 2, (sqlite3_int64)it->part);
        sqlite3_bind_text(o->dead, 3, it->event, (int)it->len, SQLITE_STATIC);
        sqlite3_bind_text(o->dead, 4, reason[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(o->dead, 5, now, -1, SQLITE_STATIC);
        if (sqlite3_step(o->dead) != SQLITE_DONE)
            rc = db_fail(o->sdb, "cannot dead-letter an event", o->path);
        sqlite3_reset(o->dead);
    }
    if (!rc && upto > o->deleted) rc = delete_upto(o, upto);
    if (!rc) rc = exec(o->sdb, "COMMIT", o->path);
    if (rc) {
        exec(o->sdb, "ROLLBACK", o->path);
        return rc;
    }
    advance(o, lastit);
    if (upto > o->acked) o->acked = upto;
    return EVENTS_OK;
}

int outbox__dead(outbox *o, const outbox__batch *b, const char *reason)
{
    size_t *idx = malloc(b->n * sizeof *idx);
    char **why = malloc(b->n * sizeof *why);
    if (!idx || !why) {
        free(idx);
        free(why);
        return events__fail(EVENTS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->n; i++) {
        idx[i] = i;
        why[i] = (char *)(uintptr_t)reason;
    }
    int rc = outbox__done(o, b, b->n, idx, why, b->n);
    free(idx);
    free(why);
    return rc;
}

void outbox__drop_all(outbox *o)
{
    if (!o->memory) return;
    pthread_mutex_lock(&o->mmu);
    uint64_t head = atomic_load(&o->head), last = atomic_load(&o->last);
    for (uint64_t s = head; s <= last; s++) {
        free(o->ring[s % o->capacity]);
        o->ring[s % o->capacity] = NULL;
    }
    if (last >= head) atomic_fetch_add(&o->dropped, last - head + 1);
    atomic_store(&o->head, last + 1);
    pthread_mutex_unlock(&o->mmu);
}
