/*
 * quantiles.c - _events_quantiles, the 0.5, 0.95 and 0.99 quantiles of a row of sublists
 * (quantiles.h says what it returns). It owns the function's registration and its arithmetic;
 * it must never keep state between calls: DuckDB calls it from several threads at once.
 *
 * The idea. quantile_cont copies a group's n values and selects the ranks in the copy
 * (nth_element): O(n) in time and memory, every time. A rollup keeps its values as sorted lists,
 * and a sorted list answers "how many are
 * <= x" by binary search without being copied. So each row's sublists are first checked (one
 * pass over each, the cost of reading it): those ascending in DuckDB's order are runs read in
 * place from DuckDB's vector; the others' values are copied into one array. Then:
 *
 *  - no run (every sublist unsorted), the copied values at least half of the row, or runs of
 *    fewer than 64 values on average: all values go into one array and the ranks are selected
 *    in it (quickselect, O(n), as quantile_cont does); sorting half of the values, or a binary
 *    search in each of many short runs at every step below, would cost more than that;
 *  - one run and nothing copied: the ranks are read off the run;
 *  - otherwise the copied values are sorted (a radix sort) and become one more run, and the
 *    k-th smallest value over all runs is found by bisection on the values' order: each step
 *    halves an interval of keys and counts, by a binary search in each run, the values at or
 *    below its middle. A run's count only moves inside the bounds of earlier steps, so the
 *    searches shrink as the interval does, and once few values are left inside the interval
 *    they are gathered and selected directly.
 *
 * Values are compared as 64-bit keys that sort as DuckDB orders doubles: every NaN above +inf
 * (and equal), -0.0 equal to +0.0. A key is turned back into the double it stands for, which
 * is why a zero comes back as +0.0 and a NaN as the one quiet NaN.
 *
 * The interpolation is DuckDB's, in the same order of operations, `lo * (1 - d) + hi * d`,
 * each product rounded before the sum (interpolate says how).
 */
#include "quantiles.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUANTILES_NAME "_events_quantiles"
#define NQ             3

/* The fractions, ascending (the selection relies on it); read-only. */
static const double FRACTIONS[NQ] = {0.5, 0.95, 0.99};

/* ---- keys: DuckDB's order of doubles as unsigned integers ---------------------------- */

#define KEY_SIGN ((uint64_t)1 << 63)
#define KEY_NAN  UINT64_MAX /* every NaN; no other double maps there */
#define KEY_ZERO KEY_SIGN   /* -0.0 and +0.0 */

static inline uint64_t key_of(double x)
{
    uint64_t u;
    if (isnan(x)) return KEY_NAN;
    if (x == 0) return KEY_ZERO;
    memcpy(&u, &x, sizeof u);
    return u & KEY_SIGN ? ~u : u | KEY_SIGN; /* negatives reversed below the positives */
}

static inline double value_of(uint64_t k)
{
    if (k == KEY_NAN) return NAN;
    uint64_t u = k & KEY_SIGN ? k & ~KEY_SIGN : ~k;
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- the input row ------------------------------------------------------------------- */

/* The vectors of a LIST(LIST(DOUBLE)) argument, flat (DuckDB flattens a C function's input). */
typedef struct input {
    const duckdb_list_entry *row; /* the rows' sublist ranges in sub */
    const uint64_t *row_valid;    /* NULL: no NULL row */
    const duckdb_list_entry *sub; /* the sublists' value ranges in val */
    const uint64_t *sub_valid;
    const double *val;
    const uint64_t *val_valid;
} input;

static int bit_valid(const uint64_t *mask, idx_t i)
{
    return !mask || (mask[i >> 6] >> (i & 63) & 1);
}

/* Whether entries [off, off + n) of a validity mask are all valid; a NULL mask: all are. */
static int all_valid(const uint64_t *mask, idx_t off, idx_t n)
{
    idx_t i = off, end = off + n;
    if (!mask) return 1;
    for (; i < end && (i & 63); i++)
        if (!bit_valid(mask, i)) return 0;
    for (; i + 64 <= end; i += 64)
        if (mask[i >> 6] != UINT64_MAX) return 0;
    for (; i < end; i++)
        if (!bit_valid(mask, i)) return 0;
    return 1;
}

/*
 * Whether v[0, n) ascends in DuckDB's order: no value is below the one before it, where a NaN
 * is below none (NaNs at the end) and equal zeros are in order. In blocks without an early
 * exit, which clang vectorizes (gcc 12 does not vectorize a comparison of doubles into a flag).
 */
static int ascends(const double *v, size_t n)
{
    for (size_t i = 1; i < n; i += 1024) {
        size_t end = n - i > 1024 ? i + 1024 : n;
        int bad = 0;
        for (size_t j = i; j < end; j++) bad |= !(v[j - 1] <= v[j]) & (v[j] == v[j]);
        if (bad) return 0;
    }
    return 1;
}

/* ---- scratch memory of one call ------------------------------------------------------ */

/* A sorted run: a sublist read in place (v), or the sorted keys of the copied values (k). */
typedef struct run {
    const double *v;
    const uint64_t *k;
    size_t n;
    size_t lo, hi, pos; /* the bisection's counts in this run (runs_kth) */
} run;

/* What one call allocates, grown as rows need it and freed at the call's end. */
typedef struct scratch {
    uint64_t *keys, *aux; /* the copied values' keys; aux: the radix sort's other buffer */
    size_t keys_cap, aux_cap;
    run *runs;
    size_t runs_cap;
} scratch;

/* Makes *p hold at least need items of size (and at least one): 0, or -1 out of memory. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (*p && need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > SIZE_MAX / size) return -1;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void scratch_free(scratch *s)
{
    free(s->keys);
    free(s->aux);
    free(s->runs);
}

static uint64_t run_key(const run *r, size_t i)
{
    return r->k ? r->k[i] : key_of(r->v[i]);
}

/* The first position in r's [lo, hi) whose key is above x (hi if none). */
static size_t run_upper(const run *r, size_t lo, size_t hi, uint64_t x)
{
    if (r->k) {
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (r->k[mid] <= x)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_of(r->v[mid]) <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- selection in one array ---------------------------------------------------------- */

static uint64_t next_random(uint64_t *rng)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return *rng;
}

/*
 * Puts the k-th smallest of k[lo, hi) at position kth, the smaller ones before it and the
 * larger after. Three-way partitions around a random pivot: many equal keys (ties are common
 * in durations) end in the middle part at once instead of making the partitions uneven.
 */
static void select_kth(uint64_t *k, size_t lo, size_t hi, size_t kth, uint64_t *rng)
{
    while (hi - lo > 1) {
        uint64_t p = k[lo + next_random(rng) % (hi - lo)];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            uint64_t t = k[i];
            if (t < p) {
                k[i++] = k[lt];
                k[lt++] = t;
            } else if (t > p) {
                k[i] = k[--gt];
                k[gt] = t;
            } else {
                i++;
            }
        }
        if (kth < lt)
            hi = lt;
        else if (kth >= gt)
            lo = gt;
        else
            return;
    }
}

/* Moves the smallest of k[lo, n) to lo. */
static void select_min(uint64_t *k, size_t lo, size_t n)
{
    size_t m = lo;
    for (size_t i = lo + 1; i < n; i++)
        if (k[i] < k[m]) m = i;
    uint64_t t = k[lo];
    k[lo] = k[m];
    k[m] = t;
}

/* DuckDB's interpolation between the values at positions f and c = f or f + 1. */
static double interpolate(uint64_t lo_key, uint64_t hi_key, double rn, size_t f, size_t c)
{
    double lo = value_of(lo_key);
    if (c == f) return lo;
    double hi = value_of(hi_key), d = rn - (double)f;
    /* Stored, so that each product is rounded to a double before the sum: a compiler allowed
     * to contract (gcc's default in GNU C, where the target has FMA) would otherwise fuse one
     * into a multiply-add, which rounds once and can differ from DuckDB in the last bit. */
    volatile double a = lo * (1.0 - d), b = hi * d;
    return a + b;
}

/*
 * The quantiles of the n keys k[0, n) into out, reordering k. The ranks ascend with the
 * fractions, and after a rank is selected everything past it is at least as large, so each
 * next rank is selected only in what lies past the last one; the rank after f is the
 * smallest of that.
 */
static void select_quantiles(uint64_t *k, size_t n, double out[NQ])
{
    uint64_t rng = 0x9e3779b97f4a7c15u ^ n;
    size_t next = 0; /* positions below next are final or smaller than every later rank */
    for (int q = 0; q < NQ; q++) {
        double rn = (double)(n - 1) * FRACTIONS[q];
        size_t f = (size_t)floor(rn), c = (size_t)ceil(rn);
        if (f >= next) {
            select_kth(k, next, n, f, &rng);
            next = f + 1;
        }
        if (c >= next) { /* c == f + 1 == next */
            select_min(k, c, n);
            next = c + 1;
        }
        out[q] = interpolate(k[f], k[c], rn, f, c);
    }
}

/* ---- sorting the copied values -------------------------------------------------------- */

/*
 * Sorts k[0, n) ascending, using aux (room for n) as the other buffer; returns the one that
 * holds the result. Least significant byte first; a byte that all keys share (the high bytes
 * of values of one magnitude) costs no pass.
 */
static uint64_t *radix_sort(uint64_t *k, uint64_t *aux, size_t n)
{
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint64_t t = k[i];
            size_t j = i;
            for (; j > 0 && k[j - 1] > t; j--) k[j] = k[j - 1];
            k[j] = t;
        }
        return k;
    }
    size_t cnt[8][256];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) cnt[b][k[i] >> (8 * b) & 255]++;
    for (int b = 0; b < 8; b++) {
        if (cnt[b][k[0] >> (8 * b) & 255] == n) continue;
        size_t sum = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = cnt[b][d];
            cnt[b][d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) aux[cnt[b][k[i] >> (8 * b) & 255]++] = k[i];
        uint64_t *t = k;
        k = aux;
        aux = t;
    }
    return k;
}

/* ---- selection over sorted runs ------------------------------------------------------ */

/* Few enough values left in the interval to gather and select them directly. */
#define GATHER_MAX 256

/* The k-th smallest of the values of the interval's runs' [lo, hi) (sum: their count). */
static uint64_t gather_kth(const run *r, size_t nr, size_t k, size_t sum)
{
    uint64_t g[GATHER_MAX], rng = 0x2545f4914f6cdd1du;
    size_t m = 0;
    for (size_t i = 0; i < nr; i++)
        for (size_t j = r[i].lo; j < r[i].hi; j++) g[m++] = run_key(&r[i], j);
    select_kth(g, 0, sum, k, &rng);
    return g[k];
}

/*
 * The k-th smallest (from 0) of the values of all runs, by bisection on keys. Invariant: the
 * answer lies in [lo, hi]; in each run, the values below lo are [0, r.lo) and those at or
 * below hi are [0, r.hi). Leaves r.lo and r.hi around the answer for runs_next.
 */
static uint64_t runs_kth(run *r, size_t nr, size_t k)
{
    uint64_t lo = KEY_NAN, hi = 0;
    size_t below = 0, inside = 0;
    for (size_t i = 0; i < nr; i++) {
        uint64_t a = run_key(&r[i], 0), b = run_key(&r[i], r[i].n - 1);
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
        r[i].lo = 0;
        r[i].hi = r[i].n;
        inside += r[i].n;
    }
    while (lo < hi) {
        if (inside <= GATHER_MAX) return gather_kth(r, nr, k - below, inside);
        uint64_t mid = lo + (hi - lo) / 2;
        size_t cnt = 0;
        for (size_t i = 0; i < nr; i++) {
            r[i].pos = run_upper(&r[i], r[i].lo, r[i].hi, mid);
            cnt += r[i].pos;
        }
        inside = 0;
        if (cnt > k) {
            hi = mid;
            for (size_t i = 0; i < nr; i++) r[i].hi = r[i].pos, inside += r[i].hi - r[i].lo;
        } else {
            lo = mid + 1;
            below = cnt;
            for (size_t i = 0; i < nr; i++) r[i].lo = r[i].pos, inside += r[i].hi - r[i].lo;
        }
    }
    return lo;
}

/* The (k+1)-th smallest, given x, the k-th, and the bounds runs_kth left around it. */
static uint64_t runs_next(const run *r, size_t nr, size_t k, uint64_t x)
{
    size_t at_or_below = 0;
    uint64_t above = KEY_NAN; /* the smallest value above x */
    for (size_t i = 0; i < nr; i++) {
        size_t p = run_upper(&r[i], r[i].lo, r[i].hi, x);
        at_or_below += p;
        if (p < r[i].n) {
            uint64_t y = run_key(&r[i], p);
            above = y < above ? y : above;
        }
    }
    return at_or_below > k + 1 ? x : above;
}

static void runs_quantiles(run *r, size_t nr, size_t n, double out[NQ])
{
    for (int q = 0; q < NQ; q++) {
        double rn = (double)(n - 1) * FRACTIONS[q];
        size_t f = (size_t)floor(rn), c = (size_t)ceil(rn);
        uint64_t lo, hi;
        if (nr == 1) {
            lo = run_key(r, f);
            hi = run_key(r, c);
        } else {
            lo = runs_kth(r, nr, f);
            hi = c == f ? lo : runs_next(r, nr, f, lo);
        }
        out[q] = interpolate(lo, hi, rn, f, c);
    }
}

/* ---- one row --------------------------------------------------------------------------- */

/* Appends the keys of the non-NULL values of val[off, off + n) to s->keys at *m. */
static void copy_keys(scratch *s, size_t *m, const input *in, idx_t off, idx_t n)
{
    uint64_t *k = s->keys + *m;
    size_t j = 0;
    if (all_valid(in->val_valid, off, n)) {
        for (idx_t i = 0; i < n; i++) k[j++] = key_of(in->val[off + i]);
    } else {
        for (idx_t i = 0; i < n; i++)
            if (bit_valid(in->val_valid, off + i)) k[j++] = key_of(in->val[off + i]);
    }
    *m += j;
}

/*
 * Splits the row's sublists into runs (s->runs, *nr, read in place) and copied keys
 * (s->keys, *m). 0, or -1 out of memory.
 */
static int split_row(scratch *s, const input *in, duckdb_list_entry row, size_t *nr, size_t *m)
{
    *nr = 0;
    *m = 0;
    if (grow((void **)&s->runs, &s->runs_cap, row.length + 1, sizeof *s->runs)) return -1;
    for (idx_t j = row.offset; j < row.offset + row.length; j++) {
        if (!bit_valid(in->sub_valid, j) || !in->sub[j].length) continue;
        idx_t off = in->sub[j].offset, n = in->sub[j].length;
        if (all_valid(in->val_valid, off, n) && ascends(in->val + off, n)) {
            s->runs[(*nr)++] = (run){.v = in->val + off, .n = n};
            continue;
        }
        if (*m + n < *m || grow((void **)&s->keys, &s->keys_cap, *m + n, sizeof *s->keys))
            return -1;
        copy_keys(s, m, in, off, n);
    }
    return 0;
}

/* Runs shorter than this on average are copied and selected in: a bisection step costs a
 * binary search in every run, which with many short runs costs more than a selection. */
#define RUN_MIN 64

/*
 * The quantiles of nr runs (s->runs) and m copied keys (s->keys) into out: 1, or 0 when they hold
 * no value, or -1 out of memory.
 */
static int split_quantiles(scratch *s, size_t nr, size_t m, double out[NQ])
{
    size_t n = m;
    for (size_t i = 0; i < nr; i++) n += s->runs[i].n;
    if (!n) return 0;
    /* one sorted run is read off directly; else bisect when it pays (see RUN_MIN) */
    if ((nr == 1 && m == 0) || (m < n - m && nr * RUN_MIN <= n - m)) {
        if (m) { /* the copied values, sorted, as one more run */
            if (grow((void **)&s->aux, &s->aux_cap, m, sizeof *s->aux)) return -1;
            s->runs[nr++] = (run){.k = radix_sort(s->keys, s->aux, m), .n = m};
        }
        runs_quantiles(s->runs, nr, n, out);
        return 1;
    }
    if (grow((void **)&s->keys, &s->keys_cap, n, sizeof *s->keys)) return -1;
    for (size_t i = 0; i < nr; i++)
        for (size_t j = 0; j < s->runs[i].n; j++) s->keys[m++] = key_of(s->runs[i].v[j]);
    select_quantiles(s->keys, n, out);
    return 1;
}

/* The quantiles of one row into out: 1, or 0 when the row holds no value, or -1 out of memory. */
static int row_quantiles(scratch *s, const input *in, duckdb_list_entry row, double out[NQ])
{
    size_t nr, m;
    if (split_row(s, in, row, &nr, &m)) return -1;
    return split_quantiles(s, nr, m, out);
}

/* ---- the function ---------------------------------------------------------------------- */

static void input_of(duckdb_data_chunk chunk, input *in)
{
    duckdb_vector rows = duckdb_data_chunk_get_vector(chunk, 0);
    duckdb_vector subs = duckdb_list_vector_get_child(rows);
    duckdb_vector vals = duckdb_list_vector_get_child(subs);
    in->row = duckdb_vector_get_data(rows);
    in->row_valid = duckdb_vector_get_validity(rows);
    in->sub = duckdb_vector_get_data(subs);
    in->sub_valid = duckdb_vector_get_validity(subs);
    in->val = duckdb_vector_get_data(vals);
    in->val_valid = duckdb_vector_get_validity(vals);
}

/* Result row i: its NQ values at *used (rc 1, then counted), or NULL (rc 0). */
static void put_row(duckdb_list_entry *le, uint64_t *valid, idx_t i, int rc, idx_t *used)
{
    le[i].offset = *used;
    le[i].length = rc ? NQ : 0;
    if (!rc) {
        duckdb_validity_set_row_invalid(valid, i);
        return;
    }
    duckdb_validity_set_row_valid(valid, i);
    *used += NQ;
}

static void quantiles_fn(duckdb_function_info info, duckdb_data_chunk chunk, duckdb_vector out)
{
    idx_t nrows = duckdb_data_chunk_get_size(chunk);
    idx_t used = duckdb_list_vector_get_size(out);
    input in;
    scratch s;
    memset(&s, 0, sizeof s);
    input_of(chunk, &in);
    if (duckdb_list_vector_reserve(out, used + NQ * nrows) == DuckDBError) {
        duckdb_scalar_function_set_error(info, QUANTILES_NAME ": out of memory for the result");
        return;
    }
    duckdb_list_entry *le = duckdb_vector_get_data(out);
    double *res = duckdb_vector_get_data(duckdb_list_vector_get_child(out));
    duckdb_vector_ensure_validity_writable(out);
    uint64_t *valid = duckdb_vector_get_validity(out);
    for (idx_t i = 0; i < nrows; i++) {
        int rc = 0;
        le[i].offset = used;
        le[i].length = 0;
        if (bit_valid(in.row_valid, i)) rc = row_quantiles(&s, &in, in.row[i], res + used);
        if (rc < 0) {
            duckdb_scalar_function_set_error(info, QUANTILES_NAME
                                             ": out of memory for the copied values of a row");
            break;
        }
        put_row(le, valid, i, rc, &used);
    }
    duckdb_list_vector_set_size(out, used);
    scratch_free(&s);
}

/* ---- the aggregate ------------------------------------------------------------------- */

/*
 * _events_quantiles_agg(DOUBLE[]): the same over the lists of a group's rows, each list a
 * sublist, without DuckDB's list() of them first (whose copies element by element cost 10x the
 * selection on 2.75 M durations). A state keeps each row's non-NULL values in a block of its
 * own, copied once (one memcpy when the list has no NULL): no block is ever moved.
 */
typedef struct agg_block {
    double *v;
    size_t n;
} agg_block;

typedef struct agg {
    agg_block *b;
    size_t nb, cap;
    int oom;
} agg;

static idx_t agg_size(duckdb_function_info info)
{
    (void)info;
    return sizeof(agg *);
}

static void agg_init(duckdb_function_info info, duckdb_aggregate_state st)
{
    (void)info;
    *(agg **)st = NULL;
}

static agg *agg_of(duckdb_aggregate_state st)
{
    agg **p = (agg **)st;
    if (!*p) *p = calloc(1, sizeof **p);
    return *p;
}

/* Appends n values of val from off (the non-NULL ones) as one more block of a. */
static void agg_add(agg *a, const double *val, const uint64_t *valid, idx_t off, idx_t n)
{
    if (!a || a->oom || !n) return;
    if (grow((void **)&a->b, &a->cap, a->nb + 1, sizeof *a->b) || n > SIZE_MAX / sizeof(double)) {
        a->oom = 1;
        return;
    }
    agg_block *bl = &a->b[a->nb]; /* taken once it holds a value */
    if (!(bl->v = malloc(n * sizeof *bl->v))) {
        a->oom = 1;
        return;
    }
    bl->n = 0;
    if (all_valid(valid, off, n)) {
        memcpy(bl->v, val + off, n * sizeof *val);
        bl->n = n;
    } else {
        for (idx_t i = off; i < off + n; i++)
            if (bit_valid(valid, i)) bl->v[bl->n++] = val[i];
    }
    if (bl->n)
        a->nb++;
    else
        free(bl->v);
}

#define AGG_OOM QUANTILES_NAME "_agg: out of memory for the values of a group"

static void agg_update(duckdb_function_info info, duckdb_data_chunk in, duckdb_aggregate_state *st)
{
    idx_t n = duckdb_data_chunk_get_size(in);
    duckdb_vector rows = duckdb_data_chunk_get_vector(in, 0);
    duckdb_vector vals = duckdb_list_vector_get_child(rows);
    const duckdb_list_entry *row = duckdb_vector_get_data(rows);
    const uint64_t *row_valid = duckdb_vector_get_validity(rows);
    const double *val = duckdb_vector_get_data(vals);
    const uint64_t *val_valid = duckdb_vector_get_validity(vals);
    for (idx_t i = 0; i < n; i++) {
        if (!bit_valid(row_valid, i)) continue;
        agg *a = agg_of(st[i]);
        if (!a) { /* no state to say it in: the query fails now */
            duckdb_aggregate_function_set_error(info, AGG_OOM);
            return;
        }
        agg_add(a, val, val_valid, row[i].offset, row[i].length);
    }
}

static void agg_combine(duckdb_function_info info, duckdb_aggregate_state *src,
                        duckdb_aggregate_state *dst, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        agg *a = *(agg **)src[i], *b;
        if (!a || (!a->nb && !a->oom)) continue;
        if (!(b = agg_of(dst[i]))) {
            duckdb_aggregate_function_set_error(info, AGG_OOM);
            return;
        }
        b->oom |= a->oom;
        /* the blocks move over, not their values */
        if (!b->oom && grow((void **)&b->b, &b->cap, b->nb + a->nb, sizeof *b->b)) b->oom = 1;
        if (b->oom) continue;
        memcpy(b->b + b->nb, a->b, a->nb * sizeof *a->b);
        b->nb += a->nb;
        a->nb = 0;
    }
}

/* The quantiles of a state's blocks into out, as row_quantiles does for a row's sublists. */
static int agg_quantiles(scratch *s, const agg *a, double out[NQ])
{
    size_t nr = 0, m = 0;
    if (grow((void **)&s->runs, &s->runs_cap, a->nb + 1, sizeof *s->runs)) return -1;
    for (size_t i = 0; i < a->nb; i++) {
        const agg_block *bl = &a->b[i];
        if (ascends(bl->v, bl->n)) {
            s->runs[nr++] = (run){.v = bl->v, .n = bl->n};
            continue;
        }
        if (m + bl->n < m || grow((void **)&s->keys, &s->keys_cap, m + bl->n, sizeof *s->keys))
            return -1;
        for (size_t j = 0; j < bl->n; j++) s->keys[m++] = key_of(bl->v[j]);
    }
    return split_quantiles(s, nr, m, out);
}

static void agg_finalize(duckdb_function_info info, duckdb_aggregate_state *st, duckdb_vector out,
                         idx_t count, idx_t offset)
{
    idx_t used = duckdb_list_vector_get_size(out);
    scratch s;
    memset(&s, 0, sizeof s);
    if (duckdb_list_vector_reserve(out, used + NQ * count) == DuckDBError) {
        duckdb_aggregate_function_set_error(info, QUANTILES_NAME ": out of memory for the result");
        return;
    }
    duckdb_list_entry *le = duckdb_vector_get_data(out);
    double *res = duckdb_vector_get_data(duckdb_list_vector_get_child(out));
    duckdb_vector_ensure_validity_writable(out);
    uint64_t *valid = duckdb_vector_get_validity(out);
    for (idx_t i = 0; i < count; i++) {
        agg *a = *(agg **)st[i];
        idx_t k = offset + i;
        int rc = 0;
        le[k].offset = used;
        le[k].length = 0;
        if (a && a->oom) rc = -1;
        if (a && !a->oom && a->nb) rc = agg_quantiles(&s, a, res + used);
        if (rc < 0) {
            duckdb_aggregate_function_set_error(info, AGG_OOM);
            break;
        }
        put_row(le, valid, k, rc, &used);
    }
    duckdb_list_vector_set_size(out, used);
    scratch_free(&s);
}

static void agg_destroy(duckdb_aggregate_state *st, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        agg **p = (agg **)st[i];
        if (*p) {
            for (size_t k = 0; k < (*p)->nb; k++) free((*p)->b[k].v);
            free((*p)->b);
            free(*p);
        }
        *p = NULL;
    }
}

/* Registers _events_quantiles_agg: 0, or -1 with err set. */
static int register_agg(duckdb_connection c, duckdb_logical_type l, char *err, size_t errlen)
{
    duckdb_aggregate_function f = duckdb_create_aggregate_function();
    if (!f) {
        snprintf(err, errlen, "cannot register %s_agg: DuckDB could not make it", QUANTILES_NAME);
        return -1;
    }
    duckdb_aggregate_function_set_name(f, QUANTILES_NAME "_agg");
    duckdb_aggregate_function_add_parameter(f, l);
    duckdb_aggregate_function_set_return_type(f, l);
    duckdb_aggregate_function_set_functions(f, agg_size, agg_init, agg_update, agg_combine,
                                            agg_finalize);
    duckdb_aggregate_function_set_destructor(f, agg_destroy);
    int rc = duckdb_register_aggregate_function(c, f) == DuckDBError ? -1 : 0;
    if (rc)
        snprintf(err, errlen, "cannot register %s_agg: DuckDB refused it (already registered?)",
                 QUANTILES_NAME);
    duckdb_destroy_aggregate_function(&f);
    return rc;
}

int query_quantiles_register(duckdb_connection c, char *err, size_t errlen)
{
    int rc = -1;
    duckdb_logical_type d = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
    duckdb_logical_type l = d ? duckdb_create_list_type(d) : NULL;
    duckdb_logical_type ll = l ? duckdb_create_list_type(l) : NULL;
    duckdb_scalar_function f = duckdb_create_scalar_function();
    if (!ll || !f) {
        snprintf(err, errlen, "cannot register %s: DuckDB could not make the function or its types",
                 QUANTILES_NAME);
        goto out;
    }
    duckdb_scalar_function_set_name(f, QUANTILES_NAME);
    duckdb_scalar_function_add_parameter(f, ll);
    duckdb_scalar_function_set_return_type(f, l);
    duckdb_scalar_function_set_function(f, quantiles_fn);
    if (duckdb_register_scalar_function(c, f) == DuckDBError) {
        snprintf(err, errlen,
                 "cannot register %s: DuckDB refused it (already registered on this database?)",
                 QUANTILES_NAME);
        goto out;
    }
    rc = register_agg(c, l, err, errlen);
out:
    duckdb_destroy_scalar_function(&f);
    if (ll) duckdb_destroy_logical_type(&ll);
    if (l) duckdb_destroy_logical_type(&l);
    if (d) duckdb_destroy_logical_type(&d);
    return rc;
}
