/*
 * compact_history.c - the history files a compaction run writes and deletes
 * (history.h, docs/lake.md "History files"): for each day whose hours are all
 * due, the document changes of its live compacted files sorted by document,
 * written once for each set of files the day has; the stale ones deleted
 * --compact-retain after they were written.
 */
#include "compact_int.h"

#include "buf.h"
#include "evtime.h"
#include "history.h"
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Days whose history one run writes at most, newest first: a lake compacted before history
 * files existed gets them over its next runs, none of which is held up for long. */
#define HISTORY_DAYS_PER_RUN 4

/* The bytes of document changes one part holds at most, in chunks (compact.h): each part's
 * statement reads the whole day, so fewer parts cost less; 4 chunks of 100-250 KB documents sort
 * within the limit (test_compact's, 128 and 256 MiB) once the documents are read as text. */
#define HISTORY_PART_CHUNKS 4

/* A partition of the day compacted in layout 1 (partition.h), which the history's select does
 * not read: the day gets no history file. */
static int on_day_partition(lake_partition *p, void *ud)
{
    if (p->has_manifest && p->m.layout == LAKE_LAYOUT_1) *(int *)ud = 1;
    return 0;
}

/* The files' local paths in items (fetched and pinned for an object store), as a SQL list. */
static int inputs_list(compact__run *r, lake_cache_item *items, size_t n, buf *list)
{
    const char *root = r->cfg->store->ops->root(r->cfg->store);
    char m[1024];
    if (!root && lake_cache_fetch(r->cfg->cache, r->cfg->store, items, n, 8, m, sizeof m)) {
        snprintf(r->err, r->errlen, "compaction: cannot fetch a day's files for its history: %s",
                 m);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (root) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", root, items[i].key);
            if (!(items[i].path = strdup(path))) return -1;
        }
        if (i) buf_putc(list, ',');
        query_sql_quote(list, items[i].path);
    }
    return 0;
}

/* Runs sql, its first value (0 if none) into *v when v is set. 0, or -1 (r->err). */
static int run(compact__run *r, const char *sql, int64_t *v, const char *key)
{
    duckdb_result res;
    if (duckdb_query(r->con, sql, &res) == DuckDBError) {
        snprintf(r->err, r->errlen, "compaction: cannot write the history %s: %s", key,
                 duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        return -1;
    }
    if (v) *v = duckdb_row_count(&res) ? duckdb_value_int64(&res, 0, 0) : 0;
    duckdb_destroy_result(&res);
    return 0;
}

/*
 * The document changes of the files of list (a SQL list of paths), with the events view's
 * values (query_view.c) but doc and prev as their JSON text, which the view casts when it reads
 * a history file (a cast here would parse every document: a large one takes more memory than a
 * chunk's compaction allows).
 */
static void changes(buf *sql, const buf *list, const char *columns)
{
    buf_printf(sql,
               "SELECT %s FROM (SELECT id, type, make_timestamp(epoch_us(ts)) AS ts, "
               "make_timestamp(epoch_us(receivedAt)) AS receivedAt, collection, docId, doc, prev, "
               "bookmark FROM read_parquet([",
               columns);
    buf_append(sql, list->p, list->len);
    buf_printf(sql, "], %s)) WHERE type IN " LAKE_HISTORY_TYPES, QUERY_PARQUET_SCHEMA);
}

/* Writes part k of n of the history to out. 0, or -1 (r->err). */
static int write_part(compact__run *r, const buf *list, int k, int n, const char *out,
                      const char *key)
{
    buf sql = BUF_INIT;
    buf_puts(&sql, "COPY (");
    changes(&sql, list, "id, type, ts, receivedAt, collection, docId, doc, prev, bookmark");
    if (n > 1) buf_printf(&sql, " AND hash(collection, docId) %% %d = %d", n, k - 1);
    buf_puts(&sql, " ORDER BY collection, docId, bookmark, ts, id) TO ");
    query_sql_quote(&sql, out);
    buf_puts(&sql, " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192)");
    int rc = buf_cstr(&sql) ? run(r, sql.p, NULL, key) : -1;
    if (rc && !r->err[0]) snprintf(r->err, r->errlen, "out of memory");
    buf_free(&sql);
    return rc;
}

/*
 * Writes the history files of the n live files of a day (first hour d) named hash: as many
 * parts as keep each within HISTORY_PART_CHUNKS chunks of changes, each written, then all put
 * (*parts of them; 0 for a day that would need more than LAKE_HISTORY_PARTS). 0, or -1 (r->err).
 */
static int build(compact__run *r, const ice_file *files, size_t n, int64_t d, const char *hash,
                 int *nparts)
{
    int rc = -1, parts = 0;
    char key[LAKE_KEY_MAX], why[512];
    lake_history_key(d, hash, 1, 1, key);
    lake_cache_item *items = calloc(n, sizeof *items);
    buf list = BUF_INIT, sql = BUF_INIT;
    if (!items) goto out;
    for (size_t i = 0; i < n; i++) items[i].key = files[i].key, items[i].size = files[i].bytes;
    if (inputs_list(r, items, n, &list)) goto out;
    changes(&sql, &list,
            "coalesce(sum(strlen(type) + 16 + coalesce(strlen(id), 0) + "
            "coalesce(strlen(collection), 0) + coalesce(strlen(docId), 0) + "
            "coalesce(strlen(doc), 0) + coalesce(strlen(prev), 0) + "
            "coalesce(strlen(bookmark), 0)), 0)::BIGINT");
    int64_t bytes = 0;
    if (!buf_cstr(&sql) || run(r, sql.p, &bytes, key)) goto out;
    uint64_t part_max = r->chunk_bytes * HISTORY_PART_CHUNKS;
    parts = (int)((uint64_t)bytes / part_max + 1);
    if (parts > LAKE_HISTORY_PARTS) { /* no history: the day is read from its files */
        parts = 0;
        rc = 0;
        goto out;
    }
    for (int k = 1; k <= parts; k++) {
        char out[4400];
        snprintf(out, sizeof out, "%s/history-%d.parquet", r->dir, k);
        lake_history_key(d, hash, k, parts, key);
        if (compact__lease_keep(&r->lease, r->err, r->errlen) ||
            write_part(r, &list, k, parts, out, key))
            goto out;
    }
    for (int k = 1; k <= parts; k++) { /* queries take the set once it is whole */
        char out[4400];
        snprintf(out, sizeof out, "%s/history-%d.parquet", r->dir, k);
        lake_history_key(d, hash, k, parts, key);
        if (store_put_file(r->cfg->store, key, out, STORE_MOVE, why, sizeof why)) {
            snprintf(r->err, r->errlen, "compaction: cannot put the history %s: %s", key, why);
            goto out;
        }
    }
    r->st->histories += (uint64_t)parts;
    *nparts = parts;
    rc = 0;
out:
    if (rc && !r->err[0]) snprintf(r->err, r->errlen, "out of memory");
    for (int k = 1; k <= parts; k++) {
        char out[4400];
        snprintf(out, sizeof out, "%s/history-%d.parquet", r->dir, k);
        unlink(out);
    }
    if (items && !r->cfg->store->ops->root(r->cfg->store) && items[0].path)
        lake_cache_unpin(r->cfg->cache, items, n);
    else if (items)
        for (size_t i = 0; i < n; i++) free(items[i].path);
    free(items);
    buf_free(&list);
    buf_free(&sql);
    return rc;
}

/*
 * The day of the live files [0, n) (one day's, in key order): its history file marked current
 * in hl, or written when the day is due and has none (at most *budget more). 0, or -1.
 */
static int day(compact__run *r, const lake_live *lv, const ice_file *files, size_t n,
               lake_history_list *hl, int *budget)
{
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) {
        snprintf(r->err, r->errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) keys[i] = files[i].key;
    char hash[LAKE_HISTORY_HASH + 1];
    lake_history_hash(keys, n, hash);
    free(keys);
    int64_t d = lake_history_day(files[0].hour);
    int have = lake_history_complete(hl, d, hash);
    for (size_t i = 0; i < hl->n; i++) /* a set not whole is stale too: written again */
        if (hl->f[i].day == d && !strcmp(hl->f[i].hash, hash) && hl->f[i].parts == have)
            hl->f[i].current = 1;
    int64_t after = r->cfg->after_ms > 0 ? r->cfg->after_ms : 0;
    if (have || *budget <= 0 || (d + 24) * 3600000 + after > r->now) return 0;
    int old = 0;
    char prefix[LAKE_KEY_MAX], m[1024];
    lake_day_prefix(d, prefix);
    if (lake_partitions_list(r->cfg->store, lv, prefix, on_day_partition, &old, m, sizeof m)) {
        snprintf(r->err, r->errlen, "compaction: %s", m);
        return -1;
    }
    if (old) return 0;
    if (compact__lease_keep(&r->lease, r->err, r->errlen)) return -1;
    (*budget)--;
    int parts = 0;
    if (build(r, files, n, d, hash, &parts)) return -1;
    for (size_t i = 0; i < hl->n; i++) /* listed before, put again now: not stale */
        if (hl->f[i].day == d && !strcmp(hl->f[i].hash, hash) && hl->f[i].parts == parts)
            hl->f[i].current = 1;
    return 0;
}

int compact__history(compact__run *r)
{
    store *s = r->cfg->store;
    lake_table lt;
    lake_live lv;
    lake_history_list hl = {0};
    char m[1024], why[512];
    memset(&lv, 0, sizeof lv);
    memset(&lt, 0, sizeof lt);
    r->now = evtime_now_ms();
    int rc = lake_table_load(s, &lt, m, sizeof m); /* as this run left it */
    if (!rc) rc = lake_live_load(s, &lt, INT64_MIN, INT64_MAX, &lv, m, sizeof m);
    if (rc) {
        snprintf(r->err, r->errlen, "compaction: %s", m);
        goto out;
    }
    if ((rc = lake_history_load(s, &hl, m, sizeof m))) {
        snprintf(r->err, r->errlen, "compaction: %s", m);
        goto out;
    }
    int budget = HISTORY_DAYS_PER_RUN;
    for (size_t j = lv.n; j > 0 && !rc;) { /* a day at a time, newest first */
        int64_t d = lake_history_day(lv.files[j - 1].hour);
        size_t i = j;
        while (i > 0 && lake_history_day(lv.files[i - 1].hour) == d) i--;
        rc = day(r, &lv, lv.files + i, j - i, &hl, &budget);
        j = i;
    }
    int64_t keep_after = compact__keep_after(r);
    for (size_t i = 0; !rc && i < hl.n; i++) /* a query may read a stale one yet: kept a while */
        if (!hl.f[i].current && hl.f[i].mtime_ms <= keep_after &&
            !store_del(s, hl.f[i].key, why, sizeof why))
            r->st->histories_deleted++;
out:
    lake_history_list_free(&hl);
    lake_live_free(&lv);
    lake_table_free(&lt);
    return rc ? -1 : 0;
}
