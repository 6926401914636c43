/*
 * emitter_int.h - the inside of libevents' emitter, shared by its files:
 * emitter.c (the API: building and checking events), outbox.c (where events
 * wait: SQLite or memory), sender.c (the thread that posts them).
 *
 * Ownership: the emitter owns the outbox and the sender thread. The outbox's
 * emit side is used under the emitter's mutex; its send side only by the
 * sender thread; counters are atomics readable from anywhere. The emitter
 * does not own the collections opened through it: on a tracked connection it
 * holds one count of the tracker while it is open, and its close detaches it
 * (cdc.h, cdc__tracker_detach_emitter), handing its own connection to the tracker
 * when collections still use it.
 */
#ifndef EVENTS_EMITTER_INT_H
#define EVENTS_EMITTER_INT_H

#include "buf.h"
#include "events.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- errors (errors.c) ---- */

/* Sets the calling thread's message and returns code. */
int ev_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the outbox (outbox.c) ---- */

typedef struct outbox outbox;

/* One event of a batch being sent. */
typedef struct ob_item {
    uint64_t seq;
    uint32_t part;     /* which of the row's events (a recorded transaction's row has many) */
    int last;          /* the row's last event */
    const char *event; /* owned by the batch */
    size_t len;
} ob_item;

typedef struct ob_batch {
    ob_item *items;
    size_t n, cap;
    buf text; /* the events' bytes, items point into it */
} ob_batch;

/* A database outbox on the service's handle (db) or a file (path); or memory. */
int outbox_open_db(sqlite3 *db, const char *path, size_t capacity, outbox **out);
int outbox_open_memory(size_t capacity, outbox **out);
void outbox_close(outbox *o);

/*
 * Emit side, under the emitter's mutex (memory: any thread, no lock needed).
 * committed: set to 1 if the event committed on its own.
 */
int outbox_put(outbox *o, const char *event, size_t len, int *committed);
int outbox_begin(outbox *o);
int outbox_commit(outbox *o);
int outbox_rollback(outbox *o);

/*
 * Sender side: the oldest events from row `from`, event from_part on (from 0:
 * the head), at most n and bytes (at least one event if any wait). A row that
 * points at a recorded transaction gives that transaction's events.
 */
int outbox_peek(outbox *o, uint64_t from, uint32_t from_part, size_t n, size_t bytes, ob_batch *b);
/* Where the events after the batch start. */
void outbox_after(const ob_batch *b, uint64_t *seq, uint32_t *part);
/* The "do" member of the emitter, for the events of recorded transactions. */
void outbox_set_identity(outbox *o, const char *do_member, size_t len);
/* The connection emits write on (the service's, or the emitter's own). */
sqlite3 *outbox_edb(outbox *o);
/* 1 if that connection is the outbox's own (db_path), which outbox_close closes ... */
int outbox_owns_edb(const outbox *o);
/* ... unless it was left to another owner (the tracker of the collections on it). */
void outbox_leave_edb(outbox *o);

/*
 * The batch's first `done` events were answered: rejected[i] (index into the
 * batch) with reason[i] go to the dead letters, the rest are delivered. All
 * leave the outbox.
 */
int outbox_done(outbox *o, const ob_batch *b, size_t done, const size_t *rejected,
                char *const *reason, size_t nrejected);

/*
 * Delivered rows leave the table in bulk: outbox_done only moves the head,
 * and outbox_trim deletes the rows delivered so far. wait 0: only if the
 * database is free right now, and only once a thousand or so have gathered
 * (the sender, between requests); wait 1: all of them, waiting for the lock
 * (when it has caught up, and before it stops).
 */
int outbox_trim(outbox *o, int wait);

/* Every event of the batch goes to the dead letters with one reason. */
int outbox_dead(outbox *o, const ob_batch *b, const char *reason);

void ob_batch_free(ob_batch *b);

/* A row was added by other code (the change log): counts it as waiting. */
void outbox_note(outbox *o, uint64_t seq);

/* Events waiting (committed and not yet acknowledged). */
uint64_t outbox_pending(outbox *o);

/*
 * After the sender found nothing to send: lowers the emitter's count of
 * waiting events to what is committed (a service's own ROLLBACK takes events
 * back without the emitter knowing).
 */
void outbox_resync(outbox *o);

/* The sequence number of the last committed event (0 if none); the sender's view. */
uint64_t outbox_last_committed(outbox *o);

/* The lowest sequence number still waiting, or last_committed + 1 when none wait. */
uint64_t outbox_head(outbox *o);

/* Rows dead-lettered because their transaction was gone from the change log. */
uint64_t outbox_lost(outbox *o);

/* Memory mode: events dropped (refused when full, or left at close). */
uint64_t outbox_dropped(outbox *o);
void outbox_drop_all(outbox *o);
int outbox_is_memory(const outbox *o);

/* ---- the emitter ---- */

struct events_emitter {
    events_config cfg;
    char *endpoint, *token, *auth_header;
    char *post_url; /* endpoint and ?rejected=all: every refused event listed with its reason */
    buf identity;   /* ,"do":{...} or empty */
    outbox *ob;

    pthread_mutex_t mu; /* the emit side of the outbox, in_tx */
    int in_tx;          /* events_begin is open */

    /* the sender */
    pthread_t thread;
    void *curl, *multi; /* the sender's CURL and CURLM handles, kept for keep-alive */
    pthread_mutex_t smu;
    pthread_cond_t scv;  /* wakes the sender */
    pthread_cond_t done; /* progress, for events_flush */
    int stop, wake;
    int idle;         /* the sender waits for work (not for a retry): a wake must signal it */
    int64_t abort_at; /* close: stop a transfer past this (monotonic ms); 0: never */

    _Atomic uint64_t in_flight, delivered, duplicates, retried, dead;
    pthread_mutex_t emu; /* last_error, last_status */
    int last_status;
    char last_error[256];
    _Atomic uint64_t
        since_wake; /* events emitted since the sender was last woken for a full batch */
};

int64_t ev_clock(const events_emitter *em);

/* The tracker wrote an outbox row seq (a record), or, seq <= 0, committed its records: the
 * emitter counts it as waiting, or wakes the sender (emitter.c). */
void emitter__note_outbox(events_emitter *em, int64_t seq);

/* Starts / stops the sender thread (sender.c). */
int sender_start(events_emitter *em);
void sender_stop(events_emitter *em);
void sender_wake(events_emitter *em);

#endif
