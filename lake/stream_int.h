/*
 * stream_int.h - inside the stream reader (stream.h): what stream.c (files,
 * lines, the offset index) and stream_read.c (listing, sources, the merge)
 * share. Nothing else includes it.
 */
#ifndef EVENTS_STREAM_INT_H
#define EVENTS_STREAM_INT_H

#include "stream.h"

#include <stddef.h>
#include <stdint.h>

/* stream__map_file: a local file has gone (moved into the lake meanwhile). */
#define STREAM__GONE 1

/* One stream file of a sid: in the lake (key) or local (path, committed size). */
typedef struct stream__file {
    uint64_t first, size;
    char *key;        /* malloc'd; NULL for a local file */
    const char *path; /* a local file's (the caller's string); NULL for a lake file */
} stream__file;

/* A sid and its files, sorted by first seq. */
typedef struct stream__sid {
    char sid[LAKE_SID_LEN + 1];
    stream__file *f;
    size_t n, cap;
} stream__sid;

/* A mapped file. */
typedef struct stream__map {
    void *base;
    const char *p;
    size_t len;
    int pinned;   /* it is pinned in the cache */
    void *shared; /* the reader's kept mapping this is (stream.c), or NULL: m's own */
    lake_cache_item it;
} stream__map;

/* The reader's store. */
store *stream__store(lake_stream *st);
int stream__map_file(lake_stream *st, const stream__file *f, stream__map *m, char *err,
                     size_t errlen);
void stream__unmap(lake_stream *st, stream__map *m);
/* The offset of line k (from the file's first) of the mapped f, or m->len past its end. */
size_t stream__skip(lake_stream *st, const stream__file *f, const stream__map *m, uint64_t k);
/* Remembers that line k of f begins at off: where a read stopped, and the next may begin. */
void stream__note(lake_stream *st, const stream__file *f, uint64_t k, size_t off);
/* The seq of a line of sid from its position member: 0, or -1 when it has none. */
int stream__line_seq(const char *p, size_t len, const char *sid, uint64_t *seq);
/* The line's receivedAt (EVTIME_LEN bytes) or NULL; its type (*n bytes) or NULL. */
const char *stream__line_at(const char *p, size_t len);
const char *stream__line_type(const char *p, size_t len, size_t *n);

#endif
