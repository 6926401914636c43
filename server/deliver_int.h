/*
 * deliver_int.h - inside the delivery engine (deliver.h): what its files share.
 *
 * deliver.c starts and stops the engine and runs its poller (leases, the
 * records' changes); deliver_work.c is the workers' loop (which job next);
 * deliver_batch.c reads a batch and builds its request body and dead letter;
 * deliver_http.c makes an attempt with libcurl and classifies the answer;
 * deliver_record.c reads a record into a deliver__conf and holds the edits
 * the engine writes with lake_subs_update.
 */
#ifndef EVENTS_DELIVER_INT_H
#define EVENTS_DELIVER_INT_H

#include "deliver.h"
#include "subs.h"

#include <pthread.h>
#include <stdatomic.h>

#define DELIVER__WINDOW                                                                            \
    16                      /* batches of one subscription in flight, at most (concurrency's max)  \
                             */
#define DELIVER__MSG_ID  36 /* "msg_" + 32 hex */
#define DELIVER__PREFIX  48 /* "{webhook-id}.{10 digits}." before a batch's body */
#define DELIVER__EXCERPT 1024
#define DELIVER__ELOST   (-100) /* an edit found another owner in the record */

enum deliver__mode { DELIVER__MAIN, DELIVER__REPLAY, DELIVER__RETRY };
enum deliver__bstate { DELIVER__B_RUNNING, DELIVER__B_WAITING, DELIVER__B_DONE };

/* What a worker does when the subscription's state allows it. */
enum deliver__job { DELIVER__J_NONE, DELIVER__J_DISPATCH, DELIVER__J_ATTEMPT, DELIVER__J_PERSIST };

/* A subscription's settings, from its record; shared by reference (refs under d->mu). */
typedef struct deliver__conf {
    int refs;
    char *url, *pattern;
    char *f_class, *f_id, *f_coll; /* the filters; NULL: none */
    unsigned char key[64];         /* the secret's key, decoded */
    size_t keylen;
    size_t batch;
    int64_t max_wait_ms, timeout_ms;
    unsigned max_attempts, concurrency;
    int active; /* state "active" */
} deliver__conf;

typedef struct deliver__batch {
    int mode, state;
    uint64_t gen;             /* the subscription's generation it was read in */
    buf msg;                  /* DELIVER__PREFIX bytes, then the body */
    size_t ev_off, ev_len;    /* the events' text in msg (without the brackets) */
    char *from, *next;        /* cursors before and after it */
    char first[48], last[48]; /* positions of its first and last event */
    char msg_id[DELIVER__MSG_ID + 1];
    size_t count;
    int64_t oldest_ms; /* receivedAt of its first event */
    unsigned attempts;
    int64_t due_ms; /* DELIVER__B_WAITING: the next attempt, not before */
    long status;    /* of the last attempt (0: no answer) */
    char error[256];
    buf excerpt;             /* the first DELIVER__EXCERPT bytes of the last answer */
    char dead[LAKE_KEY_MAX]; /* DELIVER__RETRY: the dead letter it comes from */
} deliver__batch;

/* A subscription this server knows; every member under d->mu. */
typedef struct deliver__sub {
    char id[LAKE_SUB_ID_MAX + 1];
    lake_sub base; /* the record last read or written */
    deliver__conf *conf;
    int seen;  /* listed by the last poll */
    int owned; /* this server holds the lease, until lease_until */
    int64_t lease_until, renew_at;
    uint64_t gen; /* bumped when what is in flight is dropped */
    int reset;    /* start again from the record (ownership, state, mode changed) */
    int mode;
    lake_cursor rd;    /* where the next read starts */
    int rd_set;        /* rd holds a position (else: the record's start) */
    int64_t since_ms;  /* rd not set: from this time (-1: the oldest) */
    int64_t replay_to; /* DELIVER__REPLAY: the end of the range */
    int reading, running, persisting;
    size_t unrecorded; /* batches done (2xx or dead-lettered) whose cursor is not written yet */
    size_t recording;  /* of those, the ones the persist in progress writes */
    deliver__batch *q[DELIVER__WINDOW]; /* dispatched, in order, the done prefix removed */
    size_t qn;
    deliver__batch *ahead; /* DELIVER__MAIN: the batch after q's, read while the window was
                            * full; attempted first when it has room (not in flight yet) */
    char *done;            /* the cursor after the done prefix, to persist; NULL: none */
    int dirty;             /* something to persist */
    int64_t persist_after; /* a failed write: not again before */
    int64_t idle_until;    /* no dispatch before, unless committed reaches wake_at */
    uint64_t wake_at;
    int64_t pending_oldest;        /* a batch held for maxWait: its oldest event's receivedAt */
    int replay_end;                /* the replay read past its end: persist replay null */
    uint64_t retry_req, retry_set; /* retryRequested seen; retryDone to write (0: none) */
    char retry_name[LAKE_KEY_MAX], retry_after[LAKE_KEY_MAX];
    int disable;                            /* a 410: persist state "disabled" */
    uint64_t d_delivered, d_dead, d_failed; /* not yet in the record */
    char last_error[256];
    int64_t last_error_at;
    uint64_t delivered, dead, failed; /* since this server started: the metrics */
} deliver__sub;

struct deliver {
    deliver_config cfg;
    char owner[128]; /* host:pid:xxxx */
    lake_subs *subs;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* workers: work may be there */
    pthread_cond_t poll_cv;     /* the poller: stop */
    deliver__sub **sub;         /* under mu; an entry is freed only when nothing uses it */
    size_t nsub, cap, next;     /* next: where the workers' scan starts (fairness) */
    _Atomic int stopping;       /* set by deliver_stop, under mu (for the sleepers' sake) */
    _Atomic uint64_t committed; /* events made durable (deliver_notify) */
    _Atomic uint64_t wake_min;  /* committed at which a sleeping subscription looks again */
    _Atomic int busy;           /* workers in an attempt: the connections in use */
    pthread_t poller, *workers;
    unsigned nworkers, started;
    int poller_started;
};

/* ---- deliver.c ---- */
void deliver__conf_put(deliver__conf *c); /* drops a reference, under d->mu */
void deliver__batch_free(deliver__batch *b);
/* Drops the batches in flight of s and bumps its generation (under d->mu). */
void deliver__drop(deliver__sub *s);
/* Events read for s and not delivered yet, and the receivedAt of the oldest (0: none). */
size_t deliver__lag_events(const deliver__sub *s);
int64_t deliver__lag_oldest(const deliver__sub *s);
void deliver__log(const char *msg, const char *id, const char *err);
/* Takes rec (moved out of) as s's record when newer than s->base: its settings, its owner,
 * its state; what changed drops or restarts s's delivery (under d->mu). */
void deliver__apply(deliver *d, deliver__sub *s, lake_sub *rec);

/* ---- deliver_record.c ---- */
/* The settings of rec: 0, or -1 (err: the field) when the record cannot be delivered. */
int deliver__conf_of(const json_t *rec, deliver__conf **out, char *err, size_t errlen);
/* Takes the lease of a subscription (edit of lake_subs_update; ud: the deliver). */
int deliver__edit_take(json_t *rec, void *ud, char *err, size_t errlen);

typedef struct deliver__persist {
    const char *owner;
    int64_t lease_until; /* 0: give the lease up */
    int mode;
    const char *done; /* NULL: the cursor stays */
    int replay_end, disable;
    uint64_t retry_set;
    uint64_t d_delivered, d_dead, d_failed;
    long long lag_events;
    double lag_seconds;
    const char *last_error;
    int64_t last_error_at;
} deliver__persist;
/* Writes a persist's cursor, stats and lease (edit of lake_subs_update; ud: deliver__persist). */
int deliver__edit_persist(json_t *rec, void *ud, char *err, size_t errlen);
/* The record's cursor text of mode (main: "cursor", replay: replay.cursor); "" if none. */
const char *deliver__rec_cursor(const json_t *rec, int mode);
int64_t deliver__rec_int(const json_t *rec, const char *name, int64_t dflt);

/* ---- deliver_batch.c ---- */
/* Reads s's next batch (mode, position and conf given): 0 and *out (NULL: none to send now). */
typedef struct deliver__read {
    deliver__conf *conf;
    const char *id;
    int mode;
    const lake_cursor *after;
    int64_t since_ms, replay_to, now_ms;
    lake_stream_res res; /* the read, for its next cursor (the caller frees it) */
    int64_t oldest_ms;   /* receivedAt of the first event (0: none) */
    int wait;            /* short and young: wait for more (maxWaitMs) */
    int ended;           /* replay: past its end */
} deliver__read;
int deliver__read_batch(deliver *d, deliver__read *r, deliver__batch **out, char *err,
                        size_t errlen);
/* The next dead letter of id to retry (after `after`, named `name` if set), its name in key
 * ("" none; set on an error too, so that the retry goes past it): *out NULL: none. */
int deliver__retry_batch(deliver *d, const char *id, const char *after, const char *name,
                         char key[LAKE_KEY_MAX], deliver__batch **out, char *err, size_t errlen);
/* The dead letter of b (the subscription id's): its JSON text into out. 0 or -1. */
int deliver__dead_doc(const deliver__batch *b, const char *id, int64_t now_ms, buf *out);

/* ---- deliver_http.c ---- */
typedef struct deliver__conn deliver__conn;
deliver__conn *deliver__conn_new(deliver *d);
void deliver__conn_free(deliver__conn *c);
enum deliver__outcome { DELIVER__OK, DELIVER__GONE, DELIVER__FAILED };
/* One attempt of b to conf's URL: the outcome; b's status, error and excerpt; *retry_ms the
 * wait the answer asked for (-1: none). */
int deliver__attempt(deliver__conn *c, const deliver__conf *conf, deliver__batch *b,
                     int64_t *retry_ms);
/* The wait before attempt n+1 (n failed so far): full jitter over the capped exponential. */
int64_t deliver__backoff(const deliver *d, unsigned n);

/* ---- deliver_work.c ---- */
void *deliver__worker(void *arg);
/* At the stop, the threads joined: writes each held subscription's progress, leaseUntil 0. */
void deliver__give_up(deliver *d);

#endif
