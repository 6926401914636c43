/*
 * writer_int.h - the lake writer's inside: its state and the functions its
 * four files share (writer.c says which file does what). Only lake/writer*.c
 * include it.
 */
#ifndef EVENTS_WRITER_INT_H
#define EVENTS_WRITER_INT_H

#include "dedup.h"
#include "layout.h"
#include "writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct writer__segment {
    int kind; /* enum lake_kind */
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    char name[LAKE_KEY_MAX];
    int fd;    /* read-write: what it holds can be copied out if its name is deleted */
    dev_t dev; /* the file fd is open on: the spool must still name it at every commit */
    ino_t ino;
    uint64_t size;   /* durable, acknowledged length */
    uint64_t events; /* durable events */
    int64_t opened_ms;
    uint64_t used; /* the last group that wrote to it: the least recently used closes first */
    int in_open;   /* in w->open; 0 once retired half-way through a group */
    /* the lines of the group being committed, where they are: in its batches' buffers, alive
     * until the group completes; nothing is copied (a request of 8 MiB of tiny events has
     * hundreds of MB of lines) */
    struct iovec *iov;
    size_t niov, iovcap;
    size_t pending; /* bytes in iov */
    uint64_t pending_events;
    size_t written, synced;  /* bytes of pending already written, already fdatasync'ed */
    uint64_t first, durable; /* a stream segment: its first seq; bytes fdatasync'ed */
    int grouped;             /* in the group list (gnext) of the commit under way */
    struct writer__segment *next, *gnext;
} writer__segment;

typedef struct writer__sealed {
    int kind; /* enum lake_kind, or WRITER__STREAM */
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    char sid[LAKE_SID_LEN + 1]; /* a stream segment: its sid and first seq (no hour, no uuid) */
    uint64_t first;
    uint64_t max_seq; /* an events segment: moved once the stream is durable up to this seq */
    uint64_t size, events;
    int fd; /* the segment's descriptor while the sealer may still need it, else -1 */
    dev_t dev;
    ino_t ino;
    struct writer__sealed *next;
} writer__sealed;

/* Every segment in the spool (open or waiting to be sealed), for readers. */
typedef struct writer__spooled {
    int kind;
    int64_t hour;
    char uuid[LAKE_UUID_LEN + 1];
    int pins;   /* readers that may open it: the sealer waits for 0 */
    int moving; /* the sealer is moving it into the store */
    struct writer__spooled *next;
} writer__spooled;

/* A stream segment of the writer's sid in the spool, for readers (under w->stmu). */
typedef struct writer__streamseg {
    uint64_t first, last, bytes; /* last: the last committed seq; bytes: committed length */
    int open;
    struct writer__streamseg *next;
} writer__streamseg;

/* The kind of a stream segment in the sealer's queue (beside enum lake_kind's). */
#define WRITER__STREAM 100

struct lake_writer_pins {
    size_t n;
    writer__spooled **seg;
};

struct lake_writer {
    lake_writer_config cfg;
    char *spool;
    int spool_fd, lock_fd;
    dedup *dd;

    pthread_t writer_thr, sealer_thr;
    int threads_started;

    /* Held by whichever thread works on the segments: the writer thread, or a thread that
     * commits its own batches (lake_writer_commit). Taken before mu, never after. */
    pthread_mutex_t cmu;
    pthread_mutex_t mu; /* queue, stop, flush counters, kicked */
    pthread_cond_t cv, flushed;
    lake_batch *qhead, *qtail;
    int stop;
    int kicked; /* a commit elsewhere made a deadline earlier: the writer thread looks again */
    uint64_t flush_req, flush_done;

    writer__segment *open; /* under cmu, like the three below */
    size_t n_open;         /* segments in open */
    uint64_t groups;       /* group commits begun; segment.used counts in it */

    pthread_mutex_t smu; /* sealer queue */
    pthread_cond_t scv, sdone;
    writer__sealed *shead, *stail;
    writer__sealed *sbusy; /* the entry the sealer works on, unlocked: its fd is not taken away */
    size_t sfds;           /* descriptors held by queued entries; at most cfg.max_open_segments */
    int sstop, sbackoff;
    uint64_t seallog_lines;

    _Atomic uint64_t spool_bytes, segments_open, segments_sealed, seal_failures;
    _Atomic uint64_t commits, commit_failures, recovered;
    _Atomic uint64_t segments_evicted, segments_rescued, spool_recreated;
    _Atomic uint64_t segments_lost, events_lost;
    _Atomic int failing;
    histo fsync_h;
    pthread_mutex_t emu;
    char last_error[256];
    char seal_error[256]; /* under emu; "" while sealing works */
    char incident[256];   /* under emu: the last spool segment or directory found missing */
    char lost[256];       /* under emu: the last acknowledged events that could not be saved */

    pthread_mutex_t rmu; /* the registry of spooled segments and their pins */
    pthread_cond_t rcv;
    writer__spooled *reg;

    /* the stream log (writer_stream.c) */
    char sid[LAKE_SID_LEN + 1]; /* set at open, then read-only */
    uint64_t seq;               /* writer thread: the last seq given (at open: the last found) */
    writer__segment *stream;    /* writer thread: the open stream segment, NULL before the first */
    int stream_unsynced;        /* writer thread: a sync of the stream failed, try again */
    _Atomic uint64_t stream_durable;     /* events segments up to this seq may leave the spool */
    _Atomic uint64_t stream_sealed;      /* stream files moved into the store */
    _Atomic uint64_t stream_seq;         /* w->seq after each group, for stats */
    _Atomic uint64_t stream_spool_bytes; /* the stream's segments in the spool (not spool_max's) */
    pthread_mutex_t stmu;                /* the list below */
    writer__streamseg *slist;            /* oldest first: the spool's stream segments of sid */
    struct writer__srec *srec;           /* recovery only (writer_stream.c) */
};

/* writer.c: the registry of spool segments, which readers pin and the sealer waits for */
void writer__registry_add(lake_writer *w, int kind, int64_t hour, const char *uuid);
void writer__registry_begin_move(lake_writer *w, const char *uuid);
void writer__registry_end_move(lake_writer *w, const char *uuid, int moved);
void writer__spool_path(const lake_writer *w, const char *name, char *out, size_t cap);

/* writer_commit.c: the writer thread */
int writer__segment_add(writer__segment *g, const char *p, size_t n);
int writer__segment_write(lake_writer *w, writer__segment *g, char *err, size_t errlen);
void *writer__main(void *arg);
void writer__segment_close(lake_writer *w, writer__segment *g);
void writer__sealed_fill(writer__sealed *s, const writer__segment *g);

/* writer_seal.c: the sealer thread and sealed.log */
void *writer__sealer_main(void *arg);
void writer__sealer_push(lake_writer *w, writer__sealed *s);
void writer__sealed_free(lake_writer *w, writer__sealed *s);
typedef struct writer__seallog_entry {
    char *key;
    uint64_t events;
} writer__seallog_entry;

int writer__seallog_read(lake_writer *w, writer__seallog_entry **out, size_t *n);
void writer__seallog_rewrite(lake_writer *w, writer__seallog_entry *e, size_t from, size_t n);
size_t writer__seallog_window_start(const lake_writer *w, const writer__seallog_entry *e, size_t n);

/* writer_stream.c: the stream id, seqs and the stream log */
int writer__sid_load(lake_writer *w, char *err, size_t errlen);
int writer__stream_take(lake_writer *w, char *line, size_t len, char *err, size_t errlen);
int writer__stream_write(lake_writer *w, char *err, size_t errlen);
void writer__stream_committed(lake_writer *w);
void writer__stream_rollback(lake_writer *w, uint64_t seq_mark);
int writer__stream_sync(lake_writer *w);
void writer__stream_seal(lake_writer *w, int force);
int64_t writer__stream_deadline(const lake_writer *w);
void writer__stream_moved(lake_writer *w, const writer__sealed *s);
void writer__stream_free(lake_writer *w);
void writer__stream_collect(lake_writer *w, const char *p, size_t n);
int writer__stream_recover_spool(lake_writer *w, int fresh, char *err, size_t errlen);
int writer__stream_recover_finish(lake_writer *w, char *err, size_t errlen);

/* writer_spool.c: the spool directory */
int writer__spool_lock(lake_writer *w, int *dir_fd, int *lock_fd, char *err, size_t errlen);
int writer__spool_moved(lake_writer *w);
int writer__segment_gone(lake_writer *w, const writer__segment *g);
int writer__spool_check(lake_writer *w, char *err, size_t errlen);
void writer__segments_rescue(lake_writer *w);
int writer__segment_copy_out(const lake_writer *w, const char *name, int fd, uint64_t size,
                             char *err, size_t errlen);
void writer__adopt_copy(lake_writer *w, int nfd, int *fd, dev_t *dev, ino_t *ino);
void writer__note_incident(lake_writer *w, const char *msg);
int writer__recover(lake_writer *w, char *err, size_t errlen);

#endif
