/*
 * sql_time.c - times SQL statements on the DuckDB library the server links, outside the
 * server: what a statement costs in the engine alone, without the view, the listing of the
 * lake or HTTP (bench/table_parts.sh runs it over a compacted lake's Parquet files).
 *
 *   sql_time RUNS STATEMENT...
 *
 * One in-memory database, 2 threads and the UTC time zone, as the server's engine has them.
 * Each statement is run RUNS times in order on one connection; a line per statement gives
 * the fastest run in milliseconds, the first value of the first row and the row count. A
 * statement that fails stops the program with its error (exit 1).
 *
 * The statements may call bench_quantiles3(DOUBLE): the exact 0.5, 0.95 and 0.99 quantiles of
 * a group as quantile_cont(x, [0.5, 0.95, 0.99]) gives them, as an aggregate written against
 * DuckDB's C API (each state collects its values, finalize selects in them), to measure what
 * a percentile of our own would save over DuckDB's.
 */
#include <duckdb.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- bench_quantiles3 ---------------------------------------------------------------- */

typedef struct q3_values {
    double *v;
    size_t n, cap;
    int oom;
} q3_values;

/* A state is a pointer to its values, made at the first value. */
static idx_t q3_size(duckdb_function_info info)
{
    (void)info;
    return sizeof(q3_values *);
}

static void q3_init(duckdb_function_info info, duckdb_aggregate_state s)
{
    (void)info;
    *(q3_values **)s = NULL;
}

static q3_values *q3_of(duckdb_aggregate_state s)
{
    q3_values **p = (q3_values **)s;
    if (!*p) *p = calloc(1, sizeof **p);
    return *p;
}

static void q3_push(q3_values *a, double x)
{
    if (!a || a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        double *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = 1;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static void q3_update(duckdb_function_info info, duckdb_data_chunk in, duckdb_aggregate_state *st)
{
    (void)info;
    idx_t n = duckdb_data_chunk_get_size(in);
    duckdb_vector v = duckdb_data_chunk_get_vector(in, 0);
    const double *d = duckdb_vector_get_data(v);
    uint64_t *valid = duckdb_vector_get_validity(v);
    for (idx_t i = 0; i < n; i++)
        if (!valid || duckdb_validity_row_is_valid(valid, i)) q3_push(q3_of(st[i]), d[i]);
}

static void q3_combine(duckdb_function_info info, duckdb_aggregate_state *src,
                       duckdb_aggregate_state *dst, idx_t count)
{
    (void)info;
    for (idx_t i = 0; i < count; i++) {
        q3_values *a = *(q3_values **)src[i];
        if (!a) continue;
        q3_values *b = q3_of(dst[i]);
        if (!b) continue;
        b->oom |= a->oom;
        for (size_t k = 0; k < a->n; k++) q3_push(b, a->v[k]);
    }
}

/* DuckDB's order of doubles: NaN above everything. */
static int q3_less(double a, double b)
{
    if (isnan(a)) return 0;
    return isnan(b) || a < b;
}

/* Puts the k-th smallest of v[lo, hi) at k (three-way partitions around random pivots). */
static void q3_select(double *v, size_t lo, size_t hi, size_t k, uint64_t *rng)
{
    while (hi - lo > 1) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        double p = v[lo + *rng % (hi - lo)];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            double t = v[i];
            if (q3_less(t, p)) {
                v[i++] = v[lt];
                v[lt++] = t;
            } else if (q3_less(p, t)) {
                v[i] = v[--gt];
                v[gt] = t;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
}

static void q3_finalize(duckdb_function_info info, duckdb_aggregate_state *src, duckdb_vector res,
                        idx_t count, idx_t offset)
{
    static const double Q[3] = {0.5, 0.95, 0.99};
    uint64_t rng = 0x9e3779b97f4a7c15u;
    idx_t used = duckdb_list_vector_get_size(res);
    duckdb_vector_ensure_validity_writable(res);
    uint64_t *valid = duckdb_vector_get_validity(res);
    for (idx_t i = 0; i < count; i++) {
        duckdb_list_entry *le = duckdb_vector_get_data(res);
        q3_values *a = *(q3_values **)src[i];
        le[offset + i].offset = used;
        le[offset + i].length = 0;
        if (a && a->oom) {
            duckdb_aggregate_function_set_error(info, "bench_quantiles3: out of memory");
            return;
        }
        if (!a || !a->n) {
            duckdb_validity_set_row_invalid(valid, offset + i);
            continue;
        }
        duckdb_list_vector_reserve(res, used + 3);
        double *out = duckdb_vector_get_data(duckdb_list_vector_get_child(res));
        for (int q = 0; q < 3; q++) { /* as DuckDB interpolates: lo * (1 - d) + hi * d */
            double rn = (double)(a->n - 1) * Q[q];
            size_t f = (size_t)floor(rn), c = (size_t)ceil(rn);
            q3_select(a->v, 0, a->n, f, &rng);
            double lo = a->v[f], hi = lo, d = rn - (double)f;
            if (c != f) { /* the next value up: the smallest above position f */
                hi = a->v[f + 1];
                for (size_t k = f + 2; k < a->n; k++)
                    if (q3_less(a->v[k], hi)) hi = a->v[k];
            }
            out[used + (idx_t)q] = c == f ? lo : lo * (1.0 - d) + hi * d;
        }
        le[offset + i].length = 3;
        used += 3;
        duckdb_list_vector_set_size(res, used);
    }
}

static void q3_destroy(duckdb_aggregate_state *st, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        q3_values **p = (q3_values **)st[i];
        if (*p) free((*p)->v);
        free(*p);
        *p = NULL;
    }
}

static int q3_register(duckdb_connection c)
{
    duckdb_aggregate_function f = duckdb_create_aggregate_function();
    duckdb_logical_type d = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
    duckdb_logical_type l = duckdb_create_list_type(d);
    duckdb_aggregate_function_set_name(f, "bench_quantiles3");
    duckdb_aggregate_function_add_parameter(f, d);
    duckdb_aggregate_function_set_return_type(f, l);
    duckdb_aggregate_function_set_functions(f, q3_size, q3_init, q3_update, q3_combine,
                                            q3_finalize);
    duckdb_aggregate_function_set_destructor(f, q3_destroy);
    int rc = duckdb_register_aggregate_function(c, f) == DuckDBError ? -1 : 0;
    duckdb_destroy_logical_type(&l);
    duckdb_destroy_logical_type(&d);
    duckdb_destroy_aggregate_function(&f);
    return rc;
}

/* ---- timing --------------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int run(duckdb_connection c, const char *sql)
{
    duckdb_result r;
    if (duckdb_query(c, sql, &r) == DuckDBError) {
        fprintf(stderr, "sql_time: %s\n  in: %s\n", duckdb_result_error(&r), sql);
        duckdb_destroy_result(&r);
        return -1;
    }
    duckdb_destroy_result(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || atoi(argv[1]) < 1) {
        fprintf(stderr, "usage: sql_time RUNS STATEMENT...\n");
        return 2;
    }
    int runs = atoi(argv[1]);
    duckdb_database db;
    duckdb_connection c;
    if (duckdb_open(NULL, &db) == DuckDBError || duckdb_connect(db, &c) == DuckDBError) {
        fprintf(stderr, "sql_time: cannot open DuckDB\n");
        return 1;
    }
    int rc = run(c, "SET threads = 2") || run(c, "SET TimeZone = 'UTC'") ? 1 : 0;
    if (!rc && q3_register(c)) {
        fprintf(stderr, "sql_time: cannot register bench_quantiles3\n");
        rc = 1;
    }
    for (int a = 2; a < argc && !rc; a++) {
        double best = -1;
        char first[64] = "";
        unsigned long long rows = 0;
        for (int k = 0; k < runs && !rc; k++) {
            duckdb_result r;
            double t0 = now_ms();
            if (duckdb_query(c, argv[a], &r) == DuckDBError) {
                fprintf(stderr, "sql_time: %s\n  in: %s\n", duckdb_result_error(&r), argv[a]);
                rc = 1;
            } else {
                double t = now_ms() - t0;
                if (best < 0 || t < best) best = t;
                rows = (unsigned long long)duckdb_row_count(&r);
                char *v = rows && duckdb_column_count(&r) ? duckdb_value_varchar(&r, 0, 0) : NULL;
                snprintf(first, sizeof first, "%s", v ? v : "");
                duckdb_free(v);
            }
            duckdb_destroy_result(&r);
        }
        if (!rc) printf("%9.1f ms  rows=%-4llu first=%-20s  %.90s\n", best, rows, first, argv[a]);
    }
    duckdb_disconnect(&c);
    duckdb_close(&db);
    return rc;
}
