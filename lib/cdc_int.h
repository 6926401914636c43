/*
 * cdc_int.h - the inside of libevents' change log, shared by lib's files.
 *
 * The tracker is split by concern: cdc.c keeps the registry of trackers, their
 * life (events_track, events_untrack), their locking and the API that writes
 * through them; capture.c holds the SQLite hooks and the rows they note;
 * changeset.c encodes those rows as a changeset and records it in the change
 * log; expand.c turns a recorded transaction into events. collection.c,
 * emitter.c, outbox.c and restore.c use the functions only; the layout of the
 * tracker and its rows is for the three files of the tracker.
 *
 * Every function taking a tracker is called with the connection's mutex held
 * (cdc__tracker_enter), which also orders them with the hooks.
 */
#ifndef EVENTS_CDC_INT_H
#define EVENTS_CDC_INT_H

#include "buf.h"
#include "cdc.h"

typedef struct tracker tracker;

/* The internal tables, created by both the outbox and the tracker. */
extern const char CDC__SCHEMA_SQL[];

/* sqlite3_exec, its error as libevents' (EVENTS_EDB naming the SQL). */
int cdc__exec(sqlite3 *db, const char *sql);

/* ---- the events of a recorded transaction (expand.c) ---- */

/* Event i is text[off[i] .. off[i]+len[i]). */
typedef struct expansion {
    buf text;
    size_t *off, *len;
    size_t n, cap;
} expansion;

/*
 * Builds the events of recorded transaction bookmark from the change log on db (any
 * connection): what the outbox's sender side sends for the row that points at it.
 */
int cdc__expand(sqlite3 *db, uint64_t bookmark, const char *do_member, size_t do_len, expansion *x);
void cdc__expansion_free(expansion *x);

/* ---- the tracker, for lib's files (cdc.c) ---- */

/* The tracker of a connection, or NULL; to be used only under a count of it (a collection,
 * an attached emitter) or the connection's mutex: see cdc__tracker_lock. */
tracker *cdc__tracker_of(sqlite3 *db);

/* Locks the connection and marks a libevents call (writes to tables without a key fail). */
void cdc__tracker_enter(tracker *t);
void cdc__tracker_leave(tracker *t);

/*
 * The tracker of db, entered as by cdc__tracker_enter, or NULL (nothing locked). The lookup
 * is made under the connection's mutex: a tracker looked up first and locked after may have
 * been freed in between by an untrack on another thread (closing the last collection). A
 * caller holding no count of the tracker must find it this way.
 */
tracker *cdc__tracker_lock(sqlite3 *db);

/*
 * Runs fn(ud) as a recorded write: in a transaction of its own (BEGIN
 * IMMEDIATE, fn, record, COMMIT) when none is open; inside events_tx_begin's
 * transaction as part of it (recorded at its commit); inside a transaction the
 * service opened itself, followed at once by a record (the service's COMMIT
 * is not ours to see). Called between cdc__tracker_enter and cdc__tracker_leave.
 */
int cdc__tracker_write(tracker *t, int (*fn)(void *ud), void *ud);

/*
 * Records what is pending as one transaction of the change log (inside the
 * open transaction; changeset.c). restore_of: the bookmark a restore went back
 * to, or -1. Sets *bookmark to the new bookmark, or 0 when nothing had changed.
 */
int cdc__tracker_record(tracker *t, int64_t restore_of, uint64_t *bookmark);

sqlite3 *cdc__tracker_db(tracker *t);
/*
 * The last bookmark recorded in the database as the connection sees it: the one in
 * _events_meta, which each record writes in its own transaction. So inside a transaction it
 * is that transaction's last record, and a ROLLBACK (or a ROLLBACK TO) that takes a record
 * away takes its bookmark with it; the next record gets that number again.
 */
int cdc__tracker_bookmark(tracker *t, uint64_t *out);
const char *cdc__tracker_source(tracker *t);
int cdc__tracker_prune_on_snapshot(tracker *t);
/* The schema hash of the tracked tables as they are now. */
int cdc__tracker_schema(tracker *t, char out[CDC_SCHEMA_HASH_LEN + 1]);
/* 1 inside events_tx_begin's transaction. */
int cdc__tracker_in_own_tx(tracker *t);
/* The same for a connection that may not be tracked (0 then), looked up under its lock. */
int cdc__tracker_in_own_tx_of(sqlite3 *db);

/*
 * The emitter whose outbox this connection feeds, told when a record adds an outbox row.
 * Attached, it counts as one events_track, so that the connection stays tracked while the
 * emitter is open (its transactions and snapshots need it) even when no collection is.
 * Detaching (events_emitter_close) drops that count, recording what is pending if it was the
 * last. own_db: the connection is the emitter's own (db_path); if collections still hold the
 * connection, the tracker takes it and closes it with the last of them (*took_db = 1: the
 * outbox must not close it). A no-op, 0, if em is not the attached emitter.
 */
void cdc__tracker_attach_emitter(sqlite3 *db, events_emitter *em);
int cdc__tracker_detach_emitter(sqlite3 *db, events_emitter *em, int own_db, int *took_db);

/* ---- the tracker's layout, for cdc.c, capture.c and changeset.c ---- */

/* A pending row: a row of a tracked table touched since the last record (capture.c). */
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

/* A table the hook has seen: its columns and key, and its pending rows. */
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

/*
 * One per tracked connection, in cdc.c's registry. Its fields are used under the connection's
 * mutex (the hooks run under it too); refs and em change only under it.
 */
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
    char schema[CDC_SCHEMA_HASH_LEN + 1];
    sqlite3_stmt *ins_change, *set_meta, *ins_outbox;
    sqlite3_stmt *get_meta; /* the bookmark in _events_meta (cdc__tracker_bookmark) */
    /*
     * The emitter whose outbox the records feed (told of each row), or NULL. It holds one
     * of refs while attached, so that the connection stays tracked while it is open; its
     * close detaches it under the connection's mutex, which every use of em holds.
     */
    events_emitter *em;
    int owns_db;   /* an emitter's own connection, left to the collections when it closed */
    tracker *next; /* the registry's list (cdc.c), under its mutex */
};

/* ---- capture (capture.c) ---- */

/*
 * Sets the tracker's preupdate, commit and rollback hooks on its connection; EVENTS_ESTATE
 * (and none set) if the connection has one of its own.
 */
int cdc__capture_start(tracker *t);
/* Takes the hooks off the connection. */
void cdc__capture_stop(tracker *t);
/* Frees the tables and the rows, pending and recorded. */
void cdc__capture_free(tracker *t);
/* The pending rows were recorded: kept aside until the transaction ends (then freed, or
 * pending again if it rolls back). */
void cdc__capture_set_aside(tracker *t);

/* ---- the record format (changeset.c) ---- */

/* Appends one field of a session record: type byte and payload. */
int cdc__put_value(buf *b, sqlite3_value *v);
/* The varint at p (at most 9 bytes, not past end): its length, 0 if malformed. */
size_t cdc__get_varint(const unsigned char *p, const unsigned char *end, uint64_t *v);
/* The length of the field at p (type byte included), or 0 if malformed. */
size_t cdc__field_len(const unsigned char *p, const unsigned char *end);

#endif
