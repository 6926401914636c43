/*
 * outbox_int.h - the inside of libevents' outbox (outbox.c): where an emitter's events wait,
 * in SQLite (the service's database or a file of its own) or in memory, until the sender has
 * them answered. Used by the emitter (emitter.c, the emit side), its sender (sender.c, the
 * send side) and the files that need the connection emits write on (collection.c,
 * restore.c).
 *
 * Threads: the emit side is used under the emitter's mutex; the send side only by the sender
 * thread; the counters are atomics readable from anywhere.
 */
#ifndef EVENTS_OUTBOX_INT_H
#define EVENTS_OUTBOX_INT_H

#include "buf.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outbox outbox;

/* One event of a batch being sent. */
typedef struct outbox__item {
    uint64_t seq;
    uint32_t part;     /* which of the row's events (a recorded transaction's row has many) */
    int last;          /* the row's last event */
    const char *event; /* owned by the batch */
    size_t len;
} outbox__item;

typedef struct outbox__batch {
    outbox__item *items;
    size_t n, cap;
    buf text; /* the events' bytes, items point into it */
} outbox__batch;

/* A database outbox on the service's handle (db) or a file (path); or memory. */
int outbox__open_db(sqlite3 *db, const char *path, size_t capacity, outbox **out);
int outbox__open_memory(size_t capacity, outbox **out);
void outbox__close(outbox *o);

/*
 * Emit side, under the emitter's mutex (memory: any thread, no lock needed).
 * committed: set to 1 if the event committed on its own.
 */
int outbox__put(outbox *o, const char *event, size_t len, int *committed);
int outbox__begin(outbox *o);
int outbox__commit(outbox *o);
int outbox__rollback(outbox *o);

/*
 * Sender side: the oldest events from row `from`, event from_part on (from 0:
 * the head), at most n and bytes (at least one event if any wait). A row that
 * points at a recorded transaction gives that transaction's events.
 */
int outbox__peek(outbox *o, uint64_t from, uint32_t from_part, size_t n, size_t bytes,
                 outbox__batch *b);
/* Where the events after the batch start. */
void outbox__after(const outbox__batch *b, uint64_t *seq, uint32_t *part);
/* The "do" member of the emitter, for the events of recorded transactions. */
void outbox__set_identity(outbox *o, const char *do_member, size_t len);
/* The connection emits write on (the service's, or the emitter's own). */
sqlite3 *outbox__edb(outbox *o);
/* 1 if that connection is the outbox's own (db_path), which outbox__close closes ... */
int outbox__owns_edb(const outbox *o);
/* ... unless it was left to another owner (the tracker of the collections on it). */
void outbox__leave_edb(outbox *o);

/*
 * The batch's first `done` events were answered: rejected[i] (index into the
 * batch) with reason[i] go to the dead letters, the rest are delivered. All
 * leave the outbox.
 */
int outbox__done(outbox *o, const outbox__batch *b, size_t done, const size_t *rejected,
                 char *const *reason, size_t nrejected);

/*
 * Delivered rows leave the table in bulk: outbox__done only moves the head,
 * and outbox__trim deletes the rows delivered so far. wait 0: only if the
 * database is free right now, and only once a thousand or so have gathered
 * (the sender, between requests); wait 1: all of them, waiting for the lock
 * (when it has caught up, and before it stops).
 */
int outbox__trim(outbox *o, int wait);

/* Every event of the batch goes to the dead letters with one reason. */
int outbox__dead(outbox *o, const outbox__batch *b, const char *reason);

void outbox__batch_free(outbox__batch *b);

/* A row was added by other code (the change log): counts it as waiting. */
void outbox__note(outbox *o, uint64_t seq);

/* Events waiting (committed and not yet acknowledged). */
uint64_t outbox__pending(outbox *o);

/*
 * After the sender found nothing to send: lowers the emitter's count of
 * waiting events to what is committed (a service's own ROLLBACK takes events
 * back without the emitter knowing).
 */
void outbox__resync(outbox *o);

/* The sequence number of the last committed event (0 if none); the sender's view. */
uint64_t outbox__last_committed(outbox *o);

/* The lowest sequence number still waiting, or last_committed + 1 when none wait. */
uint64_t outbox__head(outbox *o);

/* Rows dead-lettered because their transaction was gone from the change log. */
uint64_t outbox__lost(outbox *o);

/* Memory mode: events dropped (refused when full, or left at close). */
uint64_t outbox__dropped(outbox *o);
void outbox__drop_all(outbox *o);
int outbox__is_memory(const outbox *o);

#endif
