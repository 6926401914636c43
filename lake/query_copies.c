/*
 * query_copies.c - Parquet copies of the raw files that queries read (query_int.h).
 *
 * Until compaction replaces them, the newest hours of a lake are JSON Lines, and every query
 * that reaches them parses them again: on a dashboard over compacted hours, the raw current hour
 * is most of each query's time (bench/README.md, "Copies of the raw hours"). A raw file is
 * immutable (its name is a UUID), so the first query that reads one asks for a copy, a thread of
 * the engine writes it (the same columns and types as compaction, from one parse of each event,
 * rows in the file's order, nothing dropped or merged), and the queries after read the copy
 * instead: the same rows, read as a compacted file is.
 *
 * The copies live in one directory of the server's spool, emptied at start, and take at most
 * max_bytes. A copy is made only if it fits, once the copies not read for idle_ms (a minute,
 * unless query_config says) are deleted, least recently read first: the copies keep the files
 * being read now, and a lake whose raw files outgrow the limit, scanned whole again and again,
 * does not copy and delete without end. Whether a copy fits is estimated before it is made from the
 * sizes of the copies made so far (a copy that turns out not to fit is deleted). At most
 * COPIES_QUEUE files wait to be copied. A raw file under min_raw bytes is always read raw. A file
 * not copied (no room, a full queue) is read raw and asked for again by a later query; a file that
 * could not be copied (gone, unreadable) is asked for again after idle_ms.
 *
 * Entries sit in a hash table by key (chained) and in a list in order of use, the least recently
 * used at its head, where eviction takes the first it may. There are at most COPIES_ENTRIES of
 * them.
 */
#include "query_int.h"
#include "evtime.h"
#include "iceberg.h"
#include "strhash.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPIES_QUEUE   64
#define COPIES_ENTRIES 4096
#define COPIES_BUCKETS 1024 /* a power of two */

enum { WANTED, READY, FAILED }; /* WANTED: in the queue, or being made */

struct query__copy {
    char *key;         /* the raw file's key in the lake */
    uint64_t raw_size; /* its listed size: a file of another size is another file */
    uint64_t bytes;    /* the copy's size once READY */
    int64_t used_ms;   /* when it was last read, made or asked for (monotonic), for idle_ms */
    int state, pins;
    char *path;                 /* DIR/ID.parquet, once READY */
    query__copy *hnext;         /* hash chain */
    query__copy *qnext;         /* the queue */
    query__copy *lprev, *lnext; /* every entry, least recently used first */
};

struct query__copies {
    query_engine *e;
    duckdb_connection con; /* the copying thread's */
    char *dir;
    uint64_t max_bytes;
    uint64_t min_raw; /* raw files smaller are not copied: their parse costs about what a copy's
                       * read would (bench/README.md, "Copies of the raw hours") */
    int64_t idle_ms;  /* a copy not read for this long may make room for another */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    query__copy *bucket[COPIES_BUCKETS];
    query__copy *qhead, *qtail, *lhead, *ltail;
    size_t nentries, nqueued;
    unsigned next_id;
    uint64_t raw_copied, copy_bytes; /* over every copy written: their raw files' and their size */
    query_copies_stats st;
};

static size_t bucket_of(const char *key)
{
    return (size_t)(strhash(key) & (COPIES_BUCKETS - 1));
}

static query__copy *find(query__copies *cp, const char *key)
{
    for (query__copy *c = cp->bucket[bucket_of(key)]; c; c = c->hnext)
        if (!strcmp(c->key, key)) return c;
    return NULL;
}

/* Takes c out of the list of entries. Under mu. */
static void list_out(query__copies *cp, query__copy *c)
{
    if (cp->lhead == c)
        cp->lhead = c->lnext;
    else if (c->lprev)
        c->lprev->lnext = c->lnext;
    if (cp->ltail == c)
        cp->ltail = c->lprev;
    else if (c->lnext)
        c->lnext->lprev = c->lprev;
    c->lprev = c->lnext = NULL;
}

/* Puts c at the list's tail, as the entry used last, now. Under mu. */
static void list_use(query__copies *cp, query__copy *c)
{
    c->used_ms = evtime_mono_ms();
    c->lprev = cp->ltail;
    if (cp->ltail)
        cp->ltail->lnext = c;
    else
        cp->lhead = c;
    cp->ltail = c;
}

/* Unlinks c from the table and the list, deletes its copy, frees it. Under mu, unpinned. */
static void drop(query__copies *cp, query__copy *c)
{
    query__copy **pp = &cp->bucket[bucket_of(c->key)];
    while (*pp != c) pp = &(*pp)->hnext;
    *pp = c->hnext;
    list_out(cp, c);
    if (c->state == READY) {
        unlink(c->path);
        cp->st.bytes -= c->bytes;
        cp->st.files--;
    }
    cp->nentries--;
    free(c->path);
    free(c->key);
    free(c);
}

/* The least recently read copy that nothing is reading, or NULL. */
static query__copy *lru_copy(query__copies *cp)
{
    for (query__copy *c = cp->lhead; c; c = c->lnext)
        if (c->state == READY && !c->pins) return c;
    return NULL;
}

/*
 * 1 if a copy of need bytes fits within the limit, once the copies not read for idle_ms
 * are deleted (the least recently read first, as many as it takes). Under mu.
 */
static int make_room(query__copies *cp, uint64_t need)
{
    query__copy *c;
    while (cp->st.bytes + need > cp->max_bytes && (c = lru_copy(cp)) &&
           evtime_mono_ms() - c->used_ms >= cp->idle_ms) {
        drop(cp, c);
        cp->st.evicted++;
    }
    return cp->st.bytes + need <= cp->max_bytes;
}

/* The size a copy of a raw file of raw_size bytes is likely to have: as the copies so far. */
static uint64_t estimate(const query__copies *cp, uint64_t raw_size)
{
    if (!cp->raw_copied) return 0;
    return (uint64_t)((double)raw_size * (double)cp->copy_bytes / (double)cp->raw_copied);
}

/* The entry that has least recently been of use and is not needed now (for a full table). */
static query__copy *oldest_entry(query__copies *cp)
{
    for (query__copy *c = cp->lhead; c; c = c->lnext)
        if (!c->pins && (c->state == READY || c->state == FAILED)) return c;
    return NULL;
}

/* Asks for a copy of key: a new entry in the queue, unless it would not fit or a table is full. */
static void ask(query__copies *cp, const char *key, uint64_t size)
{
    if (cp->nqueued >= COPIES_QUEUE || !make_room(cp, estimate(cp, size))) {
        cp->st.dropped++;
        return;
    }
    if (cp->nentries >= COPIES_ENTRIES) {
        query__copy *v = oldest_entry(cp);
        if (!v) {
            cp->st.dropped++;
            return;
        }
        drop(cp, v);
    }
    query__copy *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        cp->st.dropped++;
        return;
    }
    c->raw_size = size;
    c->state = WANTED;
    size_t b = bucket_of(key);
    c->hnext = cp->bucket[b];
    cp->bucket[b] = c;
    list_use(cp, c);
    if (cp->qtail)
        cp->qtail->qnext = c;
    else
        cp->qhead = c;
    cp->qtail = c;
    cp->nentries++;
    cp->nqueued++;
    pthread_cond_signal(&cp->cv);
}

/* 1 if c's copy is on the disk as it was made (an operator or a cleaner may delete it). */
static int intact(const query__copy *c)
{
    struct stat sb;
    return !stat(c->path, &sb) && (uint64_t)sb.st_size == c->bytes;
}

query__copy *query__copies_get(query__copies *cp, const char *key, uint64_t size, const char **path)
{
    if (size < cp->min_raw) return NULL; /* read raw, and not counted */
    pthread_mutex_lock(&cp->mu);
    query__copy *c = find(cp, key);
    if (c && c->state == READY && c->raw_size == size && !intact(c)) { /* the raw file, then */
        cp->st.failed++;
        if (c->pins) {
            c = NULL;
            cp->st.misses++;
            pthread_mutex_unlock(&cp->mu);
            return NULL;
        }
        drop(cp, c);
        c = NULL;
    }
    if (c && !c->pins &&
        ((c->state == READY && c->raw_size != size) /* not the file copied */ ||
         (c->state == FAILED && evtime_mono_ms() - c->used_ms >= cp->idle_ms))) {
        drop(cp, c); /* asked for again */
        c = NULL;
    }
    if (c && c->state == READY && c->raw_size == size) {
        c->pins++;
        list_out(cp, c);
        list_use(cp, c);
        cp->st.hits++;
        *path = c->path;
    } else {
        if (!c) ask(cp, key, size);
        cp->st.misses++;
        c = NULL;
    }
    pthread_mutex_unlock(&cp->mu);
    return c;
}

void query__copies_put(query__copies *cp, query__copy *c)
{
    if (!c) return;
    pthread_mutex_lock(&cp->mu);
    c->pins--;
    pthread_mutex_unlock(&cp->mu);
}

void query__copies_stats_get(query__copies *cp, query_copies_stats *out)
{
    pthread_mutex_lock(&cp->mu);
    *out = cp->st;
    out->max_bytes = cp->max_bytes;
    pthread_mutex_unlock(&cp->mu);
}

/*
 * Writes the copy of the raw file at src into dst (a temporary name): the columns and types of
 * a compacted file, from one parse of each event (query_jsonl_select), in the file's order.
 */
static int write_copy(query__copies *cp, const char *src, const char *dst)
{
    buf files = BUF_INIT, sql = BUF_INIT;
    query_sql_quote(&files, src);
    buf_printf(&sql, "COPY (SELECT %s FROM (", QUERY_FILE_COLUMNS);
    if (buf_cstr(&files)) query_jsonl_select(&sql, files.p, files.len);
    buf_puts(&sql, ")) TO ");
    query_sql_quote(&sql, dst);
    buf_printf(&sql, " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192, %s)",
               ice_duckdb_field_ids());
    char err[512];
    int rc = buf_cstr(&files) && buf_cstr(&sql) ? query__exec(cp->con, sql.p, err, sizeof err) : -1;
    buf_free(&files);
    buf_free(&sql);
    return rc;
}

/*
 * Makes c's copy: the raw file (fetched into the cache for an object store), written to
 * DIR/ID.parquet.part, renamed to DIR/ID.parquet. 0, or -1: no copy.
 */
static int make_copy(query__copies *cp, const char *key, uint64_t size, unsigned id, char **path,
                     uint64_t *bytes)
{
    query_engine *e = cp->e;
    char src[4096], tmp[4200], dst[4200], m[512];
    lake_cache_item it = {.key = key, .size = size};
    if (e->root) {
        snprintf(src, sizeof src, "%s/%s", e->root, key);
    } else {
        if (lake_cache_fetch(e->cache, e->store, &it, 1, 1, m, sizeof m)) return -1;
        snprintf(src, sizeof src, "%s", it.path);
    }
    snprintf(dst, sizeof dst, "%s/%u.parquet", cp->dir, id);
    snprintf(tmp, sizeof tmp, "%s.part", dst);
    int rc = write_copy(cp, src, tmp);
    if (!e->root) lake_cache_unpin(e->cache, &it, 1);
    struct stat sb;
    if (!rc && (rename(tmp, dst) || stat(dst, &sb))) rc = -1;
    if (rc) {
        unlink(tmp);
        unlink(dst);
        return -1;
    }
    if (!(*path = strdup(dst))) {
        unlink(dst);
        return -1;
    }
    *bytes = (uint64_t)sb.st_size;
    return 0;
}

/* Takes c out of the queue. Under mu. */
static void dequeue(query__copies *cp, query__copy *c)
{
    cp->qhead = c->qnext;
    if (!cp->qhead) cp->qtail = NULL;
    c->qnext = NULL;
    cp->nqueued--;
}

static void *copier_main(void *arg)
{
    query__copies *cp = arg;
    pthread_mutex_lock(&cp->mu);
    for (;;) {
        while (!cp->stop && !cp->qhead) pthread_cond_wait(&cp->cv, &cp->mu);
        if (cp->stop) break;
        query__copy *c = cp->qhead;
        dequeue(cp, c);
        if (!make_room(cp, estimate(cp, c->raw_size))) { /* the copies filled up meanwhile */
            cp->st.dropped++;
            drop(cp, c);
            continue;
        }
        uint64_t size = c->raw_size, bytes = 0;
        unsigned id = cp->next_id++;
        pthread_mutex_unlock(&cp->mu);
        /* c stays while WANTED: nothing else drops an entry in that state */
        char *path = NULL;
        int rc = make_copy(cp, c->key, size, id, &path, &bytes);
        pthread_mutex_lock(&cp->mu);
        list_out(cp, c);
        list_use(cp, c);
        if (rc) {
            c->state = FAILED;
            cp->st.failed++;
            continue;
        }
        cp->raw_copied += size;
        cp->copy_bytes += bytes;
        if (!make_room(cp, bytes)) {
            unlink(path);
            free(path);
            cp->st.dropped++;
            c->state = FAILED; /* not kept, not counted as a copy */
            drop(cp, c);
            continue;
        }
        c->path = path;
        c->bytes = bytes;
        c->state = READY;
        cp->st.made++;
        cp->st.files++;
        cp->st.bytes += bytes;
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

/* Empties dir of what an earlier server left (copies and their temporaries), or makes it. */
static int empty_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "query: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "query: cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if ((n > 8 && !strcmp(de->d_name + n - 8, ".parquet")) ||
            (n > 13 && !strcmp(de->d_name + n - 13, ".parquet.part")))
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    return 0;
}

int query__copies_open(query_engine *e, const char *dir, uint64_t max_bytes, uint64_t min_raw,
                       int64_t idle_ms, query__copies **out, char *err, size_t errlen)
{
    if (empty_dir(dir, err, errlen)) return -1;
    query__copies *cp = calloc(1, sizeof *cp);
    if (!cp || !(cp->dir = strdup(dir))) {
        free(cp);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cp->e = e;
    cp->max_bytes = max_bytes;
    cp->min_raw = min_raw;
    cp->idle_ms = idle_ms > 0 ? idle_ms : 60000;
    pthread_mutex_init(&cp->mu, NULL);
    pthread_cond_init(&cp->cv, NULL);
    if (duckdb_connect(e->db, &cp->con) == DuckDBError) {
        snprintf(err, errlen, "query: cannot connect to DuckDB");
        query__copies_close(cp);
        return -1;
    }
    if (pthread_create(&cp->thread, NULL, copier_main, cp)) {
        snprintf(err, errlen, "query: cannot start the thread that copies raw files");
        query__copies_close(cp);
        return -1;
    }
    cp->started = 1;
    *out = cp;
    return 0;
}

void query__copies_close(query__copies *cp)
{
    if (!cp) return;
    if (cp->started) {
        pthread_mutex_lock(&cp->mu);
        cp->stop = 1;
        pthread_cond_signal(&cp->cv);
        pthread_mutex_unlock(&cp->mu);
        duckdb_interrupt(cp->con); /* a copy being written stops */
        pthread_join(cp->thread, NULL);
    }
    if (cp->con) duckdb_disconnect(&cp->con);
    for (query__copy *c = cp->lhead, *next; c; c = next) { /* no query runs: none is pinned */
        next = c->lnext;
        if (c->state == READY) unlink(c->path);
        free(c->path);
        free(c->key);
        free(c);
    }
    pthread_mutex_destroy(&cp->mu);
    pthread_cond_destroy(&cp->cv);
    free(cp->dir);
    free(cp);
}
