/*
 * iceberg_commit.c - what a commit to the lake's Iceberg table costs once the
 * table is years old (lake/iceberg.h), and what planning a one-hour query reads.
 *
 * Builds a table of DAYS days (default 730) of PER_DAY files each (default 24,
 * one an hour), one commit per day, on a fresh directory store; then makes
 * APPENDS commits (default 1000) of one file each to the last day, as compaction
 * appends freshly sealed segments. Prints the time per commit, the current
 * snapshot's manifest list (entries, bytes), and for ice_files of one hour (of
 * the last day and of a day in the middle) the manifests it read and its time.
 * The data files are not written: a commit names them, it does not read them.
 * Each file carries statistics of 18 columns, as compaction's files do.
 *
 *   build/bench/iceberg_commit [DAYS] [PER_DAY] [APPENDS]
 *
 * The store is wrapped to count what is read: every get of a manifest
 * (metadata/…-m….avro) and of a manifest list (metadata/snap-….avro).
 */
#include "avro.h"
#include "iceberg.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 2024-01-01 00:00 UTC in hours since the epoch */
#define FIRST_HOUR ((int64_t)473352)
#define NCOLS      18

/* The directory store, with the gets of manifests and lists counted. */
typedef struct counting {
    store base;
    store *inner;
    long manifest_gets, list_gets;
    long long put_bytes;
} counting;

static store *inner_of(store *s)
{
    return ((counting *)s)->inner;
}

static int c_put(store *s, const char *key, const void *d, size_t n, int flags, char *err,
                 size_t errlen)
{
    ((counting *)s)->put_bytes += (long long)n;
    return store_put(inner_of(s), key, d, n, flags, err, errlen);
}
static int c_put_file(store *s, const char *key, const char *path, int flags, char *err,
                      size_t errlen)
{
    return store_put_file(inner_of(s), key, path, flags, err, errlen);
}
static int c_get(store *s, const char *key, uint64_t off, uint64_t len, buf *out, char *err,
                 size_t errlen)
{
    counting *c = (counting *)s;
    if (!strncmp(key, "metadata/snap-", 14))
        c->list_gets++;
    else if (!strncmp(key, "metadata/", 9) && strstr(key, "-m") && strstr(key, ".avro"))
        c->manifest_gets++;
    return store_get(inner_of(s), key, off, len, out, err, errlen);
}
static int c_get_file(store *s, const char *key, const char *path, char *err, size_t errlen)
{
    return store_get_file(inner_of(s), key, path, err, errlen);
}
static int c_head(store *s, const char *key, store_entry *e, char *err, size_t errlen)
{
    return store_head(inner_of(s), key, e, err, errlen);
}
static int c_list(store *s, const char *prefix, store_list_fn fn, void *ud, char *err,
                  size_t errlen)
{
    return store_list(inner_of(s), prefix, fn, ud, err, errlen);
}
static int c_del(store *s, const char *key, char *err, size_t errlen)
{
    return store_del(inner_of(s), key, err, errlen);
}
static const char *c_root(store *s)
{
    return inner_of(s)->ops->root(inner_of(s));
}
static void c_close(store *s)
{
    (void)s; /* the inner store is closed by main */
}
static const store_ops counting_ops = {c_put,  c_put_file, c_get,  c_get_file, c_head,
                                       c_list, c_del,      c_root, c_close};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* A file of the given hour, named n, with statistics of NCOLS columns. */
static int make_file(ice_file *f, int64_t hour, long n)
{
    char key[128];
    int64_t day = hour / 24 - FIRST_HOUR / 24;
    snprintf(key, sizeof key, "events/d%05" PRId64 "/%02d/f%07ld.parquet", day, (int)(hour % 24),
             n);
    memset(f, 0, sizeof *f);
    f->key = strdup(key);
    f->hour = hour;
    f->records = 50000 + n % 1000;
    f->bytes = 4000000 + n * 7 % 100000;
    f->cols = calloc(NCOLS, sizeof *f->cols);
    if (!f->key || !f->cols) return -1;
    f->ncols = NCOLS;
    for (int i = 0; i < NCOLS; i++) {
        ice_col_stats *c = &f->cols[i];
        c->field_id = i + 1 + (i >= 4); /* the leaf ids: 1-4, 6-19 */
        c->column_size = 100000 + i * 1000;
        c->value_count = f->records;
        c->null_count = i % 3 ? 0 : 17;
        c->has_bounds = ICE_LOWER | ICE_UPPER;
        char lo[24], hi[24];
        snprintf(lo, sizeof lo, "lo-%02d-%07ld", i, n);
        snprintf(hi, sizeof hi, "hi-%02d-%07ld", i, n);
        if (buf_append(&c->lower, lo, strlen(lo)) || buf_append(&c->upper, hi, strlen(hi)))
            return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The current snapshot's manifest list: its records and bytes. */
static int list_size(counting *cs, const ice_table *t, long *entries, size_t *bytes)
{
    const json_t *snaps = json_object_get(ice_table_json(t), "snapshots");
    const json_t *snap = json_array_get(snaps, json_array_size(snaps) - 1);
    const char *path = json_string_value(json_object_get(snap, "manifest-list"));
    size_t loc = strlen(ice_table_location(t));
    if (!path || strlen(path) <= loc + 1) return -1;
    buf b = BUF_INIT;
    char err[512];
    if (store_get(cs->inner, path + loc + 1, 0, 0, &b, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    lake_avro_reader *r;
    avro_value_t *rec;
    *entries = 0;
    *bytes = b.len;
    if (lake_avro_reader_new(b.p, b.len, &r, err, sizeof err)) {
        buf_free(&b);
        return -1;
    }
    while (lake_avro_reader_next(r, &rec, err, sizeof err) == 1) (*entries)++;
    lake_avro_reader_free(r);
    buf_free(&b);
    return 0;
}

/* ice_files of one hour, reps times: the mean time, the manifests read, the files. */
static int plan_hour(counting *cs, const ice_table *t, int64_t hour, int reps)
{
    char err[512];
    double t0 = now_s();
    long before = cs->manifest_gets;
    size_t n = 0;
    for (int i = 0; i < reps; i++) {
        ice_file *fs;
        if (ice_files(&cs->base, t, hour, hour, &fs, &n, err, sizeof err)) {
            fprintf(stderr, "ice_files: %s\n", err);
            return -1;
        }
        ice_files_free(fs, n);
    }
    double ms = (now_s() - t0) * 1000 / reps;
    printf("  ice_files(hour %" PRId64 "): %zu files, %ld manifests read, %.2f ms\n", hour, n,
           (cs->manifest_gets - before) / reps, ms);
    return 0;
}

int main(int argc, char **argv)
{
    int days = argc > 1 ? atoi(argv[1]) : 730;
    int per_day = argc > 2 ? atoi(argv[2]) : 24;
    int appends = argc > 3 ? atoi(argv[3]) : 1000;
    char dir[] = "/tmp/iceberg-bench-XXXXXX", err[1024];
    if (days < 1 || per_day < 1 || per_day > 24 || appends < 1 || !mkdtemp(dir)) return 2;
    store *s;
    if (store_open(dir, &s, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        return 1;
    }
    counting cs = {{&counting_ops, s->url, 0}, s, 0, 0, 0};
    ice_catalog cat = ice_store_catalog(&cs.base);
    ice_table *t = NULL;
    ice_file *fs = calloc((size_t)per_day, sizeof *fs);
    double *times = calloc((size_t)appends, sizeof *times);
    long serial = 0;
    int rc = 1;
    if (!fs || !times) goto done;

    double t0 = now_s();
    for (int d = 0; d < days; d++) {
        for (int h = 0; h < per_day; h++)
            if (make_file(&fs[h], FIRST_HOUR + (int64_t)d * 24 + h, serial++)) goto done;
        ice_change c = {.operation = "append", .add = fs, .nadd = (size_t)per_day};
        ice_table *next = NULL;
        if (ice_commit(&cat, &cs.base, t, &c, 1000 + d, &next, err, sizeof err)) {
            fprintf(stderr, "ice_commit: %s\n", err);
            goto done;
        }
        ice_table_free(t);
        t = next;
        for (int h = 0; h < per_day; h++) ice_file_clear(&fs[h]);
    }
    double built = now_s() - t0;
    long entries;
    size_t bytes;
    if (list_size(&cs, t, &entries, &bytes)) goto done;
    printf("table of %d days x %d files: built in %.1f s (%d commits), list %ld entries, %zu "
           "bytes\n",
           days, per_day, built, days, entries, bytes);

    int64_t last_day = FIRST_HOUR + (int64_t)(days - 1) * 24;
    long m0 = cs.manifest_gets, l0 = cs.list_gets;
    long long b0 = cs.put_bytes;
    double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < appends; i++) {
        ice_file f;
        if (make_file(&f, last_day + i % 24, serial++)) goto done;
        ice_change c = {.operation = "append", .add = &f, .nadd = 1};
        ice_table *next = NULL;
        double c0 = now_s();
        int crc = ice_commit(&cat, &cs.base, t, &c, 100000 + i, &next, err, sizeof err);
        times[i] = (now_s() - c0) * 1000;
        ice_file_clear(&f);
        if (crc) {
            fprintf(stderr, "ice_commit: %s\n", err);
            goto done;
        }
        ice_table_free(t);
        t = next;
    }
    double cpu = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0) * 1000 / appends;
    if (list_size(&cs, t, &entries, &bytes)) goto done;
    double first = 0, last = 0, sum = 0;
    int tenth = appends >= 10 ? appends / 10 : 1;
    for (int i = 0; i < appends; i++) sum += times[i];
    for (int i = 0; i < tenth; i++) {
        first += times[i];
        last += times[appends - 1 - i];
    }
    qsort(times, (size_t)appends, sizeof *times, cmp_double);
    printf("%d appends of 1 file to the last day:\n", appends);
    printf("  ms per commit: mean %.2f, p50 %.2f, p99 %.2f, max %.2f; first %d mean %.2f, last "
           "%d mean %.2f\n",
           sum / appends, times[appends / 2], times[appends * 99 / 100], times[appends - 1], tenth,
           first / tenth, tenth, last / tenth);
    printf("  per commit: %.2f ms CPU; read %.2f manifests, %.2f lists; wrote %.0f bytes\n", cpu,
           (double)(cs.manifest_gets - m0) / appends, (double)(cs.list_gets - l0) / appends,
           (double)(cs.put_bytes - b0) / appends);
    printf("  list after: %ld entries, %zu bytes\n", entries, bytes);
    if (plan_hour(&cs, t, last_day + 5, 20) ||
        plan_hour(&cs, t, FIRST_HOUR + days / 2 * 24 + 5, 20))
        goto done;
    rc = 0;
done:
    ice_table_free(t);
    free(fs);
    free(times);
    store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
    return rc;
}
