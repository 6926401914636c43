/*
 * codec.h - SHA-256, HMAC-SHA256 and base64: snapshots' checksums, the changesets that
 * travel inside events, and the signatures of webhook deliveries.
 */
#ifndef EVENTS_CODEC_H
#define EVENTS_CODEC_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char blk[64];
    size_t n;
} sha256;

void sha256_init(sha256 *s);
void sha256_update(sha256 *s, const void *p, size_t n);
void sha256_final(sha256 *s, unsigned char out[32]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_hex(const unsigned char d[32], char out[65]);
/* The digest of p[0..n) as 64 lowercase hex digits and a NUL. */
void sha256_hex_of(const void *p, size_t n, char out[65]);

/* HMAC-SHA256 (RFC 2104) of msg[0..n) under key[0..keylen), any key length. */
void sha256_hmac(const void *key, size_t keylen, const void *msg, size_t n, unsigned char out[32]);
/* 1 if a[0..n) and b[0..n) are equal, taking the same time wherever they differ. */
int sha256_equal(const void *a, const void *b, size_t n);

/* Appends the standard base64 (with padding) of p[0..n). Returns 0, or -1 out of memory. */
int base64_encode(buf *out, const void *p, size_t n);
/* Appends the bytes of base64 text s[0..n). Returns 0, or -1 if it is not base64. */
int base64_decode(buf *out, const char *s, size_t n);

#endif
