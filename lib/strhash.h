/*
 * strhash.h - FNV-1a over a NUL-terminated string: the hash of the in-memory tables keyed by
 * lake keys and ids the project names itself (the object cache, the manifest cache, the query
 * copies). Not keyed: where a client chooses the strings, use siphash.h.
 */
#ifndef EVENTS_STRHASH_H
#define EVENTS_STRHASH_H

#include <stdint.h>

static inline uint64_t strhash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

#endif
