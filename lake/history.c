/*
 * history.c - what compaction and queries share of history files
 * (history.h): their name's hash, and their listing.
 */
#include "history.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

void lake_history_hash(const char **keys, size_t n, char out[LAKE_HISTORY_HASH + 1])
{
    qsort(keys, n, sizeof *keys, by_key);
    /* the format's version first: a file of another format is another file */
    uint64_t h = fnv(0xcbf29ce484222325ull, LAKE_HISTORY_FORMAT);
    for (size_t i = 0; i < n; i++) h = fnv(fnv(h, keys[i]), "\n");
    snprintf(out, LAKE_HISTORY_HASH + 1, "%016llx", (unsigned long long)h);
}

static int on_entry(const store_entry *e, void *ud)
{
    lake_history_list *l = ud;
    lake_history_file h = {.size = e->size, .mtime_ms = e->mtime_ms};
    if (lake_parse_history_key(e->key, &h.day, h.hash, &h.part, &h.parts)) return 0; /* not ours */
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        lake_history_file *nf = realloc(l->f, nc * sizeof *nf);
        if (!nf) return l->oom = 1;
        l->f = nf, l->cap = nc;
    }
    if (!(h.key = strdup(e->key))) return l->oom = 1;
    l->f[l->n++] = h;
    return 0;
}

int lake_history_load(store *s, lake_history_list *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char why[512];
    int rc = store_list(s, LAKE_HISTORY_PREFIX, on_entry, out, why, sizeof why);
    if (!out->oom && (!rc || rc == STORE_ENOENT)) return 0; /* ENOENT: none yet */
    snprintf(err, errlen, "cannot list the history files: %s", out->oom ? "out of memory" : why);
    lake_history_list_free(out);
    return -1;
}

void lake_history_list_free(lake_history_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->f[i].key);
    free(l->f);
    memset(l, 0, sizeof *l);
}

int lake_history_complete(const lake_history_list *l, int64_t day, const char *hash)
{
    for (size_t i = 0; i < l->n; i++) {
        const lake_history_file *a = &l->f[i];
        if (a->day != day || strcmp(a->hash, hash) || a->part != 1) continue;
        int have = 0; /* the parts of a's set: each part's name is listed once */
        for (size_t j = 0; j < l->n; j++)
            have += l->f[j].day == day && l->f[j].parts == a->parts && !strcmp(l->f[j].hash, hash);
        if (have == a->parts) return a->parts;
    }
    return 0;
}
