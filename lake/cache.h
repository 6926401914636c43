/*
 * cache.h - a local copy of the lake objects that queries and compaction read,
 * for a lake that is not a local directory (s3).
 *
 * Objects are immutable (their names are UUIDs), so a copy never goes stale:
 * an object is fetched once, whole, into DIR/KEY, and read from there by
 * DuckDB, which needs no network access. The cache holds at most max_bytes;
 * beyond that, the objects used least recently are deleted, except those
 * pinned by a query or a compaction that is reading them (a single query
 * larger than the cache may go over the limit until it ends). The index is
 * rebuilt from the directory at open, in the order of the files' times.
 *
 * Thread-safe: fetches of different objects run in parallel, and a second
 * fetch of an object being fetched waits for the first.
 */
#ifndef EVENTS_CACHE_H
#define EVENTS_CACHE_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lake_cache lake_cache;

/* Opens (creating it) the cache in dir, bounded by max_bytes (0: 1 GiB). */
int lake_cache_open(const char *dir, uint64_t max_bytes, lake_cache **out, char *err,
                    size_t errlen);
void lake_cache_close(lake_cache *c); /* NULL is ignored */

/* The cache's directory, absolute, without a trailing slash. */
const char *lake_cache_dir(const lake_cache *c);

typedef struct lake_cache_item {
    const char *key; /* in */
    uint64_t size;   /* in: the listed size (a copy of another size is fetched again) */
    char *path;      /* out: malloc'd local path, pinned until lake_cache_unpin */
} lake_cache_item;

/*
 * Makes the n objects local and pins them, fetching those not cached with up
 * to `parallel` downloads at once. 0, or -1 with a message in err (then
 * nothing stays pinned and every path is NULL).
 */
int lake_cache_fetch(lake_cache *c, store *s, lake_cache_item *items, size_t n, int parallel,
                     char *err, size_t errlen);

/* Unpins the items of a successful fetch and frees their paths. */
void lake_cache_unpin(lake_cache *c, lake_cache_item *items, size_t n);

typedef struct lake_cache_stats {
    uint64_t bytes, objects, max_bytes;
    uint64_t hits, misses, fetched_bytes, evicted;
} lake_cache_stats;

void lake_cache_stats_get(lake_cache *c, lake_cache_stats *out);

#endif
