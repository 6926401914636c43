/*
 * cache.c - the local object cache (cache.h).
 *
 * An index of entries in a hash table and a doubly linked LRU list (head:
 * used last), under one mutex. A fetch first claims what is missing (an entry
 * in state LOADING), downloads outside the lock into DIR/KEY.part-RANDOM and
 * renames it into place, then marks it READY and wakes the fetches waiting
 * for it.
 */
#include "cache.h"

#include "evrand.h"
#include "files.h"
#include "strhash.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { READY, LOADING, FAILED }; /* FAILED: a download failed; kept while pinned */

typedef struct ent {
    char *key;
    uint64_t size;
    int pins, state;
    int64_t used; /* for the order at open only */
    struct ent *hnext, *prev, *next;
} ent;

struct lake_cache {
    char *dir;
    uint64_t max;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ent **tab;
    size_t nbuckets;
    ent *head, *tail;
    lake_cache_stats st;
};

static ent **slot(lake_cache *c, const char *key)
{
    ent **p = &c->tab[strhash(key) & (c->nbuckets - 1)];
    while (*p && strcmp((*p)->key, key)) p = &(*p)->hnext;
    return p;
}

static void lru_unlink(lake_cache *c, ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(lake_cache *c, ent *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static void path_of(const lake_cache *c, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", c->dir, key);
}

/* Removes e from the index (and its file, if unlink_file); frees it. */
static void drop(lake_cache *c, ent *e, int unlink_file)
{
    ent **p = slot(c, e->key);
    if (*p == e) *p = e->hnext;
    lru_unlink(c, e);
    if (e->state == READY) {
        c->st.bytes -= e->size;
        c->st.objects--;
    }
    if (unlink_file) {
        char path[PATH_MAX];
        path_of(c, e->key, path, sizeof path);
        unlink(path);
    }
    free(e->key);
    free(e);
}

static void evict(lake_cache *c)
{
    ent *e = c->tail;
    while (c->st.bytes > c->max && e) {
        ent *prev = e->prev;
        if (!e->pins && e->state == READY) {
            drop(c, e, 1);
            c->st.evicted++;
        }
        e = prev;
    }
}

static ent *add(lake_cache *c, const char *key, uint64_t size, int state)
{
    ent *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return NULL;
    }
    e->size = size;
    e->state = state;
    ent **p = slot(c, key);
    e->hnext = *p;
    *p = e;
    lru_front(c, e);
    if (state == READY) {
        c->st.bytes += size;
        c->st.objects++;
    }
    return e;
}

/* ---- open: the index from the directory ---------------------------------- */

/*
 * The walk of a cache's directory at open: nftw gives its callback no pointer
 * of the caller's, so what on_file needs and makes is here. lake_cache_open
 * sets them and clears them again while it holds open_mu, which it holds for
 * the whole walk: one open walks at a time, and nothing else reads them.
 */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static lake_cache *opening; /* the cache being opened */
static ent **found;         /* the entries of the files found, found[0 .. nfound) */
static size_t nfound, capfound;

static int on_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F) return 0;
    if (strstr(path, ".part-")) {
        unlink(path); /* a download cut short */
        return 0;
    }
    size_t dl = strlen(opening->dir);
    if (strncmp(path, opening->dir, dl) || path[dl] != '/') return 0;
    if (path[dl + 1] == '.' || !store_key_valid(path + dl + 1))
        return 0; /* .compact/ and the like */
    if (nfound == capfound) {
        size_t nc = capfound ? capfound * 2 : 256;
        ent **nf = realloc(found, nc * sizeof *nf);
        if (!nf) return -1;
        found = nf, capfound = nc;
    }
    ent *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(path + dl + 1))) {
        free(e);
        return -1;
    }
    e->size = (uint64_t)sb->st_size;
    e->used = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
    found[nfound++] = e;
    return 0;
}

static int by_use(const void *a, const void *b)
{
    const ent *x = *(ent *const *)a, *y = *(ent *const *)b;
    return x->used < y->used ? -1 : x->used > y->used;
}

int lake_cache_open(const char *dir, uint64_t max_bytes, lake_cache **out, char *err, size_t errlen)
{
    char why[4400];
    if (files_mkdirs(dir, why, sizeof why)) {
        snprintf(err, errlen, "cache: %s", why);
        return -1;
    }
    lake_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = realpath(dir, NULL))) {
        snprintf(err, errlen, "cache %s: %s", dir, c ? strerror(errno) : "out of memory");
        free(c);
        return -1;
    }
    c->max = max_bytes ? max_bytes : (1ull << 30);
    c->st.max_bytes = c->max;
    c->nbuckets = 4096;
    if (!(c->tab = calloc(c->nbuckets, sizeof *c->tab))) {
        free(c->dir);
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);

    pthread_mutex_lock(&open_mu);
    opening = c;
    found = NULL, nfound = capfound = 0;
    int r = nftw(c->dir, on_file, 32, FTW_PHYS);
    if (nfound) qsort(found, nfound, sizeof *found, by_use);
    if (!r && nfound > c->nbuckets * 2) {
        /* many files: a bigger table (only at open; afterwards chains grow) */
        size_t nb = c->nbuckets;
        while (nb < nfound) nb *= 2;
        ent **t = calloc(nb, sizeof *t);
        if (t) free(c->tab), c->tab = t, c->nbuckets = nb;
    }
    for (size_t i = 0; i < nfound; i++) {
        ent *e = found[i];
        ent **p = slot(c, e->key);
        e->hnext = *p;
        *p = e;
        lru_front(c, e);
        c->st.bytes += e->size;
        c->st.objects++;
    }
    free(found);
    found = NULL;
    opening = NULL;
    pthread_mutex_unlock(&open_mu);
    if (r) {
        snprintf(err, errlen, "cache %s: cannot read it: %s", c->dir, strerror(errno));
        lake_cache_close(c);
        return -1;
    }
    evict(c);
    *out = c;
    return 0;
}

void lake_cache_close(lake_cache *c)
{
    if (!c) return;
    for (ent *e = c->head, *n; e; e = n) {
        n = e->next;
        free(e->key);
        free(e);
    }
    free(c->tab);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->dir);
    free(c);
}

const char *lake_cache_dir(const lake_cache *c)
{
    return c->dir;
}

void lake_cache_stats_get(lake_cache *c, lake_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

/* ---- fetch ----------------------------------------------------------------- */

typedef struct job {
    lake_cache *c;
    store *s;
    lake_cache_item *items;
    ent **ents;            /* the entry each item pinned */
    unsigned char *mine;   /* 1: this call downloads the item; 2: done; 3: failed */
    unsigned char *pinned; /* 1: this call pinned the item's entry */
    size_t n;
    _Atomic size_t next;
    pthread_mutex_t mu; /* err */
    char *err;
    size_t errlen;
    int failed;
} job;

static void job_fail(job *j, const char *msg)
{
    pthread_mutex_lock(&j->mu);
    if (!j->failed) snprintf(j->err, j->errlen, "%s", msg);
    j->failed = 1;
    pthread_mutex_unlock(&j->mu);
}

static void failed(job *j, size_t i)
{
    pthread_mutex_lock(&j->c->mu);
    j->ents[i]->state = FAILED; /* the waiting fetches see it; the last pin drops it */
    pthread_cond_broadcast(&j->c->cv);
    pthread_mutex_unlock(&j->c->mu);
}

static int download(job *j, size_t i)
{
    lake_cache *c = j->c;
    const char *key = j->items[i].key;
    char path[PATH_MAX], part[PATH_MAX + 40];
    path_of(c, key, path, sizeof path);
    snprintf(part, sizeof part, "%s.part-%016llx", path, (unsigned long long)evrand_u64());
    char parent[PATH_MAX], why[PATH_MAX + 100];
    if (files_parent(part, parent, sizeof parent, why, sizeof why) ||
        files_mkdirs(parent, why, sizeof why)) {
        char m[2 * PATH_MAX + 200];
        snprintf(m, sizeof m, "cache: cannot create a directory for %s: %s", path, why);
        job_fail(j, m);
        return -1;
    }
    if (store_get_file(j->s, key, part, why, sizeof why)) {
        job_fail(j, why);
        return -1;
    }
    struct stat sb;
    if (stat(part, &sb) || rename(part, path)) {
        char m[PATH_MAX + 100];
        snprintf(m, sizeof m, "cache: cannot keep %s: %s", path, strerror(errno));
        unlink(part);
        job_fail(j, m);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    ent *e = j->ents[i];
    e->state = READY;
    e->size = (uint64_t)sb.st_size;
    c->st.bytes += e->size;
    c->st.objects++;
    c->st.fetched_bytes += e->size;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void *worker(void *arg)
{
    job *j = arg;
    for (;;) {
        size_t i = j->next++;
        if (i >= j->n) break;
        if (j->mine[i] != 1) continue;
        if (download(j, i)) {
            failed(j, i);
            j->mine[i] = 3;
        } else {
            j->mine[i] = 2;
        }
    }
    return NULL;
}

/*
 * Under c->mu: pins the entry of each item, claiming (mine) those missing or
 * failed before, to download; *todo counts them. 0, or -1 out of memory.
 */
static int pin_items(job *j, size_t *todo)
{
    lake_cache *c = j->c;
    for (size_t i = 0; i < j->n; i++) {
        lake_cache_item *it = &j->items[i];
        it->path = NULL;
        ent *e = *slot(c, it->key);
        if (e && e->state == READY && e->size != it->size && !e->pins) {
            drop(c, e, 1); /* not the object listed: fetch it again */
            e = NULL;
        }
        if (!e) {
            if (!(e = add(c, it->key, it->size, LOADING))) {
                snprintf(j->err, j->errlen, "out of memory");
                return -1;
            }
            j->mine[i] = 1;
        } else if (e->state == FAILED) { /* an earlier fetch failed: try again */
            e->state = LOADING;
            j->mine[i] = 1;
        }
        if (j->mine[i]) {
            (*todo)++;
            c->st.misses++;
        } else {
            c->st.hits += e->state == READY;
        }
        e->pins++;
        j->ents[i] = e;
        j->pinned[i] = 1;
        lru_unlink(c, e);
        lru_front(c, e);
    }
    return 0;
}

/* Downloads the todo items claimed, on up to parallel threads (this one too). 0, or -1. */
static int download_claimed(job *j, size_t todo, int parallel)
{
    int nt = parallel < 1 ? 1 : parallel > 16 ? 16 : parallel;
    if ((size_t)nt > todo) nt = (int)todo;
    pthread_t th[16];
    int started = 0;
    for (int t = 1; t < nt; t++)
        if (!pthread_create(&th[started], NULL, worker, j)) started++;
    worker(j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    return j->failed ? -1 : 0;
}

/* Under c->mu: waits for the items other fetches download (a pinned entry stays). 0, or -1. */
static int wait_others(job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        while (j->ents[i]->state == LOADING) pthread_cond_wait(&j->c->cv, &j->c->mu);
        if (j->ents[i]->state == FAILED) {
            snprintf(j->err, j->errlen, "cache: the fetch of %s failed", j->items[i].key);
            return -1;
        }
    }
    return 0;
}

/* Under c->mu: each item's path in the cache. 0, or -1 out of memory. */
static int name_items(job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        char path[PATH_MAX];
        path_of(j->c, j->items[i].key, path, sizeof path);
        if (!(j->items[i].path = strdup(path))) {
            snprintf(j->err, j->errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Under c->mu, after a failure: no item keeps a path, and the pins this call took go. */
static void unpin_failed(job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->items[i].path);
        j->items[i].path = NULL;
        if (!j->pinned[i]) continue;
        ent *e = j->ents[i];
        if (j->mine[i] && e->state == LOADING) e->state = FAILED; /* never started */
        if (!--e->pins && e->state == FAILED) drop(j->c, e, 0);
    }
}

int lake_cache_fetch(lake_cache *c, store *s, lake_cache_item *items, size_t n, int parallel,
                     char *err, size_t errlen)
{
    if (!n) return 0;
    unsigned char *mine = calloc(n, 2);
    ent **ents = calloc(n, sizeof *ents);
    if (!mine || !ents) {
        free(mine);
        free(ents);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    job j = {.c = c, .s = s, .items = items, .n = n, .err = err, .errlen = errlen};
    j.ents = ents, j.mine = mine, j.pinned = mine + n;
    pthread_mutex_init(&j.mu, NULL);
    size_t todo = 0;
    pthread_mutex_lock(&c->mu);
    int rc = pin_items(&j, &todo);
    pthread_mutex_unlock(&c->mu);
    if (!rc && todo) rc = download_claimed(&j, todo, parallel);
    pthread_mutex_destroy(&j.mu);

    pthread_mutex_lock(&c->mu);
    if (!rc) rc = wait_others(&j);
    if (!rc) rc = name_items(&j);
    if (rc) unpin_failed(&j);
    pthread_cond_broadcast(&c->cv);
    evict(c);
    pthread_mutex_unlock(&c->mu);
    free(mine);
    free(ents);
    return rc;
}

void lake_cache_unpin(lake_cache *c, lake_cache_item *items, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        ent *e = *slot(c, items[i].key); /* the entry pinned: a pinned one is never replaced */
        if (e && e->pins) e->pins--;
        free(items[i].path);
        items[i].path = NULL;
    }
    evict(c);
    pthread_mutex_unlock(&c->mu);
}
