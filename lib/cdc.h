/*
 * cdc.h - the change log of a tracked database, inside libevents.
 *
 * A tracker hangs on one SQLite connection. Its preupdate hook notes, for
 * every row of a table with a PRIMARY KEY that a write touches, the row as it
 * was before the first touch; when a transaction made through libevents is
 * about to commit, tracker_record reads those rows as they are now and writes
 * the difference as one changeset (SQLite's session format) in
 * _events_changes, under the next bookmark, together with one outbox row
 * that the sender expands into the sqlite.changeset and collection.* events.
 * Reading the rows at commit, rather than trusting what the hook saw, is what
 * makes statement rollbacks, ROLLBACK TO and no-op updates come out right.
 *
 * Every function here is called with the connection's mutex held
 * (tracker_enter), which also orders them with the hooks.
 */
#ifndef EVENTS_CDC_H
#define EVENTS_CDC_H

#include "events.h"

#include <sqlite3.h>
#include <stdint.h>

typedef struct tracker tracker;

/* The internal tables, created by both the outbox and the tracker. */
extern const char CDC_SCHEMA_SQL[];

/* The tracker of a connection, or NULL; to be used only under a count of it (a collection,
 * an attached emitter) or the connection's mutex: see tracker_lock. */
tracker *tracker_of(sqlite3 *db);

/* Locks the connection and marks a libevents call (writes to tables without a key fail). */
void tracker_enter(tracker *t);
void tracker_leave(tracker *t);

/*
 * The tracker of db, entered as by tracker_enter, or NULL (nothing locked). The lookup is
 * made under the connection's mutex: a tracker looked up first and locked after may have
 * been freed in between by an untrack on another thread (closing the last collection). A
 * caller holding no count of the tracker must find it this way.
 */
tracker *tracker_lock(sqlite3 *db);

/*
 * Runs fn(ud) as a recorded write: in a transaction of its own (BEGIN
 * IMMEDIATE, fn, record, COMMIT) when none is open; inside events_tx_begin's
 * transaction as part of it (recorded at its commit); inside a transaction the
 * service opened itself, followed at once by a record (the service's COMMIT
 * is not ours to see). Called between tracker_enter and tracker_leave.
 */
int tracker_write(tracker *t, int (*fn)(void *ud), void *ud);

/*
 * Records what is pending as one transaction of the change log (inside the
 * open transaction). restore_of: the bookmark a restore went back to, or -1.
 * Sets *bookmark to the new bookmark, or 0 when nothing had changed.
 */
int tracker_record(tracker *t, int64_t restore_of, uint64_t *bookmark);

sqlite3 *tracker_db(tracker *t);
/*
 * The last bookmark recorded in the database as the connection sees it: the one in
 * _events_meta, which each record writes in its own transaction. So inside a transaction it
 * is that transaction's last record, and a ROLLBACK (or a ROLLBACK TO) that takes a record
 * away takes its bookmark with it; the next record gets that number again.
 */
int tracker_bookmark(tracker *t, uint64_t *out);
const char *tracker_source(tracker *t);
int tracker_prune_on_snapshot(tracker *t);
/* The schema hash of the tracked tables as they are now (16 hex digits). */
int tracker_schema(tracker *t, char out[17]);
/* 1 inside events_tx_begin's transaction. */
int tracker_in_own_tx(tracker *t);
/* The same for a connection that may not be tracked (0 then), looked up under its lock. */
int tracker_in_own_tx_of(sqlite3 *db);

/*
 * The emitter whose outbox this connection feeds, told when a record adds an outbox row.
 * Attached, it counts as one events_track, so that the connection stays tracked while the
 * emitter is open (its transactions and snapshots need it) even when no collection is.
 * Detaching (events_emitter_close) drops that count, recording what is pending if it was the
 * last. own_db: the connection is the emitter's own (db_path); if collections still hold the
 * connection, the tracker takes it and closes it with the last of them (*took_db = 1: the
 * outbox must not close it). A no-op, 0, if em is not the attached emitter.
 */
void tracker_attach_emitter(sqlite3 *db, events_emitter *em);
int tracker_detach_emitter(sqlite3 *db, events_emitter *em, int own_db, int *took_db);

/* Bookmarks: 16 lowercase hex digits. */
void bookmark_format(uint64_t b, char out[EVENTS_BOOKMARK_LEN + 1]);
int bookmark_parse(const char *s, uint64_t *out);

/* The schema hash of the tracked tables of any connection (16 hex digits). */
int cdc_schema_hash(sqlite3 *db, char out[17]);

/* A SELECT on the tracked tables of db, in name order, for hashing them (tests, restore checks). */
int cdc_tables(sqlite3 *db, char ***names, int *n);

/* Adds the rows a changeset inserts, updates and deletes to the three counts. */
void cdc_changeset_count(const void *p, int n, uint64_t *inserted, uint64_t *updated,
                         uint64_t *deleted);

/*
 * The conflict handler of sqlite3changeset_apply_v2 for a changeset that must fit exactly
 * (a restore, a replay of the change log): it aborts at the first conflict and notes in the
 * cdc_conflict given as ud which table and what (`in table accounts, a row is missing`).
 */
typedef struct cdc_conflict {
    char what[300]; /* "" until a conflict is met */
} cdc_conflict;
struct sqlite3_changeset_iter; /* sqlite3.h declares it under SQLITE_ENABLE_SESSION */
int cdc_on_conflict(void *ud, int kind, struct sqlite3_changeset_iter *it);

/* sqlite3_exec, its error as libevents' (EVENTS_EDB naming the SQL). */
int cdc_exec(sqlite3 *db, const char *sql);

/* A snapshot of db into path (restore.c), as events_snapshot_file without pruning. */
int snapshot_take(sqlite3 *db, const char *path, uint64_t *bookmark);
/* PUT file to base_url/snapshots/source/bookmark; auth_header may be NULL. */
int snapshot_upload(const char *file, const char *base_url, const char *auth_header,
                    const char *source, const char *bookmark);

/* From emitter.c: the emitter was told of an outbox row written by a record. */
void emitter_note_outbox(events_emitter *em, int64_t seq);

#endif
