/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein), the keyed hash used where
 * a client must not be able to make two inputs collide: dedup ids, tokens.
 */
#ifndef EVENTS_SIPHASH_H
#define EVENTS_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 with a 128-bit result, as the reference writes it (little-endian words). */
void siphash128(const void *in, size_t n, const uint8_t key[16], uint8_t out[16]);

#endif
