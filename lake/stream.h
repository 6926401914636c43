/*
 * stream.h - reading the stream log: cursors, and the events after a cursor.
 *
 * The writer numbers every stored event of its stream (sid, 8 characters of
 * [0-9a-z]) with seq (1, 2, …) and ends each stored line with its position,
 * ,"_events_pos":"<sid>.<seq 16 hex>"} . Sealed stream files live in the lake
 * as stream/<sid>/<first seq 16 hex>.jsonl; the files of a sid are contiguous
 * (file k holds [first_k, first_{k+1})). A cursor is, for each sid, the last
 * seq read: "<sid>.<seq 16 hex>" pairs joined by ",", sorted by sid.
 *
 * lake_stream_read answers GET /events: from a cursor (or a time, or the
 * oldest event of each sid) it reads the next events of every sid, in seq
 * order within a sid and merged across sids by receivedAt (ties by sid), and
 * gives the cursor to go on from. The writer's local files (its open and
 * sealed stream segments still in the spool) are extra sources the caller
 * passes in (lake_stream_local); the reader reads a sid only as far as its
 * seqs are contiguous, so a file that is not visible yet (on its way from the
 * spool to the lake) stops that sid for this read, and the next read goes on
 * from there: no gap, no repeat. Pure of HTTP: errors are codes and messages.
 *
 * Thread-safe: one lake_stream serves every request; its only shared state is
 * the cache of line offsets of the lake's (immutable) files, behind a mutex.
 */
#ifndef EVENTS_STREAM_H
#define EVENTS_STREAM_H

#include "buf.h"
#include "cache.h"
#include "layout.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define LAKE_STREAM_MAX_SIDS 1024 /* sids in a cursor, and sids a read considers */

enum {
    LAKE_STREAM_EINVAL = -1,   /* a bad cursor or request */
    LAKE_STREAM_EEXPIRED = -2, /* the cursor's next event is no longer kept */
    LAKE_STREAM_EIO = -3       /* a file could not be listed, fetched or read, or is malformed */
};

typedef struct lake_stream_pos {
    char sid[LAKE_SID_LEN + 1];
    uint64_t seq; /* the last seq read (0: none) */
} lake_stream_pos;

/* Positions sorted by sid, each sid once. */
typedef struct lake_cursor {
    lake_stream_pos *p;
    size_t n;
} lake_cursor;

/*
 * Parses cursor text (n bytes; empty: no positions). 0, or LAKE_STREAM_EINVAL
 * with err naming what is wrong (a pair, a sid, a seq, the order, the count).
 */
int lake_cursor_parse(const char *text, size_t n, lake_cursor *out, char *err, size_t errlen);
/* Appends the cursor's text. 0, or -1 out of memory. */
int lake_cursor_format(const lake_cursor *c, buf *out);
void lake_cursor_free(lake_cursor *c);
/* The position of sid in c: 0 with *seq, or -1 when c does not name it. */
int lake_cursor_get(const lake_cursor *c, const char *sid, uint64_t *seq);
/* Sets the position of sid (added in its place when new). 0, or -1 out of memory or at the
 * bound of sids. */
int lake_cursor_set(lake_cursor *c, const char *sid, uint64_t seq);

/* The position a stored line ends with ("_events_pos", its last member): 0, or -1 if none. */
int lake_stream_line_pos(const char *line, size_t len, lake_stream_pos *out);

/*
 * A local stream file of the writer, not in the lake (yet): its sid, the seq
 * of its first line, its path and how many bytes of it are committed, whole
 * lines (an open segment grows; only [0, len) is read). A file in both the
 * lake and this list (being moved) is read once.
 */
typedef struct lake_stream_local {
    char sid[LAKE_SID_LEN + 1];
    uint64_t first;
    const char *path;
    uint64_t len;
} lake_stream_local;

/* An event the reader considers: its stored line, its type and its receivedAt. */
typedef struct lake_stream_event {
    const char *line; /* without its newline */
    size_t len;
    const char *type; /* type[0..tn), in the line; NULL if the line has none */
    size_t tn;
    const char *at; /* receivedAt, EVTIME_LEN characters of the line (RFC 3339, ms, Z) */
} lake_stream_event;

/*
 * 1 to return the event, 0 to skip it (the position moves past it), or
 * LAKE_STREAM_STOP to end the read before it (res->stopped; the position
 * stays before it, so the next read from res->next considers it again).
 */
#define LAKE_STREAM_STOP (-1)
typedef int (*lake_stream_filter_fn)(const lake_stream_event *e, void *ud);

typedef struct lake_stream_req {
    const lake_cursor *after; /* NULL or empty: from the oldest event (or since_ms) */
    int64_t since_ms;         /* >= 0, with no after: each sid from its first event received
                               * at or after it */
    size_t limit;             /* events returned, at most (above 0) */
    uint64_t max_bytes;       /* bytes of the events returned, at most (one event at least) */
    uint64_t max_scan;        /* bytes looked at, returned or skipped by the filter (0: 64 MiB) */
    lake_stream_filter_fn filter; /* NULL: every event */
    void *filter_ud;
    const lake_stream_local *local; /* the writer's local files, taken before the read */
    size_t nlocal;
    char sep; /* between the lines of res->events: ',' (0) or '\n' */
} lake_stream_req;

typedef struct lake_stream_res {
    buf events;         /* the lines returned, without newlines, joined by req->sep */
    size_t count;       /* how many */
    uint64_t scanned;   /* events looked at (returned or skipped by the filter) */
    int cut;            /* the answer stopped at max_bytes */
    int stopped;        /* the answer stopped where the filter said LAKE_STREAM_STOP */
    lake_cursor next;   /* the cursor after them (the input when nothing new) */
    lake_cursor oldest; /* LAKE_STREAM_EEXPIRED: the cursor of the oldest events kept */
} lake_stream_res;

typedef struct lake_stream lake_stream;

/* A reader of the store's stream files; cache is NULL for a directory lake. */
int lake_stream_open(store *s, lake_cache *cache, lake_stream **out, char *err, size_t errlen);
void lake_stream_close(lake_stream *st); /* NULL is ignored */

/*
 * Reads the events after req->after into res (zeroed by the caller, freed with
 * lake_stream_res_free whatever the result). 0; LAKE_STREAM_EEXPIRED (res->oldest
 * set, err naming the sid); LAKE_STREAM_EINVAL; LAKE_STREAM_EIO.
 */
int lake_stream_read(lake_stream *st, const lake_stream_req *req, lake_stream_res *res, char *err,
                     size_t errlen);
void lake_stream_res_free(lake_stream_res *res);

#endif
