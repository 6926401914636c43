/*
 * histo.h - a latency histogram with fixed buckets, safe to update from any
 * thread (relaxed atomics), rendered in Prometheus' cumulative form.
 */
#ifndef EVENTS_HISTO_H
#define EVENTS_HISTO_H

#include <stdatomic.h>
#include <stdint.h>

#define HISTO_BUCKETS 16

/* upper bounds in seconds; the last bucket is +Inf */
static const double histo_bounds[HISTO_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

typedef struct histo {
    _Atomic uint64_t bucket[HISTO_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} histo;

static inline void histo_add(histo *h, int64_t ns)
{
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < HISTO_BUCKETS - 1 && s > histo_bounds[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

#endif
