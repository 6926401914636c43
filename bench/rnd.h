/*
 * rnd.h - the benchmark generators' random numbers: xoshiro256**, seeded
 * through splitmix64, so that the same seed gives the same bytes.
 */
#ifndef BENCH_RND_H
#define BENCH_RND_H

#include <stdint.h>

/*
 * The one stream of the program that includes this header (each generator is
 * one file and one thread): set by rnd_seed before the first draw, advanced by
 * every rnd; no lock.
 */
static uint64_t rnd_state[4];

static inline uint64_t rnd_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void rnd_seed(uint64_t seed)
{
    for (int i = 0; i < 4; i++) rnd_state[i] = rnd_splitmix(&seed);
}

static inline uint64_t rnd_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rnd(void)
{
    uint64_t *s = rnd_state;
    uint64_t r = rnd_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t, s[3] = rnd_rotl(s[3], 45);
    return r;
}

#endif
