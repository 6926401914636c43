/*
 * evrand.c - xoshiro256** per thread, seeded from the kernel.
 */
#include "evrand.h"
#include "evtime.h"

#include <errno.h>
#include <sys/random.h>

/*
 * The generator's state, one per thread, so no lock: seed() fills it on the thread's first
 * evrand_u64 (seeded then stays 1 for the thread's life) and every evrand_u64 on the thread
 * advances it.
 */
static __thread uint64_t st[4];
static __thread int seeded;

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

int evrand_secure(void *p, size_t n)
{
    unsigned char *o = p;
    while (n) {
        ssize_t r = getrandom(o, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        o += r;
        n -= (size_t)r;
    }
    return 0;
}

static void seed(void)
{
    if (evrand_secure(st, sizeof st) || (st[0] | st[1] | st[2] | st[3]) == 0) {
        /* getrandom cannot fail on Linux >= 3.17 once the pool is ready; keep going anyway */
        uint64_t t = (uint64_t)evtime_mono_ns() ^ (uint64_t)(uintptr_t)&st;
        for (int i = 0; i < 4; i++) {
            t += 0x9e3779b97f4a7c15u;
            uint64_t z = t;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            st[i] = z ^ (z >> 31);
        }
    }
    seeded = 1;
}

uint64_t evrand_u64(void)
{
    if (!seeded) seed();
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

void evrand_uuid7(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t ms = (uint64_t)evtime_now_ms(), r1 = evrand_u64(), r2 = evrand_u64();
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
    for (int i = 0; i < 8; i++) b[6 + i] = (unsigned char)(r1 >> (8 * i));
    b[14] = (unsigned char)r2;
    b[15] = (unsigned char)(r2 >> 8);
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = 0;
}
