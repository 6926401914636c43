/*
 * writer.h - the lake writer: accepted events to durable spool segments, and
 * sealed segments into the store.
 *
 * Ingest threads hand the writer batches of normalised lines. The writer
 * thread takes every batch that is waiting, drops events whose id is in the
 * dedup window, appends the rest to the open segment of their hour partition
 * (one file per hour in the spool directory), and makes them durable with one
 * fdatasync per touched segment for the whole group: a group commit. Only
 * then does it complete the batches, so an answer always follows durability;
 * a failed write or sync fails every batch of the group and the ids are
 * forgotten again, so a retry is stored, not answered as a duplicate.
 *
 * A batch may also carry the quarantine lines of the records its request
 * refused (quarantine.h): they are written to segments of their own kind, per
 * receive hour, in the same group commit, never deduplicated.
 *
 * A segment is sealed when it reaches seal_bytes or seal_age_ms, and a sealer
 * thread moves it into the store under events/yyyy/mm/dd/hh/{uuid}.jsonl, or
 * rejected/yyyy/mm/dd/hh/{uuid}.jsonl for the quarantine (see layout.h). Opening the writer
 * recovers what a crash left in the spool: a torn last line is cut, every complete line is kept and
 * sealed, and the dedup window is rebuilt from the spool and the most recently sealed segments
 * (listed in spool/sealed.log), so a client retrying across a restart is still answered with
 * duplicates.
 *
 * The spool may change under the writer (a segment deleted or replaced, the
 * directory removed): before a group is acknowledged each segment it wrote
 * must still be the file the spool names, or the group fails and the writer
 * writes what it acknowledged earlier back from its open descriptors. What no
 * descriptor reaches any more is reported lost (stats), never counted sealed.
 * At most max_open_segments segments are open at once, whatever the spread
 * of the events' hours.
 *
 * Threads: lake_writer_submit and lake_writer_commit may be called from any
 * thread; a batch's done callback runs on the thread that commits it (the
 * writer thread, or lake_writer_commit's caller) and must not block.
 */
#ifndef EVENTS_WRITER_H
#define EVENTS_WRITER_H

#include "histo.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lake_writer lake_writer;

/* One event of a batch: its line in the batch's buffer, '\n' included. A line that ends with
 * the position placeholder (layout.h, LAKE_POS_PLACEHOLDER) is numbered when it is stored. */
typedef struct lake_event {
    uint32_t off, len;
    uint32_t id_off; /* id characters, inside lines */
    uint16_t id_len;
    uint8_t client_id; /* only client-chosen ids can be retried, so only they are deduplicated */
    uint8_t stored;    /* set by the writer: 1 written, 0 a duplicate (when the batch succeeded) */
    int64_t hour;
} lake_event;

typedef struct lake_batch lake_batch;
typedef void (*lake_done_fn)(lake_batch *b, void *ud);

struct lake_batch {
    char *lines;    /* the writer fills in each stored event's position (layout.h) */
    lake_event *ev; /* the writer sets each one's stored */
    size_t n;
    /* quarantine lines (LAKE_KIND_REJECTED), each hour its receive hour; not deduplicated */
    const char *qlines;
    lake_event *qev;
    size_t qn;
    /* results, set before done is called */
    int status; /* 0: persisted; -1: nothing of this batch was persisted, see error */
    size_t accepted, duplicates;
    size_t quarantined; /* quarantine lines written (qn when the batch succeeded) */
    char error[256];
    lake_done_fn done;
    void *ud;
    lake_batch *next; /* the writer's queue */
};

typedef struct lake_writer_config {
    const char *spool_dir; /* created if missing; one writer per spool */
    store *store;          /* not owned */
    uint64_t seal_bytes;   /* default 64 MiB */
    int64_t seal_age_ms;   /* default 30 s */
    size_t dedup_window;   /* ids remembered; default 1,000,000 */
    uint64_t spool_max;    /* refuse batches while this much of hour segments waits in the spool; 0:
                              no limit */
    size_t max_open_segments; /* open segments (one per hour written) at most; default 64 */
} lake_writer_config;

typedef struct lake_writer_stats {
    uint64_t spool_bytes; /* in the spool, not yet in the store (the stream log's too; spool_max
                             counts the hour segments alone) */
    uint64_t segments_open;
    uint64_t segments_sealed; /* moved into the store */
    uint64_t seal_failures;   /* attempts to move that failed (retried) */
    uint64_t commits, commit_failures;
    uint64_t recovered_events;
    const histo *fsync;        /* fdatasync latency */
    char last_error[256];      /* last persistence failure, "" if none since start */
    int sealing_failing;       /* the last attempt to move a segment into the store failed */
    char seal_error[256];      /* its reason */
    uint64_t segments_evicted; /* closed early to stay within max_open_segments */
    uint64_t segments_rescued; /* found deleted or replaced, written again from the descriptor */
    uint64_t spool_recreated;  /* the spool directory found removed or moved, made again */
    uint64_t segments_lost, events_lost; /* acknowledged, then deleted beyond saving */
    char incident[256];           /* the last rescue or re-creation, "" if none since start */
    char lost[256];               /* the last loss, "" if none since start */
    uint64_t stream_seq;          /* the last seq given (stored events of the stream so far) */
    uint64_t stream_files_sealed; /* stream segments moved into the store */
} lake_writer_stats;

/*
 * Recovers the spool and starts the writer and sealer threads. Returns 0 and
 * *out, or -1 with a message in err (spool unusable or in use, store broken).
 */
int lake_writer_open(const lake_writer_config *cfg, lake_writer **out, char *err, size_t errlen);

/* Queues b; b->done is called once the batch is durable or has failed. */
void lake_writer_submit(lake_writer *w, lake_batch *b);

/*
 * Commits the batches of the list b (linked by next), with any the queue
 * holds, on the calling thread, as the writer thread would: returns once each
 * one's done has been called (on this thread). Waits while another thread
 * commits. For a thread that reads requests and would otherwise hand each
 * batch to the writer thread and wait for it to come back.
 */
void lake_writer_commit(lake_writer *w, lake_batch *b);

/* Seals every open segment and waits until the sealer has moved all it can. */
void lake_writer_flush(lake_writer *w);

/*
 * Completes queued batches, seals every segment, tries to move them into the
 * store (segments that cannot be moved stay in the spool for the next start)
 * and stops. NULL is ignored.
 */
void lake_writer_close(lake_writer *w);

void lake_writer_stats_get(lake_writer *w, lake_writer_stats *st);

/* 1 if the last group commit failed (the spool cannot take writes now). */
int lake_writer_failing(lake_writer *w);

/* The spool directory (absolute). */
const char *lake_writer_spool_dir(const lake_writer *w);

/*
 * Readers of the spool (queries). lake_writer_pin_spool pins every segment
 * now in the spool, open or waiting to be sealed: the sealer does not move a
 * pinned segment into the store until it is unpinned. A segment being moved
 * when it is called is waited for, so that a listing of the store taken after
 * pinning and the pinned segments hold every event exactly once. An open
 * segment keeps growing while pinned; its last line may be torn. Returns 0,
 * or -1 with a message in err (out of memory). Any thread.
 */
typedef struct lake_writer_pins lake_writer_pins;
int lake_writer_pin_spool(lake_writer *w, lake_writer_pins **out, char *err, size_t errlen);
size_t lake_writer_pins_count(const lake_writer_pins *p);
/* The i-th pinned segment: its kind (enum lake_kind), its hour and its path. */
void lake_writer_pins_get(const lake_writer *w, const lake_writer_pins *p, size_t i, int *kind,
                          int64_t *hour, char *path, size_t cap);
void lake_writer_unpin_spool(lake_writer *w, lake_writer_pins *p); /* NULL is ignored */

/*
 * The stream (layout.h): every stored event whose line has a position gets
 * the next seq of the writer's stream id, written into its line in the
 * batch's buffer before the line is written, so the lines a batch hands back
 * carry it. The lines are also appended, in seq order, to the stream log:
 * the open stream segment in the spool, sealed like the others into
 * stream/{sid}/{first seq:016x}.jsonl.
 *
 * lake_writer_sid: the stream id, LAKE_SID_LEN characters (kept in SPOOL/stream-id).
 *
 * lake_writer_stream_segments: the sid's stream segments still in the spool,
 * oldest first, each holding the seqs [first, last] one line each: the ones
 * waiting for the sealer (open 0), then the open one (open 1: read no further
 * than bytes, what its last committed group wrote; last is first - 1 while it
 * holds none). A snapshot: a segment the sealer moves afterwards is no longer
 * at its path but in the lake (lake_stream_key). *out (free it) may be NULL
 * when n is 0. 0, or -1 with err set (out of memory). Any thread.
 */
typedef struct lake_writer_stream_seg {
    char path[4200];
    uint64_t first, last, bytes;
    int open;
} lake_writer_stream_seg;
const char *lake_writer_sid(const lake_writer *w);
int lake_writer_stream_segments(lake_writer *w, lake_writer_stream_seg **out, size_t *n, char *err,
                                size_t errlen);

/*
 * The spool seen from another process (the command line), without a writer.
 *
 * lake_writer_spool_held: 1 if a writer (a running server) holds the spool's lock,
 * with its pid in *pid when the lock file names it (else 0); 0 if none does
 * (also when the spool or its lock file does not exist). It tries a shared
 * lock for an instant, which a writer opening the spool at that moment waits
 * out (lake_writer_open tries its lock again for up to 100 ms).
 *
 * lake_writer_spool_count: the spool's event segments and the whole lines (events) in
 * them (quarantine segments are not counted), as they are now (a running writer's segments grow).
 * 0, or -1 with a message in err (also when there is no spool).
 */
#define LAKE_WRITER_SPOOL_LOCK "LOCK" /* the spool's lock file, holding the writer's pid */
int lake_writer_spool_held(const char *spool_dir, long *pid);
int lake_writer_spool_count(const char *spool_dir, uint64_t *segments, uint64_t *events, char *err,
                            size_t errlen);

#endif
