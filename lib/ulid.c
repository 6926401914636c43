/*
 * ulid.c - ULID generation and validation.
 */
#include "ulid.h"
#include "evrand.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static int value(char c)
{
    for (int i = 0; i < 32; i++)
        if (alphabet[i] == c) return i;
    return -1;
}

void ulid_make(int64_t ms, char out[ULID_LEN + 1])
{
    uint64_t t = (uint64_t)ms;
    for (int i = 9; i >= 0; i--, t >>= 5) out[i] = alphabet[t & 31];
    uint64_t r = evrand_u64(), r2 = evrand_u64();
    for (int i = 10; i < 22; i++, r >>= 5) out[i] = alphabet[r & 31];
    for (int i = 22; i < 26; i++, r2 >>= 5) out[i] = alphabet[r2 & 31];
    out[ULID_LEN] = 0;
}

int ulid_valid(const char *s, size_t n)
{
    if (n != ULID_LEN || s[0] < '0' || s[0] > '7') return 0;
    for (size_t i = 0; i < n; i++)
        if (value(s[i]) < 0) return 0;
    return 1;
}

int64_t ulid_time(const char *s)
{
    int64_t t = 0;
    for (int i = 0; i < 10; i++) t = t * 32 + value(s[i]);
    return t;
}
