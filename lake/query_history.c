/*
 * query_history.c - a query that reads events only through one call of
 * doc_history (query__hours.history) reads each day's history file instead of
 * the day's compacted files, when the history was made of exactly those files
 * (history.h, docs/lake.md "History files"): one file per day rather than
 * every hour's. Raw files and the spool's segments are read as ever.
 */
#include "query_int.h"

#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A compacted file of the live list, by its day. */
typedef struct day_file {
    int64_t day;
    size_t i;
} day_file;

static int by_day(const void *a, const void *b)
{
    const day_file *x = a, *y = b;
    if (x->day != y->day) return x->day < y->day ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * The days of the compacted files d[0, nd) (sorted by day) whose history file hl holds: their
 * files marked in drop, the history files added to l. 0, or -2 out of memory.
 */
static int replace_days(query__live *l, const day_file *d, size_t nd, const lake_history_list *hl,
                        unsigned char *drop)
{
    const char **keys = malloc(nd * sizeof *keys);
    if (!keys) return -2;
    int rc = 0;
    for (size_t a = 0, b; a < nd && !rc; a = b) {
        int old = 0; /* layout 1: not what history files are made of */
        size_t k = 0;
        for (b = a; b < nd && d[b].day == d[a].day; b++) {
            if (l->parquet[d[b].i] == FILE_PARQUET_1) old = 1;
            keys[k++] = l->it[d[b].i].key;
        }
        if (old) continue;
        char hash[LAKE_HISTORY_HASH + 1];
        lake_history_hash(keys, k, hash);
        int parts = lake_history_complete(hl, d[a].day, hash);
        if (!parts) continue;
        for (size_t j = a; j < b; j++) drop[d[j].i] = 1;
        for (size_t j = 0; j < hl->n && !rc; j++) {
            const lake_history_file *h = &hl->f[j];
            if (h->day == d[a].day && h->parts == parts && !strcmp(h->hash, hash))
                rc = query__live_add(l, h->key, h->size, FILE_HISTORY);
        }
    }
    free(keys);
    return rc;
}

int query__history(query_engine *e, query__live *l, char *err, size_t errlen)
{
    size_t n = l->n, nd = 0;
    day_file *d = malloc((n ? n : 1) * sizeof *d);
    unsigned char *drop = calloc(n ? n : 1, 1);
    lake_history_list hl = {0};
    int rc = -2;
    if (!d || !drop) goto out;
    for (size_t i = 0; i < n; i++) {
        int64_t hour;
        const char *ext;
        if ((l->parquet[i] == FILE_PARQUET || l->parquet[i] == FILE_PARQUET_1) &&
            !lake_parse_event_key(l->it[i].key, &hour, &ext))
            d[nd++] = (day_file){lake_history_day(hour), i};
    }
    rc = 0;
    if (!nd) goto out;
    qsort(d, nd, sizeof *d, by_day);
    char m[600];
    if (lake_history_load(e->store, &hl, m, sizeof m)) {
        snprintf(err, errlen, "query: %s", m);
        rc = -1;
        goto out;
    }
    if (!hl.n || (rc = replace_days(l, d, nd, &hl, drop))) goto out;
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (i < n && drop[i]) {
            free((char *)l->it[i].key);
            continue;
        }
        l->it[j] = l->it[i];
        l->parquet[j++] = l->parquet[i];
    }
    l->n = j;
out:
    if (rc == -2) snprintf(err, errlen, "out of memory");
    lake_history_list_free(&hl);
    free(d);
    free(drop);
    return rc ? -1 : 0;
}
