/*
 * emitter_int.h - the inside of libevents' emitter: its struct, shared by emitter.c (the API:
 * building and checking events), sender.c (the thread that posts them, sender_int.h) and the
 * files that read its settings (restore.c); and the tracker's note to it.
 *
 * Ownership: the emitter owns the outbox (outbox_int.h) and the sender thread. The outbox's
 * emit side is used under the emitter's mutex; its send side only by the sender thread;
 * counters are atomics readable from anywhere. The emitter does not own the collections
 * opened through it: on a tracked connection it holds one count of the tracker while it is
 * open, and its close detaches it (cdc_int.h, cdc__tracker_detach_emitter), handing its own
 * connection to the tracker when collections still use it.
 */
#ifndef EVENTS_EMITTER_INT_H
#define EVENTS_EMITTER_INT_H

#include "buf.h"
#include "events.h"
#include "outbox_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

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

/* The tracker wrote an outbox row seq (a record), or, seq <= 0, committed its records: the
 * emitter counts it as waiting, or wakes the sender (emitter.c). */
void emitter__note_outbox(events_emitter *em, int64_t seq);

#endif
