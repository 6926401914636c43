/*
 * dedup.h - the bounded set of recently persisted event ids.
 *
 * Ingest answers a retried event as a duplicate instead of storing it twice.
 * The set holds the last `window` ids in insertion order and forgets the
 * oldest first. Ids are kept as 128-bit SipHash values under a random key
 * chosen at start: 16 bytes per id whatever its length, and a chance of two
 * different ids colliding that is negligible (2^-128 per pair) and cannot be
 * steered by a client, who does not know the key.
 *
 * An id must count as seen only once its event is durable. The writer marks
 * the set before a group commit and rolls back to the mark if the commit
 * fails. Single-threaded: owned by the writer thread.
 */
#ifndef EVENTS_DEDUP_H
#define EVENTS_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup;

/* A set remembering up to window ids (0 disables deduplication). NULL on ENOMEM. */
dedup *dedup_new(size_t window);
void dedup_free(dedup *d);

/* 1 if id was seen; otherwise records it and returns 0. */
int dedup_check_add(dedup *d, const char *id, size_t n);

/* 1 if id was seen, without recording it. */
int dedup_contains(dedup *d, const char *id, size_t n);

size_t dedup_count(const dedup *d);

/* A position to roll back to: forgets every id recorded after it. */
uint64_t dedup_mark(const dedup *d);
void dedup_rollback(dedup *d, uint64_t mark);

#endif
