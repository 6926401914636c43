/*
 * events.h - libevents: emit events from a C service, reliably.
 *
 * A service creates one emitter and calls events_emit (or a typed helper) as
 * things happen. Events go into an outbox; a sender thread posts them in
 * batches to an events server (POST /ingest) and retries what fails, with
 * backoff, until the server has them.
 *
 * The outbox lives in SQLite (the table _events_outbox), in the service's own
 * database or a file of its own: what was emitted survives a crash of the
 * process and an outage of the server, and is sent first when the emitter is
 * opened again. An emit made while a transaction is open on that database
 * joins it, so the event exists if and only if the transaction commits.
 * Nothing is dropped silently: every event is delivered, moved to
 * _events_dead with the server's reason, or refused at emit time with an
 * error code. A memory-only mode exists for events that may be lost; it
 * counts what it drops.
 *
 * Errors: every function returns EVENTS_OK (0) or a negative EVENTS_E* code;
 * events_strerror names the code and events_errmsg gives the calling thread's
 * message for its last failed call, naming the thing and the reason.
 *
 * Threads: an emitter may be used from any number of threads at once; its
 * sender runs on a thread of its own. No callback is ever made from the
 * sender thread into the application.
 *
 * Link with -levents (pkg-config events): it needs SQLite, libcurl and zlib.
 */
#ifndef EVENTS_H
#define EVENTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EVENTS_API __attribute__((visibility("default")))
#else
#define EVENTS_API
#endif

#include "events_version.h" /* EVENTS_VERSION_STRING, generated from CMakeLists.txt */

/* Result codes. */
enum {
    EVENTS_OK = 0,
    EVENTS_EINVAL = -1,    /* a bad argument: a type name, fields that are not a JSON object, ... */
    EVENTS_ENOMEM = -2,    /* out of memory */
    EVENTS_EFULL = -3,     /* the outbox holds `capacity` events: the event was not taken */
    EVENTS_ETOOBIG = -4,   /* the event is larger than `max_event_bytes` */
    EVENTS_ETIMEDOUT = -5, /* events_flush or events_emitter_close ran out of time */
    EVENTS_EDB = -6,       /* SQLite failed (the message says how) */
    EVENTS_ESTATE = -7,    /* not now: events_commit without events_begin, emit after close, ... */
    EVENTS_EHTTP = -8,     /* the HTTP client could not be set up, or an upload failed */
    EVENTS_ENOTFOUND = -9  /* no such document */
};

/* The name of a result code ("EVENTS_EFULL: the outbox is full"). Never NULL. */
EVENTS_API const char *events_strerror(int code);

/*
 * The calling thread's message for its last failed events_* call ("outbox
 * /srv/app.db: database is locked"). Valid until that thread's next failing
 * call. Never NULL.
 */
EVENTS_API const char *events_errmsg(void);

/*
 * The emitter's identity: the "do" object of every event it emits. Members
 * left NULL are left out.
 */
typedef struct events_identity {
    const char *id;   /* e.g. "room-17" */
    const char *name; /* e.g. "lobby" */
    const char *cls;  /* written as "class", e.g. "ChatRoom" */
    const char *colo; /* where it runs, e.g. "FRA" */
} events_identity;

typedef struct sqlite3 sqlite3;

/*
 * How an emitter is set up. Zero every member you do not set: each has a
 * default. The strings are copied; the sqlite3 handle is borrowed (it must
 * outlive the emitter).
 */
typedef struct events_config {
    /* the server: "http://127.0.0.1:8080" (/ingest is added), or a URL ending in /ingest or /e */
    const char *endpoint;
    const char *token;        /* bearer token, or NULL */
    events_identity identity; /* the "do" object of every event */

    /* The outbox: exactly one of db_path, db, memory_only. */
    const char *db_path; /* a SQLite file the emitter opens (created if missing) */
    sqlite3 *db;         /* or the service's own open database: emits join its transactions */
    /* or no outbox: events may be lost (close, crash, full); drops are counted */
    int memory_only;

    /* events waiting at most (emit: EVENTS_EFULL beyond). Default 1,000,000 (memory: 100,000) */
    size_t capacity;
    /* larger events are refused with EVENTS_ETOOBIG. Default 256 KiB, the server's limit */
    size_t max_event_bytes;
    size_t batch_size; /* events per request. Default 100; the server takes at most 10,000 */
    /* bytes of events per request. Default 1 MiB; the server takes at most 8 MiB */
    size_t batch_bytes;
    int64_t flush_interval_ms; /* send at least this often while events wait. Default 1,000 */
    int64_t backoff_min_ms;    /* first retry delay. Default 1,000 */
    int64_t backoff_max_ms;    /* the delay doubles up to this. Default 300,000 (5 min) */
    int64_t timeout_ms;        /* one HTTP request, connection included. Default 30,000 */
    /* bodies larger than this are gzip-compressed. Default 4,096; SIZE_MAX: never */
    size_t gzip_above;

    /*
     * For tests: a clock (milliseconds, monotonic) and a wait. The sender calls
     * wait(ud, ms) instead of sleeping when it backs off, and its return means
     * the time has passed. Both NULL: the real clock and a real wait.
     */
    int64_t (*clock_ms)(void *ud);
    void (*wait_ms)(void *ud, int64_t ms);
    void *clock_ud;
} events_config;

typedef struct events_emitter events_emitter;

/*
 * Opens an emitter and starts its sender. With a database (db_path or db) the
 * tables _events_outbox and _events_dead are created if missing, the database
 * is switched to WAL mode, and events left from an earlier run are sent
 * first. With db, the database must be a file (the sender opens its own
 * connection to it) and the service should set a busy timeout on its handle
 * (sqlite3_busy_timeout): the sender writes the outbox in short transactions.
 * Returns EVENTS_OK and *out, or a code (*out NULL) and events_errmsg().
 */
EVENTS_API int events_emitter_open(const events_config *cfg, events_emitter **out);

/*
 * Sends what it can for up to timeout_ms (events_flush), stops the sender and
 * frees the emitter. Events not delivered stay in the outbox for the next
 * open; in memory-only mode they are counted as dropped and lost. Returns
 * EVENTS_OK, or EVENTS_ETIMEDOUT if events were left. NULL is ignored.
 *
 * Lifetimes: em is gone after the call, whatever it returns. A transaction
 * left open by events_begin is rolled back (EVENTS_ESTATE). Collections opened
 * through the emitter are not closed: they belong to the database connection,
 * and every call on them, and on the tracked connection (events_exec,
 * events_tx_*, events_bookmark, events_restore, events_snapshot_file), goes on
 * working; what they record waits in the outbox for the next emitter opened on
 * the database. With db_path, the emitter's own connection stays open for
 * them, and the last events_collection_close on it closes it. While it is
 * open, an emitter on a tracked database counts as one events_track of it, so
 * that events_begin and events_snapshot keep working after its collections are
 * closed; its close is the matching events_untrack.
 */
EVENTS_API int events_emitter_close(events_emitter *em, int64_t timeout_ms);

/*
 * Emits an event of the given type: type is lowercase and dotted
 * ([a-z0-9_]+(.[a-z0-9_-]+)*, at most 128 bytes); fields is NULL or a JSON
 * object whose members are added to the event ("{\"method\":\"send\"}").
 * The emitter sets id (a ULID), ts (now) and do, and the server receivedAt;
 * fields may not contain those keys. Returns EVENTS_OK once the event is in
 * the outbox (committed, or part of the open transaction), else
 * EVENTS_EINVAL, EVENTS_ETOOBIG, EVENTS_EFULL, EVENTS_EDB, EVENTS_ESTATE.
 * Any thread.
 */
EVENTS_API int events_emit(events_emitter *em, const char *type, const char *fields);

/*
 * Emits a whole event given as a JSON object ({"type":…, …}): an id, ts or do
 * it carries are kept (a retry with the same id is stored once), the others are
 * set. For forwarding events made elsewhere (events send). Same results as
 * events_emit.
 */
EVENTS_API int events_emit_json(events_emitter *em, const char *event);

/*
 * rpc.call: a call that took duration_ms. ns (the namespace) and error may
 * be NULL; success is 0 or 1.
 */
EVENTS_API int events_emit_rpc(events_emitter *em, const char *ns, const char *method,
                               double duration_ms, int success, const char *error);

/* do.create, do.alarm, do.hibernate, do.evict: the life of the emitting object. */
typedef enum events_lifecycle {
    EVENTS_DO_CREATE,
    EVENTS_DO_ALARM,
    EVENTS_DO_HIBERNATE,
    EVENTS_DO_EVICT
} events_lifecycle;

/* A lifecycle event; reason may be NULL. */
EVENTS_API int events_emit_lifecycle(events_emitter *em, events_lifecycle what, const char *reason);

/* ws.connect, ws.message, ws.close, ws.error: WebSocket activity. */
typedef enum events_ws {
    EVENTS_WS_CONNECT,
    EVENTS_WS_MESSAGE,
    EVENTS_WS_CLOSE,
    EVENTS_WS_ERROR
} events_ws;

/*
 * A WebSocket event. Give -1 for connection_count, code or size, and NULL
 * for reason, to leave them out.
 */
EVENTS_API int events_emit_ws(events_emitter *em, events_ws what, int connection_count, int code,
                              const char *reason, long long size);

/*
 * Groups the emits that follow, from any thread, in one transaction of the
 * outbox database until events_commit (or events_rollback, which takes them
 * back). On the service's own handle (config.db) this is its BEGIN; a
 * transaction the service opened itself is joined by emits just the same.
 * Returns EVENTS_ESTATE when one is already open, or in memory-only mode.
 */
EVENTS_API int events_begin(events_emitter *em);
EVENTS_API int events_commit(events_emitter *em);
EVENTS_API int events_rollback(events_emitter *em);

/*
 * Waits until every event emitted before the call is delivered or
 * dead-lettered, or timeout_ms passed. EVENTS_OK or EVENTS_ETIMEDOUT. Events
 * in a transaction not yet committed are not waited for.
 */
EVENTS_API int events_flush(events_emitter *em, int64_t timeout_ms);

/* What an emitter has done since it was opened (queued: now). */
typedef struct events_stats {
    uint64_t queued;      /* in the outbox, not yet acknowledged (also those of earlier runs) */
    uint64_t in_flight;   /* in the request being sent now */
    uint64_t delivered;   /* acknowledged by the server: stored */
    uint64_t duplicates;  /* acknowledged as already stored (a retry): counted in delivered too */
    uint64_t retried;     /* requests that failed and were tried again */
    uint64_t dead;        /* moved to _events_dead (or, in memory-only mode, given up) */
    uint64_t dropped;     /* memory-only mode: not taken (full) or left at close */
    int last_status;      /* HTTP status of the last request, 0 if it got none */
    char last_error[256]; /* why the last request failed, "" when it succeeded */
} events_stats;

EVENTS_API void events_emitter_stats(events_emitter *em, events_stats *out);

/* ---- The change log: tracking, bookmarks, restore, snapshots ---------------
 *
 * A tracked database records every write transaction made through libevents
 * as a changeset (SQLite's session format) in the table _events_changes, under
 * a bookmark, and ships it as a sqlite.changeset event. That is what lets
 * events_restore bring the whole database back to any bookmark, and `events
 * restore --lake` rebuild it from the lake alone.
 *
 * Tracked: every table with a PRIMARY KEY written on the connection (the
 * tables whose names start with _events_ and sqlite_ excepted). A write made
 * through libevents to a table without one fails with EVENTS_EINVAL naming
 * the table. Schema changes are not recorded: a restore does not cross one
 * (EVENTS_ESTATE says where it is); take a snapshot after changing the schema.
 *
 * A transaction is recorded when libevents commits it: events_exec outside a
 * transaction, collection calls outside a transaction, events_tx_commit (and
 * events_commit on an emitter). Writes the service makes on the connection
 * with plain SQLite calls are not lost: they are recorded with the next
 * transaction libevents records. Inside a transaction the service opened
 * itself, each libevents call records at once (one bookmark per call).
 *
 * Threads: the calls lock the connection for their duration. The connection
 * must stay open while it is tracked. Each events_track, each collection and
 * an emitter open on it while it is tracked count once; it is untracked when
 * the last count goes (events_untrack, events_collection_close,
 * events_emitter_close), and only then may it be closed (sqlite3_close).
 */

/* A bookmark: 16 lowercase hex digits, string order = change order. */
#define EVENTS_BOOKMARK_LEN 16

typedef struct events_track_config {
    /*
     * names the database in the lake: [0-9A-Za-z_.-], at most 32; default: the
     * one it had, else a generated one (kept in _events_meta)
     */
    const char *source;
    int prune_on_snapshot; /* after a snapshot, drop the delivered change log up to it */
} events_track_config;

/*
 * Starts tracking a connection to a database file (creates _events_changes,
 * _events_meta, _events_collections, _events_outbox, _events_dead if
 * missing). cfg may be NULL.
 * Tracking an already tracked connection is counted and needs as many
 * events_untrack. Installs SQLite's preupdate, commit and rollback hooks on
 * the connection: EVENTS_ESTATE if it has hooks of its own.
 */
EVENTS_API int events_track(sqlite3 *db, const events_track_config *cfg);
EVENTS_API int events_untrack(sqlite3 *db);

/* Runs SQL (one or more statements) on a tracked connection as a recorded write. */
EVENTS_API int events_exec(sqlite3 *db, const char *sql);

/*
 * A recorded transaction on a tracked connection without an emitter (with
 * one, events_begin/events_commit do the same): everything written between
 * them becomes one changeset, one bookmark.
 */
EVENTS_API int events_tx_begin(sqlite3 *db);
EVENTS_API int events_tx_commit(sqlite3 *db);
EVENTS_API int events_tx_rollback(sqlite3 *db);

/*
 * The bookmark of the last transaction recorded in the database, as this connection sees it
 * ("0000000000000000" before any). Inside a transaction the service opened itself, each
 * libevents call records at once, and this is the bookmark of the last one; inside
 * events_tx_begin's (or events_begin's) transaction nothing is recorded before the commit.
 * A ROLLBACK, or a ROLLBACK TO a savepoint taken before a record, takes the record away and
 * its bookmark with it: events_bookmark is the one before again, and the next record gets
 * the number again. So a bookmark read inside a transaction names a change once that
 * transaction commits, not before. EVENTS_EDB if the connection cannot read _events_meta.
 */
EVENTS_API int events_bookmark(sqlite3 *db, char out[EVENTS_BOOKMARK_LEN + 1]);

typedef struct events_restore_report {
    uint64_t transactions;               /* recorded transactions undone */
    uint64_t inserted, updated, deleted; /* rows the restore wrote, all tables */
    /* the restore's own bookmark ("" for a dry run or no change) */
    char bookmark[EVENTS_BOOKMARK_LEN + 1];
} events_restore_report;

/*
 * Brings every tracked table back to its state right after the transaction
 * with the given bookmark, atomically, and records that as a transaction of
 * its own (so a restore can be undone by restoring to the bookmark before it).
 * dry_run: only fill the report. report may be NULL. Errors: EVENTS_EINVAL
 * (not a bookmark, or in the future), EVENTS_ESTATE (pruned from the change
 * log, across a schema change, inside a transaction, or a row that changed
 * outside libevents' record), EVENTS_EDB.
 */
EVENTS_API int events_restore(sqlite3 *db, const char *bookmark, int dry_run,
                              events_restore_report *report);

/*
 * Writes a consistent copy of the database (SQLite's online backup) to path,
 * which must not exist, as of the last recorded transaction, whose bookmark
 * goes to bookmark (may be NULL). The copy keeps the tracked tables,
 * _events_meta and the collection registry; the change log and the outbox
 * are left out.
 */
EVENTS_API int events_snapshot_file(sqlite3 *db, const char *path,
                                    char bookmark[EVENTS_BOOKMARK_LEN + 1]);

/*
 * Takes a snapshot of the emitter's tracked database and uploads it to the
 * server (PUT /snapshots/{source}/{bookmark}), which keeps it in the lake for
 * `events restore --lake`. Blocks for the copy and the upload.
 */
EVENTS_API int events_snapshot(events_emitter *em, char bookmark[EVENTS_BOOKMARK_LEN + 1]);

/*
 * Drops the change log up to and including bookmark, keeping what the outbox
 * has not delivered yet.
 */
EVENTS_API int events_changes_prune(sqlite3 *db, const char *bookmark);

/* ---- Collections ------------------------------------------------------------
 *
 * A collection is a table of JSON documents by id in a tracked database:
 * CREATE TABLE name(id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID.
 * Each change is recorded (see above) and becomes a collection.insert,
 * collection.update or collection.delete event with the collection, the
 * docId, the doc (null on delete), the previous document prev (null on
 * insert; left out when the collection does not track it) and the bookmark.
 * A put that changes nothing records nothing.
 *
 * Documents are JSON objects (valid UTF-8, nesting at most 63, unique keys at
 * the top, at most max_doc_bytes); they are stored without insignificant
 * whitespace. Ids are 1-255 bytes of UTF-8.
 */

typedef struct events_collection events_collection;

typedef struct events_collection_config {
    int no_prev;          /* leave prev out of the events (the change log still has it) */
    size_t max_doc_bytes; /* default 120 KiB, so that doc and prev fit the server's event limit */
} events_collection_config;

/*
 * Opens (creating if missing) the collection name ([a-z0-9_]+, at most 64,
 * not starting with _events_ or sqlite_) on the emitter's database, or on a
 * database without an emitter (its events wait in the outbox until an emitter
 * opens on it). Tracks the connection if it is not yet. cfg may be NULL.
 *
 * Lifetimes: a collection belongs to the database connection, not to the
 * emitter, and counts as one events_track of it. It stays valid, every call
 * working, until events_collection_close, in whichever order the emitter and
 * the collections are closed (see events_emitter_close). events_collection_close
 * ignores NULL; the handle is gone after it.
 */
EVENTS_API int events_collection_open(events_emitter *em, const char *name,
                                      const events_collection_config *cfg, events_collection **out);
EVENTS_API int events_collection_open_db(sqlite3 *db, const char *name,
                                         const events_collection_config *cfg,
                                         events_collection **out);
EVENTS_API void events_collection_close(events_collection *c);

EVENTS_API int events_collection_put(events_collection *c, const char *id, const char *json);
/* *json: the document (free with events_free), or EVENTS_ENOTFOUND. */
EVENTS_API int events_collection_get(events_collection *c, const char *id, char **json);
/* EVENTS_OK, or EVENTS_ENOTFOUND when there was no such document. */
EVENTS_API int events_collection_delete(events_collection *c, const char *id);
/* 1, 0, or a negative code. */
EVENTS_API int events_collection_has(events_collection *c, const char *id);
EVENTS_API int events_collection_count(events_collection *c, uint64_t *count);
/*
 * Calls fn(ud, id, json) for at most limit documents (0: no limit) in id
 * order, starting after the id `after` (NULL: from the first). fn returns
 * nonzero to stop. To page, pass the last id seen as the next `after`.
 */
typedef int (*events_doc_fn)(void *ud, const char *id, const char *json);
EVENTS_API int events_collection_list(events_collection *c, const char *after, size_t limit,
                                      events_doc_fn fn, void *ud);
/* Deletes every document, as one recorded transaction. */
EVENTS_API int events_collection_clear(events_collection *c);
/* Puts or deletes n documents in one recorded transaction: all or none. */
EVENTS_API int events_collection_put_many(events_collection *c, size_t n, const char *const *ids,
                                          const char *const *jsons);
EVENTS_API int events_collection_delete_many(events_collection *c, size_t n,
                                             const char *const *ids);

/* Frees memory libevents returned. */
EVENTS_API void events_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
