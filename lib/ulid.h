/*
 * ulid.h - ULIDs, the event ids: 48 bits of milliseconds and 80 random bits,
 * written as 26 characters of Crockford's base32, so that string order is
 * time order (https://github.com/ulid/spec).
 */
#ifndef EVENTS_ULID_H
#define EVENTS_ULID_H

#include <stddef.h>
#include <stdint.h>

#define ULID_LEN 26

/* Writes a new ULID for time ms plus a NUL into out. Thread-safe. */
void ulid_make(int64_t ms, char out[ULID_LEN + 1]);

/* 1 if s[0..n) is a canonical ULID (uppercase, first character 0-7), else 0. */
int ulid_valid(const char *s, size_t n);

/* The millisecond time of a canonical ULID. */
int64_t ulid_time(const char *s);

#endif
