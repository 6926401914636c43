/*
 * evrand.h - fast per-thread random numbers for ids (ULIDs, UUIDs).
 *
 * Each thread runs its own xoshiro256** generator seeded from getrandom(2),
 * so drawing a number takes no lock and no system call. It is not for keys or
 * secrets; where unpredictability matters use evrand_secure.
 */
#ifndef EVENTS_EVRAND_H
#define EVENTS_EVRAND_H

#include <stddef.h>
#include <stdint.h>

uint64_t evrand_u64(void);

/* Fills p with n bytes from the kernel's CSPRNG. Returns 0, or -1. */
int evrand_secure(void *p, size_t n);

/* Writes a UUIDv7 (time-ordered) as 36 characters plus a NUL. */
void evrand_uuid7(char out[37]);

#endif
