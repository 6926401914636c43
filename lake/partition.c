/*
 * partition.c - listing the hour partitions and their live files
 * (partition.h).
 */
#include "partition.h"

#include "buf.h"
#include "strhash.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lake_manifest_parse(const char *text, size_t len, uint64_t seq, lake_manifest *m, char *err,
                        size_t errlen)
{
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    json_t *pq = doc ? json_object_get(doc, "parquet") : NULL;
    json_t *rp = doc ? json_object_get(doc, "replaced") : NULL;
    if (!json_is_array(pq) || !json_is_object(rp)) {
        snprintf(err, errlen, "manifest %010llu: %s", (unsigned long long)seq,
                 doc ? "no parquet array or replaced object" : je.text);
        json_decref(doc);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(pq, i, v) if (!json_is_string(v) || strchr(json_string_value(v), '/') ||
                                     !json_string_length(v))
    {
        snprintf(err, errlen, "manifest %010llu: a parquet entry is not a file name",
                 (unsigned long long)seq);
        json_decref(doc);
        return -1;
    }
    m->doc = doc;
    m->parquet = pq;
    m->replaced = rp;
    m->seq = seq;
    m->created_ms = json_integer_value(json_object_get(doc, "createdAt"));
    m->rows = (uint64_t)json_integer_value(json_object_get(doc, "rows"));
    m->layout =
        json_integer_value(json_object_get(doc, "version")) >= 2 ? LAKE_LAYOUT_2 : LAKE_LAYOUT_1;
    return 0;
}

void lake_manifest_free(lake_manifest *m)
{
    json_decref(m->doc);
    memset(m, 0, sizeof *m);
}

int64_t lake_manifest_replaced_at(const lake_manifest *m, const char *name)
{
    json_t *v = m->replaced ? json_object_get(m->replaced, name) : NULL;
    return v ? json_integer_value(v) : -1;
}

static int names_parquet(const lake_manifest *m, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(m->parquet, i, v) if (!strcmp(json_string_value(v), name)) return 1;
    return 0;
}

/* ---- manifests read before ------------------------------------------------------ */

/*
 * A manifest is never rewritten (each one has a new seq, put only if absent),
 * so a copy read once stays right: a query over many compacted hours of an
 * object store then reads each manifest once per process, not once per query.
 * Direct-mapped by the hash of lake URL and key.
 */
#define MCACHE_SLOTS 1024

/* Process-wide, shared by every store and thread: any thread reading a manifest looks up or
 * replaces a slot (the old copy freed) holding mcache_mu, and copies the text out before it
 * lets go; never cleared while the process runs. */
static struct {
    char *id; /* "url\nkey" */
    char *text;
    size_t len;
} mcache[MCACHE_SLOTS];
static pthread_mutex_t mcache_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t mcache_slot(const char *id)
{
    return (size_t)(strhash(id) % MCACHE_SLOTS);
}

/* The manifest's text into out, from the copy or the store. STORE_OK or the store's code. */
static int manifest_get(store *s, const char *key, buf *out, char *err, size_t errlen)
{
    buf id = BUF_INIT;
    buf_printf(&id, "%s\n%s", s->url, key);
    if (!buf_cstr(&id)) return store_fail(err, errlen, STORE_EIO, "out of memory");
    size_t k = mcache_slot(id.p);
    pthread_mutex_lock(&mcache_mu);
    int hit = mcache[k].id && !strcmp(mcache[k].id, id.p);
    if (hit) buf_append(out, mcache[k].text, mcache[k].len);
    pthread_mutex_unlock(&mcache_mu);
    if (hit) {
        buf_free(&id);
        return STORE_OK;
    }
    int r = store_get(s, key, 0, 0, out, err, errlen);
    char *text = r ? NULL : malloc(out->len + 1);
    if (text) {
        memcpy(text, out->p ? out->p : "", out->len);
        pthread_mutex_lock(&mcache_mu);
        free(mcache[k].id);
        free(mcache[k].text);
        mcache[k].id = id.p; /* taken */
        mcache[k].text = text;
        mcache[k].len = out->len;
        id.p = NULL;
        pthread_mutex_unlock(&mcache_mu);
    }
    buf_free(&id);
    return r;
}

/* ---- listing ----------------------------------------------------------------- */

typedef struct lister {
    store *s;
    const lake_live *live; /* NULL or without a table: manifests decide */
    lake_partition p;
    int open; /* p holds a partition */
    char manifest_key[LAKE_KEY_MAX];
    lake_partition_fn fn;
    void *ud;
    int rc;
    char *err;
    size_t errlen;
} lister;

static void reset(lake_partition *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->f[i].key);
    for (size_t i = 0; i < p->nrollups; i++) free(p->rollups[i].key);
    p->nrollups = 0;
    for (size_t i = 0; i < p->nold; i++) free(p->old_manifests[i]);
    free(p->old_manifests);
    p->old_manifests = NULL;
    p->n = p->nold = 0;
    p->nmanifests = 0;
    p->has_manifest = 0;
    lake_manifest_free(&p->m);
}

static int add_file(struct lister *l, const store_entry *e, int parquet);

/* A file a record names that the listing did not show: written after the listing passed its
 * name (a listing is not atomic), or lost. Added as live, or -1: the lake lost data. */
static int add_named(lister *l, const char *key, const char *by)
{
    store_entry se;
    char why[512];
    if (store_head(l->s, key, &se, why, sizeof why)) {
        snprintf(l->err, l->errlen, "%s names %s, which is not in the lake: %s", by, key, why);
        return -1;
    }
    store_entry add = {key, se.size, se.mtime_ms};
    if (add_file(l, &add, 1)) return -1;
    l->p.f[l->p.n - 1].live = 1;
    return 0;
}

/* The table decides: its files of the hour, and the segments it has not folded in. Manifests
 * left from before the table are ignored: the conversion folded them in, and they are deleted
 * by key when its snapshot expires. */
static int flush_by_table(lister *l)
{
    lake_partition *p = &l->p;
    const lake_live *lv = l->live;
    size_t listed = p->n;
    for (size_t i = 0; i < listed; i++) {
        lake_part_file *f = &p->f[i];
        f->live = f->parquet ? lake_live_find(lv, f->key) != NULL
                             : lake_table_folded_at(lv->lt, f->key) < 0;
    }
    /* keys sort by hour: the hour's files are one run of them */
    char prefix[LAKE_KEY_MAX];
    lake_hour_prefix(p->hour, prefix);
    size_t plen = strlen(prefix), lo = 0, hi = lv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(lv->files[mid].key, prefix) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < lv->n && !strncmp(lv->files[k].key, prefix, plen); k++) {
        size_t i = 0;
        while (i < listed && strcmp(p->f[i].key, lv->files[k].key)) i++;
        if (i == listed && add_named(l, lv->files[k].key, "the table")) return -1;
    }
    return 0;
}

/* Reads the latest manifest, sets the live flags. */
static int flush_by_manifest(lister *l)
{
    lake_partition *p = &l->p;
    if (p->nmanifests) {
        buf text = BUF_INIT;
        int64_t h;
        uint64_t seq = 0;
        lake_parse_manifest_key(l->manifest_key, &h, &seq);
        char why[512];
        if (manifest_get(l->s, l->manifest_key, &text, why, sizeof why)) {
            snprintf(l->err, l->errlen, "cannot read %s: %s", l->manifest_key, why);
            buf_free(&text);
            return -1;
        }
        int r = lake_manifest_parse(text.p ? text.p : "", text.len, seq, &p->m, l->err, l->errlen);
        buf_free(&text);
        if (r) return -1;
        p->has_manifest = 1;
    }
    for (size_t i = 0; i < p->n; i++) {
        lake_part_file *f = &p->f[i];
        if (!p->has_manifest)
            f->live = !f->parquet;
        else if (f->parquet)
            f->live = names_parquet(&p->m, f->name);
        else
            f->live = lake_manifest_replaced_at(&p->m, f->name) < 0;
    }
    if (p->has_manifest) {
        /* a named parquet file that is not there: the lake lost data */
        size_t i;
        json_t *v;
        json_array_foreach(p->m.parquet, i, v)
        {
            size_t k = 0;
            while (k < p->n && strcmp(p->f[k].name, json_string_value(v))) k++;
            if (k < p->n) continue;
            char key[LAKE_KEY_MAX];
            lake_hour_prefix(p->hour, key);
            snprintf(key + strlen(key), sizeof key - strlen(key), "%s", json_string_value(v));
            if (add_named(l, key, l->manifest_key)) return -1;
        }
    }
    return 0;
}

/* Each rollup listed to its compacted file (the same name before the extension), or an orphan. */
static void match_rollups(lake_partition *p)
{
    for (size_t k = 0; k < p->nrollups; k++) {
        lake_part_rollup *r = &p->rollups[k];
        size_t stem = strlen(r->key) - strlen(lake_rollup_ext[r->kind]);
        r->orphan = 1;
        for (size_t i = 0; i < p->n && r->orphan; i++) {
            lake_part_file *f = &p->f[i];
            if (f->parquet && !strncmp(f->key, r->key, stem) && !strcmp(f->key + stem, "parquet"))
                f->rollups |= 1u << r->kind, f->rollup_size[r->kind] = r->size, r->orphan = 0;
        }
    }
}

/* Sets the live flags of the partition held, then calls fn. */
static int flush(lister *l)
{
    if (!l->open) return 0;
    l->open = 0;
    int by_table = l->live && l->live->lt && l->live->lt->t;
    l->p.live = by_table ? l->live : NULL;
    if (by_table ? flush_by_table(l) : flush_by_manifest(l)) return -1;
    match_rollups(&l->p);
    return l->fn(&l->p, l->ud);
}

static int add_rollup(lister *l, const store_entry *e, int kind)
{
    lake_partition *p = &l->p;
    if (p->nrollups == p->caprollups) {
        size_t nc = p->caprollups ? p->caprollups * 2 : 16;
        lake_part_rollup *nr = realloc(p->rollups, nc * sizeof *nr);
        if (!nr) {
            snprintf(l->err, l->errlen, "out of memory");
            return -1;
        }
        p->rollups = nr, p->caprollups = nc;
    }
    lake_part_rollup *r = &p->rollups[p->nrollups];
    if (!(r->key = strdup(e->key))) {
        snprintf(l->err, l->errlen, "out of memory");
        return -1;
    }
    r->size = e->size;
    r->mtime_ms = e->mtime_ms;
    r->kind = kind;
    r->orphan = 0;
    p->nrollups++;
    return 0;
}

static int add_file(struct lister *l, const store_entry *e, int parquet)
{
    lake_partition *p = &l->p;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        lake_part_file *nf = realloc(p->f, nc * sizeof *nf);
        if (!nf) {
            snprintf(l->err, l->errlen, "out of memory");
            return -1;
        }
        p->f = nf, p->cap = nc;
    }
    lake_part_file *f = &p->f[p->n];
    if (!(f->key = strdup(e->key))) {
        snprintf(l->err, l->errlen, "out of memory");
        return -1;
    }
    f->name = strrchr(f->key, '/') + 1;
    f->size = e->size;
    f->mtime_ms = e->mtime_ms;
    f->parquet = parquet;
    f->live = 0;
    f->rollups = 0;
    memset(f->rollup_size, 0, sizeof f->rollup_size);
    p->n++;
    return 0;
}

static int on_entry(const store_entry *e, void *ud)
{
    lister *l = ud;
    lake_partition *p = &l->p;
    int64_t hour;
    uint64_t seq;
    const char *ext;
    int is_manifest = 0, parquet = 0, rollup = -1;
    if (!lake_parse_manifest_key(e->key, &hour, &seq))
        is_manifest = 1;
    else if (!lake_parse_event_key(e->key, &hour, &ext))
        parquet = !strcmp(ext, "parquet");
    else if ((rollup = lake_parse_rollup_key(e->key, &hour)) < 0)
        return 0; /* not ours */
    if (l->open && hour != p->hour) {
        int r = flush(l);
        reset(p);
        if (r) return l->rc = r;
    }
    if (!l->open) {
        l->open = 1;
        p->hour = hour;
    }
    if (is_manifest) {
        if (p->nmanifests++) {
            /* keys come in order: the one before is older */
            char **no = realloc(p->old_manifests, (p->nold + 1) * sizeof *no);
            if (!no || !(no[p->nold] = strdup(l->manifest_key))) {
                if (no) p->old_manifests = no;
                snprintf(l->err, l->errlen, "out of memory");
                return l->rc = -1;
            }
            p->old_manifests = no;
            p->nold++;
        }
        snprintf(l->manifest_key, sizeof l->manifest_key, "%s", e->key);
        return 0;
    }
    if (rollup >= 0) return add_rollup(l, e, rollup) ? (l->rc = -1) : 0;
    return add_file(l, e, parquet) ? (l->rc = -1) : 0;
}

int lake_partitions_list(store *s, const lake_live *live, const char *prefix, lake_partition_fn fn,
                         void *ud, char *err, size_t errlen)
{
    lister l;
    memset(&l, 0, sizeof l);
    l.s = s, l.live = live, l.fn = fn, l.ud = ud, l.err = err, l.errlen = errlen;
    char why[512];
    int r = store_list(s, prefix, on_entry, &l, why, sizeof why);
    if (r && !l.rc) {
        snprintf(err, errlen, "cannot list the lake: %s", why);
        r = -1;
    } else if (l.rc) {
        r = l.rc;
    } else {
        r = flush(&l);
    }
    reset(&l.p);
    free(l.p.f);
    free(l.p.rollups);
    return r;
}
