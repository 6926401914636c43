/*
 * dedup.c - a FIFO ring of 128-bit id hashes with a linear-probing index.
 *
 * ring[seq % window] holds the hash recorded as number seq; the live entries
 * are the last `count` ones. The index maps a hash to its ring slot (slot+1,
 * 0 = empty) and is twice the window, so probes stay short; deletion uses
 * backward shifting so no tombstones accumulate as the ring turns over.
 */
#include "dedup.h"
#include "evrand.h"
#include "siphash.h"

#include <stdlib.h>
#include <string.h>

typedef struct h128 {
    uint64_t a, b;
} h128;

struct dedup {
    size_t window, mask;
    h128 *ring;
    uint32_t *index;
    uint64_t seq; /* number of ids ever recorded */
    size_t count; /* live entries: ring slots seq-count .. seq-1 */
    uint8_t key[16];
};

dedup *dedup_new(size_t window)
{
    dedup *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->window = window;
    if (window == 0) return d;
    if (window > UINT32_MAX / 4) window = d->window = UINT32_MAX / 4;
    size_t size = 16;
    while (size < window * 2) size *= 2;
    d->mask = size - 1;
    d->ring = malloc(window * sizeof *d->ring);
    d->index = calloc(size, sizeof *d->index);
    if (!d->ring || !d->index || evrand_secure(d->key, sizeof d->key)) {
        dedup_free(d);
        return NULL;
    }
    return d;
}

void dedup_free(dedup *d)
{
    if (!d) return;
    free(d->ring);
    free(d->index);
    free(d);
}

static h128 hash_id(const dedup *d, const char *id, size_t n)
{
    uint8_t o[16];
    siphash128(id, n, d->key, o);
    h128 h;
    memcpy(&h, o, sizeof h);
    return h;
}

static size_t home(const dedup *d, h128 h)
{
    return (size_t)(h.a ^ (h.b >> 7)) & d->mask;
}

/* The index position holding h, or (size_t)-1. */
static size_t find(const dedup *d, h128 h)
{
    for (size_t i = home(d, h);; i = (i + 1) & d->mask) {
        uint32_t v = d->index[i];
        if (!v) return (size_t)-1;
        const h128 *e = &d->ring[v - 1];
        if (e->a == h.a && e->b == h.b) return i;
    }
}

static void index_remove(dedup *d, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & d->mask;
        uint32_t v = d->index[j];
        if (!v) break;
        size_t k = home(d, d->ring[v - 1]);
        /* move j back into the hole at i unless its home lies cyclically in (i, j] */
        int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            d->index[i] = v;
            i = j;
        }
    }
    d->index[i] = 0;
}

static void remove_slot(dedup *d, size_t slot)
{
    size_t i = find(d, d->ring[slot]);
    if (i != (size_t)-1 && d->index[i] == slot + 1) index_remove(d, i);
}

int dedup_contains(dedup *d, const char *id, size_t n)
{
    if (!d->window) return 0;
    return find(d, hash_id(d, id, n)) != (size_t)-1;
}

int dedup_check_add(dedup *d, const char *id, size_t n)
{
    if (!d->window) return 0;
    h128 h = hash_id(d, id, n);
    if (find(d, h) != (size_t)-1) return 1;
    if (d->count == d->window) {
        remove_slot(d, (size_t)((d->seq - d->count) % d->window));
        d->count--;
    }
    size_t slot = (size_t)(d->seq % d->window);
    d->ring[slot] = h;
    size_t i = home(d, h);
    while (d->index[i]) i = (i + 1) & d->mask;
    d->index[i] = (uint32_t)(slot + 1);
    d->seq++;
    d->count++;
    return 0;
}

size_t dedup_count(const dedup *d)
{
    return d->count;
}

uint64_t dedup_mark(const dedup *d)
{
    return d->seq;
}

void dedup_rollback(dedup *d, uint64_t mark)
{
    while (d->seq > mark && d->count > 0) {
        d->seq--;
        remove_slot(d, (size_t)(d->seq % d->window));
        d->count--;
    }
    d->seq = mark;
}
